//! Turns engine events of the tool pass into tool calls: the slot bookkeeping of vLLM's
//! `ParserEngine` (name accepted once, arguments converted and typed at the end) plus
//! prefix-stable argument streaming and the content rules.

use crate::args;
use crate::engine::{Event, ARG_VALUE_END};
use crate::ids::ToolCallIdGenerator;
use crate::pyjson::{self, is_py_space, py_strip, PyValue};
use crate::tools::ToolSet;

/// One finished tool call, as OpenAI `tool_calls[i]` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// `call_…` id (see [`ToolCallIdGenerator`]).
    pub id: String,
    pub name: String,
    /// JSON object text, exactly as vLLM writes it (`json.dumps`, `", "` / `": "`).
    pub arguments: String,
}

/// A streaming event of the tool-call parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolCallEvent {
    /// Text for `delta.content`.
    ContentDelta(String),
    /// A call begins: sent once per call, before any of its arguments. `index` counts the
    /// emitted calls from 0 (the position in the non-streaming `tool_calls`).
    ToolCallStart {
        index: usize,
        id: String,
        name: String,
    },
    /// The next piece of the call's `arguments`; the pieces concatenate to the
    /// non-streaming `arguments`.
    ToolArgumentsDelta { index: usize, fragment: String },
}

#[derive(Debug, Clone, Default)]
struct Slot {
    name: String,
    args: String,
    /// Public index once the name is accepted.
    index: Option<usize>,
    id: String,
    /// Argument text streamed so far.
    sent: String,
    /// A key repeated: stop streaming until the end (the JSON may rewrite earlier values).
    frozen: bool,
    ended: bool,
    final_args: Option<String>,
}

/// Options shared by the tool pass.
#[derive(Debug, Clone)]
pub(crate) struct CallOptions {
    pub tools: ToolSet,
    pub ids: ToolCallIdGenerator,
    /// `tool_choice: "none"` with tools: calls are parsed out and discarded.
    pub suppress: bool,
    pub tolerate_literal_newlines: bool,
}

/// Per-output state of the tool pass.
#[derive(Debug, Clone)]
pub(crate) struct CallTracker {
    opts: CallOptions,
    slots: Vec<Slot>,
    accepted: usize,
    /// Text before the first `<tool_call>` / after it (vLLM's deferred content).
    before: String,
    after: String,
    seen_tool_event: bool,
    // Streaming content state.
    content_started: bool,
    pending_ws: String,
}

impl CallTracker {
    pub fn new(opts: CallOptions) -> Self {
        CallTracker {
            opts,
            slots: Vec::new(),
            accepted: 0,
            before: String::new(),
            after: String::new(),
            seen_tool_event: false,
            content_started: false,
            pending_ws: String::new(),
        }
    }

    fn clean_name(&self, name: &str) -> String {
        let mut name = py_strip(name);
        if self.opts.tolerate_literal_newlines {
            loop {
                let trimmed = py_strip(name.trim_start_matches("\\n").trim_end_matches("\\n"));
                if trimmed == name {
                    break;
                }
                name = trimmed;
            }
        }
        name.to_string()
    }

    /// Processes engine events, appending streaming events to `out`.
    pub fn on_events(&mut self, events: Vec<Event>, out: &mut Vec<ToolCallEvent>) {
        for event in events {
            match event {
                Event::Text(text) => self.on_text(text, out),
                Event::Reasoning(_) | Event::ReasoningEnd => {}
                Event::ToolCallStart if !self.opts.suppress => {
                    self.seen_tool_event = true;
                    self.slots.push(Slot::default());
                }
                Event::ToolName(text) if !self.opts.suppress => {
                    self.seen_tool_event = true;
                    if let Some(slot) = self.slots.last_mut() {
                        slot.name.push_str(&text);
                    }
                }
                Event::ArgChunk(text) if !self.opts.suppress => {
                    self.seen_tool_event = true;
                    self.on_arg_chunk(text, out);
                }
                Event::ToolCallEnd if !self.opts.suppress => {
                    self.seen_tool_event = true;
                    self.on_tool_end(out);
                }
                _ => {}
            }
        }
    }

    fn on_text(&mut self, text: String, out: &mut Vec<ToolCallEvent>) {
        if self.seen_tool_event {
            self.after.push_str(&text);
            return;
        }
        self.before.push_str(&text);
        // Stream: hold whitespace back until it is followed by text (a tool call would
        // strip it), and leading whitespace until the first visible character.
        let combined = std::mem::take(&mut self.pending_ws) + &text;
        let visible_end = combined
            .char_indices()
            .rev()
            .find(|(_, c)| !is_py_space(*c))
            .map(|(i, c)| i + c.len_utf8());
        match visible_end {
            None => self.pending_ws = combined,
            Some(end) => {
                self.pending_ws = combined[end..].to_string();
                self.content_started = true;
                out.push(ToolCallEvent::ContentDelta(combined[..end].to_string()));
            }
        }
    }

    fn try_accept(&mut self, slot_idx: usize, out: &mut Vec<ToolCallEvent>) {
        let slot = &self.slots[slot_idx];
        if slot.index.is_some() {
            return;
        }
        let name = if !slot.name.is_empty() {
            self.clean_name(&slot.name)
        } else {
            match args::try_extract_name(&slot.args) {
                Some(n) => n,
                None => return,
            }
        };
        if !self.opts.tools.accepts(&name) {
            return;
        }
        let index = self.accepted;
        self.accepted += 1;
        let id = self.opts.ids.next_id();
        let slot = &mut self.slots[slot_idx];
        slot.name = name.clone();
        slot.index = Some(index);
        slot.id = id.clone();
        out.push(ToolCallEvent::ToolCallStart { index, id, name });
    }

    fn on_arg_chunk(&mut self, text: String, out: &mut Vec<ToolCallEvent>) {
        let Some(slot_idx) = self.slots.len().checked_sub(1) else {
            return;
        };
        self.slots[slot_idx].args.push_str(&text);
        if self.slots[slot_idx].index.is_none() {
            if !self.slots[slot_idx].name.is_empty() || !text.is_empty() {
                self.try_accept(slot_idx, out);
            }
            return;
        }
        // A pair completes only when its `</arg_value>` arrives (the lexer delivers the tag
        // as one chunk): re-scanning on other chunks would make long values quadratic.
        if text == ARG_VALUE_END {
            self.stream_args(slot_idx, out);
        }
    }

    /// Streams the arguments of complete pairs, without the closing brace: a prefix of
    /// the final JSON whether the call goes on, ends, or is cut off.
    fn stream_args(&mut self, slot_idx: usize, out: &mut Vec<ToolCallEvent>) {
        let tolerant = self.opts.tolerate_literal_newlines;
        let slot = &self.slots[slot_idx];
        if slot.frozen {
            return;
        }
        let (mut pairs, repeated) = args::complete_pairs(&slot.args, tolerant);
        if repeated {
            self.slots[slot_idx].frozen = true;
            return;
        }
        if pairs.is_empty() {
            return;
        }
        self.opts.tools.coerce_args(&slot.name, &mut pairs);
        let json = pyjson::dumps(&PyValue::Dict(pairs));
        let candidate = &json[..json.len() - 1];
        let slot = &mut self.slots[slot_idx];
        if candidate.len() > slot.sent.len() && candidate.starts_with(slot.sent.as_str()) {
            let fragment = candidate[slot.sent.len()..].to_string();
            slot.sent = candidate.to_string();
            if let Some(index) = slot.index {
                out.push(ToolCallEvent::ToolArgumentsDelta { index, fragment });
            }
        }
    }

    fn on_tool_end(&mut self, out: &mut Vec<ToolCallEvent>) {
        let Some(slot_idx) = self.slots.len().checked_sub(1) else {
            return;
        };
        if self.slots[slot_idx].ended {
            return;
        }
        self.slots[slot_idx].ended = true;
        let cleaned = self.clean_name(&self.slots[slot_idx].name);
        self.slots[slot_idx].name = cleaned;
        self.try_accept(slot_idx, out);
        let slot = &self.slots[slot_idx];
        let Some(index) = slot.index else {
            return;
        };
        let final_args = if py_strip(&slot.args).is_empty() {
            "{}".to_string()
        } else {
            let mut params = args::convert(&slot.args, false, self.opts.tolerate_literal_newlines);
            self.opts.tools.coerce_args(&slot.name, &mut params);
            pyjson::dumps(&PyValue::Dict(params))
        };
        let slot = &mut self.slots[slot_idx];
        if final_args.starts_with(slot.sent.as_str()) && final_args.len() > slot.sent.len() {
            let fragment = final_args[slot.sent.len()..].to_string();
            slot.sent = final_args.clone();
            out.push(ToolCallEvent::ToolArgumentsDelta { index, fragment });
        }
        slot.final_args = Some(final_args);
    }

    /// End of output (after the engine's own finish events).
    pub fn finish(&mut self, out: &mut Vec<ToolCallEvent>) {
        let content = if self.accepted > 0 {
            // Calls were made: content is the text before the first call, stripped; the
            // held-back trailing whitespace and any text after the calls are dropped.
            None
        } else if self.slots.is_empty() {
            Some(std::mem::take(&mut self.pending_ws))
        } else {
            // Only rejected calls: their surrounding text is content unless it is blank.
            let all = format!("{}{}", self.before, self.after);
            if py_strip(&all).is_empty() {
                None
            } else {
                Some(format!(
                    "{}{}",
                    std::mem::take(&mut self.pending_ws),
                    self.after
                ))
            }
        };
        if let Some(text) = content.filter(|t| !t.is_empty()) {
            out.push(ToolCallEvent::ContentDelta(text));
        }
    }

    /// The non-streaming result: (content, calls), by vLLM's rules.
    pub fn result(&self) -> (Option<String>, Vec<ToolCall>) {
        let calls: Vec<ToolCall> = self
            .slots
            .iter()
            .filter_map(|slot| {
                slot.index?;
                Some(ToolCall {
                    id: slot.id.clone(),
                    name: slot.name.clone(),
                    arguments: slot.final_args.clone().unwrap_or_else(|| "{}".to_string()),
                })
            })
            .collect();
        let content = if self.slots.is_empty() {
            self.before.clone()
        } else {
            let mut text = self.before.clone();
            if calls.is_empty() {
                text.push_str(&self.after);
            }
            if py_strip(&text).is_empty() {
                String::new()
            } else if calls.is_empty() {
                text
            } else {
                py_strip(&text).to_string()
            }
        };
        ((!content.is_empty()).then_some(content), calls)
    }
}
