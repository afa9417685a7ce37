//! Structural OpenAPI v3 checks of a value against a (structural) CRD schema: the subset the
//! apiserver enforces for CRDs, plus strict unknown-field detection as `kubectl apply` does.

use regex::Regex;
use serde_json::{Map, Value};

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "<root>"
    } else {
        path
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Appends one message per problem in `value` (at `path`) to `errors`.
pub(super) fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    let shown = display_path(path);
    if value.is_null() {
        if !flag(schema, "nullable") {
            errors.push(format!("{shown}: must not be null"));
        }
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(format!(
                "{shown}: must be an integer or a string, got {}",
                type_name(value)
            ));
        }
        check_scalar(schema, value, shown, errors);
        return;
    }
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let ok = actual == expected || (expected == "number" && actual == "integer");
        if !ok {
            errors.push(format!("{shown}: must be of type {expected}, got {actual}"));
            return;
        }
    }
    check_scalar(schema, value, shown, errors);
    match value {
        Value::Object(obj) => check_object(schema, obj, path, errors),
        Value::Array(items) => {
            check_count(
                schema,
                items.len(),
                "minItems",
                "maxItems",
                "items",
                shown,
                errors,
            );
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

fn flag(schema: &Map<String, Value>, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn check_object(
    schema: &Map<String, Value>,
    obj: &Map<String, Value>,
    path: &str,
    errors: &mut Vec<String>,
) {
    let shown = display_path(path);
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(key) {
                errors.push(format!("{}: required", join(path, key)));
            }
        }
    }
    check_count(
        schema,
        obj.len(),
        "minProperties",
        "maxProperties",
        "properties",
        shown,
        errors,
    );
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    // metadata is validated by the apiserver itself; the CRD schema only says `type: object`.
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields") || path == "metadata";
    for (key, child) in obj {
        let child_path = join(path, key);
        // The apiserver implies these at the root of every custom resource.
        if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
            check(child_schema, child, &child_path, errors);
        } else if let Some(additional) = additional.filter(|a| a.is_object()) {
            check(additional, child, &child_path, errors);
        } else if !preserve && (properties.is_some() || additional.is_some()) {
            errors.push(format!("{child_path}: unknown field"));
        }
    }
}

fn check_count(
    schema: &Map<String, Value>,
    len: usize,
    min_key: &str,
    max_key: &str,
    what: &str,
    shown: &str,
    errors: &mut Vec<String>,
) {
    if let Some(min) = schema.get(min_key).and_then(Value::as_u64) {
        if (len as u64) < min {
            errors.push(format!("{shown}: must have at least {min} {what}"));
        }
    }
    if let Some(max) = schema.get(max_key).and_then(Value::as_u64) {
        if (len as u64) > max {
            errors.push(format!("{shown}: must have at most {max} {what}"));
        }
    }
}

fn check_scalar(schema: &Map<String, Value>, value: &Value, shown: &str, errors: &mut Vec<String>) {
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let names: Vec<String> = allowed.iter().map(Value::to_string).collect();
            errors.push(format!(
                "{shown}: unsupported value {value}: supported values: {}",
                names.join(", ")
            ));
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            let exclusive = flag(schema, "exclusiveMinimum");
            if n < min || (exclusive && n == min) {
                let cmp = if exclusive { ">" } else { ">=" };
                errors.push(format!("{shown}: should be {cmp} {min}, got {value}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            let exclusive = flag(schema, "exclusiveMaximum");
            if n > max || (exclusive && n == max) {
                let cmp = if exclusive { "<" } else { "<=" };
                errors.push(format!("{shown}: should be {cmp} {max}, got {value}"));
            }
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if len < min {
                errors.push(format!("{shown}: should be at least {min} chars long"));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                errors.push(format!("{shown}: may not be longer than {max} chars"));
            }
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match Regex::new(pattern) {
                Ok(re) if !re.is_match(s) => {
                    errors.push(format!("{shown}: {s:?} should match '{pattern}'"));
                }
                Ok(_) => {}
                Err(e) => errors.push(format!(
                    "{shown}: schema pattern '{pattern}' is invalid: {e}"
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errs(schema: Value, value: Value) -> Vec<String> {
        let mut e = Vec::new();
        check(&schema, &value, "", &mut e);
        e
    }

    #[test]
    fn scalar_rules_name_the_field() {
        let schema = json!({"type": "object", "properties": {
            "n": {"type": "integer", "minimum": 1.0, "maximum": 3.0},
            "s": {"type": "string", "pattern": "^a+$", "maxLength": 3},
            "e": {"type": "string", "enum": ["x", "y"]},
            "m": {"type": "object", "additionalProperties": {"type": "string"}},
            "ios": {"x-kubernetes-int-or-string": true}
        }, "required": ["n"]});
        assert!(errs(
            schema.clone(),
            json!({"n": 2, "s": "aa", "e": "x", "m": {"k": "v"}, "ios": "25%"})
        )
        .is_empty());
        assert_eq!(
            errs(schema.clone(), json!({"n": 0})),
            vec!["n: should be >= 1, got 0"]
        );
        assert_eq!(
            errs(schema.clone(), json!({"n": 4})),
            vec!["n: should be <= 3, got 4"]
        );
        assert_eq!(
            errs(schema.clone(), json!({"n": "1"})),
            vec!["n: must be of type integer, got string"]
        );
        assert_eq!(errs(schema.clone(), json!({})), vec!["n: required"]);
        assert_eq!(
            errs(schema.clone(), json!({"n": 1, "zz": 1})),
            vec!["zz: unknown field"]
        );
        assert_eq!(
            errs(schema.clone(), json!({"n": 1, "m": {"k": 1}})),
            vec!["m.k: must be of type string, got integer"]
        );
        assert_eq!(
            errs(schema.clone(), json!({"n": 1, "ios": true})),
            vec!["ios: must be an integer or a string, got boolean"]
        );
        assert_eq!(
            errs(schema.clone(), json!({"n": 1, "s": "ab"})),
            vec![r#"s: "ab" should match '^a+$'"#]
        );
        assert_eq!(
            errs(schema.clone(), json!({"n": 1, "s": "aaaa"})),
            vec!["s: may not be longer than 3 chars"]
        );
        assert_eq!(
            errs(schema, json!({"n": 1, "e": "z"})),
            vec![r#"e: unsupported value "z": supported values: "x", "y""#]
        );
    }
}
