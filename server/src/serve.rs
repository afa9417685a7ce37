//! `glm-server serve`: load, size, spawn the engine, serve HTTP, warm up, drain on SIGTERM.

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use glm_tokenizer::{ChatTemplate, GlmTokenizer, TokenizerError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    api::{self, ApiConfig, AppState, Lifecycle},
    arch::{self, arch_defaults, ArchDefaults},
    config::{size_kv_cache, system_memory_bytes, CheckScope, ConfigError, ServeArgs},
    engine::{EngineConfig, EngineError, EngineHandle},
    http::{self, Apps, HttpLimits},
    metrics::Metrics,
    validation::Limits,
};

/// `--kv-cache-memory` on a GPU when the flag is absent.
const DEFAULT_GPU_KV_FRACTION: &str = "0.9";

/// The last part of the drain budget, kept for closing connections after the requests
/// still running were cut: a quarter of the budget, at most 2 s.
pub fn close_reserve(drain_timeout: Duration) -> Duration {
    (drain_timeout / 4).min(Duration::from_secs(2))
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("model: {0}")]
    Model(#[from] glm_model::ModelError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("warm-up generation failed: {0}")]
    WarmUp(EngineError),
}

impl ServeError {
    pub fn kind(&self) -> &'static str {
        match self {
            ServeError::Config(e) => e.kind(),
            ServeError::Model(e) => e.kind(),
            ServeError::Tokenizer(e) => e.kind(),
            ServeError::Engine(e) => e.kind(),
            ServeError::Io { .. } => "io",
            ServeError::WarmUp(_) => "warm_up",
        }
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let context = context.into();
    move |source| ServeError::Io { context, source }
}

/// The directory `--model demo` writes the demo model into.
pub fn demo_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("glm-server-demo-{}", env!("CARGO_PKG_VERSION")))
}

fn load_template(
    args: &ServeArgs,
    tok: &GlmTokenizer,
    defaults: &ArchDefaults,
) -> Result<Option<ChatTemplate>, ServeError> {
    if let Some(path) = &args.chat_template {
        return Ok(Some(ChatTemplate::from_file(
            path,
            tok.special_tokens().clone(),
        )?));
    }
    match tok.chat_template() {
        Ok(t) => Ok(Some(t)),
        Err(TokenizerError::TemplateMissing(dir)) => {
            // The family's own layout, as the checkpoint would have shipped it.
            tracing::warn!(dir = %dir.display(), "no chat template in the model: using the architecture's built-in GLM layout");
            Ok(Some(ChatTemplate::from_source(
                defaults.fallback_template,
                tok.special_tokens().clone(),
            )?))
        }
        Err(e) => Err(e.into()),
    }
}

/// Everything built from the flags, before the listener opens.
pub struct Prepared {
    pub state: AppState,
    pub lifecycle: Arc<Lifecycle>,
    pub warm_up_prompt: Vec<u32>,
    pub http: HttpLimits,
}

/// API keys, rate limits and HTTP limits from the flags: checked before the model loads, so
/// a bad key refuses to start before minutes of loading.
struct Access {
    api_keys: crate::api::ApiKeys,
    rate_limits: crate::api::RateLimits,
    http: HttpLimits,
}

fn access(args: &ServeArgs) -> Result<Access, ServeError> {
    let api_keys = args.limits.api_keys(args.api_key.as_deref())?;
    let rate_limits = args.limits.rate_limits()?;
    let http = args.limits.http_limits()?;
    Ok(Access {
        api_keys,
        rate_limits,
        http,
    })
}

/// The model directory `--model` names (writing the demo model for `demo`) and the name
/// clients use by default.
async fn model_dir(args: &ServeArgs) -> Result<(PathBuf, String), ServeError> {
    if args.model == "demo" {
        let dir = demo_dir();
        let d = dir.clone();
        tokio::task::spawn_blocking(move || glm_model::demo::write_demo_model(&d))
            .await
            .map_err(|e| io("demo model task")(std::io::Error::other(e)))??;
        return Ok((dir, "demo".to_string()));
    }
    let dir = PathBuf::from(&args.model);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| args.model.clone());
    Ok((dir, name))
}

/// Tokenizer, chat template and parsers for `architecture`, checked against the flags.
struct TextSide {
    tokenizer: GlmTokenizer,
    template: Option<ChatTemplate>,
    tool_call_parser: Option<String>,
    reasoning_parser: Option<String>,
}

fn text_side(args: &ServeArgs, dir: &Path, architecture: &str) -> Result<TextSide, ServeError> {
    let tokenizer = GlmTokenizer::from_dir(dir)?;
    let defaults = arch_defaults(architecture);
    let template = load_template(args, &tokenizer, &defaults)?;
    let tool_call_parser = arch::resolve(&args.tool_call_parser, defaults.tool_call_parser);
    let reasoning_parser = arch::resolve(&args.reasoning_parser, defaults.reasoning_parser);
    if args.enable_auto_tool_choice && tool_call_parser.is_none() {
        return Err(ConfigError::invalid(
            "enable-auto-tool-choice",
            format!("requires --tool-call-parser ({architecture} has no default tool-call format)"),
        )
        .into());
    }
    Ok(TextSide {
        tokenizer,
        template,
        tool_call_parser,
        reasoning_parser,
    })
}

/// `serve --check`: everything `prepare` decides except loading weights and the device's
/// memory. Returns the line to print.
pub async fn check(args: &ServeArgs, scope: CheckScope) -> Result<String, ServeError> {
    args.check()?;
    access(args)?;
    let opts = args.load_options()?;
    let (dir, default_name) = model_dir(args).await?;
    let plan = glm_model::check_model(&dir, &opts, scope == CheckScope::All)?;
    let text = text_side(args, &dir, &plan.architecture)?;
    let served = args.served_model_name.clone().unwrap_or(default_name);
    let mut line = format!("ok: would serve {served:?} from {}: {plan}", dir.display());
    if opts.device == glm_model::DeviceSpec::Cpu {
        let sizing = size_kv_cache(
            args,
            plan.kv_bytes_per_token,
            0,
            plan.max_position_embeddings,
            system_memory_bytes(),
        )?;
        line += &format!(
            "; {} KV blocks of {}, max model len {}",
            sizing.num_blocks, args.block_size, sizing.max_model_len
        );
    }
    line += &format!(
        "; tool-call parser {}, reasoning parser {}",
        text.tool_call_parser.as_deref().unwrap_or("none"),
        text.reasoning_parser.as_deref().unwrap_or("none")
    );
    Ok(line)
}

/// Loads the model and tokenizer, sizes the KV cache and spawns the engine.
pub async fn prepare(args: &ServeArgs) -> Result<Prepared, ServeError> {
    args.check()?;
    let Access {
        api_keys,
        rate_limits,
        http,
    } = access(args)?;
    tracing::info!(
        api_keys = api_keys.len(),
        requests_per_minute = rate_limits.requests_per_minute,
        tokens_per_minute = rate_limits.tokens_per_minute,
        max_connections = http.max_connections,
        "API access"
    );
    let (dir, default_name) = model_dir(args).await?;
    let served = args.served_model_name.clone().unwrap_or(default_name);
    let opts = args.load_options()?;
    let load_dir = dir.clone();
    let started = std::time::Instant::now();
    let model = tokio::task::spawn_blocking(move || glm_model::load_model(&load_dir, &opts))
        .await
        .map_err(|e| io("model load task")(std::io::Error::other(e)))??;
    let info = model.info().clone();
    tracing::info!(
        dir = %dir.display(),
        architecture = %info.architecture,
        weight_bytes = info.weight_bytes,
        device = %info.device,
        backend = %info.backend,
        secs = started.elapsed().as_secs_f64(),
        "model loaded"
    );
    // A GPU's own memory, and by default 90% of it (vLLM's --gpu-memory-utilization);
    // system memory and a fixed 4 GiB on the CPU.
    let total_memory = info.device_memory.or_else(system_memory_bytes);
    let mut sized = args.clone();
    if info.device_memory.is_some() && sized.kv_cache_memory.is_none() {
        sized.kv_cache_memory = Some(DEFAULT_GPU_KV_FRACTION.into());
    }
    let sizing = size_kv_cache(
        &sized,
        info.kv_bytes_per_token,
        info.weight_bytes,
        info.max_position_embeddings,
        total_memory,
    )?;
    let TextSide {
        tokenizer,
        template,
        tool_call_parser,
        reasoning_parser,
    } = text_side(args, &dir, &info.architecture)?;
    let warm_up_prompt = warm_up_prompt(&tokenizer, &dir);
    let metrics = Metrics::new(&served);
    let engine = EngineHandle::spawn(
        model,
        EngineConfig {
            num_blocks: sizing.num_blocks,
            block_size: args.block_size,
            max_num_seqs: args.max_num_seqs,
            max_num_batched_tokens: args.max_num_batched_tokens,
            max_model_len: sizing.max_model_len,
            max_queue: args.max_queue,
            enable_prefix_caching: args.enable_prefix_caching,
        },
        metrics.clone(),
    )?;
    let lifecycle = Arc::new(Lifecycle::default());
    let cfg = ApiConfig {
        served_model_name: served,
        limits: Limits {
            max_model_len: sizing.max_model_len,
            ..Limits::default()
        },
        api_keys,
        rate_limits,
        body_read_timeout: Duration::from_secs(args.limits.body_read_timeout),
        tool_call_parser,
        reasoning_parser,
        enable_auto_tool_choice: args.enable_auto_tool_choice,
        seed: args.seed,
    };
    let state = AppState::new(
        engine,
        tokenizer,
        template,
        metrics,
        cfg,
        Arc::clone(&lifecycle),
    );
    Ok(Prepared {
        state,
        lifecycle,
        warm_up_prompt,
        http,
    })
}

fn warm_up_prompt(tok: &GlmTokenizer, dir: &Path) -> Vec<u32> {
    match tok.encode("Hello", false) {
        Ok(ids) if !ids.is_empty() => ids,
        _ => {
            tracing::debug!(dir = %dir.display(), "warm-up prompt falls back to token 0");
            vec![0]
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serves until `signal` resolves, then drains within `drain_timeout` in all: `/ready`
/// and new requests answer 503 while in-flight requests finish; at `drain_timeout` minus
/// [`close_reserve`] the requests still running end with an error (streams get an error
/// event and a terminated body); the reserve closes the connections, then this returns.
pub async fn serve_until(
    listener: TcpListener,
    prepared: Prepared,
    drain_timeout: Duration,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let Prepared {
        state,
        lifecycle,
        warm_up_prompt,
        http: limits,
    } = prepared;
    let engine = state.engine().clone();
    let shutdown = CancellationToken::new();
    let apps = Apps {
        full: api::router(state.clone()),
        probes: api::probe_router(state.clone()),
    };
    let server = tokio::spawn(http::serve(
        listener,
        apps,
        limits,
        state.metrics().clone(),
        shutdown.clone(),
    ));
    let mut signal = std::pin::pin!(signal);
    tokio::select! {
        warm = engine.warm_up(warm_up_prompt) => {
            warm.map_err(ServeError::WarmUp)?;
            lifecycle.set_ready(true);
            tracing::info!("warm-up done; ready");
        }
        _ = &mut signal => {
            tracing::info!("signal before warm-up finished");
        }
    }
    if !lifecycle.is_draining() && lifecycle.is_ready() {
        signal.await;
    }
    let started = tokio::time::Instant::now();
    lifecycle.start_drain();
    let reserve = close_reserve(drain_timeout);
    tracing::info!(
        inflight = lifecycle.inflight(),
        drain_secs = drain_timeout.as_secs_f64(),
        close_reserve_secs = reserve.as_secs_f64(),
        "draining"
    );
    if tokio::time::timeout(drain_timeout - reserve, lifecycle.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!(
            inflight = lifecycle.inflight(),
            "drain deadline reached; ending the requests still running with an error"
        );
        lifecycle.cut();
    }
    shutdown.cancel();
    let left = drain_timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(io("http server task")(std::io::Error::other(e))),
        Err(_) => tracing::warn!("connections still open at the end of the drain budget; exiting"),
    }
    tracing::info!(secs = started.elapsed().as_secs_f64(), "drained; exiting");
    Ok(())
}

/// The whole `serve` command (`--check` is handled by the caller, see [`check`]).
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let prepared = prepare(&args).await?;
    let addr = (args.host, args.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(io(format!("bind {}:{}", args.host, args.port)))?;
    tracing::info!(host = %args.host, port = args.port, "listening");
    serve_until(
        listener,
        prepared,
        Duration::from_secs(args.drain_timeout),
        shutdown_signal(),
    )
    .await
}
