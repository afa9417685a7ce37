//! Every Prometheus metric the server exports, named in this one file.
//!
//! All carry the label `model_name` (the served model name). The operator scales on
//! [`NUM_REQUESTS_WAITING`]; the table in `server/README.md` documents the rest. Counters are
//! registered without their `_total` suffix: the OpenMetrics encoder appends it.

use std::sync::{atomic::AtomicU64, Arc};

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

pub const NUM_REQUESTS_WAITING: &str = "glm_num_requests_waiting";
pub const NUM_REQUESTS_RUNNING: &str = "glm_num_requests_running";
pub const KV_CACHE_USAGE_RATIO: &str = "glm_kv_cache_usage_ratio";
/// Exported as `glm_prefix_cache_queries_total` (tokens looked up).
pub const PREFIX_CACHE_QUERIES: &str = "glm_prefix_cache_queries";
/// Exported as `glm_prefix_cache_hits_total` (tokens found).
pub const PREFIX_CACHE_HITS: &str = "glm_prefix_cache_hits";
/// Exported as `glm_prompt_tokens_total`.
pub const PROMPT_TOKENS: &str = "glm_prompt_tokens";
/// Exported as `glm_generation_tokens_total`.
pub const GENERATION_TOKENS: &str = "glm_generation_tokens";
/// Exported as `glm_request_success_total{finish_reason}`.
pub const REQUEST_SUCCESS: &str = "glm_request_success";
pub const TIME_TO_FIRST_TOKEN: &str = "glm_time_to_first_token_seconds";
pub const INTER_TOKEN_LATENCY: &str = "glm_inter_token_latency_seconds";
pub const E2E_REQUEST_LATENCY: &str = "glm_e2e_request_latency_seconds";
pub const REQUEST_QUEUE_TIME: &str = "glm_request_queue_time_seconds";
/// Exported as `glm_api_key_requests_total{key_id}`: API requests by key id (never the key).
pub const API_KEY_REQUESTS: &str = "glm_api_key_requests";
/// Exported as `glm_rate_limited_total{key_id,limit}`: requests refused by a per-key limit.
pub const RATE_LIMITED: &str = "glm_rate_limited";
/// Exported as `glm_http_connections_refused_total`: connections closed at the cap.
pub const CONNECTIONS_REFUSED: &str = "glm_http_connections_refused";

/// Exported as `glm_constrained_requests_total`: requests with a grammar (structured outputs).
pub const CONSTRAINED_REQUESTS: &str = "glm_constrained_requests";
/// Exported as `glm_grammar_mask_seconds_total`: time the engine spent computing token masks.
pub const GRAMMAR_MASK_SECONDS: &str = "glm_grammar_mask_seconds";
/// Exported as `glm_grammar_masks_total`: token masks computed (one per constrained token).
pub const GRAMMAR_MASKS: &str = "glm_grammar_masks";

/// The Content-Type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

// vLLM's buckets, so dashboards built for vLLM read the same.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const REQUEST_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model_name: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SuccessLabels {
    model_name: String,
    finish_reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    model_name: String,
    key_id: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    model_name: String,
    key_id: String,
    limit: String,
}

#[derive(Debug)]
struct Inner {
    key_requests: Family<KeyLabels, Counter>,
    rate_limited: Family<LimitLabels, Counter>,
    connections_refused: Counter,
    constrained_requests: Counter,
    mask_seconds: Counter<f64, AtomicU64>,
    masks: Counter,
    registry: Registry,
    model_name: String,
    waiting: Gauge,
    running: Gauge,
    kv_usage: Gauge<f64, AtomicU64>,
    prefix_queries: Counter,
    prefix_hits: Counter,
    prompt_tokens: Counter,
    generation_tokens: Counter,
    success: Family<SuccessLabels, Counter>,
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
    queue_time: Histogram,
}

/// Cheap handle to the server's metrics (shared by the engine thread and the API).
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

fn histogram_family(
    buckets: &'static [f64],
) -> Family<ModelLabel, Histogram, impl Fn() -> Histogram + Clone> {
    Family::new_with_constructor(move || Histogram::new(buckets.iter().copied()))
}

impl Metrics {
    pub fn new(model_name: &str) -> Self {
        let mut registry = Registry::default();
        let label = ModelLabel {
            model_name: model_name.to_string(),
        };

        macro_rules! family {
            ($name:expr, $help:expr, $ty:ty) => {{
                let f = Family::<ModelLabel, $ty>::default();
                registry.register($name, $help, f.clone());
                let metric = f.get_or_create(&label).clone();
                metric
            }};
        }
        macro_rules! histogram {
            ($name:expr, $help:expr, $buckets:expr) => {{
                let f = histogram_family($buckets);
                registry.register($name, $help, f.clone());
                let metric = f.get_or_create(&label).clone();
                metric
            }};
        }

        let waiting = family!(
            NUM_REQUESTS_WAITING,
            "Requests queued, not yet running (autoscaling signal)",
            Gauge
        );
        let running = family!(NUM_REQUESTS_RUNNING, "Requests in the running batch", Gauge);
        let kv_usage = family!(
            KV_CACHE_USAGE_RATIO,
            "Fraction of KV cache blocks held by live requests (0..1)",
            Gauge<f64, AtomicU64>
        );
        let prefix_queries = family!(
            PREFIX_CACHE_QUERIES,
            "Prompt tokens looked up in the prefix cache",
            Counter
        );
        let prefix_hits = family!(
            PREFIX_CACHE_HITS,
            "Prompt tokens found in the prefix cache",
            Counter
        );
        let prompt_tokens = family!(PROMPT_TOKENS, "Prompt tokens received", Counter);
        let generation_tokens = family!(GENERATION_TOKENS, "Tokens generated", Counter);
        let success = Family::<SuccessLabels, Counter>::default();
        registry.register(
            REQUEST_SUCCESS,
            "Finished requests by finish reason (stop, length, abort, grammar_dead_end)",
            success.clone(),
        );
        let ttft = histogram!(
            TIME_TO_FIRST_TOKEN,
            "Seconds from arrival to the first generated token",
            TTFT_BUCKETS
        );
        let itl = histogram!(
            INTER_TOKEN_LATENCY,
            "Seconds between consecutive generated tokens of a request",
            ITL_BUCKETS
        );
        let e2e = histogram!(
            E2E_REQUEST_LATENCY,
            "Seconds from arrival to the end of a request",
            REQUEST_BUCKETS
        );
        let queue_time = histogram!(
            REQUEST_QUEUE_TIME,
            "Seconds a request waited before first being scheduled",
            REQUEST_BUCKETS
        );
        let key_requests = Family::<KeyLabels, Counter>::default();
        registry.register(
            API_KEY_REQUESTS,
            "API requests by API key id",
            key_requests.clone(),
        );
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            RATE_LIMITED,
            "Requests refused by a per-key rate limit",
            rate_limited.clone(),
        );
        let connections_refused = family!(
            CONNECTIONS_REFUSED,
            "Connections closed because --max-connections was reached",
            Counter
        );
        let constrained_requests = family!(
            CONSTRAINED_REQUESTS,
            "Requests whose output a grammar constrains (JSON schema, regex, choice, grammar, forced tool call)",
            Counter
        );
        let mask_seconds = family!(
            GRAMMAR_MASK_SECONDS,
            "Seconds the engine spent computing grammar token masks",
            Counter<f64, AtomicU64>
        );
        let masks = family!(GRAMMAR_MASKS, "Grammar token masks computed", Counter);
        Self {
            inner: Arc::new(Inner {
                constrained_requests,
                mask_seconds,
                masks,
                key_requests,
                rate_limited,
                connections_refused,
                registry,
                model_name: model_name.to_string(),
                waiting,
                running,
                kv_usage,
                prefix_queries,
                prefix_hits,
                prompt_tokens,
                generation_tokens,
                success,
                ttft,
                itl,
                e2e,
                queue_time,
            }),
        }
    }

    /// OpenMetrics text of all metrics.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error would only mean a malformed metric.
        if let Err(e) = encode(&mut out, &self.inner.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }

    pub fn set_queue(&self, waiting: i64, running: i64) {
        self.inner.waiting.set(waiting);
        self.inner.running.set(running);
    }

    pub fn set_kv_usage(&self, ratio: f64) {
        self.inner.kv_usage.set(ratio);
    }

    pub fn add_prefix_cache(&self, queries: u64, hits: u64) {
        self.inner.prefix_queries.inc_by(queries);
        self.inner.prefix_hits.inc_by(hits);
    }

    pub fn add_prompt_tokens(&self, n: u64) {
        self.inner.prompt_tokens.inc_by(n);
    }

    pub fn add_generation_tokens(&self, n: u64) {
        self.inner.generation_tokens.inc_by(n);
    }

    pub fn request_success(&self, finish_reason: &str) {
        self.inner
            .success
            .get_or_create(&SuccessLabels {
                model_name: self.inner.model_name.clone(),
                finish_reason: finish_reason.to_string(),
            })
            .inc();
    }

    pub fn key_request(&self, key_id: &str) {
        self.inner
            .key_requests
            .get_or_create(&KeyLabels {
                model_name: self.inner.model_name.clone(),
                key_id: key_id.to_string(),
            })
            .inc();
    }

    pub fn rate_limited(&self, key_id: &str, limit: &str) {
        self.inner
            .rate_limited
            .get_or_create(&LimitLabels {
                model_name: self.inner.model_name.clone(),
                key_id: key_id.to_string(),
                limit: limit.to_string(),
            })
            .inc();
    }

    pub fn connection_refused(&self) {
        self.inner.connections_refused.inc();
    }

    pub fn constrained_request(&self) {
        self.inner.constrained_requests.inc();
    }

    pub fn observe_mask(&self, secs: f64) {
        self.inner.mask_seconds.inc_by(secs);
        self.inner.masks.inc();
    }

    pub fn observe_ttft(&self, secs: f64) {
        self.inner.ttft.observe(secs);
    }

    pub fn observe_itl(&self, secs: f64) {
        self.inner.itl.observe(secs);
    }

    pub fn observe_e2e(&self, secs: f64) {
        self.inner.e2e.observe(secs);
    }

    pub fn observe_queue_time(&self, secs: f64) {
        self.inner.queue_time.observe(secs);
    }
}

/// Reads one sample `name{model_name="..."} value` back from exported text (tests, loadgen).
pub fn sample_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = rest
            .strip_prefix('{')
            .map_or(Some(rest), |r| r.split_once('}').map(|(_, v)| v))?;
        let value = rest.split_whitespace().next()?;
        value.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_every_documented_name_with_model_label() {
        let m = Metrics::new("glm-test");
        m.set_queue(3, 2);
        m.set_kv_usage(0.25);
        m.add_prefix_cache(10, 4);
        m.add_prompt_tokens(7);
        m.add_generation_tokens(5);
        m.request_success("stop");
        m.observe_ttft(0.05);
        m.observe_itl(0.01);
        m.observe_e2e(1.0);
        m.observe_queue_time(0.0);
        let text = m.encode();
        for name in [
            "glm_num_requests_waiting{model_name=\"glm-test\"} 3",
            "glm_num_requests_running{model_name=\"glm-test\"} 2",
            "glm_kv_cache_usage_ratio{model_name=\"glm-test\"} 0.25",
            "glm_prefix_cache_queries_total{model_name=\"glm-test\"} 10",
            "glm_prefix_cache_hits_total{model_name=\"glm-test\"} 4",
            "glm_prompt_tokens_total{model_name=\"glm-test\"} 7",
            "glm_generation_tokens_total{model_name=\"glm-test\"} 5",
            "glm_time_to_first_token_seconds_count{model_name=\"glm-test\"} 1",
            "glm_inter_token_latency_seconds_count{model_name=\"glm-test\"} 1",
            "glm_e2e_request_latency_seconds_count{model_name=\"glm-test\"} 1",
            "glm_request_queue_time_seconds_count{model_name=\"glm-test\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        assert!(text.contains("glm_request_success_total{"), "{text}");
        assert!(text.contains("finish_reason=\"stop\""), "{text}");
        assert_eq!(sample_value(&text, KV_CACHE_USAGE_RATIO), Some(0.25));
        assert_eq!(sample_value(&text, NUM_REQUESTS_WAITING), Some(3.0));
    }
}
