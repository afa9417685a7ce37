//! Anthropic error bodies: `{"type": "error", "error": {"type": "invalid_request_error",
//! "message": "..."}}`, with the status codes Anthropic documents for each error type.

use super::wire::{ErrorBody, ErrorDetail, StreamEvent};
use crate::postprocess::PostProcessError;

/// An error of the Anthropic routes, carrying the HTTP status and Anthropic's error `type`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AnthropicError {
    pub status: u16,
    /// Anthropic's error type (`invalid_request_error`, `authentication_error`, ...).
    pub error_type: &'static str,
    pub message: String,
    /// Seconds for the `Retry-After` header (429s).
    pub retry_after: Option<u64>,
}

impl AnthropicError {
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::from_status(400, message)
    }

    /// The error for a status code, with the type Anthropic uses for it. Statuses come from
    /// the server's one error-to-status map; this only picks the Anthropic body for them.
    pub fn from_status(status: u16, message: impl Into<String>) -> Self {
        AnthropicError {
            status,
            error_type: error_type_for_status(status),
            message: message.into(),
            retry_after: None,
        }
    }

    /// Stable snake_case tag (metric label), the same as the Anthropic error type.
    pub fn kind(&self) -> &'static str {
        self.error_type
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            kind: "error".into(),
            error: self.detail(),
        }
    }

    /// The `error` event that ends a stream that failed after it started.
    pub fn event(&self) -> StreamEvent {
        StreamEvent::Error {
            error: self.detail(),
        }
    }

    fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            kind: self.error_type.into(),
            message: self.message.clone(),
        }
    }
}

/// Anthropic's documented mapping (docs "Errors"): 400 invalid_request_error,
/// 401 authentication_error, 403 permission_error, 404 not_found_error,
/// 413 request_too_large, 429 rate_limit_error, 529 overloaded_error, else api_error.
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

impl From<PostProcessError> for AnthropicError {
    fn from(e: PostProcessError) -> Self {
        AnthropicError::invalid_request(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_anthropic_shape() {
        let e = AnthropicError::invalid_request("max_tokens: field required");
        assert_eq!(
            serde_json::to_value(e.body()).unwrap(),
            serde_json::json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: field required"}})
        );
    }

    #[test]
    fn statuses_map_to_anthropic_types() {
        let table = [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (503, "overloaded_error"),
        ];
        for (status, kind) in table {
            let e = AnthropicError::from_status(status, "x");
            assert_eq!((e.status, e.kind()), (status, kind));
        }
    }
}
