//! The seam where chat output is post-processed: reasoning and tool-call parsers turn raw
//! text deltas into `content` / `reasoning` / `tool_calls` deltas. Streaming and
//! non-streaming responses both go through it, so they always agree.
//!
//! [`output_processor`] is the single place that picks a processor for a request; parsers
//! plug in there (`--reasoning-parser`, `--tool-call-parser`, the request's `tools`).

use crate::api::types::ToolCallDelta;
use crate::postprocess::PostProcessConfig;

/// What one text delta becomes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeltaMessage {
    pub content: Option<String>,
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ToolCallDelta>,
}

impl DeltaMessage {
    pub fn is_empty(&self) -> bool {
        self.content.as_deref().is_none_or(str::is_empty)
            && self.reasoning.as_deref().is_none_or(str::is_empty)
            && self.tool_calls.is_empty()
    }

    /// Appends `other` (used to fold a final flush into the last delta).
    pub fn merge(&mut self, other: DeltaMessage) {
        fn cat(a: &mut Option<String>, b: Option<String>) {
            if let Some(b) = b {
                a.get_or_insert_with(String::new).push_str(&b);
            }
        }
        cat(&mut self.content, other.content);
        cat(&mut self.reasoning, other.reasoning);
        self.tool_calls.extend(other.tool_calls);
    }
}

/// Turns a choice's detokenized text, delta by delta, into message deltas.
pub trait OutputProcessor: Send {
    fn push(&mut self, text: &str) -> DeltaMessage;
    /// End of the text: release anything held back.
    fn finish(&mut self) -> DeltaMessage;
    /// True once tool calls were emitted (the finish reason becomes `tool_calls`).
    fn called_tools(&self) -> bool {
        false
    }
}

/// Plain content, no parsing.
#[derive(Debug, Default)]
pub struct PlainText;

impl OutputProcessor for PlainText {
    fn push(&mut self, text: &str) -> DeltaMessage {
        DeltaMessage {
            content: (!text.is_empty()).then(|| text.to_string()),
            ..DeltaMessage::default()
        }
    }

    fn finish(&mut self) -> DeltaMessage {
        DeltaMessage::default()
    }
}

/// The processor for one choice, from the request's validated post-processing settings.
pub fn output_processor(post: Option<PostProcessConfig>) -> Box<dyn OutputProcessor> {
    match post {
        Some(cfg) => Box::new(crate::postprocess::openai::OpenAiOutput::new(cfg)),
        None => Box::new(PlainText),
    }
}

/// Folds streamed tool-call deltas into whole tool calls (non-streaming responses).
pub fn merge_tool_calls(deltas: Vec<ToolCallDelta>) -> Vec<ToolCallDelta> {
    let mut calls: Vec<ToolCallDelta> = Vec::new();
    for d in deltas {
        match calls.iter_mut().find(|c| c.index == d.index) {
            Some(c) => {
                if c.id.is_none() {
                    c.id = d.id;
                }
                if c.r#type.is_none() {
                    c.r#type = d.r#type;
                }
                if c.function.name.is_none() {
                    c.function.name = d.function.name;
                }
                if let Some(a) = d.function.arguments {
                    c.function
                        .arguments
                        .get_or_insert_with(String::new)
                        .push_str(&a);
                }
            }
            None => calls.push(d),
        }
    }
    calls
}
