//! Forced tool calls: a Lark grammar for the model's own tool-call format, so that
//! `tool_choice: "required"` or a named function always yields a call the parser finds,
//! with argument values valid for the tool's JSON schema.
//!
//! GLM writes `<tool_call>NAME<arg_key>K</arg_key><arg_value>V</arg_value>...</tool_call>`
//! (GLM-4.7) or the same with a newline after the name and after each tag pair (GLM-4.5).
//! A string-typed value is written raw (the parser keeps it as text); any other value is
//! JSON (the parser coerces it by the schema's type), so it is constrained by `%json`.

use serde_json::Value;

/// Which of GLM's two layouts to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallLayout {
    /// GLM-4.5 / 4.6: newlines between the name and each argument pair.
    Glm45,
    /// GLM-4.7: no newlines.
    Glm47,
}

/// One tool: its name and its parameters' JSON schema (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct CallTool {
    pub name: String,
    pub parameters: Option<Value>,
}

/// Longest raw string value when the schema sets no `maxLength`: a call must end.
const DEFAULT_MAX_STRING: usize = 256;

/// The grammar: one call (to `tools`, all of them allowed), or several in a row when
/// `parallel`.
pub fn tool_call_grammar(
    tools: &[CallTool],
    layout: CallLayout,
    parallel: bool,
) -> Result<String, String> {
    if tools.is_empty() {
        return Err("no tool to call".into());
    }
    let nl = match layout {
        CallLayout::Glm45 => "\\n",
        CallLayout::Glm47 => "",
    };
    let mut rules = Vec::new();
    let mut alts = Vec::new();
    for (t, tool) in tools.iter().enumerate() {
        if tool.name.contains(['<', '>']) || tool.name.trim() != tool.name {
            return Err(format!(
                "tool name {:?} cannot be written in the GLM call format",
                tool.name
            ));
        }
        let mut body = vec![format!("\"<tool_call>\" {} \"{nl}\"", lit(&tool.name))];
        let props = tool
            .parameters
            .as_ref()
            .and_then(|p| p.get("properties"))
            .and_then(Value::as_object);
        let required: Vec<&str> = tool
            .parameters
            .as_ref()
            .and_then(|p| p.get("required"))
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(props) = props {
            // Required arguments first (schema order), then each optional one, in order.
            let ordered = props
                .iter()
                .filter(|(k, _)| required.contains(&k.as_str()))
                .chain(
                    props
                        .iter()
                        .filter(|(k, _)| !required.contains(&k.as_str())),
                );
            for (a, (key, schema)) in ordered.enumerate() {
                if key.contains(['<', '>']) {
                    return Err(format!(
                        "argument name {key:?} of {:?} cannot be written in the GLM call format",
                        tool.name
                    ));
                }
                let value_rule = format!("v_{t}_{a}");
                rules.push(format!("{value_rule}: {}", value_grammar(schema)?));
                let pair = format!(
                    "\"<arg_key>\" {} \"</arg_key>{nl}<arg_value>\" {value_rule} \"</arg_value>{nl}\"",
                    lit(key)
                );
                if required.contains(&key.as_str()) {
                    body.push(pair);
                } else {
                    body.push(format!("({pair})?"));
                }
            }
        }
        body.push("\"</tool_call>\"".into());
        rules.push(format!("call_{t}: {}", body.join(" ")));
        alts.push(format!("call_{t}"));
    }
    let call = format!("call: {}", alts.join(" | "));
    let start = if parallel {
        format!("start: call (\"{nl}\" call)*")
    } else {
        "start: call".to_string()
    };
    let mut out = vec![start, call];
    out.extend(rules);
    Ok(out.join("\n"))
}

/// A Lark string literal for `s` (JSON's escapes).
fn lit(s: &str) -> String {
    Value::from(s).to_string()
}

/// The grammar of one argument value.
fn value_grammar(schema: &Value) -> Result<String, String> {
    if !schema.is_object() && !schema.is_boolean() {
        return Err("an argument schema must be an object".into());
    }
    if is_plain_string(schema) {
        if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
            let alts: Vec<String> = choices.iter().filter_map(Value::as_str).map(lit).collect();
            if alts.is_empty() {
                return Err("a string enum needs string values".into());
            }
            return Ok(alts.join(" | "));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            let p = pattern.strip_prefix('^').unwrap_or(pattern);
            let p = p.strip_suffix('$').unwrap_or(p);
            if p.contains('/') || p.contains('<') {
                return Err(
                    "a string pattern with '/' or '<' cannot be used in a tool call".into(),
                );
            }
            return Ok(format!("/{p}/"));
        }
        let max = schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_MAX_STRING, |m| m as usize);
        let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        if min > max {
            return Err("minLength is above maxLength".into());
        }
        // Raw text: no '<' (it would start a closing tag).
        return Ok(format!("/[^<]{{{min},{max}}}/"));
    }
    let mut schema = schema.clone();
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(|| {
            serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "})
        });
    }
    Ok(format!("%json {schema}"))
}

/// `{"type": "string"}`: written raw, not as JSON (the parser keeps string values as text).
fn is_plain_string(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("string")
}
