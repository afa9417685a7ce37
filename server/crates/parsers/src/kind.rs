//! Parser names as given on the command line (`--tool-call-parser`, `--reasoning-parser`).

use std::fmt;
use std::str::FromStr;

use crate::error::ParserError;

/// Which tool-call parser to run on model output.
///
/// In vLLM 0.32 both `glm45` and `glm47` resolve to the same parser (`Glm47MoeModelToolParser`):
/// the function name is whatever precedes the first `<arg_key>` (or `</tool_call>`), stripped,
/// so the GLM-4.5 layout (newlines) and the GLM-4.7 layout (none) both parse. Both names are
/// kept so deployments written for either keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ToolParserKind {
    /// No tool parsing: tool-call text stays in `content`.
    #[default]
    None,
    /// GLM-4.5 / GLM-4.6 (`<tool_call>name\n<arg_key>…`).
    Glm45,
    /// GLM-4.7 / GLM-4.7-Flash (`<tool_call>name<arg_key>…`).
    Glm47,
}

impl ToolParserKind {
    /// The accepted names, for error messages and `--help`.
    pub const VALID: &'static str = "glm45, glm47, none";

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolParserKind::None => "none",
            ToolParserKind::Glm45 => "glm45",
            ToolParserKind::Glm47 => "glm47",
        }
    }

    /// True unless this is [`ToolParserKind::None`].
    pub fn is_enabled(self) -> bool {
        self != ToolParserKind::None
    }
}

impl FromStr for ToolParserKind {
    type Err = ParserError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "glm45" | "glm4_moe" | "glm" => Ok(ToolParserKind::Glm45),
            "glm47" => Ok(ToolParserKind::Glm47),
            "none" | "" => Ok(ToolParserKind::None),
            _ => Err(ParserError::UnknownParser {
                what: "tool-call",
                name: s.to_string(),
                valid: Self::VALID,
            }),
        }
    }
}

impl fmt::Display for ToolParserKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which reasoning parser to run on model output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReasoningParserKind {
    /// No reasoning parsing: `<think>` text stays in `content`.
    #[default]
    None,
    /// `<think>…</think>` (vLLM `glm45`; `glm47` is an alias there and here).
    Glm45,
}

impl ReasoningParserKind {
    /// The accepted names, for error messages and `--help`.
    pub const VALID: &'static str = "glm45, glm47, none";

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasoningParserKind::None => "none",
            ReasoningParserKind::Glm45 => "glm45",
        }
    }

    /// True unless this is [`ReasoningParserKind::None`].
    pub fn is_enabled(self) -> bool {
        self != ReasoningParserKind::None
    }
}

impl FromStr for ReasoningParserKind {
    type Err = ParserError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "glm45" | "glm47" | "glm4_moe" => Ok(ReasoningParserKind::Glm45),
            "none" | "" => Ok(ReasoningParserKind::None),
            _ => Err(ParserError::UnknownParser {
                what: "reasoning",
                name: s.to_string(),
                valid: Self::VALID,
            }),
        }
    }
}

impl fmt::Display for ReasoningParserKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        assert_eq!(
            "glm45".parse::<ToolParserKind>().unwrap(),
            ToolParserKind::Glm45
        );
        assert_eq!(
            "GLM47".parse::<ToolParserKind>().unwrap(),
            ToolParserKind::Glm47
        );
        assert_eq!(
            "none".parse::<ToolParserKind>().unwrap(),
            ToolParserKind::None
        );
        assert_eq!(
            "glm47".parse::<ReasoningParserKind>().unwrap(),
            ReasoningParserKind::Glm45
        );
        let err = "hermes".parse::<ToolParserKind>().unwrap_err();
        assert_eq!(err.kind(), "unknown_parser");
        assert!(err.to_string().contains("glm45, glm47, none"), "{err}");
        let err = "qwen3".parse::<ReasoningParserKind>().unwrap_err();
        assert!(
            err.to_string().contains("valid values: glm45, glm47, none"),
            "{err}"
        );
        assert_eq!(ToolParserKind::Glm47.to_string(), "glm47");
    }
}
