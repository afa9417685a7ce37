//! Post-processed chat output -> Anthropic responses: the non-streaming message and the
//! streaming event sequence (`message_start`, `content_block_*`, `message_delta`,
//! `message_stop`), both from the same [`ChatDelta`]s / [`ChatOutput`] the OpenAI route uses.

use serde_json::{json, Value};

use super::wire::{
    BlockDelta, DeltaUsage, MessageDeltaBody, MessagesResponse, OutputBlock, StopReason,
    StreamEvent, Usage,
};
use crate::postprocess::{ChatDelta, ChatFinishReason, ChatOutput};

/// A fresh message id (`msg_` + 24 hex digits, Anthropic's shape).
pub fn new_message_id() -> String {
    format!("msg_{:024x}", rand::random::<u128>() >> 32)
}

/// An opaque, deterministic signature for a thinking block. Anthropic signs thinking so it
/// can be verified when sent back; a local model has nothing to verify, but clients (Claude
/// Code) expect the field and send it back unchanged, where we ignore it.
pub fn thinking_signature(thinking: &str) -> String {
    // FNV-1a: stable across runs and platforms, no dependency.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in thinking.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("glm-{h:016x}")
}

/// Engine/post-processor finish -> Anthropic `stop_reason`.
pub fn stop_reason(reason: ChatFinishReason, stop_sequence: Option<&str>) -> StopReason {
    match reason {
        ChatFinishReason::ToolCalls => StopReason::ToolUse,
        ChatFinishReason::Length => StopReason::MaxTokens,
        ChatFinishReason::Stop if stop_sequence.is_some() => StopReason::StopSequence,
        ChatFinishReason::Stop | ChatFinishReason::Abort | ChatFinishReason::GrammarDeadEnd => {
            StopReason::EndTurn
        }
    }
}

/// Tool arguments as the JSON object Anthropic's `input` is. The parsers always produce an
/// object; anything else (never expected) is logged and sent as `{}` rather than failing.
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            tracing::warn!(
                arguments,
                "tool arguments are not a JSON object; sending {{}}"
            );
            json!({})
        }
    }
}

/// What the non-streaming response needs besides the output.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    pub id: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The stop string that ended generation, if one did.
    pub stop_sequence: Option<String>,
}

/// The non-streaming `/v1/messages` body: thinking, then text, then tool_use blocks
/// (the order the model wrote them). Whitespace-only text makes no block, as in streaming.
pub fn build_message(output: &ChatOutput, meta: ResponseMeta) -> MessagesResponse {
    let mut content = Vec::new();
    if let Some(thinking) = output.reasoning.as_deref().filter(|r| !r.is_empty()) {
        content.push(OutputBlock::Thinking {
            thinking: thinking.to_string(),
            signature: thinking_signature(thinking),
        });
    }
    if let Some(text) = output.content.as_deref().filter(|t| !t.trim().is_empty()) {
        content.push(OutputBlock::Text {
            text: text.to_string(),
        });
    }
    for call in &output.tool_calls {
        content.push(OutputBlock::ToolUse {
            id: call.id.clone(),
            name: call.name.clone(),
            input: tool_input(&call.arguments),
        });
    }
    let stop_sequence = meta
        .stop_sequence
        .filter(|_| output.finish_reason == ChatFinishReason::Stop);
    MessagesResponse {
        id: meta.id,
        kind: "message".into(),
        role: "assistant".into(),
        model: meta.model,
        content,
        stop_reason: Some(stop_reason(output.finish_reason, stop_sequence.as_deref())),
        stop_sequence,
        usage: Usage {
            input_tokens: meta.input_tokens,
            output_tokens: meta.output_tokens,
            ..Usage::default()
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Thinking,
    Text,
    ToolUse,
}

/// Turns streamed [`ChatDelta`]s into Anthropic stream events. One block is open at a time;
/// a change of kind closes it (thinking blocks get their `signature_delta` first).
#[derive(Debug)]
pub struct MessageStream {
    id: String,
    model: String,
    input_tokens: u64,
    open: Option<OpenBlock>,
    /// Index of the open (or last) block; the next block gets `next_index`.
    next_index: usize,
    thinking: String,
    /// Whitespace-only text held back: it opens a text block only if real text follows,
    /// so the `\n` between `</think>` and a tool call makes no empty block.
    pending_space: String,
    started: bool,
}

impl MessageStream {
    pub fn new(id: String, model: String, input_tokens: u64) -> Self {
        MessageStream {
            id,
            model,
            input_tokens,
            open: None,
            next_index: 0,
            thinking: String::new(),
            pending_space: String::new(),
            started: false,
        }
    }

    /// `message_start` (with the prompt's usage) and a `ping`, as Anthropic begins streams.
    pub fn start(&mut self) -> Vec<StreamEvent> {
        self.started = true;
        vec![
            StreamEvent::MessageStart {
                message: MessagesResponse {
                    id: self.id.clone(),
                    kind: "message".into(),
                    role: "assistant".into(),
                    model: self.model.clone(),
                    content: Vec::new(),
                    stop_reason: None,
                    stop_sequence: None,
                    usage: Usage {
                        input_tokens: self.input_tokens,
                        output_tokens: 0,
                        ..Usage::default()
                    },
                },
            },
            StreamEvent::Ping,
        ]
    }

    pub fn push(&mut self, delta: ChatDelta) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if !self.started {
            out.extend(self.start());
        }
        match delta {
            ChatDelta::Reasoning(text) => {
                self.ensure_open(OpenBlock::Thinking, &mut out);
                self.thinking.push_str(&text);
                out.push(self.delta(BlockDelta::ThinkingDelta { thinking: text }));
            }
            ChatDelta::Content(text) => {
                if self.open != Some(OpenBlock::Text) && text.trim().is_empty() {
                    self.pending_space.push_str(&text);
                    return out;
                }
                self.ensure_open(OpenBlock::Text, &mut out);
                let text = std::mem::take(&mut self.pending_space) + &text;
                out.push(self.delta(BlockDelta::TextDelta { text }));
            }
            ChatDelta::ToolCallStart { id, name, .. } => {
                self.close(&mut out);
                self.pending_space.clear();
                out.push(StreamEvent::ContentBlockStart {
                    index: self.next_index,
                    content_block: OutputBlock::ToolUse {
                        id,
                        name,
                        input: json!({}),
                    },
                });
                self.open = Some(OpenBlock::ToolUse);
            }
            ChatDelta::ToolCallArgs { fragment, .. } => {
                // The post-processor sends a call's fragments right after its start, so they
                // belong to the open tool_use block.
                if self.open == Some(OpenBlock::ToolUse) {
                    out.push(self.delta(BlockDelta::InputJsonDelta {
                        partial_json: fragment,
                    }));
                }
            }
        }
        out
    }

    /// Closes the open block, then `message_delta` (stop reason, output tokens) and
    /// `message_stop`.
    pub fn finish(
        &mut self,
        reason: ChatFinishReason,
        stop_sequence: Option<String>,
        output_tokens: u64,
    ) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if !self.started {
            out.extend(self.start());
        }
        self.close(&mut out);
        let stop_sequence = stop_sequence.filter(|_| reason == ChatFinishReason::Stop);
        out.push(StreamEvent::MessageDelta {
            delta: MessageDeltaBody {
                stop_reason: Some(stop_reason(reason, stop_sequence.as_deref())),
                stop_sequence,
            },
            usage: DeltaUsage { output_tokens },
        });
        out.push(StreamEvent::MessageStop);
        out
    }

    fn delta(&self, delta: BlockDelta) -> StreamEvent {
        StreamEvent::ContentBlockDelta {
            index: self.next_index,
            delta,
        }
    }

    fn ensure_open(&mut self, kind: OpenBlock, out: &mut Vec<StreamEvent>) {
        if self.open == Some(kind) {
            return;
        }
        self.close(out);
        let content_block = match kind {
            OpenBlock::Thinking => OutputBlock::Thinking {
                thinking: String::new(),
                signature: String::new(),
            },
            OpenBlock::Text => OutputBlock::Text {
                text: String::new(),
            },
            OpenBlock::ToolUse => OutputBlock::ToolUse {
                id: String::new(),
                name: String::new(),
                input: json!({}),
            },
        };
        out.push(StreamEvent::ContentBlockStart {
            index: self.next_index,
            content_block,
        });
        self.open = Some(kind);
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        let Some(kind) = self.open.take() else {
            return;
        };
        if kind == OpenBlock::Thinking {
            let signature = thinking_signature(&std::mem::take(&mut self.thinking));
            out.push(self.delta(BlockDelta::SignatureDelta { signature }));
        }
        out.push(StreamEvent::ContentBlockStop {
            index: self.next_index,
        });
        self.next_index += 1;
    }
}

#[cfg(test)]
mod tests;
