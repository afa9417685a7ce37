use serde_json::{json, Value};

use super::{parse_request, to_openai_chat};
use crate::anthropic::wire::{CountTokensRequest, MessagesRequest};

fn convert(body: Value) -> Value {
    let req: MessagesRequest = parse_request(body.to_string().as_bytes()).unwrap();
    to_openai_chat(&req).unwrap()
}

fn convert_err(body: Value) -> String {
    match parse_request::<MessagesRequest>(body.to_string().as_bytes()) {
        Err(e) => {
            assert_eq!((e.status, e.kind()), (400, "invalid_request_error"));
            e.message
        }
        Ok(req) => {
            let e = to_openai_chat(&req).unwrap_err();
            assert_eq!((e.status, e.kind()), (400, "invalid_request_error"));
            e.message
        }
    }
}

#[test]
fn plain_request_maps_sampling_and_system() {
    let out = convert(json!({
        "model": "glm-4.5",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Answer in French."}],
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.2, "top_p": 0.9, "top_k": 5,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u1"},
        "stream": true
    }));
    assert_eq!(
        out,
        json!({
            "model": "glm-4.5",
            "messages": [
                {"role": "system", "content": "Be brief.\nAnswer in French."},
                {"role": "user", "content": "Hi"}
            ],
            "max_tokens": 64,
            "stream": true,
            "stream_options": {"include_usage": true},
            "stop": ["END"],
            "temperature": 0.2, "top_p": 0.9, "top_k": 5
        })
    );
}

#[test]
fn tool_round_trip_history_becomes_openai_history() {
    let out = convert(json!({
        "model": "m",
        "max_tokens": 100,
        "tools": [{"name": "get_weather", "description": "Weather",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "auto"},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Need the tool.", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1",
                 "content": [{"type": "text", "text": "sunny"}, {"type": "text", "text": "20C"}]},
                {"type": "text", "text": "Thanks"}
            ]}
        ]
    }));
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Let me check.", "reasoning_content": "Need the tool.",
             "tool_calls": [{"id": "toolu_1", "type": "function",
                             "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny\n20C"},
            {"role": "user", "content": "Thanks"}
        ])
    );
    assert_eq!(
        out["tools"],
        json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    );
    assert_eq!(out["tool_choice"], json!("auto"));
}

#[test]
fn tool_choice_variants_map_to_openai() {
    let table = [
        (json!({"type": "auto"}), json!("auto")),
        (json!({"type": "any"}), json!("required")),
        (json!({"type": "none"}), json!("none")),
        (
            json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true}),
            json!({"type": "function", "function": {"name": "f"}}),
        ),
    ];
    for (choice, expected) in table {
        let out = convert(json!({
            "model": "m", "max_tokens": 1,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": choice
        }));
        assert_eq!(out["tool_choice"], expected);
    }
}

#[test]
fn thinking_config_maps_to_enable_thinking() {
    let base = |thinking: Value, kwargs: Value| {
        let mut body =
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]});
        if !thinking.is_null() {
            body["thinking"] = thinking;
        }
        if !kwargs.is_null() {
            body["chat_template_kwargs"] = kwargs;
        }
        convert(body).get("chat_template_kwargs").cloned()
    };
    assert_eq!(base(Value::Null, Value::Null), None);
    assert_eq!(
        base(
            json!({"type": "enabled", "budget_tokens": 1024}),
            Value::Null
        ),
        None
    );
    assert_eq!(
        base(json!({"type": "disabled"}), Value::Null),
        Some(json!({"enable_thinking": false}))
    );
    // Explicit template kwargs win.
    assert_eq!(
        base(
            json!({"type": "disabled"}),
            json!({"enable_thinking": true, "clear_thinking": false})
        ),
        Some(json!({"enable_thinking": true, "clear_thinking": false}))
    );
}

#[test]
fn tool_result_as_string_and_empty_and_interleaved_text() {
    let out = convert(json!({
        "model": "m", "max_tokens": 1,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "before"},
            {"type": "tool_result", "tool_use_id": "a", "content": "one"},
            {"type": "tool_result", "tool_use_id": "b", "is_error": true},
        ]}]
    }));
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": "before"},
            {"role": "tool", "tool_call_id": "a", "content": "one"},
            {"role": "tool", "tool_call_id": "b", "content": ""}
        ])
    );
}

#[test]
fn invalid_requests_name_the_problem() {
    let table: Vec<(Value, &str)> = vec![
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]}),
            "messages[0].content[0]: image content blocks are not supported",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "a", "content": [{"type": "image", "source": {}}]}]}]}),
            "messages[0].content[0].content[0]: image",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": [
                {"type": "tool_result", "tool_use_id": "a", "content": "x"}]}]}),
            "messages[0].content[0]: tool_result",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
                   "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "tools[0]: server tool type \"web_search_20250305\"",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
                   "tools": [{"name": "f"}]}),
            "tools[0].input_schema: field required",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "ok"}, {"type": "video", "url": "x"}]}]}),
            "messages[0].content[1].type: unknown variant `video`",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": 5}]}),
            "a string or a list of content blocks",
        ),
    ];
    for (body, needle) in table {
        let message = convert_err(body.clone());
        assert!(
            message.contains(needle),
            "{message:?} should contain {needle:?} for {body}"
        );
    }
}

#[test]
fn count_tokens_request_needs_no_max_tokens() {
    let req: CountTokensRequest = parse_request(
        json!({"model": "m", "messages": [{"role": "user", "content": "hello"}], "system": "s"})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let out = to_openai_chat(&MessagesRequest::from(req)).unwrap();
    assert_eq!(
        out["messages"],
        json!([{"role": "system", "content": "s"}, {"role": "user", "content": "hello"}])
    );
}
