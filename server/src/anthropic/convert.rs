//! Anthropic request -> the OpenAI chat request the rest of the server already serves, as
//! vLLM's Anthropic endpoint does: same chat template, same parsers, same sampling. The
//! result is the JSON body of a `/v1/chat/completions` request, so the chat route's own
//! deserialisation and validation apply to it unchanged.

use serde_json::{json, Map, Value};

use super::error::AnthropicError;
use super::wire::{
    ContentBlock, InputMessage, MessageContent, MessagesRequest, Role, SystemPrompt,
    ThinkingConfig, Tool, ToolChoice, ToolResultContent,
};

/// Separator between text blocks of one message (vLLM's "string" content format).
const BLOCK_SEPARATOR: &str = "\n";

/// Converts a Messages request into an OpenAI chat-completions request body.
///
/// - `system` becomes the first `system` message;
/// - `tool_result` blocks become `tool` messages (in place, before any text after them);
/// - assistant `tool_use` blocks become `tool_calls` with the input as a mapping, and
///   `thinking` blocks become `reasoning_content` (the template replays it as trained);
/// - `tool_choice` auto/any/tool/none -> auto/required/named/none;
/// - `thinking: {"type": "disabled"}` -> `chat_template_kwargs.enable_thinking = false`
///   (absent: the model's default, thinking on); explicit `chat_template_kwargs` win.
pub fn to_openai_chat(req: &MessagesRequest) -> Result<Value, AnthropicError> {
    if req.messages.is_empty() {
        return Err(AnthropicError::invalid_request(
            "messages: at least one message is required",
        ));
    }
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        let text = match system {
            SystemPrompt::Text(t) => t.clone(),
            SystemPrompt::Blocks(blocks) => text_of_blocks("system", blocks)?,
        };
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    for (i, message) in req.messages.iter().enumerate() {
        convert_message(i, message, &mut messages)?;
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("max_tokens".into(), json!(req.max_tokens));
    let stream = req.stream.unwrap_or(false);
    body.insert("stream".into(), json!(stream));
    if stream {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(stop) = &req.stop_sequences {
        body.insert("stop".into(), json!(stop));
    }
    for (key, value) in [
        ("temperature", req.temperature.map(|v| json!(v))),
        ("top_p", req.top_p.map(|v| json!(v))),
        ("top_k", req.top_k.map(|v| json!(v))),
    ] {
        if let Some(v) = value {
            body.insert(key.into(), v);
        }
    }
    if let Some(tools) = req.tools.as_deref().filter(|t| !t.is_empty()) {
        let converted = tools
            .iter()
            .enumerate()
            .map(|(i, t)| convert_tool(i, t))
            .collect::<Result<Vec<_>, _>>()?;
        body.insert("tools".into(), Value::Array(converted));
    }
    if let Some(choice) = &req.tool_choice {
        body.insert("tool_choice".into(), convert_tool_choice(choice));
        // One call at most: a forced call (`any`, `tool`) is constrained to a single one.
        let single = match choice {
            ToolChoice::Auto {
                disable_parallel_tool_use,
            }
            | ToolChoice::Any {
                disable_parallel_tool_use,
            }
            | ToolChoice::Tool {
                disable_parallel_tool_use,
                ..
            } => disable_parallel_tool_use.unwrap_or(false),
            ToolChoice::None => false,
        };
        if single {
            body.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    let mut kwargs = Map::new();
    if let Some(ThinkingConfig::Disabled) = req.thinking {
        kwargs.insert("enable_thinking".into(), json!(false));
    }
    if let Some(explicit) = &req.chat_template_kwargs {
        kwargs.extend(explicit.clone());
    }
    if !kwargs.is_empty() {
        body.insert("chat_template_kwargs".into(), Value::Object(kwargs));
    }
    Ok(Value::Object(body))
}

fn convert_message(
    i: usize,
    message: &InputMessage,
    out: &mut Vec<Value>,
) -> Result<(), AnthropicError> {
    let blocks = match &message.content {
        MessageContent::Text(text) => {
            let role = match message.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            out.push(json!({"role": role, "content": text}));
            return Ok(());
        }
        MessageContent::Blocks(blocks) => blocks,
    };
    match message.role {
        Role::User => convert_user_blocks(i, blocks, out),
        Role::Assistant => {
            out.push(convert_assistant_blocks(i, blocks)?);
            Ok(())
        }
    }
}

fn convert_user_blocks(
    i: usize,
    blocks: &[ContentBlock],
    out: &mut Vec<Value>,
) -> Result<(), AnthropicError> {
    let mut texts: Vec<&str> = Vec::new();
    let flush = |texts: &mut Vec<&str>, out: &mut Vec<Value>| {
        if !texts.is_empty() {
            out.push(json!({"role": "user", "content": texts.join(BLOCK_SEPARATOR)}));
            texts.clear();
        }
    };
    for (j, block) in blocks.iter().enumerate() {
        let field = format!("messages[{i}].content[{j}]");
        match block {
            ContentBlock::Text { text } => texts.push(text),
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                ..
            } => {
                flush(&mut texts, out);
                let text = match content {
                    None => String::new(),
                    Some(ToolResultContent::Text(t)) => t.clone(),
                    Some(ToolResultContent::Blocks(b)) => {
                        text_of_blocks(&format!("{field}.content"), b)?
                    }
                };
                out.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": text}));
            }
            // Earlier turns' thinking sent back in a user turn has no place in the prompt.
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
            other => return Err(unsupported(&field, other, "a user message")),
        }
    }
    flush(&mut texts, out);
    Ok(())
}

fn convert_assistant_blocks(i: usize, blocks: &[ContentBlock]) -> Result<Value, AnthropicError> {
    let mut texts: Vec<&str> = Vec::new();
    let mut thinking: Vec<&str> = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let field = format!("messages[{i}].content[{j}]");
        match block {
            ContentBlock::Text { text } => texts.push(text),
            ContentBlock::Thinking { thinking: t, .. } => thinking.push(t),
            // Encrypted by Anthropic: nothing a local model can read.
            ContentBlock::RedactedThinking { .. } => {}
            ContentBlock::ToolUse { id, name, input } => {
                let arguments = match input {
                    Value::Object(_) => input.clone(),
                    Value::Null => json!({}),
                    _ => {
                        return Err(AnthropicError::invalid_request(format!(
                            "{field}.input: must be an object"
                        )))
                    }
                };
                calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }));
            }
            other => return Err(unsupported(&field, other, "an assistant message")),
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert("content".into(), json!(texts.join(BLOCK_SEPARATOR)));
    if !thinking.is_empty() {
        message.insert(
            "reasoning_content".into(),
            json!(thinking.join(BLOCK_SEPARATOR)),
        );
    }
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    Ok(Value::Object(message))
}

/// The text of text-only blocks (system prompts, tool results).
fn text_of_blocks(field: &str, blocks: &[ContentBlock]) -> Result<String, AnthropicError> {
    let mut texts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        match block {
            ContentBlock::Text { text } => texts.push(text.as_str()),
            other => return Err(unsupported(&format!("{field}[{j}]"), other, "this place")),
        }
    }
    Ok(texts.join(BLOCK_SEPARATOR))
}

fn unsupported(field: &str, block: &ContentBlock, place: &str) -> AnthropicError {
    let (kind, why) = match block {
        ContentBlock::Image { .. } => ("image", "this model takes text only"),
        ContentBlock::Document { .. } => ("document", "this model takes text only"),
        ContentBlock::Text { .. } => ("text", "not allowed here"),
        ContentBlock::ToolUse { .. } => ("tool_use", "only assistant messages carry tool_use"),
        ContentBlock::ToolResult { .. } => ("tool_result", "only user messages carry tool_result"),
        ContentBlock::Thinking { .. } => ("thinking", "not allowed here"),
        ContentBlock::RedactedThinking { .. } => ("redacted_thinking", "not allowed here"),
    };
    AnthropicError::invalid_request(format!(
        "{field}: {kind} content blocks are not supported in {place}: {why}"
    ))
}

fn convert_tool(i: usize, tool: &Tool) -> Result<Value, AnthropicError> {
    if let Some(kind) = tool.kind.as_deref().filter(|k| *k != "custom") {
        return Err(AnthropicError::invalid_request(format!(
            "tools[{i}]: server tool type {kind:?} is not supported; define it as a client tool with input_schema"
        )));
    }
    let schema = tool.input_schema.clone().ok_or_else(|| {
        AnthropicError::invalid_request(format!("tools[{i}].input_schema: field required"))
    })?;
    let mut function = Map::new();
    function.insert("name".into(), json!(tool.name));
    if let Some(d) = &tool.description {
        function.insert("description".into(), json!(d));
    }
    function.insert("parameters".into(), schema);
    Ok(json!({"type": "function", "function": function}))
}

fn convert_tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto { .. } => json!("auto"),
        ToolChoice::Any { .. } => json!("required"),
        ToolChoice::Tool { name, .. } => json!({"type": "function", "function": {"name": name}}),
        ToolChoice::None => json!("none"),
    }
}

/// Deserialises a Messages request body, naming the offending field on error
/// (`messages[0].content[1].type: unknown variant ...`).
pub fn parse_request<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AnthropicError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            AnthropicError::invalid_request(inner.to_string())
        } else {
            AnthropicError::invalid_request(format!("{path}: {inner}"))
        }
    })
}

#[cfg(test)]
mod tests;
