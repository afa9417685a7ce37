//! Shared helpers for the router tests: an app over the toy model or a fixture model, and
//! request/SSE helpers.
#![allow(dead_code)]

use std::{path::PathBuf, sync::Arc};

use axum::{
    body::Body,
    http::{Request, StatusCode},
    Router,
};
use glm_server::{
    api::{self, ApiConfig, ApiKeys, AppState, Lifecycle, RateLimits},
    engine::{testing::ToyModel, EngineConfig, EngineHandle},
    metrics::Metrics,
    validation::Limits,
};
use glm_tokenizer::GlmTokenizer;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const MODEL: &str = "toy";

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub struct Opts {
    pub api_key: Option<String>,
    /// Named keys, as a key file gives them.
    pub keys: Vec<(&'static str, &'static str)>,
    pub rate_limits: RateLimits,
    pub max_nonstream_tokens: usize,
    pub max_queue: usize,
    pub max_model_len: usize,
    pub fail: bool,
    pub die: bool,
    pub ready: bool,
    pub step_delay_ms: u64,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            api_key: None,
            keys: Vec::new(),
            rate_limits: RateLimits::default(),
            max_nonstream_tokens: Limits::default().max_nonstream_tokens,
            max_queue: 1000,
            max_model_len: 512,
            fail: false,
            die: false,
            ready: true,
            step_delay_ms: 0,
        }
    }
}

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub lifecycle: Arc<Lifecycle>,
}

pub fn toy_app(opts: Opts) -> TestApp {
    let dir = fixtures().join("tokenizer");
    let tokenizer = GlmTokenizer::from_dir(&dir).unwrap();
    let template = tokenizer.chat_template().ok();
    let mut model = ToyModel::new(tokenizer.vocab_size(), tokenizer.eos_token_ids().to_vec());
    model.fail = opts.fail;
    model.die = opts.die;
    model.step_delay = std::time::Duration::from_millis(opts.step_delay_ms);
    let metrics = Metrics::new(MODEL);
    let engine = EngineHandle::spawn(
        Box::new(model),
        EngineConfig {
            num_blocks: 1024,
            block_size: 16,
            max_num_seqs: 64,
            max_num_batched_tokens: 256,
            max_model_len: opts.max_model_len,
            max_queue: opts.max_queue,
            enable_prefix_caching: true,
        },
        metrics.clone(),
    )
    .unwrap();
    build(engine, tokenizer, template, metrics, opts)
}

/// An app over a real fixture model (`glm4moe-tiny`), loaded with glm_model.
pub fn fixture_app(num_blocks: usize, max_num_seqs: usize) -> TestApp {
    fixture_app_for("glm4moe-tiny", num_blocks, max_num_seqs)
}

/// The app over one of the fixture models (`glm4moe-tiny`, `glm4moelite-tiny`).
#[allow(dead_code)] // not every test binary serves both architectures
pub fn fixture_app_for(fixture: &str, num_blocks: usize, max_num_seqs: usize) -> TestApp {
    let dir = fixtures().join(fixture);
    let model = glm_model::load_model(&dir, &glm_model::LoadOptions::default()).unwrap();
    let tokenizer = GlmTokenizer::from_dir(&dir).unwrap();
    let template = tokenizer.chat_template().ok();
    let metrics = Metrics::new(MODEL);
    let engine = EngineHandle::spawn(
        model,
        EngineConfig {
            num_blocks,
            block_size: 16,
            max_num_seqs,
            max_num_batched_tokens: 512,
            max_model_len: 1024,
            max_queue: 1000,
            enable_prefix_caching: true,
        },
        metrics.clone(),
    )
    .unwrap();
    let opts = Opts {
        max_model_len: 1024,
        ..Opts::default()
    };
    build(engine, tokenizer, template, metrics, opts)
}

fn build(
    engine: EngineHandle,
    tokenizer: GlmTokenizer,
    template: Option<glm_tokenizer::ChatTemplate>,
    metrics: Metrics,
    opts: Opts,
) -> TestApp {
    let lifecycle = Arc::new(Lifecycle::default());
    lifecycle.set_ready(opts.ready);
    let cfg = ApiConfig {
        served_model_name: MODEL.into(),
        limits: Limits {
            max_model_len: opts.max_model_len,
            max_nonstream_tokens: opts.max_nonstream_tokens,
            ..Limits::default()
        },
        api_keys: ApiKeys::new(
            opts.api_key.as_deref(),
            opts.keys
                .iter()
                .map(|(n, k)| (n.to_string(), k.to_string()))
                .collect(),
        )
        .unwrap(),
        rate_limits: opts.rate_limits,
        ..ApiConfig::default()
    };
    let state = AppState::new(
        engine,
        tokenizer,
        template,
        metrics,
        cfg,
        Arc::clone(&lifecycle),
    );
    TestApp {
        router: api::router(state.clone()),
        state,
        lifecycle,
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `data:` payloads of an SSE body, in order.
    pub fn sse_data(&self) -> Vec<String> {
        assert!(
            self.content_type.starts_with("text/event-stream"),
            "content type {}",
            self.content_type
        );
        self.body
            .split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .filter_map(|e| {
                e.lines()
                    .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                    .map(|d| d.trim().to_string())
            })
            .collect()
    }
}

pub async fn send(
    router: &Router,
    method: &str,
    path: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let req = req
        .body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    request(router, req).await
}

/// Sends a prepared request through the router.
pub async fn request(router: &Router, req: Request<Body>) -> Reply {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        content_type,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn post(router: &Router, path: &str, body: Value) -> Reply {
    send(router, "POST", path, Some(&body.to_string()), None).await
}

pub async fn get(router: &Router, path: &str) -> Reply {
    send(router, "GET", path, None, None).await
}
