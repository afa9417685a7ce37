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
        let kind = name.parse::<ToolParserKind>().ok();
        if kind.is_none() {
            tracing::warn!(parser = name, "unknown tool-call parser; tool calls stay content");
        }
        kind
    });
    let reasoning = cfg.reasoning_parser.as_deref().and_then(|name| {
        let kind = name.parse::<ReasoningParserKind>().ok();
        if kind.is_none() {
            tracing::warn!(parser = name, "unknown reasoning parser; reasoning stays content");
        }
        kind
    });
    (tool, reasoning)
}

/// Checks a chat request's tools and tool_choice and returns its post-processing settings.
/// Call before generating: every problem is a 400 naming the field.
pub fn prepare(cfg: &ApiConfig, req: &ChatCompletionRequest) -> Result<PostProcessConfig, PostProcessError> {
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
