//! Anthropic Messages API over HTTP with a scripted token source behind the engine.
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

use client::{bearer, parse_sse, post, run_sdk_script, sdk_python, x_api_key};

fn tools() -> Value {
    json!([
        {"name": "get_weather", "description": "Weather",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}}
    ])
}

fn messages(trigger: &str, stream: bool) -> Value {
    json!({
        "model": server::MODEL,
        "max_tokens": 200,
        "system": [{"type": "text", "text": "You are a test.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": trigger}]}],
        "tools": tools(),
        "metadata": {"user_id": "u"},
        "stream": stream,
    })
}

/// Rebuilds a message from the event stream as the SDK does, checking the event order.
fn fold_events(body: &str) -> Value {
    let events = parse_sse(body);
    let mut message = Value::Null;
    let mut json_buf = String::new();
    let mut order = Vec::new();
    for ev in &events {
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        assert_eq!(
            ev.event.as_deref(),
            v["type"].as_str(),
            "event name == type"
        );
        order.push(v["type"].as_str().unwrap().to_string());
        match v["type"].as_str().unwrap() {
            "message_start" => message = v["message"].clone(),
            "content_block_start" => {
                message["content"]
                    .as_array_mut()
                    .unwrap()
                    .push(v["content_block"].clone());
                json_buf.clear();
            }
            "content_block_delta" => {
                let i = v["index"].as_u64().unwrap() as usize;
                let block = &mut message["content"][i];
                let d = &v["delta"];
                match d["type"].as_str().unwrap() {
                    "text_delta" => {
                        block["text"] = json!(format!(
                            "{}{}",
                            block["text"].as_str().unwrap(),
                            d["text"].as_str().unwrap()
                        ))
                    }
                    "thinking_delta" => {
                        block["thinking"] = json!(format!(
                            "{}{}",
                            block["thinking"].as_str().unwrap(),
                            d["thinking"].as_str().unwrap()
                        ))
                    }
                    "signature_delta" => block["signature"] = d["signature"].clone(),
                    "input_json_delta" => json_buf.push_str(d["partial_json"].as_str().unwrap()),
                    other => panic!("unknown delta {other}"),
                }
            }
            "content_block_stop" => {
                let i = v["index"].as_u64().unwrap() as usize;
                if message["content"][i]["type"] == "tool_use" && !json_buf.is_empty() {
                    message["content"][i]["input"] = serde_json::from_str(&json_buf).unwrap();
                }
            }
            "message_delta" => {
                message["stop_reason"] = v["delta"]["stop_reason"].clone();
                message["stop_sequence"] = v["delta"]["stop_sequence"].clone();
                message["usage"]["output_tokens"] = v["usage"]["output_tokens"].clone();
            }
            "message_stop" | "ping" => {}
            other => panic!("unexpected event {other}: {}", ev.data),
        }
    }
    assert_eq!(order.first().map(String::as_str), Some("message_start"));
    assert_eq!(order.last().map(String::as_str), Some("message_stop"));
    message
}

fn without_ids(mut m: Value) -> Value {
    m["id"] = Value::Null;
    for block in m["content"].as_array_mut().unwrap() {
        if block["type"] == "tool_use" {
            block["id"] = Value::Null;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_use_and_thinking_blocks_streaming_and_not() {
    let srv = server::start(true).await;
    for (trigger, stop_reason) in [
        ("SCRIPT weather", "tool_use"),
        ("SCRIPT two-calls", "tool_use"),
        ("SCRIPT no-args", "tool_use"),
        ("SCRIPT hello", "end_turn"),
    ] {
        let (status, body) =
            post(&srv, "/v1/messages", &messages(trigger, false), x_api_key()).await;
        assert_eq!(status, 200, "{body}");
        let full: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(full["type"], "message");
        assert_eq!(full["role"], "assistant");
        assert!(full["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(full["stop_reason"], stop_reason, "{trigger}: {body}");
        assert_eq!(full["content"][0]["type"], "thinking", "{body}");
        assert!(full["usage"]["input_tokens"].as_u64().unwrap() > 10);
        assert!(full["usage"]["output_tokens"].as_u64().unwrap() > 3);
        let (status, sbody) = post(
            &srv,
            "/v1/messages?beta=true",
            &messages(trigger, true),
            x_api_key(),
        )
        .await;
        assert_eq!(status, 200, "{sbody}");
        let streamed = fold_events(&sbody);
        assert_eq!(
            without_ids(streamed),
            without_ids(full.clone()),
            "{trigger}"
        );
    }
    let (_, body) = post(
        &srv,
        "/v1/messages",
        &messages("SCRIPT weather", false),
        x_api_key(),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let types: Vec<&str> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["thinking", "tool_use"], "{body}");
    assert_eq!(
        v["content"][0]["thinking"],
        "The user wants the weather, so I call the tool."
    );
    assert_eq!(v["content"][1]["name"], "get_weather");
    assert_eq!(
        v["content"][1]["input"],
        json!({"city": "Paris", "days": 3})
    );

    let (_, body) = post(
        &srv,
        "/v1/messages",
        &messages("SCRIPT two-calls", false),
        bearer(),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let types: Vec<&str> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["thinking", "text", "tool_use", "tool_use"],
        "{body}"
    );
    assert_eq!(v["content"][3]["input"], json!({"tz": "Asia/Shanghai"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_result_round_trip_stop_sequences_and_thinking_off() {
    let srv = server::start(true).await;
    let req = json!({
        "model": server::MODEL, "max_tokens": 100, "tools": tools(),
        "messages": [
            {"role": "user", "content": "SCRIPT weather"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "call it", "signature": "glm-0"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris", "days": 3}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "SCRIPT sunny-result"}]}]}
        ]
    });
    let (status, body) = post(&srv, "/v1/messages", &req, x_api_key()).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["content"][1]["text"].as_str().unwrap().trim(),
        "It is sunny in Paris.",
        "{body}"
    );
    assert_eq!(v["stop_reason"], "end_turn");

    let mut req = messages("SCRIPT stopseq", false);
    req["stop_sequences"] = json!(["END"]);
    let (_, body) = post(&srv, "/v1/messages", &req, x_api_key()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["stop_reason"], "stop_sequence", "{body}");
    assert_eq!(v["stop_sequence"], "END");
    assert_eq!(
        v["content"][1]["text"].as_str().unwrap().trim(),
        "alpha beta"
    );

    let mut req = messages("SCRIPT nothink", false);
    req["thinking"] = json!({"type": "disabled"});
    let (_, body) = post(&srv, "/v1/messages", &req, x_api_key()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Plain answer without thinking."}]),
        "{body}"
    );

    // tool_choice {"type": "tool"}: only that tool's calls are kept (no guided decoding).
    let mut req = messages("SCRIPT two-calls", false);
    req["tool_choice"] = json!({"type": "tool", "name": "get_time"});
    let (_, body) = post(&srv, "/v1/messages", &req, x_api_key()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    assert_eq!(names, ["get_time"], "{body}");
    assert_eq!(v["stop_reason"], "tool_use");

    // Claude Code sends max_tokens far above the context: capped, not refused.
    let mut req = messages("SCRIPT hello", false);
    req["max_tokens"] = json!(32000);
    let (status, body) = post(&srv, "/v1/messages", &req, x_api_key()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["stop_reason"],
        "end_turn"
    );

    let mut req = messages("SCRIPT hello", false);
    req["max_tokens"] = json!(3);
    let (_, body) = post(&srv, "/v1/messages", &req, x_api_key()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["stop_reason"], "max_tokens", "{body}");
    assert_eq!(v["usage"]["output_tokens"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_tokens_and_errors() {
    let srv = server::start(true).await;
    let req = json!({"model": server::MODEL, "messages": [{"role": "user", "content": "hello there"}], "tools": tools()});
    let (status, body) = post(&srv, "/v1/messages/count_tokens", &req, x_api_key()).await;
    assert_eq!(status, 200, "{body}");
    let with_tools = serde_json::from_str::<Value>(&body).unwrap()["input_tokens"]
        .as_u64()
        .unwrap();
    let no_tools =
        json!({"model": server::MODEL, "messages": [{"role": "user", "content": "hello there"}]});
    let (_, body) = post(&srv, "/v1/messages/count_tokens", &no_tools, x_api_key()).await;
    let plain = serde_json::from_str::<Value>(&body).unwrap()["input_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        with_tools > plain + 20 && plain > 5,
        "{with_tools} vs {plain}"
    );
    // The same prompt generates with that many input tokens.
    let mut gen = no_tools.clone();
    gen["max_tokens"] = json!(5);
    let (_, body) = post(&srv, "/v1/messages", &gen, x_api_key()).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["usage"]["input_tokens"],
        json!(plain)
    );

    let table = [
        (
            json!({"model": server::MODEL, "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
            "max_tokens",
        ),
        (
            json!({"model": server::MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]}),
            400,
            "invalid_request_error",
            "image",
        ),
        (
            json!({"model": "claude-nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            404,
            "not_found_error",
            "claude-nope",
        ),
    ];
    for (req, status, kind, needle) in table {
        let (got, body) = post(&srv, "/v1/messages", &req, x_api_key()).await;
        assert_eq!(got, status, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "error", "{body}");
        assert_eq!(v["error"]["type"], kind, "{body}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{body}"
        );
    }
    for path in ["/v1/messages", "/v1/messages/count_tokens?beta=true"] {
        let wrong = ("x-api-key", "wrong".to_string());
        let (got, body) = post(&srv, path, &messages("SCRIPT hello", false), wrong).await;
        assert_eq!(got, 401, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let expected = json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}});
        assert_eq!(v, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_python_sdk() {
    let Some(python) = sdk_python() else { return };
    let srv = server::start(true).await;
    run_sdk_script(python, "anthropic_messages.py", &srv).await;
}
