//! Route handlers for `POST /v1/messages` and `POST /v1/messages/count_tokens`.
//!
//! A Messages request is converted to the chat request the OpenAI route serves and runs the
//! same steps — template, validation, engine, detokenizer, stop strings, post-processor —
//! through the chat route's public pieces; only the wire format differs. Every failure is
//! an Anthropic error body; the status comes from the server's one error-to-status map.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::post,
    Extension, Json, Router,
};
use futures::StreamExt;
use serde_json::Value;
use tracing::Instrument;

use super::{
    convert::{parse_request, to_openai_chat},
    error::AnthropicError,
    response::{build_message, new_message_id, MessageStream, ResponseMeta},
    wire::{CountTokensRequest, CountTokensResponse, MessagesRequest, StreamEvent},
};
use crate::api::{
    extract::read_body,
    generate::{merged, submit_all, ChoiceGen},
    types::ChatCompletionRequest,
    validate::{GenerateRequest, MaxTokens, Validation},
    ApiError, AppState, ChatPrompt, KeyId,
};
use crate::engine::FinishReason;
use crate::postprocess::{
    openai::template_messages, ChatDelta, ChatFinishReason, ChatOutput, ChatPostProcessor, ToolCall,
};

/// The Anthropic routes with their own drain and API-key gates, so that even those
/// refusals are Anthropic error bodies (merge them beside, not under, the OpenAI routes'
/// layers). `?beta=true` (Claude Code) needs nothing: routing ignores the query string.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route_layer(middleware::from_fn_with_state(state, gate))
}

/// Drain first (503), then the API key (`x-api-key`, which Anthropic clients send, or
/// `Authorization: Bearer`), with the same check as the OpenAI routes.
async fn gate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, AnthropicError> {
    if state.lifecycle().is_draining() {
        return Err(ApiError::Draining.into());
    }
    let key = state.authenticate(req.headers()).map_err(|e| match e {
        ApiError::Unauthorized => AnthropicError::from_status(401, "invalid x-api-key"),
        e => e.into(),
    })?;
    req.extensions_mut().insert(key);
    Ok(next.run(req).await)
}

impl From<ApiError> for AnthropicError {
    fn from(e: ApiError) -> Self {
        AnthropicError {
            retry_after: e.retry_after(),
            ..AnthropicError::from_status(e.status().as_u16(), e.to_string())
        }
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(kind = self.kind(), error = %self, "anthropic request failed");
        } else {
            tracing::debug!(kind = self.kind(), error = %self, "anthropic request rejected");
        }
        let mut resp = (status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        resp
    }
}

/// The raw body, read like the OpenAI routes read theirs (size limit, read timeout), with
/// refusals in the Anthropic shape (413 `request_too_large`, 408).
pub struct Body(Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = AnthropicError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Body(read_body(req, state).await?))
    }
}

/// The OpenAI chat request equivalent to a Messages request.
fn chat_request(req: &MessagesRequest) -> Result<ChatCompletionRequest, AnthropicError> {
    let body = to_openai_chat(req)?;
    serde_json::from_value(body)
        .map_err(|e| AnthropicError::invalid_request(format!("invalid request: {e}")))
}

/// Renders and tokenizes the conversation, bounded like the OpenAI routes.
async fn render(state: &AppState, req: &ChatCompletionRequest) -> Result<Vec<u32>, AnthropicError> {
    let prompt = ChatPrompt {
        messages: template_messages(req)?,
        tools: req.tools.clone().map(Value::Array),
        add_generation_prompt: true,
        kwargs: req.chat_template_kwargs.clone().unwrap_or_default(),
        add_special_tokens: false,
    };
    let template = state.template()?;
    Ok(state
        .prompts()
        .chat(template, state.tokenizer().clone(), prompt)
        .await?)
}

pub async fn count_tokens(
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<Json<CountTokensResponse>, AnthropicError> {
    let span = tracing::info_span!("anthropic_count_tokens");
    async move {
        let req: CountTokensRequest = parse_request(&body)?;
        state.check_model(Some(&req.model))?;
        let chat = chat_request(&MessagesRequest::from(req))?;
        let prompt = render(&state, &chat).await?;
        Ok(Json(CountTokensResponse {
            input_tokens: prompt.len() as u64,
        }))
    }
    .instrument(span)
    .await
}

pub async fn messages(
    State(state): State<AppState>,
    key: Option<Extension<KeyId>>,
    Body(body): Body,
) -> Result<Response, AnthropicError> {
    let id = new_message_id();
    let key = key.map_or_else(KeyId::anonymous, |Extension(k)| k);
    let span = tracing::info_span!("anthropic_messages", request_id = %id, key_id = key.as_str());
    handle(state, body, key, id, span.clone())
        .instrument(span)
        .await
}

async fn handle(
    state: AppState,
    body: Bytes,
    key: KeyId,
    id: String,
    span: tracing::Span,
) -> Result<Response, AnthropicError> {
    let req: MessagesRequest = parse_request(&body)?;
    if let Some(metadata) = &req.metadata {
        tracing::debug!(%metadata, "request metadata");
    }
    let chat = chat_request(&req)?;
    let valid = Validation::new(&state)
        .validate(GenerateRequest::Chat {
            req: &chat,
            max_tokens: MaxTokens::Ceiling(req.max_tokens),
        })
        .await?;
    let model = valid.model.clone();
    let Some(post) = valid.post.clone() else {
        return Err(AnthropicError::from_status(
            500,
            "chat validation gave no post-processing settings",
        ));
    };
    let guard = state.lifecycle().begin();
    let gens = submit_all(&state, &valid, &key, &span)?;
    let Some(gen) = gens.into_iter().next() else {
        return Err(AnthropicError::from_status(
            500,
            "no generation was started",
        ));
    };
    let proc = ChatPostProcessor::new(post);
    let input_tokens = valid.prompt_tokens() as u64;
    if chat.common.stream {
        let events = stream_events(gen, proc, MessageStream::new(id, model, input_tokens));
        // The engine request carries `span`; the body stream needs no span of its own.
        let body = async_stream::stream! {
            let _guard = guard;
            let mut events = std::pin::pin!(events);
            while let Some(ev) = events.next().await {
                yield Ok::<String, std::convert::Infallible>(ev.to_sse());
            }
        };
        Ok((
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            axum::body::Body::from_stream(body),
        )
            .into_response())
    } else {
        let (output, finish) = collect(gen, proc).await?;
        drop(guard);
        let meta = ResponseMeta {
            id,
            model,
            input_tokens,
            output_tokens: finish.output_tokens,
            stop_sequence: finish.stop_sequence,
        };
        Ok(Json(build_message(&output, meta)).into_response())
    }
}

/// A `ping` event is sent when no other event went out for this long.
const PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);

/// How the generation ended, in the terms the Anthropic response needs.
struct Ending {
    reason: ChatFinishReason,
    stop_sequence: Option<String>,
    output_tokens: u64,
}

fn ending(reason: FinishReason, stop_reason: Option<&Value>, completion_tokens: usize) -> Ending {
    Ending {
        reason: reason.into(),
        // A string is the matched stop sequence; a number is an EOS token (end_turn).
        stop_sequence: stop_reason.and_then(Value::as_str).map(str::to_string),
        output_tokens: completion_tokens as u64,
    }
}

/// The whole output of a non-streaming request, through the same streaming post-processor
/// the stream uses, so both forms always agree.
async fn collect(
    gen: ChoiceGen,
    mut proc: ChatPostProcessor,
) -> Result<(ChatOutput, Ending), AnthropicError> {
    let mut output = ChatOutput {
        reasoning: None,
        content: None,
        tool_calls: Vec::new(),
        finish_reason: ChatFinishReason::Stop,
    };
    let mut pieces = std::pin::pin!(merged(vec![gen]));
    while let Some((_, piece)) = pieces.next().await {
        let piece = piece?;
        accumulate(&mut output, proc.feed(&piece.text));
        if let Some(f) = piece.finish {
            let mut end = ending(f.reason, f.stop_reason.as_ref(), f.completion_tokens);
            let (rest, reason) = proc.finish(end.reason);
            accumulate(&mut output, rest);
            output.finish_reason = reason;
            end.reason = reason;
            return Ok((output, end));
        }
    }
    Err(ApiError::EngineUnavailable("generation ended without a finish".into()).into())
}

/// Folds streamed deltas into a whole output.
pub fn accumulate(output: &mut ChatOutput, deltas: Vec<ChatDelta>) {
    for d in deltas {
        match d {
            ChatDelta::Reasoning(t) => output
                .reasoning
                .get_or_insert_with(String::new)
                .push_str(&t),
            ChatDelta::Content(t) => output.content.get_or_insert_with(String::new).push_str(&t),
            ChatDelta::ToolCallStart { id, name, .. } => output.tool_calls.push(ToolCall {
                id,
                name,
                arguments: String::new(),
            }),
            ChatDelta::ToolCallArgs { index, fragment } => {
                if let Some(call) = output.tool_calls.get_mut(index) {
                    call.arguments.push_str(&fragment);
                }
            }
        }
    }
}

/// The Anthropic events of a streamed request; an engine failure after the start becomes
/// an `error` event, as Anthropic reports mid-stream errors.
fn stream_events(
    gen: ChoiceGen,
    mut proc: ChatPostProcessor,
    mut stream: MessageStream,
) -> impl futures::Stream<Item = StreamEvent> + Send {
    async_stream::stream! {
        for ev in stream.start() {
            yield ev;
        }
        let mut pieces = std::pin::pin!(merged(vec![gen]));
        loop {
            // Pings keep idle connections (a long prefill) from being timed out.
            let Ok(next) = tokio::time::timeout(PING_INTERVAL, pieces.next()).await else {
                yield StreamEvent::Ping;
                continue;
            };
            let Some((_, piece)) = next else { break };
            let piece = match piece {
                Ok(p) => p,
                Err(e) => {
                    yield AnthropicError::from(e).event();
                    return;
                }
            };
            for delta in proc.feed(&piece.text) {
                for ev in stream.push(delta) {
                    yield ev;
                }
            }
            if let Some(f) = piece.finish {
                let end = ending(f.reason, f.stop_reason.as_ref(), f.completion_tokens);
                let (rest, reason) = proc.finish(end.reason);
                for delta in rest {
                    for ev in stream.push(delta) {
                        yield ev;
                    }
                }
                for ev in stream.finish(reason, end.stop_sequence, end.output_tokens) {
                    yield ev;
                }
                return;
            }
        }
        yield AnthropicError::from(ApiError::EngineUnavailable("generation ended without a finish".into())).event();
    }
}
