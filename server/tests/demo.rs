//! `glm-server serve --model demo` writes the built-in demo model and serves it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/process.rs"]
mod process;

use process::ServerProcess;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_model_serves_chat() {
    let server = ServerProcess::start("demo", &[]).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/v1/chat/completions", server.base))
        .json(&json!({
            "model": "glm-test",
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": 4,
            "temperature": 0,
            "ignore_eos": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 4);
    let m = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("glm_generation_tokens_total{model_name=\"glm-test\"}"),
        "{m}"
    );
}
