//! `POST /v1/chat/completions`: render the chat template, tokenize, generate, and answer as
//! one JSON body or as an SSE stream of chunks.

use axum::{
    extract::State,
    response::{sse::Event, IntoResponse, Response},
    Extension, Json,
};
use futures::StreamExt;
use tracing::Instrument;

use super::{
    generate::{merged, submit_all, token_text, Piece},
    now_secs, request_id,
    types::*,
    validate::{GenerateRequest, MaxTokens, Validation},
    ApiError, ApiJson, AppState, KeyId,
};

pub mod output;

use output::{merge_tool_calls, output_processor, DeltaMessage, OutputProcessor};

const OBJECT_CHUNK: &str = "chat.completion.chunk";

pub async fn chat_completions(
    State(state): State<AppState>,
    key: Option<Extension<KeyId>>,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let id = request_id("chatcmpl");
    let key = key.map_or_else(KeyId::anonymous, |Extension(k)| k);
    let span = tracing::info_span!("chat_completion", request_id = %id, key_id = key.as_str(), stream = req.common.stream);
    handle(state, req, key, id, span.clone())
        .instrument(span)
        .await
}

async fn handle(
    state: AppState,
    req: ChatCompletionRequest,
    key: KeyId,
    id: String,
    span: tracing::Span,
) -> Result<Response, ApiError> {
    let valid = Validation::new(&state)
        .validate(GenerateRequest::Chat {
            req: &req,
            max_tokens: MaxTokens::Strict,
        })
        .await?;
    let guard = state.lifecycle().begin();
    let gens = submit_all(&state, &valid, &key, &span)?;
    let procs: Vec<Box<dyn OutputProcessor>> = (0..valid.sampling.n)
        .map(|_| output_processor(valid.post.clone()))
        .collect();
    let ctx = Ctx {
        id,
        model: valid.model.clone(),
        created: now_secs(),
        prompt_tokens: valid.prompt_tokens(),
        logprobs: req.logprobs,
    };
    if req.common.stream {
        let include_usage = req.common.include_usage();
        Ok(super::generate::sse_response(
            guard,
            stream_chunks(state, ctx, gens, procs, include_usage),
        ))
    } else {
        let body = collect(&state, ctx, gens, procs).await;
        drop(guard);
        Ok(Json(body?).into_response())
    }
}

struct Ctx {
    id: String,
    model: String,
    created: u64,
    prompt_tokens: usize,
    logprobs: bool,
}

impl Ctx {
    fn chunk(&self, choices: Vec<ChatChunkChoice>, usage: Option<Usage>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: OBJECT_CHUNK,
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        }
    }

    fn usage(&self, completion_tokens: usize, cached_tokens: usize) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens,
            total_tokens: self.prompt_tokens + completion_tokens,
            prompt_tokens_details: (cached_tokens > 0)
                .then_some(PromptTokensDetails { cached_tokens }),
        }
    }
}

fn delta_of(m: DeltaMessage) -> ChatDelta {
    ChatDelta {
        role: None,
        reasoning_content: m.reasoning.clone(),
        reasoning: m.reasoning,
        content: m.content,
        tool_calls: m.tool_calls,
    }
}

fn chat_logprobs(state: &AppState, piece: &Piece) -> ChatLogprobs {
    let tok = state.tokenizer();
    ChatLogprobs {
        content: piece
            .tokens
            .iter()
            .map(|t| {
                let token = token_text(tok, t.token);
                TokenLogprob {
                    bytes: token.as_bytes().to_vec(),
                    token,
                    logprob: t.logprob,
                    top_logprobs: t
                        .top_logprobs
                        .iter()
                        .map(|&(id, lp)| {
                            let token = token_text(tok, id);
                            TopLogprob {
                                bytes: token.as_bytes().to_vec(),
                                token,
                                logprob: lp,
                            }
                        })
                        .collect(),
                }
            })
            .collect(),
    }
}

fn finish_reason(reason: FinishReason, proc: &dyn OutputProcessor) -> ChatFinishReason {
    if reason == FinishReason::Stop && proc.called_tools() {
        ChatFinishReason::ToolCalls
    } else {
        reason.into()
    }
}

pub(crate) fn sse_json<T: serde::Serialize>(value: &T) -> Event {
    match serde_json::to_string(value) {
        Ok(s) => Event::default().data(s),
        Err(e) => Event::default().data(format!(
            "{{\"error\":{{\"message\":\"serialization failed: {e}\",\"type\":\"internal_error\"}}}}"
        )),
    }
}

/// The SSE events of a streamed chat completion, `[DONE]` included.
fn stream_chunks(
    state: AppState,
    ctx: Ctx,
    gens: Vec<super::generate::ChoiceGen>,
    mut procs: Vec<Box<dyn OutputProcessor>>,
    include_usage: bool,
) -> impl futures::Stream<Item = Event> + Send {
    async_stream::stream! {
        let n = procs.len();
        for index in 0..n {
            let delta = ChatDelta { role: Some("assistant"), content: Some(String::new()), ..ChatDelta::default() };
            let choice = ChatChunkChoice { index, delta, logprobs: None, finish_reason: None, stop_reason: None };
            yield sse_json(&ctx.chunk(vec![choice], None));
        }
        let (mut completion_tokens, mut cached) = (0usize, 0usize);
        let mut pieces = std::pin::pin!(merged(gens));
        while let Some((index, res)) = pieces.next().await {
            let piece = match res {
                Ok(p) => p,
                Err(e) => {
                    yield sse_json(&e.body());
                    yield Event::default().data("[DONE]");
                    return;
                }
            };
            let Some(proc) = procs.get_mut(index) else { continue };
            let mut delta = proc.push(&piece.text);
            if piece.finish.is_some() {
                delta.merge(proc.finish());
            }
            let logprobs = (ctx.logprobs && !piece.tokens.is_empty()).then(|| chat_logprobs(&state, &piece));
            if !delta.is_empty() || logprobs.is_some() {
                let choice = ChatChunkChoice { index, delta: delta_of(delta), logprobs, finish_reason: None, stop_reason: None };
                yield sse_json(&ctx.chunk(vec![choice], None));
            }
            if let Some(f) = piece.finish {
                completion_tokens += f.completion_tokens;
                cached = cached.max(f.cached_tokens);
                let choice = ChatChunkChoice {
                    index,
                    delta: ChatDelta::default(),
                    logprobs: None,
                    finish_reason: Some(finish_reason(f.reason, proc.as_ref())),
                    stop_reason: f.stop_reason,
                };
                yield sse_json(&ctx.chunk(vec![choice], None));
            }
        }
        if include_usage {
            yield sse_json(&ctx.chunk(Vec::new(), Some(ctx.usage(completion_tokens, cached))));
        }
        yield Event::default().data("[DONE]");
    }
}

/// A whole (non-streamed) chat completion.
async fn collect(
    state: &AppState,
    ctx: Ctx,
    gens: Vec<super::generate::ChoiceGen>,
    mut procs: Vec<Box<dyn OutputProcessor>>,
) -> Result<ChatCompletion, ApiError> {
    let n = procs.len();
    let mut messages: Vec<DeltaMessage> = vec![DeltaMessage::default(); n];
    let mut logprobs: Vec<ChatLogprobs> = vec![ChatLogprobs::default(); n];
    let mut finishes = vec![None; n];
    let mut pieces = std::pin::pin!(merged(gens));
    while let Some((index, res)) = pieces.next().await {
        let piece = res?;
        let (Some(proc), Some(msg)) = (procs.get_mut(index), messages.get_mut(index)) else {
            continue;
        };
        msg.merge(proc.push(&piece.text));
        if ctx.logprobs {
            logprobs[index]
                .content
                .extend(chat_logprobs(state, &piece).content);
        }
        if let Some(f) = piece.finish {
            msg.merge(proc.finish());
            finishes[index] = Some((finish_reason(f.reason, proc.as_ref()), f));
        }
    }
    let (mut completion_tokens, mut cached) = (0, 0);
    let mut choices = Vec::with_capacity(n);
    for (index, ((msg, lp), fin)) in messages.into_iter().zip(logprobs).zip(finishes).enumerate() {
        let Some((reason, f)) = fin else {
            return Err(ApiError::EngineUnavailable(
                "generation ended without a finish".into(),
            ));
        };
        completion_tokens += f.completion_tokens;
        cached = cached.max(f.cached_tokens);
        let tool_calls = merge_tool_calls(msg.tool_calls);
        choices.push(ChatChoice {
            index,
            message: ChatMessage {
                role: "assistant",
                content: msg
                    .content
                    .or_else(|| tool_calls.is_empty().then(String::new)),
                reasoning_content: msg.reasoning.clone(),
                reasoning: msg.reasoning,
                tool_calls,
            },
            logprobs: ctx.logprobs.then_some(lp),
            finish_reason: reason,
            stop_reason: f.stop_reason,
        });
    }
    Ok(ChatCompletion {
        usage: ctx.usage(completion_tokens, cached),
        id: ctx.id,
        object: "chat.completion",
        created: ctx.created,
        model: ctx.model,
        choices,
    })
}
