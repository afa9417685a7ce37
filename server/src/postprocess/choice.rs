//! `tools` / `tool_choice` validation: which parsing a request gets, decided once per request
//! with vLLM's rules and error messages (all 400s naming the field).

use serde_json::Value;

use super::{PostProcessError, ToolParserKind};

/// A tool as the post-processor needs it: the name and the JSON schema of its parameters
/// (the parsers type argument values by it).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub parameters: Option<Value>,
}

impl ToolDef {
    /// From an OpenAI tool object `{"type": "function", "function": {name, parameters}}`.
    pub fn from_openai(index: usize, tool: &Value) -> Result<Self, PostProcessError> {
        let field = format!("tools[{index}]");
        let kind = tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function");
        if kind != "function" {
            return Err(PostProcessError::invalid(
                &format!("{field}.type"),
                format!("only \"function\" tools are supported, got {kind:?}"),
            ));
        }
        let function = tool
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| PostProcessError::invalid(&field, "missing the \"function\" object"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                PostProcessError::invalid(
                    &format!("{field}.function.name"),
                    "must be a non-empty string",
                )
            })?;
        let parameters = function.get("parameters").filter(|p| !p.is_null());
        if parameters.is_some_and(|p| !p.is_object()) {
            return Err(PostProcessError::invalid(
                &format!("{field}.function.parameters"),
                "must be a JSON Schema object",
            ));
        }
        Ok(ToolDef {
            name: name.to_string(),
            parameters: parameters.cloned(),
        })
    }

    /// All tools of an OpenAI request's `tools` array.
    /// Names must be unique: a call names the function it means.
    pub fn list_from_openai(tools: &[Value]) -> Result<Vec<Self>, PostProcessError> {
        let mut out: Vec<Self> = Vec::with_capacity(tools.len());
        for (i, t) in tools.iter().enumerate() {
            let def = Self::from_openai(i, t)?;
            if let Some(first) = out.iter().position(|d| d.name == def.name) {
                return Err(PostProcessError::invalid(
                    &format!("tools[{i}].function.name"),
                    format!("duplicate tool name {:?} (also tools[{first}])", def.name),
                ));
            }
            out.push(def);
        }
        Ok(out)
    }
}

/// The request's `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// Never parse: tool-call text stays `content`.
    None,
    /// Parse when the model calls (the default when tools are given).
    #[default]
    Auto,
    /// A call is forced: the output is constrained to the model's tool-call format
    /// (`api::structured::forced_tool_call`), then parsed like `auto`.
    Required,
    /// Parse, and keep only calls to this function (others are dropped and logged).
    Named(String),
}

impl ToolChoice {
    /// From the OpenAI wire value: `"none" | "auto" | "required" |
    /// {"type": "function", "function": {"name": ...}}`. `null` means "not given".
    pub fn from_openai(value: Option<&Value>) -> Result<Option<Self>, PostProcessError> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        match value {
            Value::String(s) => match s.as_str() {
                "none" => Ok(Some(ToolChoice::None)),
                "auto" => Ok(Some(ToolChoice::Auto)),
                "required" => Ok(Some(ToolChoice::Required)),
                other => Err(PostProcessError::invalid(
                    "tool_choice",
                    format!("must be \"none\", \"auto\", \"required\" or a named function, got {other:?}"),
                )),
            },
            Value::Object(o) => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| {
                        PostProcessError::invalid(
                            "tool_choice.function.name",
                            "a named tool_choice needs {\"type\": \"function\", \"function\": {\"name\": ...}}",
                        )
                    })?;
                Ok(Some(ToolChoice::Named(name.to_string())))
            }
            _ => Err(PostProcessError::invalid(
                "tool_choice",
                "must be a string or a named function object",
            )),
        }
    }
}

/// Server-wide tool settings (`--tool-call-parser`, `--enable-auto-tool-choice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ToolServerConfig {
    pub tool_parser: Option<ToolParserKind>,
    pub enable_auto_tool_choice: bool,
}

/// Checks `tools` + `tool_choice` against the server's settings as vLLM does and returns the
/// effective choice (`None` when no tools were given: nothing to parse).
///
/// - `tool_choice` without `tools` (other than "none") is a 400.
/// - a named function must be one of `tools`.
/// - `auto` (the default with tools) needs `--enable-auto-tool-choice` and a parser.
/// - `required` / named need a parser (we parse instead of guided decoding).
pub fn resolve_tool_choice(
    server: ToolServerConfig,
    tools: &[ToolDef],
    choice: Option<ToolChoice>,
) -> Result<Option<ToolChoice>, PostProcessError> {
    if tools.is_empty() {
        return match choice {
            None | Some(ToolChoice::None) => Ok(None),
            Some(_) => Err(PostProcessError::invalid(
                "tool_choice",
                "when using `tool_choice`, `tools` must be set",
            )),
        };
    }
    let choice = choice.unwrap_or_default();
    match &choice {
        ToolChoice::None => {}
        ToolChoice::Auto => {
            if !server.enable_auto_tool_choice || server.tool_parser.is_none() {
                return Err(PostProcessError::invalid(
                    "tool_choice",
                    "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set",
                ));
            }
        }
        ToolChoice::Required | ToolChoice::Named(_) => {
            if server.tool_parser.is_none() {
                return Err(PostProcessError::invalid(
                    "tool_choice",
                    "\"required\" and named tool choice need --tool-call-parser to be set",
                ));
            }
            if let ToolChoice::Named(name) = &choice {
                if !tools.iter().any(|t| &t.name == name) {
                    return Err(PostProcessError::invalid(
                        "tool_choice.function.name",
                        format!("tool {name:?} has not been passed in `tools`"),
                    ));
                }
            }
        }
    }
    Ok(Some(choice))
}
