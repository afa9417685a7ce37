//! The request's tool definitions, as the parsers need them: names (calls to tools that
//! were not offered are dropped, as vLLM's `validate_tool_names` does) and parameter schemas
//! (argument values are typed from them).

use serde_json::{Map, Value};

use crate::error::ParserError;
use crate::pyjson::{self, py_float, py_int, py_strip, PyValue};

/// One function tool: its name and JSON-schema `parameters`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub parameters: Option<Value>,
}

/// The tools offered in a request. An empty set means "no tools were given": every call
/// name is accepted and values stay strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolSet {
    tools: Vec<ToolSpec>,
}

impl ToolSet {
    /// A set from explicit specs.
    pub fn new(tools: Vec<ToolSpec>) -> Self {
        ToolSet { tools }
    }

    /// Reads a request's `tools` array. Accepted entries: OpenAI chat
    /// (`{"type": "function", "function": {"name", "parameters"}}`), flat Responses-style
    /// (`{"type": "function", "name", "parameters"}`) and Anthropic (`{"name", "input_schema"}`).
    /// `null` gives an empty set. Non-function tools (`{"type": "web_search"}`) are skipped.
    pub fn from_json(tools: &Value) -> Result<Self, ParserError> {
        let list = match tools {
            Value::Null => return Ok(ToolSet::default()),
            Value::Array(list) => list,
            _ => return Err(ParserError::InvalidTools("`tools` must be a list".into())),
        };
        let mut specs = Vec::with_capacity(list.len());
        for (i, tool) in list.iter().enumerate() {
            let Value::Object(obj) = tool else {
                return Err(ParserError::InvalidTools(format!(
                    "tools[{i}] must be an object"
                )));
            };
            let function = match obj.get("function") {
                Some(Value::Object(f)) => f,
                Some(_) => {
                    return Err(ParserError::InvalidTools(format!(
                        "tools[{i}].function must be an object"
                    )))
                }
                None => obj,
            };
            let name = match function.get("name") {
                Some(Value::String(name)) => name,
                // Built-in tools without a function name (`{"type": "web_search"}`).
                None if obj
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t != "function") =>
                {
                    continue
                }
                _ => {
                    return Err(ParserError::InvalidTools(format!(
                        "tools[{i}] has no string `name`"
                    )))
                }
            };
            let parameters = function
                .get("parameters")
                .or_else(|| function.get("input_schema"))
                .filter(|v| !v.is_null())
                .cloned();
            specs.push(ToolSpec {
                name: name.to_string(),
                parameters,
            });
        }
        Ok(ToolSet { tools: specs })
    }

    /// True when no tools were given.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The tools, in request order.
    pub fn tools(&self) -> &[ToolSpec] {
        &self.tools
    }

    /// vLLM `_accept_tool_name`: a non-empty name that is one of the tools (any name when no
    /// tools were given).
    pub fn accepts(&self, name: &str) -> bool {
        !name.is_empty() && (self.tools.is_empty() || self.tools.iter().any(|t| t.name == name))
    }

    /// `parameters.properties` of the first tool with this name (vLLM `find_tool_properties`).
    pub(crate) fn properties(&self, name: &str) -> Option<&Map<String, Value>> {
        let tool = self.tools.iter().find(|t| t.name == name)?;
        tool.parameters.as_ref()?.get("properties")?.as_object()
    }

    /// vLLM `_fix_arg_types` on the converter's string-valued dict: coerce each value whose
    /// key has a schema; keys the schema does not list stay strings.
    pub(crate) fn coerce_args(&self, name: &str, args: &mut [(String, PyValue)]) {
        if self.tools.is_empty() || name.is_empty() {
            return;
        }
        let Some(props) = self.properties(name).filter(|p| !p.is_empty()) else {
            return;
        };
        for (key, value) in args.iter_mut() {
            let Some(schema @ Value::Object(_)) = props.get(key) else {
                continue;
            };
            if let PyValue::Str(raw) = value {
                let types = extract_types(schema);
                *value = coerce_to_schema_type(raw, &types);
            }
        }
    }
}

/// vLLM `extract_types_from_schema`: `type` (string or list), types of `enum` values,
/// recursively `anyOf`/`oneOf`/`allOf`; `["string"]` when nothing is known.
pub(crate) fn extract_types(schema: &Value) -> Vec<String> {
    let Value::Object(obj) = schema else {
        return vec!["string".into()];
    };
    let mut types: Vec<String> = Vec::new();
    let add = |t: &str, types: &mut Vec<String>| {
        if !types.iter().any(|x| x == t) {
            types.push(t.to_string());
        }
    };
    match obj.get("type") {
        Some(Value::String(t)) => add(t, &mut types),
        Some(Value::Array(list)) => {
            for t in list.iter().filter_map(Value::as_str) {
                add(t, &mut types);
            }
        }
        _ => {}
    }
    if let Some(Value::Array(values)) = obj.get("enum") {
        for v in values {
            let t = match v {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(n) if n.is_f64() => "number",
                Value::Number(_) => "integer",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            add(t, &mut types);
        }
    }
    for field in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(choices)) = obj.get(field) {
            for choice in choices {
                for t in extract_types(choice) {
                    add(&t, &mut types);
                }
            }
        }
    }
    if types.is_empty() {
        types.push("string".into());
    }
    types
}

fn normalize_type(t: &str) -> String {
    let key = py_strip(t).to_lowercase();
    let alias = match key.as_str() {
        "str" | "text" | "varchar" | "char" | "enum" => "string",
        "int" | "int32" | "int64" | "uint" | "uint32" | "uint64" | "long" | "short"
        | "unsigned" => "integer",
        "float" | "float32" | "float64" | "double" => "number",
        "bool" => "boolean",
        "dict" => "object",
        "arr" | "list" | "sequence" => "array",
        _ => return key,
    };
    alias.to_string()
}

/// vLLM `coerce_to_schema_type`: try null, integer, number, boolean, object, array, string
/// in that order among the allowed types; fall back to `json.loads`, then the raw string.
pub(crate) fn coerce_to_schema_type(value: &str, types: &[String]) -> PyValue {
    let allowed: Vec<String> = types.iter().map(|t| normalize_type(t)).collect();
    let has = |t: &str| allowed.iter().any(|a| a == t);
    for candidate in [
        "null", "integer", "number", "boolean", "object", "array", "string",
    ] {
        if !has(candidate) {
            continue;
        }
        match candidate {
            "null" => {
                if value.to_lowercase() == "null" {
                    return PyValue::Null;
                }
            }
            "string" => return PyValue::Str(value.to_string()),
            "integer" => {
                if let Some(digits) = py_int(value) {
                    return PyValue::Int(digits);
                }
            }
            "number" => {
                if let Some(f) = py_float(value).filter(|f| f.is_finite()) {
                    return if f.fract() == 0.0 {
                        PyValue::Int(pyjson::integral_float_to_int(f))
                    } else {
                        PyValue::Float(f)
                    };
                }
            }
            "boolean" => match py_strip(&value.to_lowercase()) {
                "true" | "1" => return PyValue::Bool(true),
                "false" | "0" => return PyValue::Bool(false),
                _ => {}
            },
            _ => {
                if let Some(parsed) = pyjson::loads(value).filter(PyValue::is_finite) {
                    return parsed;
                }
            }
        }
    }
    match pyjson::loads(value) {
        Some(parsed) if parsed.is_finite() => parsed,
        _ => PyValue::Str(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn coerce(value: &str, schema: Value) -> String {
        pyjson::dumps(&coerce_to_schema_type(value, &extract_types(&schema)))
    }

    #[test]
    fn coercion_follows_vllm() {
        assert_eq!(coerce(" 北京 ", json!({"type": "string"})), "\" 北京 \"");
        assert_eq!(coerce(" 3\n", json!({"type": "integer"})), "3");
        assert_eq!(coerce("3.0", json!({"type": "integer"})), "3.0");
        assert_eq!(coerce("3.0", json!({"type": "number"})), "3");
        assert_eq!(coerce("2.5", json!({"type": "number"})), "2.5");
        assert_eq!(coerce("1e400", json!({"type": "number"})), "\"1e400\"");
        assert_eq!(coerce("True", json!({"type": "boolean"})), "true");
        assert_eq!(coerce(" 0 ", json!({"type": "boolean"})), "false");
        assert_eq!(coerce("yes", json!({"type": "boolean"})), "\"yes\"");
        assert_eq!(coerce("NULL", json!({"type": ["string", "null"]})), "null");
        assert_eq!(
            coerce("{\"a\": [1, 2]}", json!({"type": "object"})),
            "{\"a\": [1, 2]}"
        );
        assert_eq!(coerce("[1,2", json!({"type": "array"})), "\"[1,2\"");
        assert_eq!(coerce("5", json!({"enum": [1, 2, 5]})), "5");
        assert_eq!(coerce("5", json!({"description": "untyped"})), "\"5\"");
        assert_eq!(
            coerce(
                "5",
                json!({"anyOf": [{"type": "integer"}, {"type": "string"}]})
            ),
            "5"
        );
        assert_eq!(coerce("abc", json!({"type": "int"})), "\"abc\"");
        assert_eq!(coerce("[1]", json!({"type": "integer"})), "[1]");
    }

    #[test]
    fn tool_sets_from_json() {
        let tools = ToolSet::from_json(&json!([
            {"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {"x": {"type": "string"}, "n": {"type": "integer"}}}}},
            {"type": "function", "name": "b", "parameters": null},
            {"name": "c", "input_schema": {"type": "object", "properties": {}}},
            {"type": "web_search"}
        ]))
        .unwrap();
        let names: Vec<_> = tools.tools().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(tools.accepts("a") && !tools.accepts("d") && !tools.accepts(""));
        assert!(ToolSet::default().accepts("anything"));
        assert_eq!(
            ToolSet::from_json(&json!({})).unwrap_err().kind(),
            "invalid_tools"
        );
        assert_eq!(
            ToolSet::from_json(&json!([{"type": "function", "function": {}}]))
                .unwrap_err()
                .kind(),
            "invalid_tools"
        );
    }
}
