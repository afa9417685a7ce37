//! Reasoning and tool calls together, as vLLM's serving layer chains them: the reasoning
//! parser splits the output, then the tool parser runs on the content.

use crate::ids::ToolCallIdGenerator;
use crate::kind::{ReasoningParserKind, ToolParserKind};
use crate::reasoning::{ReasoningParser, ReasoningStream};
use crate::tool_parser::{
    ToolCall, ToolCallEvent, ToolCallParser, ToolCallStream, ToolParserOptions,
};
use crate::tools::ToolSet;

/// Everything the API layer needs to parse one request's output.
#[derive(Debug, Clone, Default)]
pub struct OutputParserConfig {
    pub reasoning: ReasoningParserKind,
    pub tool: ToolParserKind,
    /// `chat_template_kwargs.enable_thinking` (default true).
    pub thinking_enabled: bool,
    /// The prompt left the model inside `<think>` (see [`crate::prompt_ends_in_reasoning`]).
    pub starts_in_reasoning: bool,
    /// The request's tools (empty: no tools given).
    pub tools: ToolSet,
    pub tool_options: ToolParserOptions,
}

impl OutputParserConfig {
    /// vLLM's defaults for a request: thinking on and the output starting in reasoning.
    pub fn new(reasoning: ReasoningParserKind, tool: ToolParserKind, tools: ToolSet) -> Self {
        OutputParserConfig {
            reasoning,
            tool,
            thinking_enabled: true,
            starts_in_reasoning: true,
            tools,
            tool_options: ToolParserOptions::default(),
        }
    }

    /// Sets the id generator (deterministic ids in tests).
    pub fn with_ids(mut self, ids: ToolCallIdGenerator) -> Self {
        self.tool_options.ids = ids;
        self
    }
}

/// The parsed output of a finished request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedOutput {
    pub reasoning: Option<String>,
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
}

/// A streaming event: what to put in the next chunk's `delta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputEvent {
    Reasoning(String),
    Content(String),
    ToolCallStart {
        index: usize,
        id: String,
        name: String,
    },
    ToolArgumentsDelta {
        index: usize,
        fragment: String,
    },
}

/// Reasoning + tool-call parser for one request.
#[derive(Debug, Clone)]
pub struct OutputParser {
    reasoning: Option<ReasoningParser>,
    tools: ToolCallParser,
    thinking_enabled: bool,
}

impl OutputParser {
    pub fn new(config: OutputParserConfig) -> Self {
        let drop_tokens = config.tool_options.drop_tokens.clone();
        let reasoning = config.reasoning.is_enabled().then(|| {
            ReasoningParser::with_thinking(config.thinking_enabled, config.starts_in_reasoning)
                .with_drop_tokens(drop_tokens)
        });
        OutputParser {
            reasoning,
            tools: ToolCallParser::with_options(config.tool, config.tools, config.tool_options),
            thinking_enabled: config.thinking_enabled,
        }
    }

    /// Parses a whole output.
    pub fn parse(&self, text: &str) -> ParsedOutput {
        let mut stream = self.stream();
        stream.feed(text);
        stream.finish();
        stream.output()
    }

    /// A streaming parser for one output.
    pub fn stream(&self) -> OutputStream {
        let tools = if self.reasoning.is_some() {
            self.tools.stream_after_reasoning(self.thinking_enabled)
        } else {
            self.tools.stream()
        };
        OutputStream {
            reasoning: self.reasoning.as_ref().map(ReasoningParser::stream),
            tools,
        }
    }
}

/// Streaming state of [`OutputParser`].
#[derive(Debug, Clone)]
pub struct OutputStream {
    reasoning: Option<ReasoningStream>,
    tools: ToolCallStream,
}

impl OutputStream {
    /// Feeds the next piece of output text.
    pub fn feed(&mut self, delta: &str) -> Vec<OutputEvent> {
        let mut out = Vec::new();
        match &mut self.reasoning {
            Some(reasoning) => {
                let step = reasoning.feed(delta);
                if !step.reasoning.is_empty() {
                    out.push(OutputEvent::Reasoning(step.reasoning));
                }
                if !step.content.is_empty() {
                    let events = self.tools.feed(&step.content);
                    out.extend(events.into_iter().map(convert));
                }
            }
            None => out.extend(self.tools.feed(delta).into_iter().map(convert)),
        }
        out
    }

    /// Ends the output.
    pub fn finish(&mut self) -> Vec<OutputEvent> {
        let mut out = Vec::new();
        if let Some(reasoning) = &mut self.reasoning {
            let step = reasoning.finish();
            if !step.reasoning.is_empty() {
                out.push(OutputEvent::Reasoning(step.reasoning));
            }
            if !step.content.is_empty() {
                out.extend(self.tools.feed(&step.content).into_iter().map(convert));
            }
        }
        out.extend(self.tools.finish().into_iter().map(convert));
        out
    }

    /// True once the reasoning block has closed (or there is no reasoning parser).
    pub fn reasoning_ended(&self) -> bool {
        self.reasoning
            .as_ref()
            .is_none_or(ReasoningStream::reasoning_ended)
    }

    /// The non-streaming view of everything fed so far (call after [`finish`](Self::finish)).
    pub fn output(&self) -> ParsedOutput {
        let reasoning = self.reasoning.as_ref().and_then(|r| r.output().0);
        let tools = self.tools.output();
        ParsedOutput {
            reasoning,
            content: tools.content,
            tool_calls: tools.tool_calls,
        }
    }
}

fn convert(event: ToolCallEvent) -> OutputEvent {
    match event {
        ToolCallEvent::ContentDelta(text) => OutputEvent::Content(text),
        ToolCallEvent::ToolCallStart { index, id, name } => {
            OutputEvent::ToolCallStart { index, id, name }
        }
        ToolCallEvent::ToolArgumentsDelta { index, fragment } => {
            OutputEvent::ToolArgumentsDelta { index, fragment }
        }
    }
}
