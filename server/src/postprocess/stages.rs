//! The only place that talks to `glm-parsers`: the reasoning stage and the tool-call stage
//! of the post-processor, streaming and final, in the post-processor's own terms.

use glm_parsers::{ReasoningParser, ReasoningParserKind, ToolParser, ToolParserKind, ToolSpec};

use super::ToolDef;

/// A tool-stage event, numbered by the parser (before named-choice filtering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ToolEvent {
    Content(String),
    Start { index: usize, name: String },
    Args { index: usize, fragment: String },
}

fn specs(tools: &[ToolDef]) -> Vec<ToolSpec> {
    tools
        .iter()
        .map(|t| ToolSpec {
            name: t.name.clone(),
            parameters: t.parameters.clone(),
        })
        .collect()
}

/// Splits `<think>…</think>` off the text, starting inside the reasoning.
#[derive(Debug)]
pub(super) struct ReasoningStage {
    parser: ReasoningParser,
}

impl ReasoningStage {
    pub(super) fn new(kind: ReasoningParserKind) -> Self {
        ReasoningStage {
            parser: ReasoningParser::new(kind, true),
        }
    }

    /// (reasoning, content) released by this text.
    pub(super) fn push(&mut self, text: &str) -> (String, String) {
        let d = self.parser.push(text);
        (d.reasoning, d.content)
    }

    pub(super) fn finish(&mut self) -> (String, String) {
        let d = self.parser.finish();
        (d.reasoning, d.content)
    }
}

/// Non-streaming reasoning split (thinking on): (reasoning, content).
pub(super) fn split_reasoning_full(
    kind: ReasoningParserKind,
    text: &str,
) -> (Option<String>, Option<String>) {
    let r = glm_parsers::parse_reasoning(kind, text, true);
    (r.reasoning, r.content)
}

/// Streaming tool-call parsing of the content text.
#[derive(Debug)]
pub(super) struct ToolStage {
    parser: ToolParser,
}

impl ToolStage {
    pub(super) fn new(kind: ToolParserKind, tools: &[ToolDef]) -> Self {
        ToolStage {
            parser: ToolParser::new(kind, specs(tools)),
        }
    }

    pub(super) fn push(&mut self, text: &str) -> Vec<ToolEvent> {
        self.parser.push(text).into_iter().map(convert).collect()
    }

    pub(super) fn finish(&mut self) -> Vec<ToolEvent> {
        self.parser.finish().into_iter().map(convert).collect()
    }
}

fn convert(e: glm_parsers::ToolDelta) -> ToolEvent {
    match e {
        glm_parsers::ToolDelta::Content(t) => ToolEvent::Content(t),
        glm_parsers::ToolDelta::Name { index, name } => ToolEvent::Start { index, name },
        glm_parsers::ToolDelta::Arguments { index, fragment } => {
            ToolEvent::Args { index, fragment }
        }
    }
}

/// Non-streaming tool-call parsing: (content, [(name, arguments JSON)]).
pub(super) fn parse_tools_full(
    kind: ToolParserKind,
    tools: &[ToolDef],
    text: &str,
) -> (Option<String>, Vec<(String, String)>) {
    let parsed = glm_parsers::parse_tool_calls(kind, text, &specs(tools));
    (
        parsed.content,
        parsed
            .calls
            .into_iter()
            .map(|c| (c.name, c.arguments))
            .collect(),
    )
}
