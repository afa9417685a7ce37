//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading a tokenizer, encoding, decoding or rendering a
/// chat template. Each variant has a stable snake_case [`TokenizerError::kind`] tag that the
/// server uses as a metric label and as the JSON error `type`.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON configuration file is malformed.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A configuration file parsed but a field has an unusable value.
    #[error("invalid {field} in {path}: {reason}")]
    Config {
        path: PathBuf,
        field: String,
        reason: String,
    },
    /// `tokenizer.json` could not be loaded by the `tokenizers` crate.
    #[error("cannot load tokenizer {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    /// Encoding text failed.
    #[error("encoding failed: {0}")]
    Encode(String),
    /// Decoding ids failed.
    #[error("decoding failed: {0}")]
    Decode(String),
    /// No chat template was found in the model directory.
    #[error("no chat template in {0} (looked for chat_template.jinja and tokenizer_config.json `chat_template`)")]
    TemplateMissing(PathBuf),
    /// A named template was asked for but the model does not ship it.
    #[error("no chat template named {name:?}; available: {available}")]
    TemplateNotFound { name: String, available: String },
    /// The Jinja source does not compile.
    #[error("chat template {name:?} does not compile: {message}")]
    TemplateSyntax { name: String, message: String },
    /// The template called `raise_exception(message)`: the request is invalid for this model.
    #[error("chat template error: {message}")]
    TemplateRaised { message: String },
    /// Rendering failed for another reason (bad input shape, undefined attribute, ...).
    #[error("chat template rendering failed: {message}")]
    TemplateRender { message: String },
    /// The caller passed input of the wrong shape (for example messages that are not a list).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl TokenizerError {
    /// Stable snake_case tag of the error variant.
    pub fn kind(&self) -> &'static str {
        match self {
            TokenizerError::Io { .. } => "io",
            TokenizerError::Json { .. } => "invalid_json",
            TokenizerError::Config { .. } => "invalid_config",
            TokenizerError::Load { .. } => "tokenizer_load",
            TokenizerError::Encode(_) => "encode",
            TokenizerError::Decode(_) => "decode",
            TokenizerError::TemplateMissing(_) => "template_missing",
            TokenizerError::TemplateNotFound { .. } => "template_not_found",
            TokenizerError::TemplateSyntax { .. } => "template_syntax",
            TokenizerError::TemplateRaised { .. } => "template_raised",
            TokenizerError::TemplateRender { .. } => "template_render",
            TokenizerError::InvalidInput(_) => "invalid_input",
        }
    }

    /// True when the error was caused by the request content rather than by the model files:
    /// the server maps these to HTTP 400 instead of 500.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            TokenizerError::TemplateRaised { .. }
                | TokenizerError::TemplateRender { .. }
                | TokenizerError::TemplateNotFound { .. }
                | TokenizerError::InvalidInput(_)
                | TokenizerError::Encode(_)
        )
    }
}

/// Reads a whole file, naming the path on failure.
pub(crate) fn read_to_string(path: &std::path::Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and parses a JSON file, naming the path on failure.
pub(crate) fn read_json(path: &std::path::Path) -> Result<serde_json::Value, TokenizerError> {
    let text = read_to_string(path)?;
    serde_json::from_str(&text).map_err(|source| TokenizerError::Json {
        path: path.to_path_buf(),
        source,
    })
}
