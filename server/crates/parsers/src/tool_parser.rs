//! Tool-call parsing for GLM output (`--tool-call-parser glm45|glm47`).

use crate::calls::{CallOptions, CallTracker};
pub use crate::calls::{ToolCall, ToolCallEvent};
use crate::engine::{Engine, EngineConfig, State};
use crate::ids::ToolCallIdGenerator;
use crate::kind::ToolParserKind;
use crate::tools::ToolSet;

/// Result of parsing a whole output for tool calls.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolCallOutput {
    /// Text outside the calls: the text before the first call (stripped) when calls were
    /// made, else all text outside `<tool_call>` blocks; `None` when empty.
    pub content: Option<String>,
    /// The calls, in output order. Non-empty means `finish_reason: "tool_calls"`.
    pub tool_calls: Vec<ToolCall>,
}

impl ToolCallOutput {
    /// True when at least one call was parsed.
    pub fn tools_called(&self) -> bool {
        !self.tool_calls.is_empty()
    }
}

/// Knobs of the tool-call parser. The defaults are vLLM's behaviour.
#[derive(Debug, Clone, Default)]
pub struct ToolParserOptions {
    /// `tool_choice: "none"` while tools were given: call markup is parsed out and dropped,
    /// never returned as calls (vLLM does the same).
    pub suppress_tool_calls: bool,
    /// Also accept the two characters `\n` (a literal backslash-n, which GLM models
    /// sometimes emit) around the function name and between `</arg_key>` and `<arg_value>`.
    /// vLLM 0.32 does not; off by default so results match it exactly.
    pub tolerate_literal_newlines: bool,
    /// Special-token strings removed wherever they appear (vLLM drops the tokenizer's
    /// special tokens, e.g. `<|observation|>`, because it decodes with
    /// `skip_special_tokens=False`). Empty when the server decodes with skipping.
    pub drop_tokens: Vec<String>,
    /// Id source; random `call_…` ids by default.
    pub ids: ToolCallIdGenerator,
}

/// A configured tool-call parser for one request (its tools and options). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ToolCallParser {
    kind: ToolParserKind,
    tools: ToolSet,
    options: ToolParserOptions,
}

impl ToolCallParser {
    /// A parser for the request's tools with default options.
    pub fn new(kind: ToolParserKind, tools: ToolSet) -> Self {
        Self::with_options(kind, tools, ToolParserOptions::default())
    }

    /// A parser with explicit options.
    pub fn with_options(kind: ToolParserKind, tools: ToolSet, options: ToolParserOptions) -> Self {
        ToolCallParser {
            kind,
            tools,
            options,
        }
    }

    /// The parser kind.
    pub fn kind(&self) -> ToolParserKind {
        self.kind
    }

    /// Parses a whole output (no reasoning parser in front: `<think>` is plain text).
    pub fn parse(&self, text: &str) -> ToolCallOutput {
        let mut stream = self.stream();
        stream.feed(text);
        stream.finish();
        stream.output()
    }

    /// A streaming parser for one output.
    pub fn stream(&self) -> ToolCallStream {
        ToolCallStream::new(self, false, false)
    }

    /// The tool pass that runs after a reasoning parser: think tags still act (a stray
    /// `</think>` is swallowed, `<think>…` goes to discarded reasoning) as in vLLM.
    pub(crate) fn stream_after_reasoning(&self, thinking: bool) -> ToolCallStream {
        ToolCallStream::new(self, true, thinking)
    }
}

/// Streaming state of [`ToolCallParser`] for one output: feed text deltas, get events.
#[derive(Debug, Clone)]
pub struct ToolCallStream {
    /// `None` for [`ToolParserKind::None`]: text passes through.
    engine: Option<Engine>,
    tracker: CallTracker,
    passthrough: String,
    finished: bool,
}

impl ToolCallStream {
    fn new(parser: &ToolCallParser, after_reasoning: bool, thinking: bool) -> Self {
        let engine = parser.kind.is_enabled().then(|| {
            Engine::new(EngineConfig {
                thinking: !after_reasoning || thinking,
                initial_state: State::Content,
                skip_tool_parsing: false,
                skip_reasoning_parsing: !after_reasoning,
                drop_tokens: parser.options.drop_tokens.clone(),
            })
        });
        ToolCallStream {
            engine,
            tracker: CallTracker::new(CallOptions {
                tools: parser.tools.clone(),
                ids: parser.options.ids.clone(),
                suppress: parser.options.suppress_tool_calls,
                tolerate_literal_newlines: parser.options.tolerate_literal_newlines,
            }),
            passthrough: String::new(),
            finished: false,
        }
    }

    /// Feeds the next piece of output text.
    pub fn feed(&mut self, delta: &str) -> Vec<ToolCallEvent> {
        let mut out = Vec::new();
        if self.finished || delta.is_empty() {
            return out;
        }
        match &mut self.engine {
            Some(engine) => {
                let events = engine.feed(delta);
                self.tracker.on_events(events, &mut out);
            }
            None => {
                self.passthrough.push_str(delta);
                out.push(ToolCallEvent::ContentDelta(delta.to_string()));
            }
        }
        out
    }

    /// Ends the output: closes a call cut off mid-way (it still counts, with the complete
    /// arguments it has) and releases held-back text.
    pub fn finish(&mut self) -> Vec<ToolCallEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.finished = true;
        if let Some(engine) = &mut self.engine {
            let events = engine.finish();
            self.tracker.on_events(events, &mut out);
            self.tracker.finish(&mut out);
        }
        out
    }

    /// The non-streaming view of everything fed so far (call after [`finish`](Self::finish)).
    pub fn output(&self) -> ToolCallOutput {
        if self.engine.is_none() {
            return ToolCallOutput {
                content: (!self.passthrough.is_empty()).then(|| self.passthrough.clone()),
                tool_calls: Vec::new(),
            };
        }
        let (content, tool_calls) = self.tracker.result();
        ToolCallOutput {
            content,
            tool_calls,
        }
    }
}
