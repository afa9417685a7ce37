//! The operator contract on SIGTERM, against the real binary: /ready turns 503, new
//! requests get 503 `service_unavailable`, in-flight streams complete, and the process exits
//! 0 within the drain timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/process.rs"]
mod process;

use std::time::{Duration, Instant};

use futures::StreamExt;
use process::{fixture_model, ServerProcess};
use serde_json::{json, Value};

const STREAMS: usize = 8;
const MAX_TOKENS: usize = 600;

/// Streams one completion; reports (first chunk seen, finish_reason, saw [DONE]).
async fn run_stream(
    base: String,
    started: tokio::sync::mpsc::Sender<()>,
) -> (Option<String>, bool, usize) {
    let client = reqwest::Client::new();
    let body = json!({
        "model": "glm-test", "prompt": [11, 12, 13, 14], "max_tokens": MAX_TOKENS,
        "temperature": 0, "ignore_eos": true, "stream": true,
    });
    let resp = client
        .post(format!("{base}/v1/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut bytes = resp.bytes_stream();
    let mut buf = String::new();
    let (mut finish, mut done, mut chunks) = (None, false, 0usize);
    let mut signalled = false;
    while let Some(b) = bytes.next().await {
        buf.push_str(&String::from_utf8_lossy(&b.unwrap()));
        while let Some(i) = buf.find("\n\n") {
            let event: String = buf.drain(..i + 2).collect();
            let Some(data) = event.trim().strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let v: Value = serde_json::from_str(data).unwrap();
            chunks += 1;
            if !signalled {
                signalled = true;
                let _ = started.send(()).await;
            }
            if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
    }
    (finish, done, chunks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_streams_and_exits_zero() {
    let model = fixture_model();
    let mut server = ServerProcess::start(
        model.to_str().unwrap(),
        &["--drain-timeout", "60", "--max-model-len", "2048"],
    )
    .await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(STREAMS);
    let tasks: Vec<_> = (0..STREAMS)
        .map(|_| tokio::spawn(run_stream(server.base.clone(), tx.clone())))
        .collect();
    for _ in 0..STREAMS {
        rx.recv().await.unwrap();
    }
    let t0 = Instant::now();
    server.sigterm();
    // Draining: readiness and new work are refused while the streams keep going.
    let client = reqwest::Client::new();
    let mut saw_503 = false;
    for _ in 0..100 {
        let r = client
            .get(format!("{}/ready", server.base))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            saw_503 = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(saw_503, "/ready did not turn 503");
    let r = client
        .post(format!("{}/v1/completions", server.base))
        .json(&json!({"prompt": "hi", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "service_unavailable");
    assert_eq!(
        client
            .get(format!("{}/health", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for t in tasks {
        let (finish, done, chunks) = t.await.unwrap();
        assert_eq!(finish.as_deref(), Some("length"));
        assert!(done, "stream ended without [DONE]");
        assert!(chunks > 10);
    }
    let status = server
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("did not exit");
    assert_eq!(status.code(), Some(0));
    println!(
        "drained {STREAMS} streams and exited in {:.2}s",
        t0.elapsed().as_secs_f64()
    );
}
