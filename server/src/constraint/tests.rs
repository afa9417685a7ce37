use std::path::Path;

use glm_tokenizer::GlmTokenizer;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};

use super::*;

pub(crate) fn fixture_tokenizer() -> GlmTokenizer {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/glm4moe-tiny");
    GlmTokenizer::from_dir(&dir).unwrap()
}

pub(crate) fn compiler(tok: &GlmTokenizer) -> GrammarCompiler {
    GrammarCompiler::new(tok, tok.vocab_size(), tok.eos_token_ids()).unwrap()
}

/// Walks the grammar choosing uniformly among the allowed tokens (the worst case for a
/// model: nothing but the mask keeps it valid) until it completes; the decoded text.
fn random_walk(c: &mut Constraint, tok: &GlmTokenizer, seed: u64, max: usize) -> Option<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for _ in 0..max {
        let Mask::Allowed(m) = c.mask() else {
            panic!("mask not allowed")
        };
        let allowed = m.to_list();
        let t = allowed[rng.random_range(0..allowed.len())];
        match c.advance(t) {
            Advance::Continue => out.push(t),
            Advance::Complete => return Some(tok.decode(&out, false).unwrap()),
            Advance::Rejected(why) => panic!("rejected {t}: {why}"),
        }
    }
    None
}

#[test]
fn masks_keep_random_choices_inside_the_grammar() {
    let tok = fixture_tokenizer();
    let comp = compiler(&tok);
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 8},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}
        },
        "required": ["name", "age", "tags"],
        "additionalProperties": false
    });
    let mut completed = 0;
    for seed in 0..20 {
        let mut c = comp
            .compile(&GrammarSpec::JsonSchema(schema.clone()))
            .unwrap();
        // Uniform choices may wander (long strings are capped, arrays are not endless).
        let Some(text) = random_walk(&mut c, &tok, seed, 400) else {
            continue;
        };
        completed += 1;
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 3, "{text}");
        assert!(obj["name"].as_str().unwrap().chars().count() <= 8);
        assert!((0..=120).contains(&obj["age"].as_i64().unwrap()));
        for t in obj["tags"].as_array().unwrap() {
            assert!(t == "a" || t == "b");
        }
    }
    assert!(completed >= 10, "only {completed} of 20 walks completed");

    for seed in 0..10 {
        let mut c = comp
            .compile(&GrammarSpec::Regex(r"[0-9]{3}-[a-z]{2}".into()))
            .unwrap();
        let text = random_walk(&mut c, &tok, seed, 50).unwrap();
        assert_eq!(text.len(), 6, "{text}");
        assert!(text.as_bytes()[3] == b'-', "{text}");

        let choices = vec!["red".to_string(), "green \"x\"".to_string()];
        let mut c = comp.compile(&GrammarSpec::Choice(choices.clone())).unwrap();
        let text = random_walk(&mut c, &tok, seed, 50).unwrap();
        assert!(choices.contains(&text), "{text}");

        let mut c = comp.compile(&GrammarSpec::JsonObject).unwrap();
        if let Some(text) = random_walk(&mut c, &tok, seed, 300) {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert!(v.is_object());
        }

        let lark = "start: \"ab\" num\nnum: /[0-9]+/";
        let mut c = comp.compile(&GrammarSpec::Lark(lark.into())).unwrap();
        if let Some(text) = random_walk(&mut c, &tok, seed, 50) {
            assert!(text.starts_with("ab") && text[2..].chars().all(|c| c.is_ascii_digit()));
        }
    }
}

#[test]
fn bad_grammars_are_refused_with_a_reason() {
    let tok = fixture_tokenizer();
    let comp = compiler(&tok);
    let bad = [
        GrammarSpec::Regex("[unclosed".into()),
        GrammarSpec::Lark("start: undefined_rule".into()),
        GrammarSpec::JsonSchema(json!({"type": "no-such-type"})),
        GrammarSpec::JsonSchema(json!(["not", "an", "object"])),
        GrammarSpec::Choice(vec![]),
        GrammarSpec::Regex("x".repeat(MAX_GRAMMAR_BYTES + 1)),
    ];
    for spec in bad {
        let e = comp.compile(&spec).unwrap_err();
        assert!(!e.0.is_empty(), "{spec:?}");
    }
}

#[test]
fn reasoning_stays_free_until_the_end_of_think() {
    let tok = fixture_tokenizer();
    let comp = compiler(&tok);
    let Some(end) = tok.token_to_id("</think>") else {
        panic!("the fixture tokenizer has </think>")
    };
    let mut c = comp
        .compile(&GrammarSpec::Choice(vec!["yes".into()]))
        .unwrap()
        .start_after(end);
    assert!(matches!(c.mask(), Mask::Free));
    assert_eq!(c.advance(5), Advance::Continue);
    assert!(matches!(c.mask(), Mask::Free));
    assert_eq!(c.advance(end), Advance::Continue);
    let Mask::Allowed(m) = c.mask() else {
        panic!("constrained after </think>")
    };
    let ids = tok.encode("yes", false).unwrap();
    assert!(m.is_allowed(ids[0]));
    assert!(!m.is_allowed(5) || tok.decode(&[5], false).unwrap().starts_with('y'));
    // A clone has its own state.
    let mut copy = c.clone();
    for &t in &ids {
        assert_eq!(copy.advance(t), Advance::Continue);
    }
    let Mask::Allowed(m) = copy.mask() else {
        panic!("only the end may follow")
    };
    assert_eq!(m.to_list().len(), tok.eos_token_ids().len());
    assert_eq!(copy.advance(tok.eos_token_ids()[0]), Advance::Complete);
    let Mask::Allowed(m) = c.mask() else {
        panic!("the original is untouched")
    };
    assert!(m.is_allowed(ids[0]));
}

#[test]
fn forced_tool_calls_parse_with_the_models_own_parser() {
    use glm_parsers::{
        OutputParser, OutputParserConfig, ReasoningParserKind, ToolParserKind, ToolSet,
    };
    let tok = fixture_tokenizer();
    let comp = compiler(&tok);
    let weather = json!({"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 8},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"type": "string", "enum": ["c", "f"]},
        "opts": {"type": "object", "properties": {"x": {"type": "boolean"}}, "required": ["x"], "additionalProperties": false}
    }, "required": ["city", "days"]});
    let tools = vec![
        CallTool {
            name: "get_weather".into(),
            parameters: Some(weather.clone()),
        },
        CallTool {
            name: "now".into(),
            parameters: None,
        },
    ];
    let wire = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": weather}},
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
    ]);
    for (layout, kind) in [
        (CallLayout::Glm45, ToolParserKind::Glm45),
        (CallLayout::Glm47, ToolParserKind::Glm47),
    ] {
        let src = tool_call_grammar(&tools, layout, true).unwrap();
        let parser = OutputParser::new(OutputParserConfig::new(
            ReasoningParserKind::None,
            kind,
            ToolSet::from_json(&wire).unwrap(),
        ));
        let mut completed = 0;
        for seed in 0..12 {
            let mut c = comp.compile(&GrammarSpec::Lark(src.clone())).unwrap();
            let Some(text) = random_walk(&mut c, &tok, seed, 600) else {
                continue;
            };
            completed += 1;
            let out = parser.parse(&text);
            assert!(!out.tool_calls.is_empty(), "{text}");
            assert!(
                out.content.as_deref().unwrap_or("").trim().is_empty(),
                "{text}"
            );
            for call in &out.tool_calls {
                let args: Value = serde_json::from_str(&call.arguments).unwrap();
                if call.name == "now" {
                    assert_eq!(args, json!({}), "{text}");
                    continue;
                }
                assert_eq!(call.name, "get_weather");
                assert!(
                    args["city"].as_str().unwrap().chars().count() <= 8,
                    "{text}"
                );
                assert!((1..=7).contains(&args["days"].as_i64().unwrap()), "{text}");
                if let Some(u) = args.get("unit") {
                    assert!(u == "c" || u == "f", "{text}");
                }
                if let Some(o) = args.get("opts") {
                    assert!(o["x"].is_boolean(), "{text}");
                }
            }
        }
        assert!(
            completed >= 6,
            "{layout:?}: only {completed} of 12 walks completed"
        );
    }
    // Names the format cannot carry are refused.
    let bad = [CallTool {
        name: "a<b".into(),
        parameters: None,
    }];
    assert!(tool_call_grammar(&bad, CallLayout::Glm47, false).is_err());
    assert!(tool_call_grammar(&[], CallLayout::Glm47, false).is_err());
}

/// The 50-field schema of the benchmark compiles and every walk through it is valid JSON
/// with all 50 fields. Prints compile and per-token mask times (`--nocapture`); asserts
/// none of them.
#[test]
fn fifty_field_schema_compiles_and_walks_to_valid_json() {
    let tok = fixture_tokenizer();
    let started = std::time::Instant::now();
    let comp = compiler(&tok);
    let trie = started.elapsed();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bench/schema-50-fields.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let started = std::time::Instant::now();
    let mut c = comp.compile(&GrammarSpec::JsonSchema(schema)).unwrap();
    let compile = started.elapsed();
    let started = std::time::Instant::now();
    let text = random_walk(&mut c, &tok, 3, 4000).expect("the walk completes");
    let walk = started.elapsed();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(v.as_object().unwrap().len(), 50, "{text}");
    let tokens = tok.encode(&text, false).unwrap().len().max(1);
    println!(
        "vocab {}: trie {trie:?}, 50-field compile {compile:?}, walk of ~{tokens} tokens {walk:?} (~{:?}/token, mask + advance)",
        tok.vocab_size(),
        walk / tokens as u32
    );
}
