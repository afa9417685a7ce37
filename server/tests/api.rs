//! Router tests (tower oneshot) over the toy model: status codes, error bodies, SSE framing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/app.rs"]
mod support;

use serde_json::{json, Value};
use support::*;

fn chat_body(extra: Value) -> Value {
    let mut body = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": 5,
        "temperature": 0,
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

fn assert_error(r: &Reply, status: u16, kind: &str, param: Option<&str>) {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"]["type"], kind, "{}", r.body);
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    match param {
        Some(p) => assert_eq!(v["error"]["param"], p, "{}", r.body),
        None => assert!(v["error"]["param"].is_null(), "{}", r.body),
    }
}

#[tokio::test]
async fn ops_routes() {
    let app = toy_app(Opts {
        ready: false,
        ..Opts::default()
    });
    assert_eq!(get(&app.router, "/health").await.status, 200);
    assert_eq!(get(&app.router, "/ready").await.status, 503);
    app.lifecycle.set_ready(true);
    assert_eq!(get(&app.router, "/ready").await.status, 200);
    let v = get(&app.router, "/version").await.json();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let m = get(&app.router, "/metrics").await;
    assert_eq!(m.status, 200);
    assert!(
        m.content_type.contains("openmetrics-text"),
        "{}",
        m.content_type
    );
    for name in [
        "glm_num_requests_waiting",
        "glm_num_requests_running",
        "glm_kv_cache_usage_ratio",
        "glm_time_to_first_token_seconds",
    ] {
        assert!(m.body.contains(name), "{name} missing");
    }
    let models = get(&app.router, "/v1/models").await.json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], MODEL);
    assert_eq!(models["data"][0]["max_model_len"], 512);
    let nf = get(&app.router, "/v1/nothing").await;
    assert_error(&nf, 404, "not_found_error", None);
}

#[tokio::test]
async fn chat_non_streaming_has_usage_and_finish_reason() {
    let app = toy_app(Opts::default());
    let r = post(&app.router, "/v1/chat/completions", chat_body(json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], MODEL);
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(v["choices"][0]["message"]["content"].is_string());
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    let p = v["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(p > 3);
    assert_eq!(v["usage"]["total_tokens"].as_u64().unwrap(), p + 5);
    // Greedy is deterministic.
    let again = post(&app.router, "/v1/chat/completions", chat_body(json!({})))
        .await
        .json();
    assert_eq!(
        again["choices"][0]["message"]["content"],
        v["choices"][0]["message"]["content"]
    );
}

#[tokio::test]
async fn chat_stream_framing() {
    let app = toy_app(Opts::default());
    let body =
        chat_body(json!({"stream": true, "n": 2, "stream_options": {"include_usage": true}}));
    let r = post(&app.router, "/v1/chat/completions", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    // Role deltas first, one per choice.
    for (i, c) in chunks[..2].iter().enumerate() {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["choices"][0]["index"], i);
        assert_eq!(c["choices"][0]["delta"]["role"], "assistant");
    }
    // Usage chunk last, with no choices.
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert_eq!(usage["usage"]["completion_tokens"], 10);
    // One finish chunk per choice, after that choice's content.
    let mut texts = [String::new(), String::new()];
    let mut finished = [false, false];
    for c in &chunks[2..chunks.len() - 1] {
        let ch = &c["choices"][0];
        let i = ch["index"].as_u64().unwrap() as usize;
        assert!(!finished[i], "content after finish");
        assert!(ch["delta"].get("role").is_none());
        if let Some(t) = ch["delta"]["content"].as_str() {
            texts[i].push_str(t);
        }
        if !ch["finish_reason"].is_null() {
            assert_eq!(ch["finish_reason"], "length");
            finished[i] = true;
        }
    }
    assert_eq!(finished, [true, true]);
    // The streamed text equals the non-streamed one (greedy).
    let whole = post(&app.router, "/v1/chat/completions", chat_body(json!({})))
        .await
        .json();
    assert_eq!(
        whole["choices"][0]["message"]["content"].as_str().unwrap(),
        texts[0]
    );
    assert_eq!(texts[0], texts[1]);
}

#[tokio::test]
async fn bad_requests_name_the_param() {
    let app = toy_app(Opts::default());
    let r = send(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some("{nope"),
        None,
    )
    .await;
    assert_error(&r, 400, "invalid_request_error", None);
    let cases = [
        (json!({"temperature": -1}), "temperature"),
        (json!({"temperature": "hot"}), "temperature"),
        (json!({"top_p": 0}), "top_p"),
        (json!({"n": 0}), "n"),
        (json!({"max_tokens": 100000}), "max_tokens"),
        (json!({"max_completion_tokens": 0}), "max_completion_tokens"),
        (json!({"messages": []}), "messages"),
        (
            json!({"logprobs": true, "top_logprobs": 50}),
            "top_logprobs",
        ),
        (
            json!({"response_format": {"type": "yaml"}}),
            "response_format.type",
        ),
        (json!({"stop": [""]}), "stop"),
    ];
    for (extra, param) in cases {
        let r = post(
            &app.router,
            "/v1/chat/completions",
            chat_body(extra.clone()),
        )
        .await;
        assert_error(&r, 400, "invalid_request_error", Some(param));
    }
    let r = post(&app.router, "/v1/completions", json!({"model": MODEL})).await;
    assert_error(&r, 400, "invalid_request_error", Some("prompt"));
    let long = "word ".repeat(600);
    let r = post(
        &app.router,
        "/v1/completions",
        json!({"prompt": long, "max_tokens": 1}),
    )
    .await;
    assert_error(&r, 400, "invalid_request_error", Some("prompt"));
    let r = post(
        &app.router,
        "/v1/completions",
        json!({"prompt": [999999], "max_tokens": 1}),
    )
    .await;
    assert_error(&r, 400, "invalid_request_error", Some("prompt"));
    let r = post(
        &app.router,
        "/v1/chat/completions",
        chat_body(json!({"model": "gpt-4"})),
    )
    .await;
    assert_error(&r, 404, "not_found_error", Some("model"));
    assert_eq!(r.json()["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn api_key_is_required_when_set() {
    let app = toy_app(Opts {
        api_key: Some("sekret".into()),
        ..Opts::default()
    });
    let body = chat_body(json!({})).to_string();
    let r = send(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&body),
        None,
    )
    .await;
    assert_error(&r, 401, "authentication_error", None);
    let r = send(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&body),
        Some("wrong"),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = send(&app.router, "GET", "/v1/models", None, Some("sekret")).await;
    assert_eq!(r.status, 200);
    let r = send(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&body),
        Some("sekret"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Probes and metrics stay open for the kubelet and Prometheus.
    assert_eq!(get(&app.router, "/health").await.status, 200);
    assert_eq!(get(&app.router, "/metrics").await.status, 200);
}

#[tokio::test]
async fn queue_full_draining_and_engine_faults() {
    let app = toy_app(Opts {
        max_queue: 0,
        ..Opts::default()
    });
    // Nothing can ever be queued: a bad request, not a busy server (429 needs a full
    // queue that drains; the mapping and its Retry-After are unit-tested in api::error).
    let r = post(&app.router, "/v1/chat/completions", chat_body(json!({}))).await;
    assert_error(&r, 400, "invalid_request_error", Some("n"));

    let app = toy_app(Opts::default());
    app.lifecycle.start_drain();
    let r = post(&app.router, "/v1/chat/completions", chat_body(json!({}))).await;
    assert_error(&r, 503, "service_unavailable", None);
    assert_eq!(get(&app.router, "/ready").await.status, 503);
    assert_eq!(get(&app.router, "/health").await.status, 200);

    // A failing forward: 500 for a whole response, an error event inside a stream.
    let app = toy_app(Opts {
        fail: true,
        ..Opts::default()
    });
    let r = post(&app.router, "/v1/chat/completions", chat_body(json!({}))).await;
    assert_error(&r, 500, "internal_error", None);
    let r = post(
        &app.router,
        "/v1/chat/completions",
        chat_body(json!({"stream": true})),
    )
    .await;
    assert_eq!(r.status, 200);
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(data.iter().any(|d| d.contains("\"error\"")), "{data:?}");

    // A dead engine thread: 503 everywhere, never a hang or a panic in a handler.
    let app = toy_app(Opts {
        die: true,
        ..Opts::default()
    });
    let r = post(&app.router, "/v1/chat/completions", chat_body(json!({}))).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(get(&app.router, "/health").await.status, 503);
    assert_eq!(get(&app.router, "/ready").await.status, 503);
    let r = post(
        &app.router,
        "/v1/completions",
        json!({"prompt": "hi", "max_tokens": 2}),
    )
    .await;
    assert_error(&r, 503, "service_unavailable", None);
}

#[tokio::test]
async fn completions_prompt_forms_n_and_stream() {
    let app = toy_app(Opts::default());
    let base = json!({"model": MODEL, "prompt": "Once upon", "max_tokens": 6, "temperature": 0});
    let v = post(&app.router, "/v1/completions", base.clone())
        .await
        .json();
    assert_eq!(v["object"], "text_completion");
    let text = v["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(v["usage"]["completion_tokens"], 6);

    // Token-id prompt equal to the tokenized text gives the same output.
    let toks = post(&app.router, "/tokenize", json!({"prompt": "Once upon"}))
        .await
        .json();
    let ids: Vec<u64> = toks["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(toks["count"], ids.len());
    let v2 = post(
        &app.router,
        "/v1/completions",
        json!({"prompt": ids, "max_tokens": 6, "temperature": 0}),
    )
    .await
    .json();
    assert_eq!(v2["choices"][0]["text"], text.as_str());
    let de = post(&app.router, "/detokenize", json!({"tokens": ids}))
        .await
        .json();
    assert!(de["prompt"].as_str().unwrap().contains("Once upon"));

    // Two prompts x n=2 = 4 choices, indexed prompt-major.
    let v3 = post(
        &app.router,
        "/v1/completions",
        json!({"prompt": ["Once upon", "Far away"], "n": 2, "max_tokens": 3, "temperature": 0}),
    )
    .await
    .json();
    let choices = v3["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
    }
    assert_eq!(choices[0]["text"], choices[1]["text"]);
    assert_eq!(v3["usage"]["completion_tokens"], 12);

    // Streaming: text chunks then [DONE]; concatenation equals the whole text.
    let mut s = base.clone();
    s["stream"] = json!(true);
    let r = post(&app.router, "/v1/completions", s).await;
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let mut streamed = String::new();
    let mut finish = None;
    for d in &data[..data.len() - 1] {
        let c: Value = serde_json::from_str(d).unwrap();
        streamed.push_str(c["choices"][0]["text"].as_str().unwrap());
        if !c["choices"][0]["finish_reason"].is_null() {
            finish = Some(c["choices"][0]["finish_reason"].clone());
        }
    }
    assert_eq!(streamed, text);
    assert_eq!(finish, Some(json!("length")));
}

#[tokio::test]
async fn stop_strings_cut_the_text() {
    let app = toy_app(Opts::default());
    let base = json!({"prompt": "Once upon", "max_tokens": 24, "temperature": 0});
    let full = post(&app.router, "/v1/completions", base.clone())
        .await
        .json();
    let text = full["choices"][0]["text"].as_str().unwrap().to_string();
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() > 8, "toy output too short: {text:?}");
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let cut = &text[..text.find(&stop).unwrap()];
    for stream in [false, true] {
        let mut b = base.clone();
        b["stop"] = json!([stop.clone()]);
        b["stream"] = json!(stream);
        let r = post(&app.router, "/v1/completions", b).await;
        let (got, reason, stop_reason) = if stream {
            let mut t = String::new();
            let (mut reason, mut sr) = (Value::Null, Value::Null);
            let data = r.sse_data();
            for d in &data[..data.len() - 1] {
                let c: Value = serde_json::from_str(d).unwrap();
                t.push_str(c["choices"][0]["text"].as_str().unwrap());
                if !c["choices"][0]["finish_reason"].is_null() {
                    reason = c["choices"][0]["finish_reason"].clone();
                    sr = c["choices"][0]["stop_reason"].clone();
                }
            }
            (t, reason, sr)
        } else {
            let v = r.json();
            let c = &v["choices"][0];
            (
                c["text"].as_str().unwrap().to_string(),
                c["finish_reason"].clone(),
                c["stop_reason"].clone(),
            )
        };
        assert_eq!(got, cut, "stream={stream}");
        assert_eq!(reason, "stop");
        assert_eq!(stop_reason, json!(stop));
    }
}

#[tokio::test]
async fn logprobs_in_chat_and_completions() {
    let app = toy_app(Opts::default());
    let v = post(
        &app.router,
        "/v1/chat/completions",
        chat_body(json!({"logprobs": true, "top_logprobs": 3})),
    )
    .await
    .json();
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 5);
    for t in content {
        assert!(t["logprob"].as_f64().unwrap() <= 0.0);
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy: the chosen token is the best alternative.
        assert_eq!(top[0]["logprob"], t["logprob"]);
    }
    let v = post(
        &app.router,
        "/v1/completions",
        json!({"prompt": "Hi", "max_tokens": 4, "logprobs": 2, "temperature": 0}),
    )
    .await
    .json();
    let lp = &v["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 4);
    assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), 4);
    assert_eq!(lp["text_offset"][0], 0);
    assert!(lp["top_logprobs"][0].as_object().unwrap().len() <= 2);
}

#[tokio::test]
async fn seeded_sampling_is_reproducible() {
    let app = toy_app(Opts::default());
    let body = chat_body(json!({"temperature": 1.0, "seed": 42, "max_tokens": 12}));
    let a = post(&app.router, "/v1/chat/completions", body.clone())
        .await
        .json();
    let b = post(&app.router, "/v1/chat/completions", body).await.json();
    assert_eq!(
        a["choices"][0]["message"]["content"],
        b["choices"][0]["message"]["content"]
    );
}

#[tokio::test]
async fn client_disconnect_aborts_and_frees_kv() {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let app = toy_app(Opts {
        step_delay_ms: 2,
        ..Opts::default()
    });
    let body = chat_body(json!({"stream": true, "max_tokens": 400, "ignore_eos": true}));
    let req = axum::http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    // Read a few frames so the request is running and holds KV blocks, then hang up.
    for _ in 0..3 {
        assert!(body.frame().await.is_some());
    }
    assert_eq!(app.state.engine().active(), 1);
    drop(body);
    for _ in 0..200 {
        if app.state.engine().active() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        app.state.engine().active(),
        0,
        "request still held after disconnect"
    );
    assert_eq!(app.lifecycle.inflight(), 0);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let m = get(&app.router, "/metrics").await.body;
    assert_eq!(
        glm_server::metrics::sample_value(&m, glm_server::metrics::KV_CACHE_USAGE_RATIO),
        Some(0.0)
    );
    assert!(m.contains("finish_reason=\"abort\""), "{m}");
}
