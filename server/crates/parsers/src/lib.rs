//! GLM output parsers for glm-server, matching vLLM 0.32's `--reasoning-parser glm45` and
//! `--tool-call-parser glm45|glm47` (which vLLM implements with one engine, ported here).
//!
//! - [`ReasoningParser`] — `<think>…</think>` → `reasoning`, the rest → `content`.
//! - [`ToolCallParser`] — `<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value>…</tool_call>`
//!   → OpenAI tool calls with arguments typed by the tools' JSON schemas.
//! - [`OutputParser`] — both, chained as vLLM's serving layer does.
//!
//! Each has a whole-output `parse` and a streaming `stream()` whose events never leak a
//! partial tag and whose argument fragments concatenate to the non-streaming arguments.
//!
//! ```
//! use glm_parsers::{OutputParser, OutputParserConfig, ReasoningParserKind, ToolParserKind, ToolSet};
//! let tools = ToolSet::from_json(&serde_json::json!([{"type": "function", "function": {
//!     "name": "get_weather",
//!     "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}])).unwrap();
//! let parser = OutputParser::new(OutputParserConfig::new(ReasoningParserKind::Glm45, ToolParserKind::Glm45, tools));
//! let out = parser.parse("<think>Need weather.</think>\nChecking.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>北京</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>");
//! assert_eq!(out.reasoning.as_deref(), Some("Need weather."));
//! assert_eq!(out.content.as_deref(), Some("Checking."));
//! assert_eq!(out.tool_calls[0].arguments, r#"{"city": "北京", "days": 3}"#);
//! ```

mod args;
mod calls;
mod engine;
mod error;
mod ids;
mod kind;
mod output;
mod pyjson;
mod reasoning;
mod tool_parser;
mod tools;

pub use error::ParserError;
pub use ids::ToolCallIdGenerator;
pub use kind::{ReasoningParserKind, ToolParserKind};
pub use output::{OutputEvent, OutputParser, OutputParserConfig, OutputStream, ParsedOutput};
pub use reasoning::{prompt_ends_in_reasoning, ReasoningDelta, ReasoningParser, ReasoningStream};
pub use tool_parser::{
    ToolCall, ToolCallEvent, ToolCallOutput, ToolCallParser, ToolCallStream, ToolParserOptions,
};
pub use tools::{ToolSet, ToolSpec};
