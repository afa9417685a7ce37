//! Chat history normalisation before the chat template renders it, as vLLM's
//! `_postprocess_messages` does: OpenAI clients send tool-call `arguments` as a JSON string,
//! but GLM templates (like every tool-use template on the Hub) iterate them as a mapping to
//! write `<arg_key>/<arg_value>` pairs. Everything else is left to the template, which
//! renders assistant tool calls and `tool` messages the way the model was trained.

use serde_json::{Map, Value};

use super::PostProcessError;

/// Content-part types a text-only GLM model can take.
const TEXT_PART_TYPES: [&str; 2] = ["text", "input_text"];

/// Returns the messages ready for [`glm_tokenizer::ChatTemplate::render`]:
/// - assistant `tool_calls[].function.arguments` given as a JSON string become the object
///   (null or "" become `{}`); a string that is not a JSON object is a 400 naming it;
/// - content-part lists are kept (the template joins text parts), but non-text parts
///   (images, audio, files) are refused by name: these models cannot see them;
/// - every message must be an object with a string `role`.
pub fn normalize_messages(messages: &[Value]) -> Result<Vec<Value>, PostProcessError> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| normalize_message(i, m))
        .collect()
}

fn normalize_message(i: usize, message: &Value) -> Result<Value, PostProcessError> {
    let field = format!("messages[{i}]");
    let Some(obj) = message.as_object() else {
        return Err(PostProcessError::invalid(&field, "must be an object"));
    };
    let role = obj
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| PostProcessError::invalid(&format!("{field}.role"), "must be a string"))?;
    let mut out = obj.clone();
    match obj.get("content") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(Value::Array(parts)) => check_parts(&format!("{field}.content"), parts)?,
        Some(_) => {
            return Err(PostProcessError::invalid(
                &format!("{field}.content"),
                "must be a string, an array of content parts, or null",
            ))
        }
    }
    if role == "assistant" {
        if let Some(Value::Array(calls)) = out.get_mut("tool_calls") {
            for (j, call) in calls.iter_mut().enumerate() {
                normalize_call(&format!("{field}.tool_calls[{j}]"), call)?;
            }
        }
    }
    Ok(Value::Object(out))
}

fn check_parts(field: &str, parts: &[Value]) -> Result<(), PostProcessError> {
    for (j, part) in parts.iter().enumerate() {
        let kind = match part {
            Value::String(_) => continue,
            Value::Object(o) => o.get("type").and_then(Value::as_str).unwrap_or("text"),
            _ => {
                return Err(PostProcessError::invalid(
                    &format!("{field}[{j}]"),
                    "a content part must be an object",
                ))
            }
        };
        if !TEXT_PART_TYPES.contains(&kind) {
            return Err(PostProcessError::invalid(
                &format!("{field}[{j}].type"),
                format!("{kind:?} content is not supported: this model takes text only"),
            ));
        }
    }
    Ok(())
}

fn normalize_call(field: &str, call: &mut Value) -> Result<(), PostProcessError> {
    let Some(call) = call.as_object_mut() else {
        return Err(PostProcessError::invalid(
            field,
            "a tool call must be an object",
        ));
    };
    // Accept the flat form too ({"name", "arguments"}); the templates read either.
    let function = match call.get_mut("function") {
        Some(Value::Object(f)) => f,
        Some(_) => {
            return Err(PostProcessError::invalid(
                &format!("{field}.function"),
                "must be an object",
            ))
        }
        None => call,
    };
    let args_field = format!("{field}.function.arguments");
    let parsed = match function.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return Err(PostProcessError::invalid(
                    &args_field,
                    "must be a JSON object (encoded as a string)",
                ))
            }
            Err(e) => {
                return Err(PostProcessError::invalid(
                    &args_field,
                    format!("is not valid JSON: {e}"),
                ))
            }
        },
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            return Err(PostProcessError::invalid(
                &args_field,
                "must be a JSON object or a string holding one",
            ))
        }
    };
    function.insert("arguments".into(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests;
