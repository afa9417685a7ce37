//! The post-processor behind the OpenAI chat route's plug-in point
//! (`api::chat::output::output_processor`), and the per-request preparation both chat APIs
//! share: tools / tool_choice checks and history normalisation.

use serde_json::Value;

use super::{
    messages::normalize_messages, resolve_tool_choice, thinking_enabled, ChatDelta,
    ChatFinishReason, ChatPostProcessor, PostProcessConfig, PostProcessError, ReasoningParserKind,
    ToolChoice, ToolDef, ToolParserKind, ToolServerConfig,
};
use crate::api::{
    chat::output::{DeltaMessage, OutputProcessor},
    types::{ChatCompletionRequest, ToolCallDelta, ToolCallFunction},
    ApiConfig, ApiError,
};

impl From<PostProcessError> for ApiError {
    fn from(e: PostProcessError) -> Self {
        match e {
            PostProcessError::InvalidField { field, message } => ApiError::InvalidRequest {
                param: Some(field.clone()),
                message: format!("{field}: {message}"),
            },
        }
    }
}

/// The server's parsers from its configuration (`--tool-call-parser`,
/// `--reasoning-parser`); names were checked at start-up, an unknown one parses nothing.
pub fn server_parsers(cfg: &ApiConfig) -> (Option<ToolParserKind>, Option<ReasoningParserKind>) {
    let tool = cfg.tool_call_parser.as_deref().and_then(|name| {
        let kind = name.parse::<ToolParserKind>();
        if let Err(e) = &kind {
            tracing::warn!(error = %e, "tool calls stay content");
        }
        kind.ok().filter(|k| k.is_enabled())
    });
    let reasoning = cfg.reasoning_parser.as_deref().and_then(|name| {
        let kind = name.parse::<ReasoningParserKind>();
        if let Err(e) = &kind {
            tracing::warn!(error = %e, "reasoning stays content");
        }
        kind.ok().filter(|k| k.is_enabled())
    });
    (tool, reasoning)
}

/// Checks a chat request's tools and tool_choice and returns its post-processing settings.
/// Call before generating: every problem is a 400 naming the field.
pub fn prepare(
    cfg: &ApiConfig,
    req: &ChatCompletionRequest,
) -> Result<PostProcessConfig, PostProcessError> {
    let (tool_parser, reasoning_parser) = server_parsers(cfg);
    let tools = ToolDef::list_from_openai(req.tools.as_deref().unwrap_or(&[]))?;
    let choice = ToolChoice::from_openai(req.tool_choice.as_ref())?;
    let tool_choice = resolve_tool_choice(
        ToolServerConfig {
            tool_parser,
            enable_auto_tool_choice: cfg.enable_auto_tool_choice,
        },
        &tools,
        choice,
    )?;
    Ok(PostProcessConfig {
        tool_parser,
        reasoning_parser,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        starts_in_reasoning: thinking_enabled(req.chat_template_kwargs.as_ref()),
        include_reasoning: req.include_reasoning.unwrap_or(true),
    })
}

/// The request's messages ready for the chat template (see [`normalize_messages`]).
pub fn template_messages(req: &ChatCompletionRequest) -> Result<Value, PostProcessError> {
    normalize_messages(&req.messages).map(Value::Array)
}

/// [`ChatPostProcessor`] speaking the chat route's [`OutputProcessor`] interface.
#[derive(Debug)]
pub struct OpenAiOutput {
    inner: ChatPostProcessor,
}

impl OpenAiOutput {
    pub fn new(config: PostProcessConfig) -> Self {
        OpenAiOutput {
            inner: ChatPostProcessor::new(config),
        }
    }
}

/// Folds ordered deltas into one OpenAI delta message. Within one text piece the order is
/// always reasoning, content, calls, so nothing is reordered that a client could notice;
/// consecutive argument fragments of a call are joined.
pub fn to_delta_message(deltas: Vec<ChatDelta>) -> DeltaMessage {
    let mut msg = DeltaMessage::default();
    for d in deltas {
        match d {
            ChatDelta::Reasoning(t) => msg.reasoning.get_or_insert_with(String::new).push_str(&t),
            ChatDelta::Content(t) => msg.content.get_or_insert_with(String::new).push_str(&t),
            ChatDelta::ToolCallStart { index, id, name } => msg.tool_calls.push(ToolCallDelta {
                index,
                id: Some(id),
                r#type: Some("function"),
                function: ToolCallFunction {
                    name: Some(name),
                    arguments: Some(String::new()),
                },
            }),
            ChatDelta::ToolCallArgs { index, fragment } => match msg.tool_calls.last_mut() {
                Some(last) if last.index == index => last
                    .function
                    .arguments
                    .get_or_insert_with(String::new)
                    .push_str(&fragment),
                _ => msg.tool_calls.push(ToolCallDelta {
                    index,
                    id: None,
                    r#type: None,
                    function: ToolCallFunction {
                        name: None,
                        arguments: Some(fragment),
                    },
                }),
            },
        }
    }
    msg
}

impl OutputProcessor for OpenAiOutput {
    fn push(&mut self, text: &str) -> DeltaMessage {
        to_delta_message(self.inner.feed(text))
    }

    fn finish(&mut self) -> DeltaMessage {
        // The route maps the finish reason itself through `called_tools`.
        to_delta_message(self.inner.finish(ChatFinishReason::Stop).0)
    }

    fn called_tools(&self) -> bool {
        self.inner.tool_calls_emitted() > 0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validation::Limits;

    fn api_config(auto: bool) -> ApiConfig {
        ApiConfig {
            served_model_name: "m".into(),
            limits: Limits::default(),
            tool_call_parser: Some("glm47".into()),
            reasoning_parser: Some("glm45".into()),
            enable_auto_tool_choice: auto,
            ..ApiConfig::default()
        }
    }

    fn request(body: serde_json::Value) -> ChatCompletionRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn deltas_fold_into_one_openai_delta() {
        let msg = to_delta_message(vec![
            ChatDelta::Reasoning("a".into()),
            ChatDelta::Reasoning("b".into()),
            ChatDelta::Content("c".into()),
            ChatDelta::ToolCallStart {
                index: 0,
                id: "id0".into(),
                name: "f".into(),
            },
            ChatDelta::ToolCallArgs {
                index: 0,
                fragment: "{\"x\": ".into(),
            },
            ChatDelta::ToolCallArgs {
                index: 0,
                fragment: "1}".into(),
            },
            ChatDelta::ToolCallArgs {
                index: 1,
                fragment: "{}".into(),
            },
        ]);
        assert_eq!(msg.reasoning.as_deref(), Some("ab"));
        assert_eq!(msg.content.as_deref(), Some("c"));
        assert_eq!(msg.tool_calls.len(), 2);
        assert_eq!(msg.tool_calls[0].id.as_deref(), Some("id0"));
        assert_eq!(msg.tool_calls[0].r#type, Some("function"));
        assert_eq!(msg.tool_calls[0].function.name.as_deref(), Some("f"));
        assert_eq!(
            msg.tool_calls[0].function.arguments.as_deref(),
            Some("{\"x\": 1}")
        );
        assert_eq!(msg.tool_calls[1].function.name, None);
        assert_eq!(msg.tool_calls[1].id, None);
    }

    #[test]
    fn prepare_reads_server_and_request_settings() {
        let req = request(json!({
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "chat_template_kwargs": {"enable_thinking": false},
            "include_reasoning": false
        }));
        let cfg = prepare(&api_config(true), &req).unwrap();
        assert_eq!(cfg.tool_parser, Some(ToolParserKind::Glm47));
        assert_eq!(cfg.reasoning_parser, Some(ReasoningParserKind::Glm45));
        assert_eq!(cfg.tool_choice, Some(ToolChoice::Auto));
        assert!(!cfg.starts_in_reasoning);
        assert!(!cfg.include_reasoning);
        let err = ApiError::from(prepare(&api_config(false), &req).unwrap_err());
        assert_eq!(err.status().as_u16(), 400);
        assert_eq!(err.body().error.param.as_deref(), Some("tool_choice"));
        // No tools: nothing to check, nothing parsed.
        let plain = request(json!({"messages": [{"role": "user", "content": "hi"}]}));
        let cfg = prepare(&api_config(false), &plain).unwrap();
        assert_eq!((cfg.tools, cfg.tool_choice), (None, None));
        assert!(cfg.starts_in_reasoning);
    }

    #[test]
    fn template_messages_parse_string_arguments() {
        let req = request(json!({"messages": [
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": "{\"a\": [1, 2]}"}}]}
        ]}));
        let v = template_messages(&req).unwrap();
        assert_eq!(
            v[0]["tool_calls"][0]["function"]["arguments"],
            json!({"a": [1, 2]})
        );
    }
}
