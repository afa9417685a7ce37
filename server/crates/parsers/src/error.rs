//! The crate's error type. Parsing model output never fails (malformed output degrades to
//! content, as in vLLM); errors come only from configuration: unknown parser names and
//! malformed tool definitions.

/// Configuration errors, each with a stable snake_case [`ParserError::kind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParserError {
    /// A parser name that is not registered (`--tool-call-parser foo`).
    #[error("unknown {what} parser {name:?}; valid values: {valid}")]
    UnknownParser {
        what: &'static str,
        name: String,
        valid: &'static str,
    },
    /// The request's `tools` is not a list of function tools.
    #[error("invalid tools: {0}")]
    InvalidTools(String),
}

impl ParserError {
    /// Stable snake_case tag of the error variant.
    pub fn kind(&self) -> &'static str {
        match self {
            ParserError::UnknownParser { .. } => "unknown_parser",
            ParserError::InvalidTools(_) => "invalid_tools",
        }
    }
}
