//! Batching never changes results: 32 concurrent greedy streams on the fixture model
//! (glm4moe-tiny, loaded by glm_model) produce exactly the tokens each produces alone, and
//! the KV cache is empty again afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/app.rs"]
mod support;

use glm_server::metrics::{sample_value, KV_CACHE_USAGE_RATIO};
use serde_json::{json, Value};
use support::*;

const STREAMS: usize = 32;
const MAX_TOKENS: usize = 24;

fn prompt_for(i: usize) -> Vec<u32> {
    // Distinct prompts of varied lengths; every fourth shares a 40-token prefix so prefix
    // caching and batching interact.
    let mut p: Vec<u32> = if i.is_multiple_of(4) {
        (100..140).collect()
    } else {
        Vec::new()
    };
    p.extend((0..(5 + (i * 7) % 37)).map(|j| ((i * 131 + j * 17) % 1900 + 10) as u32));
    p
}

/// Streams a greedy completion and returns the generated token ids (via logprobs tokens,
/// which are per generated token) and the text.
async fn stream_tokens(app: &TestApp, prompt: &[u32]) -> (String, usize, String) {
    let body = json!({
        "model": MODEL,
        "prompt": prompt,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "ignore_eos": true,
        "stream": true,
        "logprobs": 0,
        "skip_special_tokens": false,
        "stream_options": {"include_usage": true},
    });
    let r = post(&app.router, "/v1/completions", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let mut text = String::new();
    let mut tokens = String::new();
    let mut completion_tokens = 0;
    for d in &data[..data.len() - 1] {
        let c: Value = serde_json::from_str(d).unwrap();
        if let Some(u) = c.get("usage").filter(|u| !u.is_null()) {
            completion_tokens = u["completion_tokens"].as_u64().unwrap() as usize;
            continue;
        }
        let ch = &c["choices"][0];
        text.push_str(ch["text"].as_str().unwrap());
        for t in ch["logprobs"]["tokens"].as_array().into_iter().flatten() {
            tokens.push_str(t.as_str().unwrap());
            tokens.push('\u{1}');
        }
    }
    (tokens, completion_tokens, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_greedy_streams_match_solo_runs_and_free_the_cache() {
    concurrent_equals_solo("glm4moe-tiny").await;
}

/// GLM-4.7-Flash's MLA model under the same engine: its latent cache is paged, batched and
/// prefix-shared exactly like Glm4Moe's K/V.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mla_model_batches_and_prefix_caches_like_glm4moe() {
    concurrent_equals_solo("glm4moelite-tiny").await;
}

async fn concurrent_equals_solo(fixture: &str) {
    let app = fixture_app_for(fixture, 4096, 64);
    let mut solo = Vec::new();
    for i in 0..STREAMS {
        solo.push(stream_tokens(&app, &prompt_for(i)).await);
    }
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..STREAMS {
        let app = std::sync::Arc::clone(&app);
        tasks.push(tokio::spawn(async move {
            stream_tokens(&app, &prompt_for(i)).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let got = t.await.unwrap();
        assert_eq!(got.1, MAX_TOKENS, "stream {i}");
        assert_eq!(got, solo[i], "stream {i} differs when batched");
    }
    // Let the engine run its bookkeeping step after the last finish.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let metrics = get(&app.router, "/metrics").await.body;
    assert_eq!(
        sample_value(&metrics, KV_CACHE_USAGE_RATIO),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        sample_value(&metrics, "glm_num_requests_running"),
        Some(0.0)
    );
    assert!(sample_value(&metrics, "glm_prefix_cache_hits_total").unwrap_or(0.0) > 0.0);
    assert_eq!(
        sample_value(&metrics, "glm_generation_tokens_total"),
        Some((2 * STREAMS * MAX_TOKENS) as f64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tight_kv_cache_preempts_without_changing_results() {
    // 40 blocks of 16 tokens for 12 streams of up to ~90 tokens: preemption must happen.
    let app = fixture_app(40, 64);
    let mut solo = Vec::new();
    for i in 0..12 {
        solo.push(stream_tokens(&app, &prompt_for(i)).await);
    }
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move { stream_tokens(&app, &prompt_for(i)).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), solo[i], "stream {i}");
    }
}
