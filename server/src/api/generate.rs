//! One choice's text pipeline, shared by chat and completions:
//! engine tokens -> incremental detokenizer -> stop strings -> text pieces.

use std::sync::Arc;

use glm_tokenizer::{GlmTokenizer, IncrementalDecoder};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{auth::RateLimiter, error::ApiError, validate::ValidRequest, AppState, KeyId};
use crate::engine::{EngineEvent, FinishReason, RequestStream, TokenEvent};

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

/// Submits `n` choices per prompt of a validated request; choice index `p * n + i`, seed
/// `seed + i`. The prompt tokens are charged to `key`'s token budget first (output tokens
/// when each choice ends).
pub fn submit_all(
    state: &AppState,
    valid: &ValidRequest,
    key: &KeyId,
    span: &tracing::Span,
) -> Result<Vec<ChoiceGen>, ApiError> {
    let prompts = &valid.prompts;
    let sampling = &valid.sampling;
    let limiter = state.rate_limiter();
    let prompt_tokens = prompts.iter().map(Vec::len).sum();
    limiter
        .admit_tokens(
            key,
            valid.prompt_param,
            prompt_tokens,
            std::time::Instant::now(),
        )
        .inspect_err(|e| {
            if e.retry_after().is_some() {
                state
                    .metrics()
                    .rate_limited(key.as_str(), "tokens_per_minute");
            }
        })?;
    let deadline = state.lifecycle().deadline();
    let mut gens = Vec::with_capacity(prompts.len() * sampling.n);
    let base_seed = sampling
        .params
        .sampling
        .seed
        .or_else(|| state.default_seed());
    for prompt in prompts {
        for i in 0..sampling.n {
            let mut params = sampling.params.clone();
            params.sampling.seed = base_seed.map(|s| s.wrapping_add(i as u64));
            let stream = state
                .engine()
                .submit(prompt.clone(), params, span.clone())?;
            let mut gen = ChoiceGen::new(
                stream,
                state.tokenizer(),
                prompt,
                valid.skip_special_tokens,
                StopChecker::new(sampling.stop.clone(), valid.include_stop_str),
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
