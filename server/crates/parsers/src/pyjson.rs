//! Python value semantics needed to reproduce vLLM's argument JSON byte for byte:
//! `json.loads` (strict, arbitrary-size ints, duplicate keys keep the first position),
//! `json.dumps(ensure_ascii=False)` (`", "`/`": "` separators, `repr` floats), `int(str)`,
//! `float(str)` and `str.strip()`.

mod loads;

use std::fmt::Write as _;

pub(crate) use loads::loads;

/// A Python object as produced by `json.loads` (or by vLLM's type coercion).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PyValue {
    Null,
    Bool(bool),
    /// Canonical decimal digits with an optional leading `-` (Python ints are unbounded).
    Int(String),
    Float(f64),
    Str(String),
    List(Vec<PyValue>),
    /// Insertion-ordered; a repeated key keeps its first position and takes the last value.
    Dict(Vec<(String, PyValue)>),
}

impl PyValue {
    /// Python `d[key] = value` on a dict.
    pub fn dict_insert(entries: &mut Vec<(String, PyValue)>, key: String, value: PyValue) {
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => entries.push((key, value)),
        }
    }

    /// vLLM's `_is_json_finite`: no NaN or infinity anywhere inside.
    pub fn is_finite(&self) -> bool {
        match self {
            PyValue::Float(f) => f.is_finite(),
            PyValue::List(items) => items.iter().all(PyValue::is_finite),
            PyValue::Dict(entries) => entries.iter().all(|(_, v)| v.is_finite()),
            _ => true,
        }
    }
}

/// Python's `str.isspace()` for one character (also what `str.strip()` removes and, close
/// enough, what the `regex` module's `\s` matches).
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// `json.dumps(value, ensure_ascii=False)`.
pub(crate) fn dumps(value: &PyValue) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &PyValue) {
    match value {
        PyValue::Null => out.push_str("null"),
        PyValue::Bool(true) => out.push_str("true"),
        PyValue::Bool(false) => out.push_str("false"),
        PyValue::Int(digits) => out.push_str(digits),
        PyValue::Float(f) => out.push_str(&float_repr(*f)),
        PyValue::Str(s) => write_string(out, s),
        PyValue::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        PyValue::Dict(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, key);
                out.push_str(": ");
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// A JSON string literal as `json.dumps(..., ensure_ascii=False)` writes it.
pub(crate) fn write_string(out: &mut String, s: &str) {
    out.push('"');
    write_string_body(out, s);
    out.push('"');
}

/// The escaped characters of a JSON string, without quotes (streamed string prefixes).
pub(crate) fn write_string_body(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Python's `repr(float)` (`json.dumps` uses it): shortest round-trip digits, exponent form
/// below 1e-4 and from 1e16, `.0` on integral values.
pub(crate) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// Python's `int(f)` for an integral finite float, as exact decimal digits.
pub(crate) fn integral_float_to_int(f: f64) -> String {
    if f.abs() < 9.0e15 {
        return format!("{}", f as i64);
    }
    // f = mantissa * 2^exp exactly; multiply out in base 1e9.
    let bits = f.to_bits();
    let negative = bits >> 63 == 1;
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    let mut mantissa = bits & ((1u64 << 52) - 1);
    if exp_bits != 0 {
        mantissa |= 1u64 << 52;
    }
    let exp = exp_bits - 1075;
    let mut limbs: Vec<u64> = vec![mantissa % 1_000_000_000, mantissa / 1_000_000_000];
    for _ in 0..exp.max(0) {
        let mut carry = 0u64;
        for limb in limbs.iter_mut() {
            let v = *limb * 2 + carry;
            *limb = v % 1_000_000_000;
            carry = v / 1_000_000_000;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    while limbs.len() > 1 && limbs.last() == Some(&0) {
        limbs.pop();
    }
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    let mut iter = limbs.iter().rev();
    if let Some(first) = iter.next() {
        let _ = write!(out, "{first}");
    }
    for limb in iter {
        let _ = write!(out, "{limb:09}");
    }
    out
}

/// Python's `int(text)` in base 10: surrounding whitespace, a sign, digits with single
/// underscores between them. Returns canonical digits.
pub(crate) fn py_int(text: &str) -> Option<String> {
    let s = py_strip(text);
    let (negative, body) = split_sign(s);
    let digits = digits_with_underscores(body)?;
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        return Some("0".to_string());
    }
    Some(if negative {
        format!("-{trimmed}")
    } else {
        trimmed.to_string()
    })
}

/// Python's `float(text)`: whitespace, sign, decimal digits with underscores, optional
/// fraction and exponent, or inf/infinity/nan in any case.
pub(crate) fn py_float(text: &str) -> Option<f64> {
    let s = py_strip(text);
    let (negative, body) = split_sign(s);
    let lower = body.to_ascii_lowercase();
    let value = match lower.as_str() {
        "inf" | "infinity" => f64::INFINITY,
        "nan" => f64::NAN,
        _ => {
            let (mantissa, exponent) = match body.find(['e', 'E']) {
                Some(i) => (&body[..i], Some(&body[i + 1..])),
                None => (body, None),
            };
            let (int_part, frac_part) = match mantissa.split_once('.') {
                Some((a, b)) => (a, Some(b)),
                None => (mantissa, None),
            };
            let int_digits = if int_part.is_empty() {
                String::new()
            } else {
                digits_with_underscores(int_part)?
            };
            let frac_digits = match frac_part {
                Some("") | None => String::new(),
                Some(f) => digits_with_underscores(f)?,
            };
            if int_digits.is_empty() && frac_digits.is_empty() {
                return None;
            }
            let mut normalized = format!(
                "{}.{}",
                if int_digits.is_empty() {
                    "0"
                } else {
                    &int_digits
                },
                if frac_digits.is_empty() {
                    "0"
                } else {
                    &frac_digits
                }
            );
            if let Some(e) = exponent {
                let (e_negative, e_body) = split_sign(e);
                let e_digits = digits_with_underscores(e_body)?;
                normalized.push('e');
                if e_negative {
                    normalized.push('-');
                }
                normalized.push_str(&e_digits);
            }
            normalized.parse::<f64>().ok()?
        }
    };
    Some(if negative { -value } else { value })
}

fn split_sign(s: &str) -> (bool, &str) {
    if let Some(rest) = s.strip_prefix('-') {
        (true, rest)
    } else if let Some(rest) = s.strip_prefix('+') {
        (false, rest)
    } else {
        (false, s)
    }
}

/// ASCII digits with single underscores strictly between digits; returns the digits.
fn digits_with_underscores(s: &str) -> Option<String> {
    if s.is_empty() || s.starts_with('_') || s.ends_with('_') || s.contains("__") {
        return None;
    }
    if !s.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    Some(s.chars().filter(char::is_ascii_digit).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_dumps_round_trip_like_python() {
        let cases = [
            (
                r#"{"a":1,"b":[1.5,2e3,null,true],"a":"x"}"#,
                r#"{"a": "x", "b": [1.5, 2000.0, null, true]}"#,
            ),
            (
                "  [1, -0, 10000000000000000000000000]  ",
                "[1, 0, 10000000000000000000000000]",
            ),
            (r#""\u5317\ud83d\ude00\n""#, r#""北😀\n""#),
            ("1E400", "Infinity"),
            ("0.1", "0.1"),
            ("1e-7", "1e-07"),
        ];
        for (input, want) in cases {
            assert_eq!(dumps(&loads(input).unwrap()), want, "{input}");
        }
        for bad in [
            "[1,]",
            "{'a': 1}",
            "01",
            "\"a\u{1}\"",
            "tru",
            "1 2",
            "",
            "[1e]",
            "NaNx",
        ] {
            assert!(loads(bad).is_none(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn python_int_and_float() {
        assert_eq!(py_int(" 42\n").as_deref(), Some("42"));
        assert_eq!(py_int("-007").as_deref(), Some("-7"));
        assert_eq!(py_int("1_000").as_deref(), Some("1000"));
        assert_eq!(py_int("-0").as_deref(), Some("0"));
        for bad in ["1.0", "1__0", "_1", "0x10", "", " ", "1e3"] {
            assert!(py_int(bad).is_none(), "{bad:?}");
        }
        assert_eq!(py_float(" 3.5 "), Some(3.5));
        assert_eq!(py_float("1e3"), Some(1000.0));
        assert_eq!(py_float(".5"), Some(0.5));
        assert_eq!(py_float("5."), Some(5.0));
        assert_eq!(py_float("-1_0.2_5"), Some(-10.25));
        assert!(py_float("Infinity").unwrap().is_infinite());
        assert!(py_float("nan").unwrap().is_nan());
        for bad in ["", ".", "e5", "1e", "abc", "1.2.3"] {
            assert!(py_float(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn integral_floats_become_exact_ints() {
        assert_eq!(integral_float_to_int(3.0), "3");
        assert_eq!(integral_float_to_int(-1e15), "-1000000000000000");
        assert_eq!(integral_float_to_int(1e16), "10000000000000000");
        assert_eq!(integral_float_to_int(1e23), "99999999999999991611392");
        assert_eq!(
            integral_float_to_int(2f64.powi(70)),
            "1180591620717411303424"
        );
    }

    #[test]
    fn float_repr_like_python() {
        for (f, want) in [
            (1.0, "1.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
        ] {
            assert_eq!(float_repr(f), want);
        }
    }
}
