//! Differential test: every case of vllm_corpus.json (outputs run through vLLM 0.32's own
//! glm45/glm47 parsers by make_vllm_corpus.py) parses to the same reasoning, content and
//! tool calls here, and streaming in pieces of 1..=7 characters adds up to the same result.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod support;

use glm_parsers::{
    OutputParser, OutputParserConfig, ReasoningParserKind, ToolCallIdGenerator, ToolParserKind,
    ToolParserOptions, ToolSet,
};
use serde_json::Value;

fn corpus() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vllm_corpus.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Cases whose streamed arguments cannot equal the final ones: a repeated key rewrites an
/// earlier value (Python dict semantics), after that value was already streamed.
const STREAM_EXEMPT: &[&str] = &["glm45_duplicate_key"];

fn config_for(key: &str, case: &Value, drop_tokens: &[String]) -> OutputParserConfig {
    let (reasoning, tool) = match key {
        "reasoning_only" => (ReasoningParserKind::Glm45, ToolParserKind::None),
        "combined/glm45" => (ReasoningParserKind::Glm45, ToolParserKind::Glm45),
        "combined/glm47" => (ReasoningParserKind::Glm45, ToolParserKind::Glm47),
        "tool_only/glm45" => (ReasoningParserKind::None, ToolParserKind::Glm45),
        "tool_only/glm47" => (ReasoningParserKind::None, ToolParserKind::Glm47),
        other => panic!("unknown key {other}"),
    };
    let tools = ToolSet::from_json(&case["tools"]).unwrap();
    let tool_choice_none = case.get("tool_choice").and_then(Value::as_str) == Some("none");
    OutputParserConfig {
        reasoning,
        tool,
        thinking_enabled: case["thinking"].as_bool().unwrap(),
        starts_in_reasoning: true,
        tool_options: ToolParserOptions {
            suppress_tool_calls: tool_choice_none && !tools.is_empty(),
            drop_tokens: drop_tokens.to_vec(),
            ids: ToolCallIdGenerator::sequential("call_"),
            ..Default::default()
        },
        tools,
    }
}

#[test]
fn corpus_has_enough_cases() {
    let corpus = corpus();
    assert_eq!(
        corpus["source"], "vllm",
        "expectations must come from vLLM itself"
    );
    assert!(corpus["cases"].as_array().unwrap().len() >= 50);
}

#[test]
fn every_corpus_case_matches_vllm() {
    let corpus = corpus();
    let drop_tokens: Vec<String> = serde_json::from_value(corpus["drop_tokens"].clone()).unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in corpus["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        for (key, expected) in case["expected"].as_object().unwrap() {
            let parser = OutputParser::new(config_for(key, case, &drop_tokens));
            let mut got = parser.parse(text);
            // Without tools vLLM's tool_choice is "none": calls are parsed out of the
            // content but not returned.
            if case["tools"].is_null() {
                got.tool_calls.clear();
            }
            let got_calls: Vec<Value> = got
                .tool_calls
                .iter()
                .map(|c| serde_json::json!({"name": c.name, "arguments": c.arguments}))
                .collect();
            let got_json = serde_json::json!({
                "reasoning": got.reasoning,
                "content": got.content,
                "tool_calls": got_calls,
            });
            checked += 1;
            if &got_json != expected {
                failures.push(format!(
                    "{name} [{key}]\n  text:     {text:?}\n  expected: {expected}\n  got:      {got_json}"
                ));
                continue;
            }
            if !STREAM_EXEMPT.contains(&name) {
                let whole = parser.parse(text);
                let label = format!("{name} [{key}]");
                if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    support::assert_stream_matches(&parser, text, &whole, &label)
                })) {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| "stream mismatch".into());
                    failures.push(msg);
                }
            }
        }
    }
    assert!(checked >= 250, "only {checked} comparisons");
    assert!(
        failures.is_empty(),
        "{} of {checked} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Re-runs the generator against the installed vLLM (`--check`): the committed corpus must
/// be exactly what vLLM's parsers produce. Needs the vLLM venv of server/fixtures/README.md
/// (`GLM_VLLM_PYTHON`, default /root/venv-vllm/bin/python); skipped when it is absent.
#[test]
fn corpus_is_current_with_installed_vllm() {
    let python = std::env::var("GLM_VLLM_PYTHON")
        .unwrap_or_else(|_| "/root/venv-vllm/bin/python".to_string());
    if !std::path::Path::new(&python).exists() {
        println!("skipping: no vLLM python at {python} (set GLM_VLLM_PYTHON)");
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let output = std::process::Command::new(&python)
        .arg(dir.join("make_vllm_corpus.py"))
        .arg("--check")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "vllm_corpus.json differs from what vLLM produces:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
