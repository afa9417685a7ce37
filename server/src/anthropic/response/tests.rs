use serde_json::{json, Value};

use super::*;
use crate::postprocess::{ChatDelta, ChatFinishReason, ChatOutput, ToolCall};

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "msg_1".into(),
        model: "glm".into(),
        input_tokens: 12,
        output_tokens: 34,
        stop_sequence: None,
    }
}

/// Rebuilds the message from events the way the Anthropic SDKs' stream accumulators do,
/// checking the protocol's ordering rules on the way.
fn accumulate(events: &[StreamEvent]) -> Value {
    let mut message: Option<Value> = None;
    let mut open: Option<usize> = None;
    let mut json_buf = String::new();
    let mut stopped = false;
    for ev in events {
        assert!(!stopped, "event after message_stop: {ev:?}");
        let v = serde_json::to_value(ev).unwrap();
        assert_eq!(v["type"], ev.name(), "SSE event name matches type");
        match ev {
            StreamEvent::MessageStart { .. } => {
                assert!(message.is_none(), "one message_start");
                message = Some(v["message"].clone());
            }
            StreamEvent::Ping => {}
            StreamEvent::ContentBlockStart { index, .. } => {
                assert!(
                    open.is_none(),
                    "block {index} started while another is open"
                );
                let content = message.as_mut().unwrap()["content"].as_array_mut().unwrap();
                assert_eq!(*index, content.len(), "block indexes are consecutive");
                content.push(v["content_block"].clone());
                open = Some(*index);
                json_buf.clear();
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                assert_eq!(Some(*index), open, "delta for the open block");
                let block = &mut message.as_mut().unwrap()["content"][*index];
                match delta {
                    BlockDelta::TextDelta { text } => {
                        assert_eq!(block["type"], "text");
                        block["text"] = json!(block["text"].as_str().unwrap().to_string() + text);
                    }
                    BlockDelta::ThinkingDelta { thinking } => {
                        assert_eq!(block["type"], "thinking");
                        block["thinking"] =
                            json!(block["thinking"].as_str().unwrap().to_string() + thinking);
                    }
                    BlockDelta::SignatureDelta { signature } => {
                        assert_eq!(block["type"], "thinking");
                        block["signature"] = json!(signature);
                    }
                    BlockDelta::InputJsonDelta { partial_json } => {
                        assert_eq!(block["type"], "tool_use");
                        json_buf.push_str(partial_json);
                    }
                }
            }
            StreamEvent::ContentBlockStop { index } => {
                assert_eq!(Some(*index), open);
                let block = &mut message.as_mut().unwrap()["content"][*index];
                if block["type"] == "tool_use" && !json_buf.is_empty() {
                    block["input"] = serde_json::from_str(&json_buf).unwrap();
                }
                open = None;
            }
            StreamEvent::MessageDelta { delta, usage } => {
                assert!(open.is_none(), "message_delta with a block open");
                let m = message.as_mut().unwrap();
                m["stop_reason"] = json!(delta.stop_reason);
                m["stop_sequence"] = json!(delta.stop_sequence);
                m["usage"]["output_tokens"] = json!(usage.output_tokens);
            }
            StreamEvent::MessageStop => stopped = true,
            StreamEvent::Error { .. } => panic!("unexpected error event"),
        }
    }
    assert!(stopped, "stream ends with message_stop");
    message.unwrap()
}

fn names(events: &[StreamEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            StreamEvent::ContentBlockDelta { delta, .. } => serde_json::to_value(delta).unwrap()
                ["type"]
                .as_str()
                .unwrap()
                .to_string(),
            other => other.name().to_string(),
        })
        .collect()
}

fn stream(
    deltas: Vec<ChatDelta>,
    reason: ChatFinishReason,
    stop: Option<&str>,
) -> Vec<StreamEvent> {
    let mut s = MessageStream::new("msg_1".into(), "glm".into(), 12);
    let mut events = s.start();
    for d in deltas {
        events.extend(s.push(d));
    }
    events.extend(s.finish(reason, stop.map(str::to_string), 34));
    events
}

#[test]
fn thinking_text_and_tool_use_stream_in_order() {
    let deltas = vec![
        ChatDelta::Reasoning("Need ".into()),
        ChatDelta::Reasoning("weather.".into()),
        ChatDelta::Content("\n\n".into()),
        ChatDelta::Content("Checking.".into()),
        ChatDelta::Content("\n".into()),
        ChatDelta::ToolCallStart {
            index: 0,
            id: "call_a".into(),
            name: "get_weather".into(),
        },
        ChatDelta::ToolCallArgs {
            index: 0,
            fragment: "{\"city\": \"Pa".into(),
        },
        ChatDelta::ToolCallArgs {
            index: 0,
            fragment: "ris\"}".into(),
        },
        ChatDelta::ToolCallStart {
            index: 1,
            id: "call_b".into(),
            name: "now".into(),
        },
        ChatDelta::ToolCallArgs {
            index: 1,
            fragment: "{}".into(),
        },
    ];
    let events = stream(deltas, ChatFinishReason::ToolCalls, None);
    assert_eq!(
        names(&events),
        [
            "message_start",
            "ping",
            "content_block_start",
            "thinking_delta",
            "thinking_delta",
            "signature_delta",
            "content_block_stop",
            "content_block_start",
            "text_delta",
            "text_delta",
            "content_block_stop",
            "content_block_start",
            "input_json_delta",
            "input_json_delta",
            "content_block_stop",
            "content_block_start",
            "input_json_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let streamed = accumulate(&events);
    let full = build_message(
        &ChatOutput {
            reasoning: Some("Need weather.".into()),
            content: Some("\n\nChecking.\n".into()),
            tool_calls: vec![
                ToolCall {
                    id: "call_a".into(),
                    name: "get_weather".into(),
                    arguments: "{\"city\": \"Paris\"}".into(),
                },
                ToolCall {
                    id: "call_b".into(),
                    name: "now".into(),
                    arguments: "{}".into(),
                },
            ],
            finish_reason: ChatFinishReason::ToolCalls,
        },
        meta(),
    );
    assert_eq!(streamed, serde_json::to_value(&full).unwrap());
    assert_eq!(full.stop_reason, Some(StopReason::ToolUse));
    assert_eq!(
        streamed["content"][0]["signature"],
        json!(thinking_signature("Need weather."))
    );
}

#[test]
fn whitespace_between_thinking_and_tool_makes_no_text_block() {
    let events = stream(
        vec![
            ChatDelta::Reasoning("r".into()),
            ChatDelta::Content("\n".into()),
            ChatDelta::ToolCallStart {
                index: 0,
                id: "c".into(),
                name: "f".into(),
            },
            ChatDelta::ToolCallArgs {
                index: 0,
                fragment: "{}".into(),
            },
        ],
        ChatFinishReason::ToolCalls,
        None,
    );
    let m = accumulate(&events);
    let types: Vec<&str> = m["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["thinking", "tool_use"]);
}

#[test]
fn stop_reasons_map_like_anthropic() {
    let table = [
        (ChatFinishReason::Stop, None, StopReason::EndTurn, None),
        (
            ChatFinishReason::Stop,
            Some("END"),
            StopReason::StopSequence,
            Some("END"),
        ),
        (
            ChatFinishReason::Length,
            Some("END"),
            StopReason::MaxTokens,
            None,
        ),
        (ChatFinishReason::ToolCalls, None, StopReason::ToolUse, None),
    ];
    for (reason, stop, expected, expected_seq) in table {
        let m = accumulate(&stream(vec![ChatDelta::Content("hi".into())], reason, stop));
        assert_eq!(m["stop_reason"], json!(expected));
        assert_eq!(m["stop_sequence"], json!(expected_seq));
        assert_eq!(
            m["usage"],
            json!({"input_tokens": 12, "output_tokens": 34,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
        );
        let full = build_message(
            &ChatOutput {
                reasoning: None,
                content: Some("hi".into()),
                tool_calls: vec![],
                finish_reason: reason,
            },
            ResponseMeta {
                stop_sequence: stop.map(str::to_string),
                ..meta()
            },
        );
        assert_eq!(m, serde_json::to_value(&full).unwrap());
    }
}

#[test]
fn empty_output_still_makes_a_valid_stream() {
    let events = stream(vec![], ChatFinishReason::Stop, None);
    assert_eq!(
        names(&events),
        ["message_start", "ping", "message_delta", "message_stop"]
    );
    let m = accumulate(&events);
    assert_eq!(m["content"], json!([]));
}

#[test]
fn sse_framing_matches_the_sdk_parser() {
    let ev = StreamEvent::ContentBlockDelta {
        index: 2,
        delta: BlockDelta::InputJsonDelta {
            partial_json: "{\"a\":".into(),
        },
    };
    assert_eq!(
        ev.to_sse(),
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n"
    );
    assert_eq!(
        StreamEvent::MessageStop.to_sse(),
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    );
}

#[test]
fn message_ids_look_like_anthropic_ids() {
    let id = new_message_id();
    assert!(id.starts_with("msg_") && id.len() == 28, "{id}");
    assert_ne!(id, new_message_id());
}
