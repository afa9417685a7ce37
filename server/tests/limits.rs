//! Hostile and oversized input over the router (tower oneshot, toy model): huge prompts
//! refused before tokenizing, requests that can never fit, API keys and per-key rate
//! limits, 405/413 bodies, and shape checks on messages and tools.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/app.rs"]
mod support;

use axum::{body::Body, http::Request};
use glm_server::api::RateLimits;
use serde_json::{json, Value};
use support::*;

fn chat(content: Value) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 2})
}

fn error_of(r: &Reply, status: u16) -> Value {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    r.json()["error"].clone()
}

#[tokio::test]
async fn huge_prompts_are_refused_by_size_before_tokenizing() {
    let app = toy_app(Opts::default());
    let max = app.state.prompts().max_bytes();
    // 5 MB: far over the bound a 512-token context allows.
    let huge = "a".repeat(5 << 20);
    let cases = [
        ("/v1/chat/completions", chat(json!(huge)), "messages"),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": huge, "max_tokens": 2}),
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": ["hi", huge], "max_tokens": 2}),
            "prompt",
        ),
        ("/tokenize", json!({"prompt": huge}), "prompt"),
        (
            "/tokenize",
            json!({"messages": [{"role": "user", "content": huge}]}),
            "messages",
        ),
    ];
    for (path, body, param) in cases {
        let r = post(&app.router, path, body).await;
        let e = error_of(&r, 400);
        assert_eq!(e["param"], param, "{path}: {}", r.body);
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains(&max.to_string()), "{path}: {msg}");
        assert!(msg.contains("512 tokens"), "{path}: {msg}");
    }
    let r = post(
        &app.router,
        "/v1/messages",
        json!({"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": huge}]}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&max.to_string()));
    // Just under the bound is not refused by size (it fails on the token count instead).
    let r = post(
        &app.router,
        "/v1/completions",
        json!({"model": MODEL, "prompt": "a ".repeat(max / 2), "max_tokens": 2}),
    )
    .await;
    let e = error_of(&r, 400);
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("maximum context length is 512"));
}

#[tokio::test]
async fn a_request_that_can_never_be_queued_is_a_400_not_a_429() {
    let app = toy_app(Opts {
        max_queue: 4,
        ..Opts::default()
    });
    let r = post(
        &app.router,
        "/v1/completions",
        json!({"model": MODEL, "prompt": [[1, 2], [3, 4], [5, 6]], "n": 2, "max_tokens": 1}),
    )
    .await;
    let e = error_of(&r, 400);
    assert_eq!(e["param"], "prompt");
    assert!(e["message"].as_str().unwrap().contains("at most 4"), "{e}");
    let mut body = chat(json!("hi"));
    body["n"] = json!(5);
    let e = error_of(&post(&app.router, "/v1/chat/completions", body).await, 400);
    assert_eq!(e["param"], "n");
    // Within the queue it runs.
    let r = post(
        &app.router,
        "/v1/completions",
        json!({"model": MODEL, "prompt": [[1, 2], [3, 4]], "n": 2, "max_tokens": 1}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

fn with_header(path: &str, body: &Value, name: &str, value: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .header(name, value)
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn several_named_keys_any_bearer_case_and_key_ids_in_metrics() {
    let app = toy_app(Opts {
        keys: vec![("team-a", "sk-aaa"), ("team-b", "sk-bbb")],
        ..Opts::default()
    });
    let body = chat(json!("hi"));
    for (name, value) in [
        ("authorization", "Bearer sk-aaa"),
        ("authorization", "bearer sk-bbb"),
        ("x-api-key", "sk-aaa"),
    ] {
        let r = request(
            &app.router,
            with_header("/v1/chat/completions", &body, name, value),
        )
        .await;
        assert_eq!(r.status, 200, "{name}: {value}: {}", r.body);
    }
    let r = request(
        &app.router,
        with_header(
            "/v1/chat/completions",
            &body,
            "authorization",
            "Bearer sk-ccc",
        ),
    )
    .await;
    assert_eq!(error_of(&r, 401)["type"], "authentication_error");
    let m = get(&app.router, "/metrics").await.body;
    assert!(m.contains("key_id=\"team-a\""), "{m}");
    assert!(m.contains("key_id=\"team-b\""), "{m}");
    assert!(
        !m.contains("sk-aaa") && !m.contains("sk-bbb"),
        "a key leaked: {m}"
    );
}

#[tokio::test]
async fn per_key_request_limit_answers_429_with_retry_after() {
    let app = toy_app(Opts {
        keys: vec![("team-a", "sk-aaa"), ("team-b", "sk-bbb")],
        rate_limits: RateLimits {
            requests_per_minute: Some(1),
            tokens_per_minute: None,
        },
        ..Opts::default()
    });
    let body = chat(json!("hi"));
    let send = |key: &str| {
        request(
            &app.router,
            with_header(
                "/v1/chat/completions",
                &body,
                "authorization",
                &format!("Bearer {key}"),
            ),
        )
    };
    assert_eq!(send("sk-aaa").await.status, 200);
    let r = send("sk-aaa").await;
    let e = error_of(&r, 429);
    assert_eq!(e["type"], "rate_limit_error");
    assert_eq!(e["code"], "rate_limit_exceeded");
    assert!(e["message"].as_str().unwrap().contains("team-a"), "{e}");
    assert_eq!(r.headers["retry-after"], "60");
    // The other key has its own budget.
    assert_eq!(send("sk-bbb").await.status, 200);
    // Anthropic routes share the budget and the header.
    let r = request(
        &app.router,
        with_header(
            "/v1/messages",
            &json!({"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}),
            "x-api-key",
            "sk-aaa",
        ),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert_eq!(r.headers["retry-after"], "60");
    let m = get(&app.router, "/metrics").await.body;
    assert!(
        m.contains("glm_rate_limited_total{model_name=\"toy\",key_id=\"team-a\",limit=\"requests_per_minute\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn per_key_token_limit_refuses_what_can_never_fit() {
    let app = toy_app(Opts {
        rate_limits: RateLimits {
            requests_per_minute: None,
            tokens_per_minute: Some(40),
        },
        ..Opts::default()
    });
    let r = post(
        &app.router,
        "/v1/completions",
        json!({"model": MODEL, "prompt": vec![7; 41], "max_tokens": 1}),
    )
    .await;
    let e = error_of(&r, 400);
    assert_eq!(e["param"], "prompt");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("40 tokens per minute"));
    // 30 prompt + 5 generated tokens spend the bucket: the next 30 must wait.
    let ok = json!({"model": MODEL, "prompt": vec![7; 30], "max_tokens": 5, "ignore_eos": true});
    assert_eq!(
        post(&app.router, "/v1/completions", ok.clone())
            .await
            .status,
        200
    );
    let r = post(&app.router, "/v1/completions", ok).await;
    let e = error_of(&r, 429);
    assert_eq!(e["code"], "rate_limit_exceeded");
    assert!(r.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn oversized_bodies_and_wrong_methods_get_json_errors() {
    let app = toy_app(Opts::default());
    let big = format!(
        "{{\"prompt\": \"{}\"}}",
        "a".repeat(glm_server::api::MAX_BODY_BYTES)
    );
    let r = send(&app.router, "POST", "/v1/completions", Some(&big), None).await;
    let e = error_of(&r, 413);
    assert_eq!(e["type"], "request_too_large");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains(&glm_server::api::MAX_BODY_BYTES.to_string()));
    let r = send(&app.router, "POST", "/v1/messages", Some(&big), None).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "request_too_large");
    drop(big);

    let r = send(&app.router, "GET", "/v1/chat/completions", None, None).await;
    let e = error_of(&r, 405);
    assert_eq!(e["type"], "method_not_allowed");
    assert!(e["message"].as_str().unwrap().contains("GET"));
    let r = send(&app.router, "GET", "/v1/messages", None, None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["type"], "error");
}

#[tokio::test]
async fn malformed_content_and_tools_are_refused_naming_the_field() {
    let app = toy_app(Opts::default());
    for content in [json!(5), json!({}), json!(true)] {
        let e = error_of(
            &post(&app.router, "/v1/chat/completions", chat(content)).await,
            400,
        );
        assert_eq!(e["param"], "messages[0].content");
    }
    let tool = |name: &str, params: Value| json!({"type": "function", "function": {"name": name, "parameters": params}});
    let mut body = chat(json!("hi"));
    body["tools"] = json!([tool("f", json!("not a schema"))]);
    let e = error_of(
        &post(&app.router, "/v1/chat/completions", body.clone()).await,
        400,
    );
    assert_eq!(e["param"], "tools[0].function.parameters");
    body["tools"] = json!([
        tool("f", json!({"type": "object"})),
        tool("f", json!({"type": "object"}))
    ]);
    let e = error_of(&post(&app.router, "/v1/chat/completions", body).await, 400);
    assert_eq!(e["param"], "tools[1].function.name");
    assert!(e["message"].as_str().unwrap().contains("duplicate"));

    let r = post(
        &app.router,
        "/v1/messages",
        json!({"model": MODEL, "max_tokens": 2, "messages": []}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("messages"));
}

#[tokio::test]
async fn non_streamed_answers_are_bounded_in_size() {
    let app = toy_app(Opts {
        max_nonstream_tokens: 1000,
        ..Opts::default()
    });
    let body = json!({"model": MODEL, "prompt": "hi", "n": 4, "max_tokens": 300});
    let e = error_of(
        &post(&app.router, "/v1/completions", body.clone()).await,
        400,
    );
    assert_eq!(e["param"], "max_tokens");
    assert!(
        e["message"].as_str().unwrap().contains("1000 tokens"),
        "{e}"
    );
    // Streamed, the same request is fine: nothing holds the whole answer.
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let r = post(&app.router, "/v1/completions", streamed).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.sse_data().last().map(String::as_str), Some("[DONE]"));
}
