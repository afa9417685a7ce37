//! Normalised histories render through the fixture GLM templates exactly as transformers
//! renders the same conversation with mapping arguments (server/fixtures/chat-templates).

use std::path::PathBuf;

use glm_tokenizer::{ChatTemplate, SpecialTokens};
use serde_json::{json, Map, Value};

use super::normalize_messages;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/chat-templates")
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn template(name: &str) -> ChatTemplate {
    ChatTemplate::from_file(&fixtures().join(name), SpecialTokens::default()).unwrap()
}

fn render(case: &Value, messages: &[Value]) -> String {
    let kwargs: Map<String, Value> = case["kwargs"].as_object().cloned().unwrap_or_default();
    template(case["template"].as_str().unwrap())
        .render(
            &Value::Array(messages.to_vec()),
            case.get("tools"),
            case["add_generation_prompt"].as_bool().unwrap(),
            &kwargs,
        )
        .unwrap()
}

fn all_mapping_args(messages: &[Value]) -> bool {
    messages.iter().all(|m| {
        m.get("tool_calls")
            .and_then(Value::as_array)
            .map(|calls| {
                calls.iter().all(|c| {
                    let f = c.get("function").unwrap_or(c);
                    f.get("arguments").is_none_or(Value::is_object)
                })
            })
            .unwrap_or(true)
    })
}

/// Histories whose arguments are already mappings are unchanged by normalisation.
#[test]
fn normalisation_keeps_every_mapping_case_byte_exact() {
    let mut checked = 0;
    for case in cases() {
        if case.get("expected_text").is_none() {
            continue;
        }
        let messages = case["messages"].as_array().unwrap();
        if !all_mapping_args(messages) {
            continue;
        }
        let normalised = normalize_messages(messages).unwrap();
        assert_eq!(
            render(&case, &normalised),
            case["expected_text"].as_str().unwrap(),
            "case {}",
            case["name"]
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} cases checked");
}

/// OpenAI clients send arguments as JSON strings: after normalisation the template renders
/// them exactly as transformers renders the mapping form (the way the model was trained).
#[test]
fn string_arguments_render_as_the_trained_mapping_form() {
    let mut checked = 0;
    for case in cases() {
        let Some(expected) = case.get("expected_text").and_then(Value::as_str) else {
            continue;
        };
        let messages = case["messages"].as_array().unwrap();
        if !all_mapping_args(messages) || !messages.iter().any(|m| m.get("tool_calls").is_some()) {
            continue;
        }
        let stringified: Vec<Value> = messages
            .iter()
            .map(|m| {
                let mut m = m.clone();
                if let Some(calls) = m.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    for c in calls {
                        let f = if c.get("function").is_some() {
                            c.get_mut("function").unwrap()
                        } else {
                            c
                        };
                        let args = f["arguments"].to_string();
                        f["arguments"] = Value::String(args);
                    }
                }
                m
            })
            .collect();
        assert_ne!(stringified, *messages);
        let normalised = normalize_messages(&stringified).unwrap();
        assert_eq!(
            render(&case, &normalised),
            expected,
            "case {}",
            case["name"]
        );
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} cases checked");
}

/// The fixture's raw-string case: rendered raw by the template alone, but as
/// `<arg_key>/<arg_value>` pairs once normalised (what vLLM feeds the model).
#[test]
fn json_string_case_becomes_arg_pairs() {
    let case = cases()
        .into_iter()
        .find(|c| c["name"] == "glm45_tool_call_json_string_arguments")
        .unwrap();
    let messages = case["messages"].as_array().unwrap();
    let raw = render(&case, messages);
    assert_eq!(raw, case["expected_text"].as_str().unwrap());
    let normalised = render(&case, &normalize_messages(messages).unwrap());
    assert_ne!(normalised, raw);
    let raw_call = "<tool_call>get_weather\n{\"city\": \"Shanghai\", \"days\": 2, \"unit\": \"fahrenheit\"}\n</tool_call>";
    let pairs =
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Shanghai</arg_value>\n\
                 <arg_key>days</arg_key>\n<arg_value>2</arg_value>\n\
                 <arg_key>unit</arg_key>\n<arg_value>fahrenheit</arg_value>\n</tool_call>";
    assert!(raw.contains(raw_call), "{raw}");
    assert_eq!(normalised, raw.replace(raw_call, pairs));
}

#[test]
fn glm45_tool_history_renders_pairs_and_observation() {
    let messages = vec![
        json!({"role": "user", "content": "Weather in Paris?"}),
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 2}"}
        }]}),
        json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"}),
    ];
    let out = template("glm45.jinja")
        .render(
            &Value::Array(normalize_messages(&messages).unwrap()),
            None,
            true,
            &Map::new(),
        )
        .unwrap();
    assert_eq!(
        out,
        "[gMASK]<sop><|user|>\nWeather in Paris?<|assistant|>\n<think></think>\n<tool_call>get_weather\n\
         <arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>days</arg_key>\n\
         <arg_value>2</arg_value>\n</tool_call><|observation|>\n<tool_response>\nsunny\n\
         </tool_response><|assistant|>"
    );
}

#[test]
fn empty_and_null_arguments_become_empty_objects() {
    for args in [Value::Null, json!(""), json!("  ")] {
        let m = json!({"role": "assistant", "tool_calls": [{"function": {"name": "now", "arguments": args}}]});
        let out = normalize_messages(&[m]).unwrap();
        assert_eq!(out[0]["tool_calls"][0]["function"]["arguments"], json!({}));
    }
}

#[test]
fn bad_histories_are_rejected_by_field() {
    let table: Vec<(Value, &str)> = vec![
        (
            json!({"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{not json"}}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            json!({"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1, 2]"}}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            json!({"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "x"}}]}),
            "messages[0].content[1].type",
        ),
        (json!({"content": "no role"}), "messages[0].role"),
        (json!("just a string"), "messages[0]"),
    ];
    for (message, field) in table {
        let err = normalize_messages(std::slice::from_ref(&message)).unwrap_err();
        assert_eq!(err.field(), field, "{message}");
        assert_eq!(err.kind(), "invalid_request");
    }
}
