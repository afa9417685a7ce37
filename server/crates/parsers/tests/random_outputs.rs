//! Deterministic pseudo-random outputs built from tag fragments, unicode and whitespace:
//! parsing never panics, and streaming in every piece size adds up to the whole parse
//! (arguments exactly; content up to the leading whitespace a call strips).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod support;

use glm_parsers::{
    OutputParser, OutputParserConfig, ReasoningParserKind, ToolCallIdGenerator, ToolParserKind,
    ToolSet,
};
use serde_json::json;

const FRAGMENTS: &[&str] = &[
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<arg_key>",
    "</arg_key>",
    "<arg_value>",
    "</arg_value>",
    "<tool_",
    "</arg",
    "<",
    ">",
    "/",
    "get_weather",
    "city",
    "days",
    "count",
    "北京",
    "😀",
    " ",
    "\n",
    "\\n",
    "3",
    "4.5",
    "true",
    "[1, 2]",
    "{\"a\": 1}",
    "null",
    "text",
    "é",
    "<|observation|>",
    "<|us",
    "er|>",
];

/// A small linear congruential generator: the cases are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

/// Whether some call region names the same argument key twice.
fn has_repeated_key(text: &str) -> bool {
    // Calls end only at `</tool_call>`; a nested `<tool_call>` is argument text.
    text.split("</tool_call>").any(|region| {
        let mut keys: Vec<&str> = Vec::new();
        for part in region.split("<arg_key>").skip(1) {
            let key = part.split("</arg_key>").next().unwrap_or("").trim();
            if keys.contains(&key) {
                return true;
            }
            keys.push(key);
        }
        false
    })
}

#[test]
fn random_outputs_parse_consistently() {
    let tools = ToolSet::from_json(&json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "days": {"type": "integer"}, "count": {"type": "number"}}}}}
    ]))
    .unwrap();
    let mut rng = Lcg(42);
    let mut checked = 0;
    let mut calls = 0;
    for (reasoning, tool, tool_set) in [
        (
            ReasoningParserKind::Glm45,
            ToolParserKind::Glm45,
            tools.clone(),
        ),
        (
            ReasoningParserKind::None,
            ToolParserKind::Glm47,
            tools.clone(),
        ),
        (
            ReasoningParserKind::Glm45,
            ToolParserKind::None,
            tools.clone(),
        ),
        (
            ReasoningParserKind::Glm45,
            ToolParserKind::Glm47,
            ToolSet::default(),
        ),
    ] {
        let mut config = OutputParserConfig::new(reasoning, tool, tool_set)
            .with_ids(ToolCallIdGenerator::sequential("call_"));
        config.tool_options.drop_tokens = vec!["<|observation|>".into(), "<|user|>".into()];
        let parser = OutputParser::new(config);
        for _ in 0..300 {
            let len = rng.next() % 40;
            let mut text = String::new();
            for _ in 0..len {
                if rng.next().is_multiple_of(8) {
                    // A well-formed call with random keys and values, in either layout.
                    let sep = ["", "\n", " "][rng.next() % 3];
                    text.push_str("<tool_call>get_weather");
                    text.push_str(sep);
                    for _ in 0..rng.next() % 3 {
                        let key = ["city", "days", "count", "other"][rng.next() % 4];
                        let value = FRAGMENTS[rng.next() % FRAGMENTS.len()];
                        text.push_str(&format!(
                            "<arg_key>{key}</arg_key>{sep}<arg_value>{value}</arg_value>{sep}"
                        ));
                    }
                    text.push_str("</tool_call>");
                } else {
                    text.push_str(FRAGMENTS[rng.next() % FRAGMENTS.len()]);
                }
            }
            let whole = parser.parse(&text);
            // A repeated key may rewrite an already streamed value: skip the exact argument
            // check there (see vllm_corpus.rs).
            let repeated_key = has_repeated_key(&text);
            if repeated_key {
                for size in 1..=7 {
                    support::stream(&parser, &text, size);
                }
            } else {
                support::assert_stream_matches(&parser, &text, &whole, &text);
            }
            for call in &whole.tool_calls {
                let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
                assert!(args.is_object(), "{text:?}: {}", call.arguments);
            }
            checked += 1;
            calls += whole.tool_calls.len();
        }
    }
    assert_eq!(checked, 1200);
    assert!(
        calls > 200,
        "only {calls} calls parsed: the generator is too weak"
    );
}
