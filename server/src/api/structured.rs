//! Structured-output fields -> a compiled [`Constraint`], during validation: OpenAI's
//! `response_format` (`json_object`, `json_schema`), vLLM's `structured_outputs` and its
//! older `guided_json` / `guided_regex` / `guided_choice` / `guided_grammar`. A request
//! names at most one; a bad one is a 400 naming the field before anything is queued.

use serde_json::Value;

use super::{types::CommonParams, ApiError, AppState};
use crate::{
    constraint::{tool_call_grammar, CallLayout, CallTool, Constraint, GrammarSpec},
    postprocess::{PostProcessConfig, ToolChoice, ToolParserKind},
};

/// The structured-output fields of a request, as they arrive.
#[derive(Debug, Clone, Copy, Default)]
pub struct StructuredFields<'a> {
    pub response_format: Option<&'a Value>,
    pub common: Option<&'a CommonParams>,
}

/// The one grammar a request asks for and the field it came from (for errors).
pub fn grammar_spec(
    fields: StructuredFields<'_>,
) -> Result<Option<(GrammarSpec, String)>, ApiError> {
    let mut found: Vec<(GrammarSpec, String)> = Vec::new();
    if let Some(rf) = fields.response_format {
        if let Some(spec) = response_format(rf)? {
            found.push(spec);
        }
    }
    if let Some(c) = fields.common {
        if let Some(so) = &c.structured_outputs {
            found.extend(structured_outputs(so)?);
        }
        if let Some(v) = &c.guided_json {
            found.push((json_schema("guided_json", v)?, "guided_json".into()));
        }
        if let Some(v) = &c.guided_regex {
            found.push((regex("guided_regex", v)?, "guided_regex".into()));
        }
        if let Some(v) = &c.guided_choice {
            found.push((choice("guided_choice", v)?, "guided_choice".into()));
        }
        if let Some(v) = &c.guided_grammar {
            found.push((grammar("guided_grammar", v)?, "guided_grammar".into()));
        }
    }
    if found.len() > 1 {
        let names: Vec<&str> = found.iter().map(|(_, p)| p.as_str()).collect();
        return Err(ApiError::invalid(
            &found[1].1,
            format!(
                "only one structured-output constraint per request; got {}",
                names.join(", ")
            ),
        ));
    }
    Ok(found.pop())
}

fn response_format(rf: &Value) -> Result<Option<(GrammarSpec, String)>, ApiError> {
    let kind = rf.get("type").and_then(Value::as_str).ok_or_else(|| {
        ApiError::invalid(
            "response_format.type",
            "`response_format.type` must be \"text\", \"json_object\" or \"json_schema\"",
        )
    })?;
    match kind {
        "text" => Ok(None),
        "json_object" => Ok(Some((GrammarSpec::JsonObject, "response_format".into()))),
        "json_schema" => {
            let param = "response_format.json_schema";
            let js = rf.get("json_schema").ok_or_else(|| {
                ApiError::invalid(param, "`json_schema` is required with type \"json_schema\"")
            })?;
            if !js.is_object() {
                return Err(ApiError::invalid(param, "`json_schema` must be an object"));
            }
            if let Some(name) = js.get("name") {
                let ok = name.as_str().is_some_and(|n| {
                    !n.is_empty()
                        && n.len() <= 64
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                });
                if !ok {
                    return Err(ApiError::invalid(
                        "response_format.json_schema.name",
                        "`name` must be 1-64 of a-z, A-Z, 0-9, _ and -",
                    ));
                }
            }
            if js.get("strict").is_some_and(|s| !s.is_boolean() && !s.is_null()) {
                return Err(ApiError::invalid(
                    "response_format.json_schema.strict",
                    "`strict` must be a boolean",
                ));
            }
            // Without a schema any JSON object will do (OpenAI's own default).
            let spec = match js.get("schema") {
                None | Some(Value::Null) => GrammarSpec::JsonObject,
                Some(schema) => json_schema("response_format.json_schema.schema", schema)?,
            };
            let param = if matches!(spec, GrammarSpec::JsonObject) {
                param.to_string()
            } else {
                "response_format.json_schema.schema".to_string()
            };
            Ok(Some((spec, param)))
        }
        other => Err(ApiError::invalid(
            "response_format.type",
            format!("response_format type {other:?} is not supported (\"text\", \"json_object\", \"json_schema\")"),
        )),
    }
}

/// vLLM's `structured_outputs: {json | regex | choice | grammar | json_object}`.
fn structured_outputs(so: &Value) -> Result<Vec<(GrammarSpec, String)>, ApiError> {
    let Some(map) = so.as_object() else {
        return Err(ApiError::invalid(
            "structured_outputs",
            "`structured_outputs` must be an object",
        ));
    };
    let mut out = Vec::new();
    for (key, v) in map {
        let param = format!("structured_outputs.{key}");
        let spec = match key.as_str() {
            "json" => json_schema(&param, v)?,
            "regex" => regex(&param, v)?,
            "choice" => choice(&param, v)?,
            "grammar" => grammar(&param, v)?,
            "json_object" => match v {
                Value::Bool(true) => GrammarSpec::JsonObject,
                Value::Bool(false) | Value::Null => continue,
                _ => return Err(ApiError::invalid(&param, "`json_object` must be a boolean")),
            },
            // Options that do not change the grammar.
            "disable_any_whitespace" | "disable_additional_properties" | "whitespace_pattern" => {
                continue
            }
            _ => {
                return Err(ApiError::invalid(
                    &param,
                    format!("unknown structured-output option {key:?} (json, regex, choice, grammar, json_object)"),
                ))
            }
        };
        out.push((spec, param));
    }
    Ok(out)
}

/// A schema as an object, or as a string holding one (vLLM accepts both).
fn json_schema(param: &str, v: &Value) -> Result<GrammarSpec, ApiError> {
    let schema = match v {
        Value::String(s) => serde_json::from_str::<Value>(s)
            .map_err(|e| ApiError::invalid(param, format!("not valid JSON: {e}")))?,
        other => other.clone(),
    };
    if !schema.is_object() && !schema.is_boolean() {
        return Err(ApiError::invalid(param, "a JSON Schema must be an object"));
    }
    Ok(GrammarSpec::JsonSchema(schema))
}

fn regex(param: &str, v: &Value) -> Result<GrammarSpec, ApiError> {
    match v.as_str() {
        Some(s) if !s.is_empty() => Ok(GrammarSpec::Regex(s.to_string())),
        _ => Err(ApiError::invalid(
            param,
            "must be a non-empty string (a regular expression)",
        )),
    }
}

fn choice(param: &str, v: &Value) -> Result<GrammarSpec, ApiError> {
    let items = v
        .as_array()
        .ok_or_else(|| ApiError::invalid(param, "must be a list of strings"))?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str() {
            Some(s) if !s.is_empty() => out.push(s.to_string()),
            _ => {
                return Err(ApiError::invalid(
                    param,
                    "every choice must be a non-empty string",
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(ApiError::invalid(param, "at least one choice is needed"));
    }
    Ok(GrammarSpec::Choice(out))
}

fn grammar(param: &str, v: &Value) -> Result<GrammarSpec, ApiError> {
    match v.as_str() {
        Some(s) if !s.trim().is_empty() => Ok(GrammarSpec::Lark(s.to_string())),
        _ => Err(ApiError::invalid(
            param,
            "must be a non-empty string (a Lark grammar)",
        )),
    }
}

/// `tool_choice: "required"` or a named function, with a tool-call parser: the grammar of
/// the parser's own call format over the allowed tools (`None` otherwise).
pub fn forced_tool_call(
    post: &PostProcessConfig,
    parallel: bool,
) -> Result<Option<(GrammarSpec, String)>, ApiError> {
    let layout = match post.tool_parser {
        Some(ToolParserKind::Glm45) => CallLayout::Glm45,
        Some(ToolParserKind::Glm47) => CallLayout::Glm47,
        _ => return Ok(None),
    };
    let tools = post.tools.as_deref().unwrap_or_default();
    let allowed: Vec<CallTool> = match &post.tool_choice {
        Some(ToolChoice::Required) => tools
            .iter()
            .map(|t| CallTool {
                name: t.name.clone(),
                parameters: t.parameters.clone(),
            })
            .collect(),
        Some(ToolChoice::Named(name)) => tools
            .iter()
            .filter(|t| &t.name == name)
            .map(|t| CallTool {
                name: t.name.clone(),
                parameters: t.parameters.clone(),
            })
            .collect(),
        _ => return Ok(None),
    };
    let parallel = parallel && matches!(post.tool_choice, Some(ToolChoice::Required));
    let source = tool_call_grammar(&allowed, layout, parallel)
        .map_err(|e| ApiError::invalid("tools", format!("cannot force a tool call: {e}")))?;
    Ok(Some((GrammarSpec::Lark(source), "tools".into())))
}

/// Compiles the request's grammar on the blocking pool (large schemas take milliseconds).
/// `reasoning` leaves the output free until `</think>`.
pub async fn compile(
    state: &AppState,
    spec: GrammarSpec,
    param: String,
    reasoning: bool,
) -> Result<Constraint, ApiError> {
    let think_end = reasoning
        .then(|| state.tokenizer().token_to_id("</think>"))
        .flatten();
    let st = state.clone();
    let constraint = state
        .prompts()
        .run(move || {
            st.grammar_compiler()?
                .compile(&spec)
                .map_err(|e| ApiError::invalid(&param, format!("invalid {}: {e}", spec.kind())))
        })
        .await?;
    state.metrics().constrained_request();
    Ok(match think_end {
        Some(t) => constraint.start_after(t),
        None => constraint,
    })
}

#[cfg(test)]
#[path = "structured/tests.rs"]
mod tests;
