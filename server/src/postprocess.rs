//! Chat output post-processing: the model's decoded text -> reasoning, content and tool
//! calls, streaming ([`ChatPostProcessor::feed`] / [`ChatPostProcessor::finish`]) and not
//! ([`ChatPostProcessor::process_full`]). Both the OpenAI chat route and the Anthropic
//! Messages route use it, so the two APIs always agree on what the model said.
//!
//! The pipeline is the one vLLM runs with `--reasoning-parser glm45 --tool-call-parser
//! glm45|glm47`: the reasoning parser splits `<think>…</think>` off first, then the tool
//! parser reads the content part. The parsing itself lives in `glm-parsers`; this module
//! decides *whether* to parse (tool_choice, include_reasoning, enable_thinking), numbers and
//! names the calls, filters a named tool_choice and computes the final finish reason.

mod choice;
pub mod messages;
pub mod openai;
mod stages;

use serde_json::Value;

pub use self::choice::{resolve_tool_choice, ToolChoice, ToolDef, ToolServerConfig};
pub use glm_parsers::{ReasoningParserKind, ToolParserKind};

use glm_parsers::{OutputEvent, OutputStream};

/// Errors of request-level tool/reasoning settings: all client errors (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostProcessError {
    /// A request field is invalid; `field` is its JSON path (`tool_choice`, `tools[2].type`).
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
}

impl PostProcessError {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        PostProcessError::InvalidField {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Stable tag for metrics and JSON error `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            PostProcessError::InvalidField { .. } => "invalid_request",
        }
    }

    /// The request field the error is about.
    pub fn field(&self) -> &str {
        match self {
            PostProcessError::InvalidField { field, .. } => field,
        }
    }
}

/// Why a chat completion ended, as the chat APIs report it (serialized as the OpenAI
/// chat `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatFinishReason {
    Stop,
    Length,
    /// The model ended its turn with at least one tool call.
    ToolCalls,
    Abort,
    /// Structured outputs: the grammar allowed no next token.
    GrammarDeadEnd,
}

impl From<crate::engine::FinishReason> for ChatFinishReason {
    fn from(r: crate::engine::FinishReason) -> Self {
        match r {
            crate::engine::FinishReason::Stop => ChatFinishReason::Stop,
            crate::engine::FinishReason::Length => ChatFinishReason::Length,
            crate::engine::FinishReason::Abort => ChatFinishReason::Abort,
            crate::engine::FinishReason::GrammarDeadEnd => ChatFinishReason::GrammarDeadEnd,
        }
    }
}

impl ChatFinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatFinishReason::Stop => "stop",
            ChatFinishReason::Length => "length",
            ChatFinishReason::ToolCalls => "tool_calls",
            ChatFinishReason::Abort => "abort",
            ChatFinishReason::GrammarDeadEnd => "grammar_dead_end",
        }
    }
}

/// One piece of streamed chat output, in the order the model produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatDelta {
    Reasoning(String),
    Content(String),
    /// A new tool call: sent once, before any of its argument fragments.
    ToolCallStart {
        index: usize,
        id: String,
        name: String,
    },
    /// The next piece of the call's JSON `arguments`; the pieces concatenate to the
    /// non-streaming `arguments`.
    ToolCallArgs {
        index: usize,
        fragment: String,
    },
}

/// A complete tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// A JSON object, serialised.
    pub arguments: String,
}

/// The whole output of a non-streaming completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatOutput {
    pub reasoning: Option<String>,
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: ChatFinishReason,
}

/// Per-request settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PostProcessConfig {
    /// The server's `--tool-call-parser`; `None`: tool-call text stays content.
    pub tool_parser: Option<ToolParserKind>,
    /// The server's `--reasoning-parser`; `None`: reasoning text stays content.
    pub reasoning_parser: Option<ReasoningParserKind>,
    /// The request's tools (empty or `None`: nothing is parsed as a call).
    pub tools: Option<Vec<ToolDef>>,
    /// Effective choice from [`resolve_tool_choice`] (`None`: no tools).
    pub tool_choice: Option<ToolChoice>,
    /// The model is thinking from the first token: thinking is on for this request
    /// (`enable_thinking` not false). With the glm45 parser the output is then reasoning
    /// until `</think>` whether or not the prompt ended in `<think>`, as vLLM's current
    /// glm45 parser does; when false everything is content.
    pub starts_in_reasoning: bool,
    /// `include_reasoning: false` drops the reasoning from the response.
    pub include_reasoning: bool,
}

impl PostProcessConfig {
    /// Whether output is parsed for tool calls at all.
    fn parses_tools(&self) -> bool {
        self.tool_parser.is_some()
            && self.tools.as_ref().is_some_and(|t| !t.is_empty())
            && !matches!(self.tool_choice, None | Some(ToolChoice::None))
    }
}

/// Whether thinking is on for a request, from its `chat_template_kwargs`
/// (`enable_thinking`, or `thinking` as vLLM also accepts); on by default as in vLLM/SGLang.
pub fn thinking_enabled(chat_template_kwargs: Option<&serde_json::Map<String, Value>>) -> bool {
    let Some(kwargs) = chat_template_kwargs else {
        return true;
    };
    for key in ["enable_thinking", "thinking"] {
        if let Some(v) = kwargs.get(key) {
            // Jinja truthiness: false, null, 0 and "" turn it off.
            return match v {
                Value::Bool(b) => *b,
                Value::Null => false,
                Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
        }
    }
    true
}

/// A fresh tool-call id in vLLM's format.
pub fn new_tool_call_id() -> String {
    format!("chatcmpl-tool-{:032x}", rand::random::<u128>())
}

/// Streaming and final post-processing of one chat completion (one choice).
#[derive(Debug)]
pub struct ChatPostProcessor {
    config: PostProcessConfig,
    stream: OutputStream,
    /// Parser call index -> our index, `None` for calls a named tool_choice drops.
    call_map: Vec<Option<usize>>,
    calls_emitted: usize,
    /// Whitespace-only content seen before any real content (the `\n` after `</think>`, or
    /// between two calls), held until real content follows; dropped before a tool call or
    /// at the end, so a streamed response has the same `content` as a non-streamed one
    /// (`null`, not "\n").
    leading_space: String,
    content_started: bool,
}

impl ChatPostProcessor {
    pub fn new(config: PostProcessConfig) -> Self {
        let stream = stages::output_parser(&config).stream();
        ChatPostProcessor {
            config,
            stream,
            call_map: Vec::new(),
            calls_emitted: 0,
            leading_space: String::new(),
            content_started: false,
        }
    }

    pub fn config(&self) -> &PostProcessConfig {
        &self.config
    }

    /// Tool calls emitted so far (after named-choice filtering).
    pub fn tool_calls_emitted(&self) -> usize {
        self.calls_emitted
    }

    /// Feeds the next decoded text; returns what can be sent now.
    pub fn feed(&mut self, text: &str) -> Vec<ChatDelta> {
        let mut out = Vec::new();
        if text.is_empty() {
            return out;
        }
        for event in self.stream.feed(text) {
            self.route(event, &mut out);
        }
        out
    }

    /// Flushes held-back text at the end of generation and maps the engine's reason to
    /// the reported one: `tool_calls` when the turn ended normally with at least one call.
    /// A turn cut by `length` stays `length`, so clients see that a call may be incomplete.
    pub fn finish(&mut self, reason: ChatFinishReason) -> (Vec<ChatDelta>, ChatFinishReason) {
        let mut out = Vec::new();
        for event in self.stream.finish() {
            self.route(event, &mut out);
        }
        (out, final_reason(reason, self.calls_emitted))
    }

    fn route(&mut self, event: OutputEvent, out: &mut Vec<ChatDelta>) {
        match event {
            OutputEvent::Reasoning(text) => {
                if self.config.include_reasoning && !text.is_empty() {
                    out.push(ChatDelta::Reasoning(text));
                }
            }
            OutputEvent::Content(text) => {
                if self.content_started {
                    if !text.is_empty() {
                        out.push(ChatDelta::Content(text));
                    }
                } else {
                    self.leading_space.push_str(&text);
                    if !self.leading_space.trim().is_empty() {
                        self.content_started = true;
                        out.push(ChatDelta::Content(std::mem::take(&mut self.leading_space)));
                    }
                }
            }
            OutputEvent::ToolCallStart { index, id, name } => {
                // Whitespace between or after calls is dropped the same way.
                self.leading_space.clear();
                self.content_started = false;
                if self.call_map.len() <= index {
                    self.call_map.resize(index + 1, None);
                }
                if keeps(&self.config, &name) {
                    let ours = self.calls_emitted;
                    self.calls_emitted += 1;
                    self.call_map[index] = Some(ours);
                    out.push(ChatDelta::ToolCallStart {
                        index: ours,
                        id,
                        name,
                    });
                } else {
                    tracing::warn!(tool = %name, "dropping a call to a tool other than the named tool_choice");
                }
            }
            OutputEvent::ToolArgumentsDelta { index, fragment } => {
                if let Some(Some(ours)) = self.call_map.get(index) {
                    if !fragment.is_empty() {
                        out.push(ChatDelta::ToolCallArgs {
                            index: *ours,
                            fragment,
                        });
                    }
                }
            }
        }
    }

    /// Non-streaming: the whole output at once, with the same rules as streaming.
    pub fn process_full(
        config: PostProcessConfig,
        text: &str,
        reason: ChatFinishReason,
    ) -> ChatOutput {
        let parsed = stages::output_parser(&config).parse(text);
        let tool_calls: Vec<ToolCall> = parsed
            .tool_calls
            .into_iter()
            .filter(|c| keeps(&config, &c.name))
            .map(|c| ToolCall {
                id: c.id,
                name: c.name,
                arguments: c.arguments,
            })
            .collect();
        ChatOutput {
            reasoning: parsed
                .reasoning
                .filter(|r| config.include_reasoning && !r.is_empty()),
            content: parsed.content.filter(|c| !c.trim().is_empty()),
            finish_reason: final_reason(reason, tool_calls.len()),
            tool_calls,
        }
    }
}

/// A named tool_choice keeps only that function's calls.
fn keeps(config: &PostProcessConfig, name: &str) -> bool {
    match &config.tool_choice {
        Some(ToolChoice::Named(wanted)) => wanted == name,
        _ => true,
    }
}

fn final_reason(reason: ChatFinishReason, calls: usize) -> ChatFinishReason {
    if reason == ChatFinishReason::Stop && calls > 0 {
        ChatFinishReason::ToolCalls
    } else {
        reason
    }
}

#[cfg(test)]
mod tests;
