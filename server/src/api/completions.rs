//! `POST /v1/completions`: raw prompts (text, texts, token ids, lists of token ids).

use axum::{
    extract::State,
    response::{sse::Event, IntoResponse, Response},
    Extension, Json,
};
use futures::StreamExt;
use serde_json::{Map, Value};
use tracing::Instrument;

use super::{
    chat::sse_json,
    generate::{merged, submit_all, token_text, ChoiceGen, Piece},
    now_secs, request_id,
    types::*,
    validate::{GenerateRequest, Validation},
    ApiError, ApiJson, AppState, KeyId,
};

pub async fn completions(
    State(state): State<AppState>,
    key: Option<Extension<KeyId>>,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let id = request_id("cmpl");
    let key = key.map_or_else(KeyId::anonymous, |Extension(k)| k);
    let span = tracing::info_span!("completion", request_id = %id, key_id = key.as_str(), stream = req.common.stream);
    handle(state, req, key, id, span.clone())
        .instrument(span)
        .await
}

async fn handle(
    state: AppState,
    req: CompletionRequest,
    key: KeyId,
    id: String,
    span: tracing::Span,
) -> Result<Response, ApiError> {
    let valid = Validation::new(&state)
        .validate(GenerateRequest::Completion(&req))
        .await?;
    let guard = state.lifecycle().begin();
    let gens = submit_all(&state, &valid, &key, &span)?;
    let echo: Vec<String> = if req.echo {
        let tok = state.tokenizer();
        valid
            .prompts
            .iter()
            .flat_map(|p| {
                let text = tok.decode(p, valid.skip_special_tokens).unwrap_or_default();
                std::iter::repeat_n(text, valid.sampling.n)
            })
            .collect()
    } else {
        Vec::new()
    };
    let ctx = Ctx {
        id,
        model: valid.model.clone(),
        created: now_secs(),
        prompt_tokens: valid.prompt_tokens(),
        logprobs: valid.sampling.params.sampling.logprobs.is_some(),
    };
    if req.common.stream {
        let include_usage = req.common.include_usage();
        Ok(super::generate::sse_response(
            guard,
            stream_chunks(state, ctx, gens, echo, include_usage),
        ))
    } else {
        let body = collect(&state, ctx, gens, echo).await;
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
    fn body(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> Completion {
        Completion {
            id: self.id.clone(),
            object: "text_completion",
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

/// Logprobs of a piece in the legacy completions shape; `offset` is the text offset so far.
fn completion_logprobs(state: &AppState, piece: &Piece, offset: &mut usize) -> CompletionLogprobs {
    let tok = state.tokenizer();
    let mut lp = CompletionLogprobs::default();
    for t in &piece.tokens {
        let text = token_text(tok, t.token);
        lp.text_offset.push(*offset);
        *offset += text.len();
        lp.tokens.push(text);
        lp.token_logprobs.push(t.logprob);
        let mut top = Map::new();
        for &(id, l) in &t.top_logprobs {
            top.insert(token_text(tok, id), Value::from(l));
        }
        lp.top_logprobs.push(top);
    }
    lp
}

fn stream_chunks(
    state: AppState,
    ctx: Ctx,
    gens: Vec<ChoiceGen>,
    echo: Vec<String>,
    include_usage: bool,
) -> impl futures::Stream<Item = Event> + Send {
    async_stream::stream! {
        let mut offsets = vec![0usize; gens.len()];
        for (index, text) in echo.into_iter().enumerate() {
            if let Some(o) = offsets.get_mut(index) {
                *o = text.len();
            }
            let choice = CompletionChoice { index, text, logprobs: None, finish_reason: None, stop_reason: None };
            yield sse_json(&ctx.body(vec![choice], None));
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
            let logprobs = match offsets.get_mut(index) {
                Some(o) if ctx.logprobs => Some(completion_logprobs(&state, &piece, o)),
                _ => None,
            };
            let (finish_reason, stop_reason) = match &piece.finish {
                Some(f) => {
                    completion_tokens += f.completion_tokens;
                    cached = cached.max(f.cached_tokens);
                    (Some(f.reason), f.stop_reason.clone())
                }
                None => (None, None),
            };
            let choice = CompletionChoice { index, text: piece.text, logprobs, finish_reason, stop_reason };
            yield sse_json(&ctx.body(vec![choice], None));
        }
        if include_usage {
            yield sse_json(&ctx.body(Vec::new(), Some(ctx.usage(completion_tokens, cached))));
        }
        yield Event::default().data("[DONE]");
    }
}

async fn collect(
    state: &AppState,
    ctx: Ctx,
    gens: Vec<ChoiceGen>,
    echo: Vec<String>,
) -> Result<Completion, ApiError> {
    let n = gens.len();
    let mut texts: Vec<String> = (0..n)
        .map(|i| echo.get(i).cloned().unwrap_or_default())
        .collect();
    let mut offsets: Vec<usize> = texts.iter().map(String::len).collect();
    let mut logprobs = vec![CompletionLogprobs::default(); n];
    let mut finishes = vec![None; n];
    let mut pieces = std::pin::pin!(merged(gens));
    while let Some((index, res)) = pieces.next().await {
        let piece = res?;
        if index >= n {
            continue;
        }
        if ctx.logprobs {
            let lp = completion_logprobs(state, &piece, &mut offsets[index]);
            let all = &mut logprobs[index];
            all.tokens.extend(lp.tokens);
            all.token_logprobs.extend(lp.token_logprobs);
            all.top_logprobs.extend(lp.top_logprobs);
            all.text_offset.extend(lp.text_offset);
        }
        texts[index].push_str(&piece.text);
        if piece.finish.is_some() {
            finishes[index] = piece.finish;
        }
    }
    let (mut completion_tokens, mut cached) = (0, 0);
    let mut choices = Vec::with_capacity(n);
    for (index, ((text, lp), fin)) in texts.into_iter().zip(logprobs).zip(finishes).enumerate() {
        let Some(f) = fin else {
            return Err(ApiError::EngineUnavailable(
                "generation ended without a finish".into(),
            ));
        };
        completion_tokens += f.completion_tokens;
        cached = cached.max(f.cached_tokens);
        choices.push(CompletionChoice {
            index,
            text,
            logprobs: ctx.logprobs.then_some(lp),
            finish_reason: Some(f.reason),
            stop_reason: f.stop_reason,
        });
    }
    let usage = ctx.usage(completion_tokens, cached);
    Ok(ctx.body(choices, Some(usage)))
}
