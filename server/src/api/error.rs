//! The one place where errors become HTTP statuses and OpenAI-style error bodies.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

use crate::{engine::EngineError, validation::ValidationError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidRequest {
        param: Option<String>,
        message: String,
    },
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("The model `{0}` does not exist.")]
    ModelNotFound(String),
    #[error("route {0} not found")]
    RouteNotFound(String),
    #[error("too many requests waiting ({0}); retry later")]
    QueueFull(usize),
    /// A per-key limit (`requests_per_minute` or `tokens_per_minute`) is spent for now.
    #[error("rate limit reached for API key `{key_id}`: {limit} ({message}); retry after {retry_after_secs} s")]
    RateLimited {
        key_id: String,
        limit: &'static str,
        message: String,
        retry_after_secs: u64,
    },
    #[error("request body larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("method {0} is not allowed on this route")]
    MethodNotAllowed(String),
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    #[error(
        "the server is shutting down and the drain deadline was reached; retry on another replica"
    )]
    DrainDeadline,
    #[error("the server is shutting down")]
    Draining,
    #[error(
        "the server is at its connection limit; only health probes are served on this connection"
    )]
    ConnectionLimit,
    #[error("the engine is not available: {0}")]
    EngineUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            param: Some(param.to_string()),
            message: message.into(),
        }
    }

    /// Stable snake_case tag: the JSON `type`, and the label used in logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. } => "invalid_request_error",
            ApiError::Unauthorized => "authentication_error",
            ApiError::ModelNotFound(_) | ApiError::RouteNotFound(_) => "not_found_error",
            ApiError::QueueFull(_) | ApiError::RateLimited { .. } => "rate_limit_error",
            ApiError::PayloadTooLarge(_) => "request_too_large",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::BodyTimeout(_) => "request_timeout",
            ApiError::Draining
            | ApiError::DrainDeadline
            | ApiError::ConnectionLimit
            | ApiError::EngineUnavailable(_) => "service_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::ModelNotFound(_) | ApiError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::QueueFull(_) | ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Draining
            | ApiError::DrainDeadline
            | ApiError::ConnectionLimit
            | ApiError::EngineUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> Option<&'static str> {
        match self {
            ApiError::ModelNotFound(_) => Some("model_not_found"),
            ApiError::Unauthorized => Some("invalid_api_key"),
            ApiError::QueueFull(_) => Some("queue_full"),
            ApiError::RateLimited { .. } => Some("rate_limit_exceeded"),
            ApiError::Draining => Some("draining"),
            ApiError::DrainDeadline => Some("drain_deadline"),
            ApiError::ConnectionLimit => Some("connection_limit"),
            _ => None,
        }
    }

    /// Seconds a client should wait before retrying (the `Retry-After` header).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::QueueFull(_) | ApiError::ConnectionLimit => Some(1),
            ApiError::RateLimited {
                retry_after_secs, ..
            } => Some((*retry_after_secs).max(1)),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
                r#type: self.kind(),
                param: match self {
                    ApiError::InvalidRequest { param, .. } => param.clone(),
                    ApiError::ModelNotFound(_) => Some("model".into()),
                    _ => None,
                },
                code: self.code(),
            },
        }
    }
}

/// `{"error": {"message", "type", "param", "code"}}`, as OpenAI sends.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorDetail {
    pub message: String,
    pub r#type: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(kind = self.kind(), error = %self, "request failed");
        } else {
            tracing::debug!(kind = self.kind(), error = %self, "request rejected");
        }
        let retry = self.retry_after();
        let mut resp = (status, Json(self.body())).into_response();
        if let Some(secs) = retry {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::InvalidRequest {
            param: Some(e.param),
            message: e.message,
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::QueueFull(n) => ApiError::QueueFull(n),
            EngineError::Unavailable => ApiError::EngineUnavailable("engine stopped".into()),
            EngineError::TooLarge(m) => ApiError::InvalidRequest {
                param: None,
                message: m,
            },
            EngineError::Model { kind, message } => {
                ApiError::Internal(format!("model error ({kind}): {message}"))
            }
        }
    }
}

impl From<glm_tokenizer::TokenizerError> for ApiError {
    fn from(e: glm_tokenizer::TokenizerError) -> Self {
        if e.is_client_error() {
            ApiError::InvalidRequest {
                param: Some("messages".into()),
                message: e.to_string(),
            }
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_types() {
        let cases = [
            (ApiError::invalid("n", "bad"), 400, "invalid_request_error"),
            (ApiError::Unauthorized, 401, "authentication_error"),
            (ApiError::ModelNotFound("x".into()), 404, "not_found_error"),
            (ApiError::QueueFull(3), 429, "rate_limit_error"),
            (
                ApiError::RateLimited {
                    key_id: "a".into(),
                    limit: "requests_per_minute",
                    message: "60".into(),
                    retry_after_secs: 2,
                },
                429,
                "rate_limit_error",
            ),
            (ApiError::PayloadTooLarge(9), 413, "request_too_large"),
            (
                ApiError::MethodNotAllowed("GET".into()),
                405,
                "method_not_allowed",
            ),
            (ApiError::BodyTimeout(9), 408, "request_timeout"),
            (ApiError::DrainDeadline, 503, "service_unavailable"),
            (ApiError::Draining, 503, "service_unavailable"),
            (
                ApiError::EngineUnavailable("x".into()),
                503,
                "service_unavailable",
            ),
            (ApiError::Internal("x".into()), 500, "internal_error"),
        ];
        for (e, status, kind) in cases {
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.kind(), kind);
            assert_eq!(e.body().error.r#type, kind);
        }
        assert_eq!(
            ApiError::invalid("n", "bad").body().error.param.as_deref(),
            Some("n")
        );
        assert_eq!(
            ApiError::from(EngineError::QueueFull(2)).status().as_u16(),
            429
        );
        assert_eq!(
            ApiError::from(EngineError::Unavailable).status().as_u16(),
            503
        );
    }

    #[test]
    fn too_many_requests_carry_retry_after() {
        let r = ApiError::QueueFull(3).into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = ApiError::RateLimited {
            key_id: "team-a".into(),
            limit: "tokens_per_minute",
            message: "1000".into(),
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        assert!(ApiError::invalid("n", "x")
            .into_response()
            .headers()
            .get(header::RETRY_AFTER)
            .is_none());
    }
}
