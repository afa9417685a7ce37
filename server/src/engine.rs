//! The engine: one OS thread that owns the model, the scheduler and the KV pool.
//!
//! HTTP handlers hold an [`EngineHandle`] (a cheap `Clone` around a channel sender). Each
//! [`EngineRequest`] carries its own reply channel, its tracing span and a cancellation
//! token; dropping the [`RequestStream`] (client gone) cancels the request, and the engine
//! frees its KV blocks at the next step. If the thread dies, `alive` flips and every call
//! becomes [`EngineError::Unavailable`] (503), never a panic.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use glm_model::{CausalLm, SamplingParams};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{constraint::Constraint, metrics::Metrics};

mod core;
mod masks;
pub mod testing;

pub use self::core::EngineConfig;

/// Why a sequence stopped (serialized as the OpenAI completions `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-sequence or a stop token (or, decided by the API, a stop string).
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
    /// Cancelled (client gone) or failed.
    Abort,
    /// Structured outputs: the grammar allowed no next token (or refused the one sampled).
    GrammarDeadEnd,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
            FinishReason::GrammarDeadEnd => "grammar_dead_end",
        }
    }
}

/// What to generate, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    pub sampling: SamplingParams,
    /// Tokens to generate at most (already capped by the context length).
    pub max_tokens: usize,
    /// EOS and stop tokens are ignored before this many tokens.
    pub min_tokens: usize,
    pub stop_token_ids: Vec<u32>,
    pub ignore_eos: bool,
    /// Structured outputs: the grammar the output must match (each sequence of a request
    /// gets its own copy of the state).
    pub constraint: Option<Constraint>,
}

impl GenerationParams {
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            sampling: SamplingParams::greedy(),
            max_tokens,
            min_tokens: 0,
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            constraint: None,
        }
    }
}

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    pub token: u32,
    pub logprob: f32,
    pub top_logprobs: Vec<(u32, f32)>,
    /// This token is the EOS/stop token that ends the sequence (its text is not output).
    pub is_stop: bool,
}

/// Final accounting of a sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub reason: FinishReason,
    /// The EOS/stop token that ended it (vLLM's `stop_reason`), if any.
    pub stop_token: Option<u32>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens served from the prefix cache at admission.
    pub cached_tokens: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    Token(TokenEvent),
    Finished(Finished),
    Error(EngineError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("the engine is not running")]
    Unavailable,
    #[error("too many requests waiting ({0})")]
    QueueFull(usize),
    #[error("model failure ({kind}): {message}")]
    Model { kind: &'static str, message: String },
    #[error("request does not fit in the KV cache: {0}")]
    TooLarge(String),
}

impl EngineError {
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::Unavailable => "engine_unavailable",
            EngineError::QueueFull(_) => "queue_full",
            EngineError::Model { .. } => "model_error",
            EngineError::TooLarge(_) => "too_large",
        }
    }
}

/// A request as it travels to the engine thread.
pub struct EngineRequest {
    pub prompt: Vec<u32>,
    pub params: GenerationParams,
    pub span: tracing::Span,
    pub reply: mpsc::UnboundedSender<EngineEvent>,
    pub cancel: CancellationToken,
    /// Set with `cancel` when the API ended the request on a stop string (finish "stop").
    pub stopped: Arc<AtomicBool>,
    pub arrival: Instant,
}

// Channels and tokens say nothing useful in logs.
impl std::fmt::Debug for EngineRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineRequest")
            .field("prompt_len", &self.prompt.len())
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// State shared between the handles and the engine thread.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) alive: AtomicBool,
    /// Submitted but not yet admitted to the running batch.
    pub(crate) pending: AtomicUsize,
    /// Sequences the engine holds (queued or running).
    pub(crate) active: AtomicUsize,
}

/// Cheap handle to the engine thread.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    tx: mpsc::UnboundedSender<EngineRequest>,
    shared: Arc<Shared>,
    max_queue: usize,
}

/// The reply side of one request. Dropping it cancels the request.
#[derive(Debug)]
pub struct RequestStream {
    rx: mpsc::UnboundedReceiver<EngineEvent>,
    cancel: CancellationToken,
    stopped: Arc<AtomicBool>,
    _guard: DropGuard,
}

impl RequestStream {
    /// Next event; `None` once the engine has sent `Finished`/`Error` or died.
    pub async fn recv(&mut self) -> Option<EngineEvent> {
        self.rx.recv().await
    }

    /// Abort the request (its finish reason becomes `abort`).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// End the request normally: the API matched a stop string (finish reason `stop`).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.cancel.cancel();
    }
}

impl EngineHandle {
    /// Spawns the engine thread, sizes the KV cache and returns once the model accepted it.
    pub fn spawn(
        model: Box<dyn CausalLm>,
        cfg: EngineConfig,
        metrics: Metrics,
    ) -> Result<Self, EngineError> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let max_queue = cfg.max_queue;
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("glm-engine".into())
            .spawn(move || core::run(model, cfg, metrics, rx, thread_shared, ready_tx))
            .map_err(|e| EngineError::Model {
                kind: "spawn",
                message: e.to_string(),
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                tx,
                shared,
                max_queue,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(EngineError::Unavailable),
        }
    }

    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::Acquire) && !self.tx.is_closed()
    }

    /// Requests that may wait for admission at once (`--max-queue`).
    pub fn max_queue(&self) -> usize {
        self.max_queue
    }

    /// Requests queued but not yet running.
    pub fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::Acquire)
    }

    /// Requests the engine holds, queued or running.
    pub fn active(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Queues a generation. Fails fast when the engine is gone or the queue is full.
    pub fn submit(
        &self,
        prompt: Vec<u32>,
        params: GenerationParams,
        span: tracing::Span,
    ) -> Result<RequestStream, EngineError> {
        if !self.is_alive() {
            return Err(EngineError::Unavailable);
        }
        let pending = self.shared.pending.fetch_add(1, Ordering::AcqRel);
        if pending >= self.max_queue {
            self.shared.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(EngineError::QueueFull(self.max_queue));
        }
        let (reply, rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let stopped = Arc::new(AtomicBool::new(false));
        let req = EngineRequest {
            prompt,
            params,
            span,
            reply,
            cancel: cancel.clone(),
            stopped: Arc::clone(&stopped),
            arrival: Instant::now(),
        };
        if self.tx.send(req).is_err() {
            self.shared.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(EngineError::Unavailable);
        }
        Ok(RequestStream {
            rx,
            _guard: cancel.clone().drop_guard(),
            cancel,
            stopped,
        })
    }

    /// Runs one short greedy generation end to end (the readiness gate).
    pub async fn warm_up(&self, prompt: Vec<u32>) -> Result<(), EngineError> {
        let span = tracing::info_span!("warm_up");
        let mut stream = self.submit(prompt, GenerationParams::greedy(2), span)?;
        let (done_tx, done_rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut result = Err(EngineError::Unavailable);
            while let Some(ev) = stream.recv().await {
                match ev {
                    EngineEvent::Token(_) => {}
                    EngineEvent::Finished(_) => {
                        result = Ok(());
                        break;
                    }
                    EngineEvent::Error(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            let _ = done_tx.send(result);
        });
        done_rx.await.unwrap_or(Err(EngineError::Unavailable))
    }
}

#[cfg(test)]
#[path = "engine/tests.rs"]
mod tests;

#[cfg(test)]
#[path = "engine/structured_tests.rs"]
mod structured_tests;
