//! JSON body extractor whose failures are OpenAI-style 400s naming the field.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::StatusCode,
};
use serde::de::DeserializeOwned;

use super::{error::ApiError, types::CommonParams, AppState};

/// Like `axum::Json`, but malformed bodies become [`ApiError::InvalidRequest`] with `param`
/// set to the path of the bad field (`messages[0].role`, `temperature`, ...).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T> FromRequest<AppState> for ApiJson<T>
where
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        parse(&bytes).map(ApiJson)
    }
}

/// The whole body, within `--body-read-timeout` and the body size limit: 408 when it is
/// too slow, 413 (naming the limit) when it is too large.
pub(crate) async fn read_body(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let limit = state.config().body_read_timeout;
    match tokio::time::timeout(limit, Bytes::from_request(req, state)).await {
        Err(_) => Err(ApiError::BodyTimeout(limit.as_secs())),
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::PayloadTooLarge(super::MAX_BODY_BYTES))
        }
        Ok(Err(e)) => Err(ApiError::invalid(
            "body",
            format!("cannot read the body: {e}"),
        )),
    }
}

pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidRequest {
            param: None,
            message: format!("malformed JSON: {e}"),
        })?;
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let param = if path != "." && !path.is_empty() {
            Some(path)
        } else {
            missing_field(&inner.to_string()).or_else(|| common_field_at_fault(&value))
        };
        ApiError::InvalidRequest {
            param,
            message: format!("invalid request body: {inner}"),
        }
    })
}

/// Requests flatten [`CommonParams`], and serde loses the field path inside flattened
/// structs; deserializing those fields alone finds the culprit again.
fn common_field_at_fault(value: &serde_json::Value) -> Option<String> {
    match serde_path_to_error::deserialize::<_, CommonParams>(value) {
        Err(e) => Some(e.path().to_string()).filter(|p| p != "." && !p.is_empty()),
        Ok(_) => None,
    }
}

/// serde reports a missing field at the parent's path; pull the name out of its message.
fn missing_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("missing field `")?;
    rest.split('`').next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::ChatCompletionRequest;

    fn param_of(body: &str) -> Option<String> {
        match parse::<ChatCompletionRequest>(body.as_bytes()) {
            Err(ApiError::InvalidRequest { param, .. }) => param,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn names_the_bad_field() {
        assert_eq!(param_of(r#"{"model":"m"}"#).as_deref(), Some("messages"));
        assert_eq!(
            param_of(r#"{"messages":[],"temperature":"hot"}"#).as_deref(),
            Some("temperature")
        );
        assert_eq!(
            param_of(r#"{"messages":[], "n": -1.5}"#).as_deref(),
            Some("n")
        );
        assert_eq!(param_of("{not json"), None);
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let r: ChatCompletionRequest =
            parse(br#"{"messages":[{"role":"user","content":"hi"}],"whatever":1,"tools":[],"tool_choice":"auto"}"#)
                .unwrap();
        assert_eq!(r.messages.len(), 1);
    }
}
