//! vLLM's `_glm47_arg_converter`: `<arg_key>k</arg_key>\s*<arg_value>v</arg_value>` pairs
//! into a dict of raw strings, with the regex semantics reproduced by hand (leftmost match,
//! lazy key and value), plus the trailing half-finished pair when `partial`.

use crate::engine::{ARG_KEY_END, ARG_KEY_START, ARG_VALUE_END, ARG_VALUE_START};
use crate::pyjson::{is_py_space, py_strip, PyValue};

/// A matched pair: byte ranges of the whole match, the key and the value.
struct Pair {
    start: usize,
    end: usize,
    key: (usize, usize),
    value: (usize, usize),
}

/// Skips `\s*` (and, when `tolerant`, literal two-character `\n` sequences that GLM models
/// sometimes emit instead of newlines).
fn skip_separator(s: &str, mut pos: usize, tolerant: bool) -> usize {
    loop {
        let rest = &s[pos..];
        if tolerant && rest.starts_with("\\n") {
            pos += 2;
            continue;
        }
        match rest.chars().next() {
            Some(c) if is_py_space(c) => pos += c.len_utf8(),
            _ => return pos,
        }
    }
}

/// Leftmost pair at or after `from`. With `to_end` the value runs to the end of the text
/// (the partial pattern `<arg_value>(.*)$`) instead of to the first `</arg_value>`.
fn find_pair(s: &str, from: usize, tolerant: bool, to_end: bool) -> Option<Pair> {
    let mut search = from;
    while let Some(offset) = s.get(search..)?.find(ARG_KEY_START) {
        let start = search + offset;
        let key_start = start + ARG_KEY_START.len();
        let mut key_search = key_start;
        while let Some(offset) = s[key_search..].find(ARG_KEY_END) {
            let key_end = key_search + offset;
            let sep_end = skip_separator(s, key_end + ARG_KEY_END.len(), tolerant);
            if s[sep_end..].starts_with(ARG_VALUE_START) {
                let value_start = sep_end + ARG_VALUE_START.len();
                if to_end {
                    return Some(Pair {
                        start,
                        end: s.len(),
                        key: (key_start, key_end),
                        value: (value_start, s.len()),
                    });
                }
                // No closing tag: no later key end or start can match either.
                let value_end = value_start + s[value_start..].find(ARG_VALUE_END)?;
                return Some(Pair {
                    start,
                    end: value_end + ARG_VALUE_END.len(),
                    key: (key_start, key_end),
                    value: (value_start, value_end),
                });
            }
            key_search = key_end + 1;
        }
        search = start + 1;
    }
    None
}

/// The converter's dict: keys stripped, values raw. A repeated key keeps its first position
/// and takes the last value (Python dict assignment).
pub(crate) fn convert(raw: &str, partial: bool, tolerant: bool) -> Vec<(String, PyValue)> {
    let mut params: Vec<(String, PyValue)> = Vec::new();
    let mut remaining = String::new();
    let mut pos = 0;
    while let Some(pair) = find_pair(raw, pos, tolerant, false) {
        remaining.push_str(&raw[pos..pair.start]);
        let key = py_strip(&raw[pair.key.0..pair.key.1]).to_string();
        let value = raw[pair.value.0..pair.value.1].to_string();
        PyValue::dict_insert(&mut params, key, PyValue::Str(value));
        pos = pair.end;
    }
    if partial {
        remaining.push_str(&raw[pos..]);
        if let Some(pair) = find_pair(&remaining, 0, tolerant, true) {
            let key = py_strip(&remaining[pair.key.0..pair.key.1]).to_string();
            if !key.is_empty() {
                let value = remaining[pair.value.0..pair.value.1].to_string();
                PyValue::dict_insert(&mut params, key, PyValue::Str(value));
            }
        }
    }
    params
}

/// Number of complete pairs and whether a key repeats among them (streaming stops
/// extending a call's arguments once that happens: Python would rewrite an earlier value).
pub(crate) fn complete_pairs(raw: &str, tolerant: bool) -> (Vec<(String, PyValue)>, bool) {
    let mut params: Vec<(String, PyValue)> = Vec::new();
    let mut repeated = false;
    let mut pos = 0;
    while let Some(pair) = find_pair(raw, pos, tolerant, false) {
        let key = py_strip(&raw[pair.key.0..pair.key.1]).to_string();
        if params.iter().any(|(k, _)| *k == key) {
            repeated = true;
        }
        let value = raw[pair.value.0..pair.value.1].to_string();
        PyValue::dict_insert(&mut params, key, PyValue::Str(value));
        pos = pair.end;
    }
    (params, repeated)
}

/// vLLM `_try_extract_name`: `"name"\s*:\s*"([^"]*)"` in the accumulated arguments, used
/// only when the call has no name text.
pub(crate) fn try_extract_name(args: &str) -> Option<String> {
    let mut search = 0;
    while let Some(offset) = args[search..].find("\"name\"") {
        let at = search + offset;
        let mut pos = at + "\"name\"".len();
        pos = skip_ws(args, pos);
        if args[pos..].starts_with(':') {
            pos = skip_ws(args, pos + 1);
            if let Some(rest) = args[pos..].strip_prefix('"') {
                if let Some(close) = rest.find('"') {
                    let name = &rest[..close];
                    if !name.is_empty() {
                        return Some(name.to_string());
                    }
                    return None;
                }
            }
        }
        search = at + 1;
    }
    None
}

fn skip_ws(s: &str, mut pos: usize) -> usize {
    while let Some(c) = s[pos..].chars().next().filter(|c| is_py_space(*c)) {
        pos += c.len_utf8();
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pyjson::dumps;

    fn conv(raw: &str, partial: bool) -> String {
        dumps(&PyValue::Dict(convert(raw, partial, false)))
    }

    #[test]
    fn pairs_like_the_vllm_regex() {
        assert_eq!(
            conv("<arg_key>city</arg_key>\n<arg_value>北京</arg_value>\n<arg_key> days </arg_key><arg_value> 3 </arg_value>", false),
            r#"{"city": "北京", "days": " 3 "}"#
        );
        // A key with no value after its end tag extends lazily to the next end tag.
        assert_eq!(
            conv(
                "<arg_key>a</arg_key>x<arg_key>b</arg_key><arg_value>v</arg_value>",
                false
            ),
            r#"{"a</arg_key>x<arg_key>b": "v"}"#
        );
        assert_eq!(conv("<arg_key>a</arg_key><arg_value>1</arg_value><arg_key>a</arg_key><arg_value>2</arg_value><arg_key>b</arg_key><arg_value>3</arg_value>", false), r#"{"a": "2", "b": "3"}"#);
        assert_eq!(
            conv("<arg_key>a</arg_key><arg_value>unterminated", false),
            "{}"
        );
        assert_eq!(
            conv("<arg_key>a</arg_key><arg_value>open", true),
            r#"{"a": "open"}"#
        );
        assert_eq!(
            conv(
                "<arg_key>a</arg_key><arg_value>1</arg_value><arg_key>b</arg_key>",
                true
            ),
            r#"{"a": "1"}"#
        );
        assert_eq!(
            conv("<arg_key></arg_key><arg_value>x</arg_value>", false),
            r#"{"": "x"}"#
        );
        assert_eq!(conv("<arg_key></arg_key><arg_value>x", true), "{}");
        // Literal backslash-n between key and value only with tolerance.
        let raw = "<arg_key>a</arg_key>\\n<arg_value>1</arg_value>";
        assert_eq!(conv(raw, false), "{}");
        assert_eq!(
            dumps(&PyValue::Dict(convert(raw, false, true))),
            r#"{"a": "1"}"#
        );
    }

    #[test]
    fn name_extraction() {
        assert_eq!(
            try_extract_name(r#"x "name" : "f" y"#).as_deref(),
            Some("f")
        );
        assert_eq!(try_extract_name(r#""name": """#), None);
        assert_eq!(try_extract_name("no name"), None);
    }
}
