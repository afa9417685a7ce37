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

/// The device-generic tensor path (`--backend reference`, the code the GPU runs) serves the
/// same greedy text as the CPU kernels, through the whole server, for both architectures and
/// both FP8 layouts (8-bit in the CPU kernels, dequantized on the tensor path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_backend_serves_what_the_cpu_backend_serves() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    for fixture in [
        "glm4moe-tiny",
        "glm4moelite-tiny",
        "glm4moe-tiny-fp8",
        "glm4moelite-tiny-fp8",
    ] {
        let model = dir.join(fixture);
        let mut texts = Vec::new();
        for backend in ["cpu", "reference"] {
            let server =
                ServerProcess::start(model.to_str().unwrap(), &["--backend", backend]).await;
            let v: Value = reqwest::Client::new()
                .post(format!("{}/v1/completions", server.base))
                .json(&json!({
                    "model": "glm-test",
                    "prompt": "The license grants",
                    "max_tokens": 12,
                    "temperature": 0,
                    "ignore_eos": true,
                }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(
                v["usage"]["completion_tokens"], 12,
                "{fixture} {backend}: {v}"
            );
            texts.push(v["choices"][0]["text"].as_str().unwrap().to_owned());
        }
        assert_eq!(texts[0], texts[1], "{fixture}: cpu and reference differ");
    }
}
