//! Health, readiness, metrics, models, version, tokenize and detokenize.

use axum::{
    extract::State,
    http::{header, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::{types::*, ApiError, ApiJson, AppState, ChatPrompt};
use crate::metrics::CONTENT_TYPE;

/// Liveness: 200 while the engine thread runs (vLLM answers with an empty body).
pub async fn health(State(state): State<AppState>) -> Response {
    if state.engine().is_alive() {
        StatusCode::OK.into_response()
    } else {
        ApiError::EngineUnavailable("engine thread stopped".into()).into_response()
    }
}

/// Readiness: model loaded, warm-up generation done, engine alive, not draining.
pub async fn ready(State(state): State<AppState>) -> Response {
    let lc = state.lifecycle();
    let (status, reason) = if lc.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if !state.engine().is_alive() {
        (StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable")
    } else if !lc.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "warming_up")
    } else {
        (StatusCode::OK, "ready")
    };
    (status, Json(json!({ "status": reason }))).into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics().encode(),
    )
        .into_response()
}

pub async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

pub async fn models(State(state): State<AppState>) -> Json<ModelList> {
    let name = state.config().served_model_name.clone();
    Json(ModelList {
        object: "list",
        data: vec![ModelCard {
            root: name.clone(),
            id: name,
            object: "model",
            created: state.created(),
            owned_by: "glm",
            max_model_len: state.config().limits.max_model_len,
        }],
    })
}

pub async fn tokenize(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TokenizeRequest>,
) -> Result<Json<TokenizeResponse>, ApiError> {
    state.check_model(req.model.as_deref())?;
    let tokenizer = state.tokenizer().clone();
    let tokens = match (req.prompt, req.messages) {
        (Some(p), None) => {
            let add_special = req.add_special_tokens.unwrap_or(true);
            state.prompts().check_bytes("prompt", p.len())?;
            let limiter = state.prompts().clone();
            state
                .prompts()
                .run(move || limiter.encode(&tokenizer, "prompt", &p, add_special))
                .await?
        }
        (None, Some(messages)) => {
            let prompt = ChatPrompt {
                messages: Value::Array(messages),
                tools: req.tools.map(Value::Array),
                add_generation_prompt: req.add_generation_prompt.unwrap_or(true),
                kwargs: req.chat_template_kwargs.unwrap_or_default(),
                add_special_tokens: req.add_special_tokens.unwrap_or(false),
            };
            state
                .prompts()
                .chat(state.template()?, tokenizer, prompt)
                .await?
        }
        _ => {
            return Err(ApiError::invalid(
                "prompt",
                "give exactly one of `prompt` or `messages`",
            ))
        }
    };
    let token_strs = req.return_token_strs.then(|| {
        tokens
            .iter()
            .map(|&t| state.tokenizer().id_to_token(t).unwrap_or_default())
            .collect()
    });
    Ok(Json(TokenizeResponse {
        count: tokens.len(),
        max_model_len: state.config().limits.max_model_len,
        tokens,
        token_strs,
    }))
}

pub async fn detokenize(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DetokenizeRequest>,
) -> Result<Json<DetokenizeResponse>, ApiError> {
    state.check_model(req.model.as_deref())?;
    let vocab = state.tokenizer().vocab_size();
    if let Some(bad) = req.tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(ApiError::invalid(
            "tokens",
            format!("token id {bad} is not below {vocab}"),
        ));
    }
    let prompt = state.tokenizer().decode(&req.tokens, false)?;
    Ok(Json(DetokenizeResponse { prompt }))
}

/// 405 with a JSON body, in the Anthropic shape on the Anthropic routes.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let e = ApiError::MethodNotAllowed(method.to_string());
    if uri.path().starts_with("/v1/messages") {
        crate::anthropic::AnthropicError::from(e).into_response()
    } else {
        e.into_response()
    }
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_string())
}
