//! One choice's text pipeline, shared by chat and completions:
//! engine tokens -> incremental detokenizer -> stop strings -> text pieces.

use std::sync::Arc;

use glm_tokenizer::{GlmTokenizer, IncrementalDecoder};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{auth::RateLimiter, error::ApiError, AppState, KeyId};
use crate::{
    engine::{EngineEvent, FinishReason, RequestStream, TokenEvent},
    validation::ValidSampling,
};

mod stop;

pub use stop::{StopChecker, StopResult};

/// How a choice ended.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishInfo {
    pub reason: FinishReason,
    /// vLLM's `stop_reason`: the stop string or stop token id, if any.
    pub stop_reason: Option<Value>,
    pub completion_tokens: usize,
    pub cached_tokens: usize,
}

/// New text of a choice, the tokens that produced it, and the end if reached.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Piece {
    pub text: String,
    pub tokens: Vec<TokenEvent>,
    pub finish: Option<FinishInfo>,
}

/// Drives one engine request and yields its text.
#[derive(Debug)]
pub struct ChoiceGen {
    stream: RequestStream,
    decoder: IncrementalDecoder,
    stop: StopChecker,
    generated: usize,
    done: bool,
    /// Cancelled at the drain deadline: the choice ends with [`ApiError::DrainDeadline`].
    deadline: CancellationToken,
    /// Generated tokens are charged to this key's tokens-per-minute budget on drop.
    charge: Option<(Arc<RateLimiter>, KeyId)>,
}

impl Drop for ChoiceGen {
    fn drop(&mut self) {
        if let Some((limiter, key)) = &self.charge {
            limiter.charge_tokens(key, self.generated, std::time::Instant::now());
        }
    }
}

impl ChoiceGen {
    pub fn new(
        stream: RequestStream,
        tokenizer: &GlmTokenizer,
        prompt: &[u32],
        skip_special_tokens: bool,
        stop: StopChecker,
    ) -> Self {
        Self {
            deadline: CancellationToken::new(),
            charge: None,
            stream,
            decoder: IncrementalDecoder::with_prompt(
                tokenizer.clone(),
                prompt,
                skip_special_tokens,
            ),
            stop,
            generated: 0,
            done: false,
        }
    }

    /// The next non-empty piece (or the final one); `None` after the end.
    pub async fn next(&mut self) -> Option<Result<Piece, ApiError>> {
        if self.done {
            return None;
        }
        let mut piece = Piece::default();
        loop {
            let event = tokio::select! {
                biased;
                ev = self.stream.recv() => ev,
                () = self.deadline.cancelled() => {
                    return Some(Err(self.fail(ApiError::DrainDeadline)));
                }
            };
            match event {
                Some(EngineEvent::Token(t)) => {
                    self.generated += 1;
                    // The EOS/stop token ends the text; it is counted but not shown.
                    let text = if t.is_stop {
                        String::new()
                    } else {
                        match self.decoder.push(t.token) {
                            Ok(s) => s,
                            Err(e) => return Some(Err(self.fail(e.into()))),
                        }
                    };
                    piece.tokens.push(t);
                    match self.stop.push(&text) {
                        StopResult::Continue(s) => piece.text.push_str(&s),
                        StopResult::Stopped { text, stop } => {
                            piece.text.push_str(&text);
                            self.stream.stop();
                            self.done = true;
                            piece.finish = Some(FinishInfo {
                                reason: FinishReason::Stop,
                                stop_reason: Some(Value::String(stop)),
                                completion_tokens: self.generated,
                                cached_tokens: 0,
                            });
                            return Some(Ok(piece));
                        }
                    }
                    if !piece.text.is_empty() {
                        return Some(Ok(piece));
                    }
                }
                Some(EngineEvent::Finished(f)) => {
                    self.done = true;
                    let rest = match self.decoder.flush() {
                        Ok(s) => s,
                        Err(e) => return Some(Err(self.fail(e.into()))),
                    };
                    let (text, stop_reason) = match self.stop.push(&rest) {
                        StopResult::Continue(s) => (s + &self.stop.flush(), None),
                        StopResult::Stopped { text, stop } => (text, Some(Value::String(stop))),
                    };
                    piece.text.push_str(&text);
                    let reason = if stop_reason.is_some() {
                        FinishReason::Stop
                    } else {
                        f.reason
                    };
                    piece.finish = Some(FinishInfo {
                        reason,
                        stop_reason: stop_reason.or(f.stop_token.map(Value::from)),
                        completion_tokens: self.generated,
                        cached_tokens: f.cached_tokens,
                    });
                    return Some(Ok(piece));
                }
                Some(EngineEvent::Error(e)) => return Some(Err(self.fail(e.into()))),
                None => {
                    return Some(Err(
                        self.fail(ApiError::EngineUnavailable("engine stopped".into()))
                    ))
                }
            }
        }
    }

    fn fail(&mut self, e: ApiError) -> ApiError {
        self.done = true;
        self.stream.cancel();
        e
    }
}

/// The text of one token for logprob listings.
pub fn token_text(tokenizer: &GlmTokenizer, id: u32) -> String {
    tokenizer
        .decode(&[id], false)
        .unwrap_or_else(|_| tokenizer.id_to_token(id).unwrap_or_default())
}

/// What [`submit_all`] submits.
#[derive(Debug)]
pub struct Submit<'a> {
    pub prompts: &'a [Vec<u32>],
    pub valid: &'a ValidSampling,
    pub skip_special_tokens: bool,
    pub include_stop_str: bool,
    /// The caller's key: prompt tokens are charged before, output tokens after.
    pub key: &'a KeyId,
    /// The request field holding the prompt (`messages` or `prompt`), for errors.
    pub param: &'static str,
    /// Streamed: no bound on the whole answer's size (it is never held at once).
    pub stream: bool,
    pub span: &'a tracing::Span,
}

/// Submits `n` choices per prompt; choice index `p * n + i`, seed `seed + i`.
pub fn submit_all(state: &AppState, req: Submit<'_>) -> Result<Vec<ChoiceGen>, ApiError> {
    let Submit {
        prompts,
        valid,
        skip_special_tokens,
        include_stop_str,
        key,
        param,
        stream,
        span,
    } = req;
    // A request with more sequences than the queue can ever hold would get 429 forever:
    // that is a bad request, not a busy server.
    let total = prompts.len().saturating_mul(valid.n);
    let cap = state.engine().max_queue();
    if total > cap {
        let param = if prompts.len() > 1 { param } else { "n" };
        return Err(ApiError::invalid(
            param,
            format!(
                "{} prompt(s) x n={} is {total} sequences; at most {cap} can ever be queued (--max-queue)",
                prompts.len(),
                valid.n
            ),
        ));
    }
    let most = state.config().limits.max_nonstream_tokens;
    if !stream && total.saturating_mul(valid.params.max_tokens) > most {
        return Err(ApiError::invalid(
            "max_tokens",
            format!(
                "{total} choice(s) x max_tokens {} exceeds the {most} tokens a non-streamed response may hold; lower max_tokens or n, or set stream: true",
                valid.params.max_tokens
            ),
        ));
    }
    let limiter = state.rate_limiter();
    let prompt_tokens = prompts.iter().map(Vec::len).sum();
    limiter
        .admit_tokens(key, param, prompt_tokens, std::time::Instant::now())
        .inspect_err(|e| {
            if e.retry_after().is_some() {
                state
                    .metrics()
                    .rate_limited(key.as_str(), "tokens_per_minute");
            }
        })?;
    let deadline = state.lifecycle().deadline();
    let mut gens = Vec::with_capacity(total);
    let base_seed = valid.params.sampling.seed.or_else(|| state.default_seed());
    for prompt in prompts {
        for i in 0..valid.n {
            let mut params = valid.params.clone();
            params.sampling.seed = base_seed.map(|s| s.wrapping_add(i as u64));
            let stream = state
                .engine()
                .submit(prompt.clone(), params, span.clone())?;
            let mut gen = ChoiceGen::new(
                stream,
                state.tokenizer(),
                prompt,
                skip_special_tokens,
                StopChecker::new(valid.stop.clone(), include_stop_str),
            );
            gen.deadline = deadline.clone();
            gen.charge = Some((Arc::clone(limiter), key.clone()));
            gens.push(gen);
        }
    }
    Ok(gens)
}

/// All choices' pieces as they come, tagged with the choice index.
pub fn merged(
    gens: Vec<ChoiceGen>,
) -> impl futures::Stream<Item = (usize, Result<Piece, ApiError>)> + Send {
    let streams = gens.into_iter().enumerate().map(|(index, g)| {
        Box::pin(futures::stream::unfold(g, move |mut g| async move {
            g.next().await.map(|piece| ((index, piece), g))
        }))
    });
    futures::stream::select_all(streams)
}

/// The SSE response over a generation's `events`. `guard` (the in-flight count that drain
/// waits for) lives until the stream ends or the client goes away.
pub fn sse_response<G: Send + 'static>(
    guard: G,
    events: impl futures::Stream<Item = axum::response::sse::Event> + Send + 'static,
) -> axum::response::Response {
    use axum::response::{
        sse::{KeepAlive, Sse},
        IntoResponse,
    };
    use futures::StreamExt;
    let stream = async_stream::stream! {
        let _guard = guard;
        let mut events = std::pin::pin!(events);
        while let Some(ev) = events.next().await {
            yield Ok::<_, std::convert::Infallible>(ev);
        }
    };
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
