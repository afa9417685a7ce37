//! HTTP surface: routes, shared state, auth and drain gates.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{DefaultBodyLimit, Request, State},
    http::HeaderMap,
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
    Router,
};
use glm_tokenizer::{ChatTemplate, GlmTokenizer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    constraint::{GrammarCompiler, GrammarError},
    engine::EngineHandle,
    metrics::Metrics,
    validation::Limits,
};

pub mod auth;
pub mod chat;
pub mod completions;
pub mod error;
pub(crate) mod extract;
pub mod generate;
mod misc;
pub mod prompt;
pub mod structured;
pub mod types;
pub mod validate;

pub use auth::{ApiKeys, KeyId, RateLimiter, RateLimits};
pub use error::ApiError;
pub use extract::ApiJson;
pub use prompt::{ChatPrompt, PromptLimiter};

/// Request bodies up to this size are accepted (long prompts, many messages); larger ones
/// get 413 in the route's API error shape.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Static settings of the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    pub served_model_name: String,
    pub limits: Limits,
    /// Keys accepted on API routes; none leaves them open.
    pub api_keys: ApiKeys,
    /// Per-key request and token budgets.
    pub rate_limits: RateLimits,
    /// Time a client has to send a request body (408 after).
    pub body_read_timeout: std::time::Duration,
    pub tool_call_parser: Option<String>,
    pub reasoning_parser: Option<String>,
    pub enable_auto_tool_choice: bool,
    /// Server-wide seed for requests that bring none.
    pub seed: Option<u64>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            served_model_name: String::new(),
            limits: Limits::default(),
            api_keys: ApiKeys::default(),
            rate_limits: RateLimits::default(),
            body_read_timeout: std::time::Duration::from_secs(60),
            tool_call_parser: None,
            reasoning_parser: None,
            enable_auto_tool_choice: false,
            seed: None,
        }
    }
}

/// Readiness, draining and in-flight accounting (the operator contract's state).
#[derive(Debug, Default)]
pub struct Lifecycle {
    ready: AtomicBool,
    draining: AtomicBool,
    inflight: AtomicUsize,
    idle: Notify,
    /// Cancelled at the drain deadline: running generations end with an error event.
    deadline: CancellationToken,
}

impl Lifecycle {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Starts draining: `/ready` turns 503 and new API requests get 503.
    pub fn start_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// The drain deadline passed: every running generation ends now with a
    /// `service_unavailable` error (an error event and a terminated body for streams).
    pub fn cut(&self) {
        self.deadline.cancel();
    }

    /// The token [`cut`](Self::cut) cancels.
    pub fn deadline(&self) -> CancellationToken {
        self.deadline.clone()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    /// Counts a generation as in flight until the guard drops (end of its response stream).
    pub fn begin(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard(Arc::clone(self))
    }

    /// Resolves once no generation is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.inflight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Debug)]
pub struct InflightGuard(Arc<Lifecycle>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

struct Inner {
    engine: EngineHandle,
    tokenizer: GlmTokenizer,
    template: Option<Arc<ChatTemplate>>,
    metrics: Metrics,
    cfg: ApiConfig,
    lifecycle: Arc<Lifecycle>,
    prompts: PromptLimiter,
    rate_limiter: Arc<RateLimiter>,
    created: u64,
    /// Requests seeded from `cfg.seed` so far.
    seeded: std::sync::atomic::AtomicU64,
    /// Structured outputs: built on the first constrained request (a token trie of the
    /// whole vocabulary), then shared.
    grammar: std::sync::OnceLock<Result<GrammarCompiler, GrammarError>>,
}

/// Everything handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("model", &self.inner.cfg.served_model_name)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(
        engine: EngineHandle,
        tokenizer: GlmTokenizer,
        template: Option<ChatTemplate>,
        metrics: Metrics,
        cfg: ApiConfig,
        lifecycle: Arc<Lifecycle>,
    ) -> Self {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        let prompts = PromptLimiter::new(&tokenizer, cfg.limits.max_model_len, workers);
        let rate_limiter = Arc::new(RateLimiter::new(cfg.rate_limits));
        Self {
            inner: Arc::new(Inner {
                prompts,
                rate_limiter,
                engine,
                tokenizer,
                template: template.map(Arc::new),
                metrics,
                cfg,
                lifecycle,
                created,
                seeded: std::sync::atomic::AtomicU64::new(0),
                grammar: std::sync::OnceLock::new(),
            }),
        }
    }

    pub fn engine(&self) -> &EngineHandle {
        &self.inner.engine
    }

    pub fn tokenizer(&self) -> &GlmTokenizer {
        &self.inner.tokenizer
    }

    /// The grammar compiler for structured outputs (CPU work the first time: call it on
    /// the blocking pool).
    pub fn grammar_compiler(&self) -> Result<GrammarCompiler, ApiError> {
        let tok = &self.inner.tokenizer;
        self.inner
            .grammar
            .get_or_init(|| GrammarCompiler::new(tok, tok.vocab_size(), tok.eos_token_ids()))
            .clone()
            .map_err(|e| ApiError::Internal(format!("structured outputs unavailable: {e}")))
    }

    pub fn template(&self) -> Result<Arc<ChatTemplate>, ApiError> {
        self.inner.template.clone().ok_or_else(|| {
            ApiError::invalid(
                "messages",
                "this model has no chat template; use /v1/completions",
            )
        })
    }

    /// Bounded prompt tokenization (byte bound, concurrency cap).
    pub fn prompts(&self) -> &PromptLimiter {
        &self.inner.prompts
    }

    pub fn rate_limiter(&self) -> &Arc<RateLimiter> {
        &self.inner.rate_limiter
    }

    /// The caller's key id (`anonymous` when no keys are configured), after checking the
    /// key and counting the request against its requests-per-minute budget.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<KeyId, ApiError> {
        let keys = &self.inner.cfg.api_keys;
        let key = if keys.is_empty() {
            KeyId::anonymous()
        } else {
            keys.identify(headers).ok_or(ApiError::Unauthorized)?
        };
        self.inner.metrics.key_request(key.as_str());
        self.inner
            .rate_limiter
            .admit_request(&key, std::time::Instant::now())
            .inspect_err(|_| {
                self.inner
                    .metrics
                    .rate_limited(key.as_str(), "requests_per_minute")
            })?;
        Ok(key)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn config(&self) -> &ApiConfig {
        &self.inner.cfg
    }

    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.inner.lifecycle
    }

    /// A seed for a request that brings none: derived from `--seed` and a counter, so a
    /// run with the same requests in the same order samples the same tokens.
    pub fn default_seed(&self) -> Option<u64> {
        let base = self.inner.cfg.seed?;
        let k = self.inner.seeded.fetch_add(1, Ordering::AcqRel);
        Some(base ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    pub fn created(&self) -> u64 {
        self.inner.created
    }

    /// The served model name, after checking the request's `model` field names it.
    pub fn check_model(&self, model: Option<&str>) -> Result<String, ApiError> {
        let name = &self.inner.cfg.served_model_name;
        match model {
            None | Some("") => Ok(name.clone()),
            Some(m) if m == name => Ok(name.clone()),
            Some(m) => Err(ApiError::ModelNotFound(m.to_string())),
        }
    }
}

fn ops_routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(misc::health))
        .route("/ready", get(misc::ready))
        .route("/metrics", get(misc::metrics))
        .route("/version", get(misc::version))
}

/// All routes with their layers.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/models", get(misc::models))
        .route("/tokenize", post(misc::tokenize))
        .route("/detokenize", post(misc::detokenize))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            reject_when_draining,
        ));
    api.merge(ops_routes())
        .merge(crate::anthropic::routes(state.clone()))
        .fallback(misc::not_found)
        .method_not_allowed_fallback(misc::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// The routes served on connections over `--max-connections`: the probes and `/metrics`;
/// everything else answers 503 `connection_limit` with `Retry-After`.
pub fn probe_router(state: AppState) -> Router {
    ops_routes()
        .fallback(|| async { ApiError::ConnectionLimit })
        .with_state(state)
}

async fn reject_when_draining(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.lifecycle().is_draining() {
        return Err(ApiError::Draining);
    }
    Ok(next.run(req).await)
}

async fn auth(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = state.authenticate(req.headers())?;
    req.extensions_mut().insert(key);
    Ok(next.run(req).await)
}

/// A random id with the given prefix, e.g. `chatcmpl-3f2a...`.
pub fn request_id(prefix: &str) -> String {
    format!("{prefix}-{:032x}", rand::random::<u128>())
}

/// Seconds since the epoch, for `created` fields.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
