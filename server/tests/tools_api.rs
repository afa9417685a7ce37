//! OpenAI chat API with tools and reasoning, over HTTP, with a scripted token source behind
//! the engine: everything from token ids on (detokenizer, parsers, SSE) is production code.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code (support modules included)

// Each test binary uses part of the shared support code.
#[allow(dead_code)]
#[path = "tools_support/client.rs"]
mod client;
#[path = "tools_support/scripted.rs"]
mod scripted;
#[allow(dead_code)]
#[path = "tools_support/server.rs"]
mod server;

use serde_json::{json, Value};

use client::{bearer, parse_sse, post, run_sdk_script, sdk_python};

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}},
        {"type": "function", "function": {"name": "get_time",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
    ])
}

fn chat(trigger: &str, stream: bool) -> Value {
    json!({
        "model": server::MODEL,
        "messages": [{"role": "user", "content": trigger}],
        "tools": tools(),
        "max_tokens": 200,
        "stream": stream,
    })
}

/// Streamed tool calls folded into whole calls; asserts the name comes exactly once.
fn fold_stream(body: &str) -> (String, String, Vec<(String, String, String)>, String) {
    let (mut reasoning, mut content, mut finish) = (String::new(), String::new(), String::new());
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let events = parse_sse(body);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    for ev in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        for choice in v["choices"].as_array().unwrap() {
            let d = &choice["delta"];
            reasoning.push_str(d["reasoning"].as_str().unwrap_or(""));
            content.push_str(d["content"].as_str().unwrap_or(""));
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                let index = tc["index"].as_u64().unwrap() as usize;
                if let Some(name) = tc["function"]["name"].as_str() {
                    assert_eq!(index, calls.len(), "a call's name is sent once, in order");
                    calls.push((
                        tc["id"].as_str().unwrap().into(),
                        name.into(),
                        String::new(),
                    ));
                }
                calls[index]
                    .2
                    .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = f.into();
            }
        }
    }
    (reasoning, content, calls, finish)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_streaming_equal_non_streaming() {
    let srv = server::start(true).await;
    for trigger in ["SCRIPT weather", "SCRIPT two-calls", "SCRIPT no-args"] {
        let (status, body) = post(
            &srv,
            "/v1/chat/completions",
            &chat(trigger, false),
            bearer(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let full: Value = serde_json::from_str(&body).unwrap();
        let choice = &full["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{trigger}: {body}");
        let msg = &choice["message"];
        assert!(
            msg["reasoning"].as_str().is_some_and(|r| !r.is_empty()),
            "{body}"
        );
        let (status, sbody) =
            post(&srv, "/v1/chat/completions", &chat(trigger, true), bearer()).await;
        assert_eq!(status, 200, "{sbody}");
        let (reasoning, content, calls, finish) = fold_stream(&sbody);
        assert_eq!(finish, "tool_calls");
        assert_eq!(
            Some(reasoning.as_str()),
            msg["reasoning"].as_str(),
            "{trigger}"
        );
        assert_eq!(
            content.trim(),
            msg["content"].as_str().unwrap_or("").trim(),
            "{trigger}"
        );
        assert!(
            !content.contains("<tool_call"),
            "tag leaked into content: {content:?}"
        );
        let full_calls = msg["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), full_calls.len(), "{trigger}");
        for (s, f) in calls.iter().zip(full_calls) {
            assert_eq!(s.1, f["function"]["name"].as_str().unwrap());
            assert_eq!(
                s.2,
                f["function"]["arguments"].as_str().unwrap(),
                "concatenated fragments == arguments"
            );
            assert!(s.0.starts_with("chatcmpl-tool-"));
        }
    }
    // Exact values, typed by the schema.
    let (_, body) = post(
        &srv,
        "/v1/chat/completions",
        &chat("SCRIPT two-calls", false),
        bearer(),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["reasoning"], "Two lookups.");
    assert_eq!(msg["content"].as_str().unwrap().trim(), "Checking both.");
    let args: Vec<Value> = msg["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        args,
        [
            json!({"city": "北京 \"centre\"\nline 2"}),
            json!({"tz": "Asia/Shanghai"})
        ]
    );
    let (_, body) = post(
        &srv,
        "/v1/chat/completions",
        &chat("SCRIPT weather", false),
        bearer(),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris", "days": 3}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasoning_thinking_off_and_tool_choice_none() {
    let srv = server::start(true).await;
    let mut req = chat("SCRIPT hello", false);
    let (_, body) = post(&srv, "/v1/chat/completions", &req, bearer()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["reasoning"], "Just greet.",
        "{body}"
    );
    assert_eq!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .trim(),
        "Hello! I am a GLM test model."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    req["include_reasoning"] = json!(false);
    let (_, body) = post(&srv, "/v1/chat/completions", &req, bearer()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["choices"][0]["message"]
            .get("reasoning")
            .is_none_or(Value::is_null),
        "{body}"
    );

    let mut req = chat("SCRIPT nothink", false);
    req["chat_template_kwargs"] = json!({"enable_thinking": false});
    let (_, body) = post(&srv, "/v1/chat/completions", &req, bearer()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"], "Plain answer without thinking.",
        "{body}"
    );
    assert!(v["choices"][0]["message"]
        .get("reasoning")
        .is_none_or(Value::is_null));

    let mut req = chat("SCRIPT weather", false);
    req["tool_choice"] = json!("none");
    let (_, body) = post(&srv, "/v1/chat/completions", &req, bearer()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        content.contains("<tool_call>get_weather"),
        "tool_choice none keeps the call as text: {body}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_with_tool_calls_and_results_is_accepted() {
    let srv = server::start(true).await;
    let req = json!({
        "model": server::MODEL,
        "tools": tools(),
        "messages": [
            {"role": "user", "content": "SCRIPT weather"},
            {"role": "assistant", "content": null, "reasoning_content": "call it",
             "tool_calls": [{"id": "call_1", "type": "function",
                             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 3}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "SCRIPT sunny-result"}
        ],
    });
    let (status, body) = post(&srv, "/v1/chat/completions", &req, bearer()).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .trim(),
        "It is sunny in Paris."
    );

    let mut bad = req.clone();
    bad["messages"][1]["tool_calls"][0]["function"]["arguments"] = json!("{not json");
    let (status, body) = post(&srv, "/v1/chat/completions", &bad, bearer()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("messages[1].tool_calls[0].function.arguments"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_tool_choice_needs_the_server_flag() {
    let srv = server::start(false).await;
    let (status, body) = post(
        &srv,
        "/v1/chat/completions",
        &chat("SCRIPT weather", false),
        bearer(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["param"], "tool_choice");
    assert!(body.contains("--enable-auto-tool-choice"), "{body}");
    // A named function still parses (no guided decoding; see postprocess docs).
    let mut req = chat("SCRIPT weather", false);
    req["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
    let (status, body) = post(&srv, "/v1/chat/completions", &req, bearer()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"tool_calls\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk() {
    let Some(python) = sdk_python() else { return };
    let srv = server::start(true).await;
    run_sdk_script(python, "openai_tools.py", &srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glm47_layout_starts_inside_reasoning() {
    let srv = server::start_layout(true, server::Layout::Glm47).await;
    let (status, body) = post(
        &srv,
        "/v1/chat/completions",
        &chat("SCRIPT g47-call", false),
        bearer(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["reasoning"], "The user wants the time.", "{body}");
    assert_eq!(msg["content"], "Let me check.");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let calls: Vec<(&str, &str)> = msg["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["function"]["name"].as_str().unwrap(),
                c["function"]["arguments"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(calls, [("get_time", r#"{"tz": "UTC"}"#), ("now", "{}")]);
    let (_, sbody) = post(
        &srv,
        "/v1/chat/completions",
        &chat("SCRIPT g47-call", true),
        bearer(),
    )
    .await;
    let (reasoning, content, scalls, finish) = fold_stream(&sbody);
    assert_eq!(
        (reasoning.as_str(), content.as_str(), finish.as_str()),
        ("The user wants the time.", "Let me check.", "tool_calls")
    );
    let scalls: Vec<(&str, &str)> = scalls
        .iter()
        .map(|c| (c.1.as_str(), c.2.as_str()))
        .collect();
    assert_eq!(scalls, calls);

    let mut req = chat("SCRIPT g47-hello", false);
    req["chat_template_kwargs"] = json!({"enable_thinking": true});
    let (_, body) = post(&srv, "/v1/chat/completions", &req, bearer()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["reasoning"], "A greeting.",
        "{body}"
    );
    assert_eq!(v["choices"][0]["message"]["content"], "Hi!");
}
