//! Byte-exact comparison with transformers' `apply_chat_template` on the fixture cases
//! (server/fixtures/chat-templates/cases.json, made by transformers 5.23.0).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::path::PathBuf;

use glm_tokenizer::{ChatTemplate, GlmTokenizer};
use serde_json::{Map, Value};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// A readable first-difference report for a failed comparison.
fn diff(expected: &str, actual: &str) -> String {
    let at = expected
        .char_indices()
        .zip(actual.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| expected.len().min(actual.len()));
    let from = expected[..at]
        .char_indices()
        .rev()
        .nth(40)
        .map_or(0, |(i, _)| i);
    let from_actual = actual
        .char_indices()
        .map(|(i, _)| i)
        .rfind(|i| *i <= from)
        .unwrap_or(0);
    format!(
        "first difference at byte {at}\n  expected: {:?}\n  actual:   {:?}\nfull expected:\n{expected}\nfull actual:\n{actual}",
        &expected[from..expected.len().min(at + 40)],
        &actual[from_actual..actual.len().min(at + 40)],
    )
}

#[test]
fn every_fixture_case_matches_transformers() {
    let dir = fixtures().join("chat-templates");
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let tokenizer = GlmTokenizer::from_dir(&fixtures().join("tokenizer")).unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let template_file = case["template"].as_str().unwrap();
        let template =
            ChatTemplate::from_file(&dir.join(template_file), tokenizer.special_tokens().clone())
                .unwrap();
        let kwargs: Map<String, Value> = case
            .get("kwargs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let result = template.render(
            &case["messages"],
            case.get("tools"),
            case["add_generation_prompt"].as_bool().unwrap(),
            &kwargs,
        );
        checked += 1;
        if let Some(expected_error) = case.get("expected_error").and_then(Value::as_str) {
            match result {
                Err(e)
                    if e.kind() == "template_raised" && e.to_string().contains(expected_error) => {}
                other => failures.push(format!(
                    "{name}: expected error {expected_error:?}, got {other:?}"
                )),
            }
            continue;
        }
        let expected = case["expected_text"].as_str().unwrap();
        match result {
            Ok(text) if text == expected => {
                let ids = tokenizer.encode(&text, false).unwrap();
                let expected_ids: Vec<u32> =
                    serde_json::from_value(case["expected_ids"].clone()).unwrap();
                if ids != expected_ids {
                    failures.push(format!("{name}: text equal but ids differ"));
                }
            }
            Ok(text) => failures.push(format!("{name}: {}", diff(expected, &text))),
            Err(e) => failures.push(format!("{name}: render failed: {e}")),
        }
    }
    assert!(checked >= 27, "only {checked} cases found");
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn model_directories_ship_a_working_template() {
    let messages = serde_json::json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "again"}
    ]);
    for model in ["tokenizer", "glm4moe-tiny", "glm4moelite-tiny"] {
        let tok = GlmTokenizer::from_dir(&fixtures().join(model)).unwrap();
        let template = tok.chat_template().unwrap();
        let text = template.render(&messages, None, true, &Map::new()).unwrap();
        assert_eq!(
            text,
            "[gMASK]<sop><|system|>\nBe brief.<|user|>\n你好<|assistant|>\n<think></think>\nHi!<|user|>\nagain<|assistant|>",
            "{model}"
        );
        let mut off = Map::new();
        off.insert("enable_thinking".into(), Value::Bool(false));
        let text = template.render(&messages, None, true, &off).unwrap();
        assert!(
            text.ends_with("<|user|>\nagain/nothink<|assistant|>\n<think></think>"),
            "{model}: {text}"
        );
    }
}

#[test]
fn tojson_matches_python_json_dumps() {
    let template = ChatTemplate::from_source(
        "{{ x | tojson }}|{{ x | tojson(ensure_ascii=True) }}|{{ x | tojson(indent=2) }}|{{ x | tojson(separators=(',', ':'), sort_keys=true) }}",
        Default::default(),
    )
    .unwrap();
    let mut kwargs = Map::new();
    kwargs.insert(
        "x".into(),
        serde_json::json!({"b": "<a href='x'>&\u{e9}", "a": [1, 2.0, null, true]}),
    );
    let out = template
        .render(&serde_json::json!([]), None, false, &kwargs)
        .unwrap();
    assert_eq!(
        out,
        "{\"b\": \"<a href='x'>&\u{e9}\", \"a\": [1, 2.0, null, true]}|\
         {\"b\": \"<a href='x'>&\\u00e9\", \"a\": [1, 2.0, null, true]}|\
         {\n  \"b\": \"<a href='x'>&\u{e9}\",\n  \"a\": [\n    1,\n    2.0,\n    null,\n    true\n  ]\n}|\
         {\"a\":[1,2.0,null,true],\"b\":\"<a href='x'>&\u{e9}\"}"
    );
}

#[test]
fn python_str_of_values_and_special_token_variables() {
    let template = ChatTemplate::from_source(
        "{{ eos_token }} {{ a }} {{ b }} {{ c }} {{ d }} {{ e }}{{ missing }}|{{ bos_token is defined }}",
        GlmTokenizer::from_dir(&fixtures().join("tokenizer"))
            .unwrap()
            .special_tokens()
            .clone(),
    )
    .unwrap();
    let kwargs: Map<String, Value> = serde_json::from_value(serde_json::json!({
        "a": null, "b": true, "c": 1.0, "d": ["x", 2], "e": {"k": false}
    }))
    .unwrap();
    let out = template
        .render(&serde_json::json!([]), None, false, &kwargs)
        .unwrap();
    assert_eq!(
        out,
        "<|endoftext|> None True 1.0 ['x', 2] {'k': False}|False"
    );
}

#[test]
fn messages_are_preprocessed_like_transformers() {
    let template = ChatTemplate::from_source(
        "{% for m in messages %}{{ m.role }}:{{ m.content is defined }}:{{ m.reasoning_content }}:{{ m.thinking }};{% endfor %}{{ tools }}",
        Default::default(),
    )
    .unwrap();
    let messages = serde_json::json!([
        {"role": "assistant", "content": null, "reasoning": "r1"},
        {"role": "assistant", "content": "x", "thinking": "t", "reasoning": "r2"},
    ]);
    let out = template
        .render(&messages, None, false, &Map::new())
        .unwrap();
    assert_eq!(out, "assistant:False:r1:r1;assistant:True:t:t;None");
}

#[test]
fn errors_have_kinds() {
    let err = ChatTemplate::from_source("{% if %}", Default::default()).unwrap_err();
    assert_eq!(err.kind(), "template_syntax");
    let template =
        ChatTemplate::from_source("{{ raise_exception('nope: ' ~ x) }}", Default::default())
            .unwrap();
    let mut kwargs = Map::new();
    kwargs.insert("x".into(), Value::from(3));
    let err = template
        .render(&serde_json::json!([]), None, false, &kwargs)
        .unwrap_err();
    assert_eq!(err.kind(), "template_raised");
    assert_eq!(err.to_string(), "chat template error: nope: 3");
    assert!(err.is_client_error());
    let err = template
        .render(&serde_json::json!({}), None, false, &kwargs)
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_input");
    let err = GlmTokenizer::from_dir(std::path::Path::new("/nonexistent")).unwrap_err();
    assert_eq!(err.kind(), "tokenizer_load");
    let err = ChatTemplate::from_dir(std::path::Path::new("/nonexistent")).unwrap_err();
    assert_eq!(err.kind(), "template_missing");
}

#[test]
fn named_templates_pick_tool_use_when_tools_are_given() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"eos_token": {"content": "</s>", "__type": "AddedToken"}, "chat_template": [
            {"name": "default", "template": "D{{ eos_token }}"},
            {"name": "tool_use", "template": "T{{ tools | length }}"}]}"#,
    )
    .unwrap();
    let template = ChatTemplate::from_dir(dir.path()).unwrap();
    let none = Map::new();
    let msgs = serde_json::json!([]);
    assert_eq!(template.render(&msgs, None, false, &none).unwrap(), "D</s>");
    let tools = serde_json::json!([{"type": "function"}]);
    assert_eq!(
        template.render(&msgs, Some(&tools), false, &none).unwrap(),
        "T1"
    );
    assert_eq!(
        template
            .render_named(Some("default"), &msgs, Some(&tools), false, &none)
            .unwrap(),
        "D</s>"
    );
    assert_eq!(
        template
            .render_named(Some("x"), &msgs, None, false, &none)
            .unwrap_err()
            .kind(),
        "template_not_found"
    );
    // chat_template.jinja overrides the config's default.
    std::fs::write(dir.path().join("chat_template.jinja"), "J").unwrap();
    let template = ChatTemplate::from_dir(dir.path()).unwrap();
    assert_eq!(template.render(&msgs, None, false, &none).unwrap(), "J");
    assert_eq!(template.names(), ["default", "tool_use"]);
}
