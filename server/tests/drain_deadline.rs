//! The drain budget, in process over loopback: requests still running when the budget's
//! cut-off passes end with an error in their API's shape (streams: an error event, then
//! a terminated body), and the server returns within `--drain-timeout`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/app.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use glm_server::{
    http::HttpLimits,
    serve::{close_reserve, serve_until, Prepared},
};
use serde_json::{json, Value};
use support::*;

const DRAIN: Duration = Duration::from_secs(2);
const BOUND: Duration = Duration::from_secs(20);

/// Reads a streamed body to its end; the SSE `data:` payloads (and `event:` names) in order.
/// Panics if the body does not terminate cleanly.
async fn read_stream(resp: reqwest::Response, first: tokio::sync::mpsc::Sender<()>) -> Vec<String> {
    let mut bytes = resp.bytes_stream();
    let mut text = String::new();
    let mut signalled = false;
    while let Some(chunk) = bytes.next().await {
        let chunk = chunk.expect("the body was cut without a clean end");
        text.push_str(&String::from_utf8_lossy(&chunk));
        if !signalled && text.contains("\n\n") {
            signalled = true;
            let _ = first.send(()).await;
        }
    }
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| e.trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_cut_at_the_deadline_end_with_an_error_event_and_a_clean_body() {
    let app = toy_app(Opts {
        step_delay_ms: 20,
        ready: false,
        ..Opts::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let prepared = Prepared {
        state: app.state.clone(),
        lifecycle: app.lifecycle.clone(),
        warm_up_prompt: vec![1, 2, 3],
        http: HttpLimits::default(),
    };
    let (term_tx, term_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_until(listener, prepared, DRAIN, async {
        let _ = term_rx.await;
    }));
    let client = reqwest::Client::new();
    let ready_by = Instant::now() + BOUND;
    while client
        .get(format!("{base}/ready"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < ready_by, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 400 tokens at 20 ms a step: far longer than the drain budget.
    let openai = json!({"model": MODEL, "prompt": [5, 6, 7], "max_tokens": 400,
        "ignore_eos": true, "stream": true});
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 400, "ignore_eos": true, "stream": true});
    // The Messages API has no `ignore_eos`: greedy decoding makes the stream's length
    // deterministic (this model's greedy reply to "hi" runs past the deadline), where
    // sampling could end it with EOS before the deadline.
    let anthropic = json!({"model": MODEL, "max_tokens": 400, "stream": true,
        "temperature": 0.0, "messages": [{"role": "user", "content": "hi"}]});
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let mut streams = Vec::new();
    for (path, body) in [
        ("/v1/completions", openai.clone()),
        ("/v1/chat/completions", chat),
        ("/v1/messages", anthropic),
    ] {
        let resp = client
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        streams.push(tokio::spawn(read_stream(resp, tx.clone())));
    }
    let mut whole = openai;
    whole["stream"] = json!(false);
    let whole = tokio::spawn(
        client
            .post(format!("{base}/v1/completions"))
            .json(&whole)
            .send(),
    );
    for _ in 0..3 {
        rx.recv().await.unwrap();
    }
    let t0 = Instant::now();
    term_tx.send(()).unwrap();

    let completions = streams.remove(0).await.unwrap();
    let ended = t0.elapsed();
    let n = completions.len();
    assert_eq!(completions[n - 1], "data: [DONE]");
    let err: Value =
        serde_json::from_str(completions[n - 2].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(err["error"]["type"], "service_unavailable", "{err}");
    assert_eq!(err["error"]["code"], "drain_deadline", "{err}");

    let chat = streams.remove(0).await.unwrap();
    let n = chat.len();
    assert_eq!(chat[n - 1], "data: [DONE]");
    assert!(chat[n - 2].contains("drain_deadline"), "{}", chat[n - 2]);

    let anthropic = streams.remove(0).await.unwrap();
    let last = anthropic.last().unwrap();
    assert!(last.starts_with("event: error"), "{last}");
    assert!(last.contains("overloaded_error"), "{last}");

    let whole = whole.await.unwrap().unwrap();
    assert_eq!(whole.status(), 503);
    let v: Value = whole.json().await.unwrap();
    assert_eq!(v["error"]["code"], "drain_deadline");

    tokio::time::timeout(BOUND, server)
        .await
        .expect("serve_until did not return")
        .unwrap()
        .unwrap();
    let exited = t0.elapsed();
    println!(
        "drain timeline: SIGTERM at 0; cut-off at {:?} (budget {DRAIN:?} - reserve {:?}); \
         completions stream ended (error event + [DONE]) at {ended:?}; serve_until returned at {exited:?}",
        DRAIN - close_reserve(DRAIN),
        close_reserve(DRAIN)
    );
    let tokens = completions.len() - 2;
    println!("the cut completions stream carried {tokens} chunks before its error event");
}
