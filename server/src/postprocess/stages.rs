//! The only place that configures `glm-parsers`: our per-request settings -> its combined
//! reasoning + tool-call parser (vLLM's chaining: reasoning split first, then tool calls on
//! the content).

use glm_parsers::{
    OutputParser, OutputParserConfig, ToolCallIdGenerator, ToolParserKind, ToolSet, ToolSpec,
};

use super::{new_tool_call_id, PostProcessConfig};

/// The parser for one request. Tool parsing is off (tool-call text stays content) unless
/// the server has a tool parser, the request gave tools and tool_choice is not "none".
pub(super) fn output_parser(config: &PostProcessConfig) -> OutputParser {
    let tool = match config.tool_parser {
        Some(kind) if config.parses_tools() => kind,
        _ => ToolParserKind::None,
    };
    let specs = config
        .tools
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|t| ToolSpec {
            name: t.name.clone(),
            parameters: t.parameters.clone(),
        })
        .collect();
    let mut parser_config = OutputParserConfig::new(
        config.reasoning_parser.unwrap_or_default(),
        tool,
        ToolSet::new(specs),
    )
    .with_ids(ToolCallIdGenerator::from_fn(new_tool_call_id));
    // Thinking on means vLLM's glm45 parser treats the output as reasoning until `</think>`
    // (a leading `<think>` the model writes itself is swallowed); off means all content.
    parser_config.thinking_enabled = config.starts_in_reasoning;
    parser_config.starts_in_reasoning = config.starts_in_reasoning;
    OutputParser::new(parser_config)
}
