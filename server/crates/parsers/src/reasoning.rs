//! Reasoning parsing for GLM output (`--reasoning-parser glm45`): `<think>…</think>` goes to
//! `reasoning`, the rest to `content`, as vLLM 0.32 does it:
//!
//! - the output starts inside the reasoning when thinking is on (the GLM-4.7 prompt ends in
//!   `<think>`; GLM-4.5 emits `<think>` itself, which is then swallowed); an output that never
//!   closes it is all reasoning and has no content;
//! - `</think>` ends the reasoning; a `<tool_call>` inside the reasoning ends it too (the call
//!   becomes content, for the tool parser);
//! - reasoning has trailing whitespace removed; content is kept as is.

use crate::engine::{Engine, EngineConfig, Event, State, THINK_END, THINK_START};
use crate::pyjson::is_py_space;

/// A streaming step: text to append to `reasoning` and to `content` (either may be empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReasoningDelta {
    pub reasoning: String,
    pub content: String,
}

impl ReasoningDelta {
    /// True when the step carries no text.
    pub fn is_empty(&self) -> bool {
        self.reasoning.is_empty() && self.content.is_empty()
    }
}

/// The turn-boundary tokens of the GLM chat format: reasoning markers before the last one
/// belong to earlier turns.
const TURN_BOUNDARIES: [&str; 4] = ["<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"];

/// Whether generation continuing `prompt` starts inside the reasoning block, by vLLM's
/// `is_reasoning_end` on the prompt: after the last turn boundary, the last think tag
/// decides (`<think>` → inside, `</think>` → not); with no tag, thinking-on models are
/// expected to reason first (inside).
pub fn prompt_ends_in_reasoning(prompt: &str) -> bool {
    let boundary = TURN_BOUNDARIES
        .iter()
        .filter_map(|b| prompt.rfind(b).map(|i| i + b.len()))
        .max()
        .unwrap_or(0);
    let tail = &prompt[boundary..];
    match (tail.rfind(THINK_START), tail.rfind(THINK_END)) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(start), Some(end)) => start > end,
    }
}

/// The `glm45` reasoning parser for one output.
#[derive(Debug, Clone)]
pub struct ReasoningParser {
    thinking_enabled: bool,
    starts_in_reasoning: bool,
    drop_tokens: Vec<String>,
}

impl ReasoningParser {
    /// A parser for a thinking-enabled request. `starts_in_reasoning`: the prompt left the
    /// model inside `<think>` (see [`prompt_ends_in_reasoning`]); vLLM assumes so whenever
    /// thinking is on.
    pub fn new(starts_in_reasoning: bool) -> Self {
        ReasoningParser {
            thinking_enabled: true,
            starts_in_reasoning,
            drop_tokens: Vec::new(),
        }
    }

    /// A parser honouring `chat_template_kwargs.enable_thinking` (or `thinking`): with
    /// thinking off everything is content, think tags included, as in vLLM.
    pub fn with_thinking(thinking_enabled: bool, starts_in_reasoning: bool) -> Self {
        ReasoningParser {
            thinking_enabled,
            starts_in_reasoning,
            drop_tokens: Vec::new(),
        }
    }

    /// Special-token strings to remove from the text (see
    /// [`crate::ToolParserOptions::drop_tokens`]).
    pub fn with_drop_tokens(mut self, tokens: Vec<String>) -> Self {
        self.drop_tokens = tokens;
        self
    }

    /// Whether thinking is on.
    pub fn thinking_enabled(&self) -> bool {
        self.thinking_enabled
    }

    /// Splits a whole output into `(reasoning, content)`.
    pub fn parse(&self, text: &str) -> (Option<String>, Option<String>) {
        let mut stream = self.stream();
        stream.feed(text);
        stream.finish();
        stream.output()
    }

    /// A streaming parser for one output.
    pub fn stream(&self) -> ReasoningStream {
        let engine = Engine::new(EngineConfig {
            thinking: self.thinking_enabled,
            initial_state: if self.thinking_enabled && self.starts_in_reasoning {
                State::Reasoning
            } else {
                State::Content
            },
            skip_tool_parsing: true,
            skip_reasoning_parsing: false,
            drop_tokens: self.drop_tokens.clone(),
        });
        ReasoningStream {
            engine,
            reasoning: String::new(),
            content: String::new(),
            pending_ws: String::new(),
            ended: false,
            finished: false,
        }
    }
}

/// Streaming state of [`ReasoningParser`].
#[derive(Debug, Clone)]
pub struct ReasoningStream {
    engine: Engine,
    reasoning: String,
    content: String,
    /// Trailing whitespace of the reasoning, held until more reasoning follows (the final
    /// reasoning is right-stripped).
    pending_ws: String,
    ended: bool,
    finished: bool,
}

impl ReasoningStream {
    /// Feeds the next piece of output text.
    pub fn feed(&mut self, delta: &str) -> ReasoningDelta {
        if self.finished {
            return ReasoningDelta::default();
        }
        let events = self.engine.feed(delta);
        self.apply(events)
    }

    /// Ends the output.
    pub fn finish(&mut self) -> ReasoningDelta {
        if self.finished {
            return ReasoningDelta::default();
        }
        let events = self.engine.finish();
        self.finished = true;
        let out = self.apply(events);
        self.pending_ws.clear();
        out
    }

    /// True once the reasoning block has closed (content follows).
    pub fn reasoning_ended(&self) -> bool {
        self.ended
    }

    fn apply(&mut self, events: Vec<Event>) -> ReasoningDelta {
        let mut delta = ReasoningDelta::default();
        for event in events {
            match event {
                Event::Reasoning(text) => {
                    let combined = std::mem::take(&mut self.pending_ws) + &text;
                    let end = combined.trim_end_matches(is_py_space).len();
                    self.pending_ws = combined[end..].to_string();
                    let visible = &combined[..end];
                    self.reasoning.push_str(visible);
                    delta.reasoning.push_str(visible);
                }
                Event::ReasoningEnd => self.ended = true,
                Event::Text(text) => {
                    self.content.push_str(&text);
                    delta.content.push_str(&text);
                }
                // The reasoning pass never enters tool states (tool parsing is skipped).
                Event::ToolCallStart
                | Event::ToolName(_)
                | Event::ArgChunk(_)
                | Event::ToolCallEnd => {}
            }
        }
        delta
    }

    /// The non-streaming view of everything fed so far.
    pub fn output(&self) -> (Option<String>, Option<String>) {
        (
            (!self.reasoning.is_empty()).then(|| self.reasoning.clone()),
            (!self.content.is_empty()).then(|| self.content.clone()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_state() {
        assert!(prompt_ends_in_reasoning(
            "[gMASK]<sop><|user|>hi<|assistant|><think>"
        ));
        assert!(!prompt_ends_in_reasoning(
            "[gMASK]<sop><|user|>hi<|assistant|></think>"
        ));
        assert!(!prompt_ends_in_reasoning(
            "<|user|>\nhi<|assistant|>\n<think></think>"
        ));
        assert!(prompt_ends_in_reasoning(
            "<|assistant|>\n<think>a</think>x<|user|>\nhi<|assistant|>"
        ));
    }
}
