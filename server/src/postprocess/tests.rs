//! Table tests of the post-processor on realistic GLM outputs, streamed at every split size
//! and checked against the non-streaming result.

use serde_json::{json, Value};

use super::*;

fn weather_tools() -> Vec<ToolDef> {
    vec![
        ToolDef {
            name: "get_weather".into(),
            parameters: Some(json!({"type": "object", "properties": {
                "city": {"type": "string"}, "days": {"type": "integer"},
                "unit": {"type": "string"}}})),
        },
        ToolDef {
            name: "get_time".into(),
            parameters: Some(json!({"type": "object", "properties": {"tz": {"type": "string"}}})),
        },
        ToolDef {
            name: "now".into(),
            parameters: Some(json!({"type": "object", "properties": {}})),
        },
        ToolDef {
            name: "search".into(),
            parameters: Some(json!({"type": "object", "properties": {
                "query": {"type": "string"}, "filters": {"type": "object"},
                "tags": {"type": "array"}, "limit": {"type": "number"}, "exact": {"type": "boolean"}}})),
        },
    ]
}

fn config(parser: Option<ToolParserKind>, choice: Option<ToolChoice>) -> PostProcessConfig {
    PostProcessConfig {
        tool_parser: parser,
        reasoning_parser: Some(ReasoningParserKind::Glm45),
        tools: Some(weather_tools()),
        tool_choice: choice,
        starts_in_reasoning: true,
        include_reasoning: true,
    }
}

/// What a whole response must contain (text compared trimmed, arguments as JSON values).
struct Expect {
    reasoning: Option<&'static str>,
    content: Option<&'static str>,
    calls: Vec<(&'static str, Value)>,
    finish: ChatFinishReason,
}

struct Case {
    name: &'static str,
    config: PostProcessConfig,
    output: &'static str,
    engine_finish: ChatFinishReason,
    expect: Expect,
}

fn cases() -> Vec<Case> {
    let g45 = Some(ToolParserKind::Glm45);
    let g47 = Some(ToolParserKind::Glm47);
    let auto = Some(ToolChoice::Auto);
    vec![
        Case {
            name: "reasoning_then_answer",
            config: config(g45, auto.clone()),
            output: "<think>The user greets me.</think>\n\nHello! How can I help?",
            engine_finish: ChatFinishReason::Stop,
            expect: Expect {
                reasoning: Some("The user greets me."),
                content: Some("Hello! How can I help?"),
                calls: vec![],
                finish: ChatFinishReason::Stop,
            },
        },
        Case {
            name: "glm45_call_after_reasoning",
            config: config(g45, auto.clone()),
            output: "<think>Need the weather tool.</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>北京</arg_value>\n<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n</tool_call>",
            engine_finish: ChatFinishReason::Stop,
            expect: Expect {
                reasoning: Some("Need the weather tool."),
                content: None,
                calls: vec![("get_weather", json!({"city": "北京", "days": 2}))],
                finish: ChatFinishReason::ToolCalls,
            },
        },
        Case {
            name: "glm47_text_then_two_calls",
            config: config(g47, auto.clone()),
            output: "<think>Two lookups.</think>I'll check both.<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call><tool_call>get_time<arg_key>tz</arg_key><arg_value>Europe/Paris</arg_value></tool_call>",
            engine_finish: ChatFinishReason::Stop,
            expect: Expect {
                reasoning: Some("Two lookups."),
                content: Some("I'll check both."),
                calls: vec![
                    ("get_weather", json!({"city": "Paris"})),
                    ("get_time", json!({"tz": "Europe/Paris"})),
                ],
                finish: ChatFinishReason::ToolCalls,
            },
        },
        Case {
            name: "glm47_no_argument_tool",
            config: config(g47, auto.clone()),
            output: "<think>Time.</think><tool_call>now</tool_call>",
            engine_finish: ChatFinishReason::Stop,
            expect: Expect {
                reasoning: Some("Time."),
                content: None,
                calls: vec![("now", json!({}))],
                finish: ChatFinishReason::ToolCalls,
            },
        },
        Case {
            name: "glm45_typed_and_multiline_values",
            config: config(g45, auto.clone()),
            output: "<think>search</think>\n<tool_call>search\n<arg_key>query</arg_key>\n<arg_value>line one\nline two ✓ \"quoted\"</arg_value>\n<arg_key>filters</arg_key>\n<arg_value>{\"lang\": \"en\", \"year\": 2024}</arg_value>\n<arg_key>tags</arg_key>\n<arg_value>[\"a\", \"b\"]</arg_value>\n<arg_key>limit</arg_key>\n<arg_value>2.5</arg_value>\n<arg_key>exact</arg_key>\n<arg_value>true</arg_value>\n</tool_call>",
            engine_finish: ChatFinishReason::Stop,
            expect: Expect {
                reasoning: Some("search"),
                content: None,
                calls: vec![(
                    "search",
                    json!({"query": "line one\nline two ✓ \"quoted\"", "filters": {"lang": "en", "year": 2024},
                           "tags": ["a", "b"], "limit": 2.5, "exact": true}),
                )],
                finish: ChatFinishReason::ToolCalls,
            },
        },
        Case {
            name: "glm47_starts_inside_reasoning",
            config: config(g47, auto.clone()),
            output: "The prompt ended in a think tag, so I start thinking.</think>Hi there.",
            engine_finish: ChatFinishReason::Stop,
            expect: Expect {
                reasoning: Some("The prompt ended in a think tag, so I start thinking."),
                content: Some("Hi there."),
                calls: vec![],
                finish: ChatFinishReason::Stop,
            },
        },
        Case {
            name: "tool_choice_none_keeps_call_text_as_content",
            config: PostProcessConfig { starts_in_reasoning: false, ..config(g45, Some(ToolChoice::None)) },
            output: "<tool_call>now\n</tool_call>",
            engine_finish: ChatFinishReason::Stop,
            expect: Expect {
                reasoning: None,
                content: Some("<tool_call>now\n</tool_call>"),
                calls: vec![],
                finish: ChatFinishReason::Stop,
            },
        },
        Case {
            name: "no_parser_keeps_call_text_as_content",
            config: PostProcessConfig { reasoning_parser: None, ..config(None, auto.clone()) },
            output: "<think>x</think><tool_call>now</tool_call>",
            engine_finish: ChatFinishReason::Stop,
            expect: Expect {
                reasoning: None,
                content: Some("<think>x</think><tool_call>now</tool_call>"),
                calls: vec![],
                finish: ChatFinishReason::Stop,
            },
        },
        Case {
            name: "include_reasoning_false_drops_it",
            config: PostProcessConfig { include_reasoning: false, ..config(g45, auto.clone()) },
            output: "<think>secret plan</think>\nAnswer.",
            engine_finish: ChatFinishReason::Stop,
            expect: Expect { reasoning: None, content: Some("Answer."), calls: vec![], finish: ChatFinishReason::Stop },
        },
        Case {
            name: "thinking_disabled_is_all_content",
            config: PostProcessConfig { starts_in_reasoning: false, ..config(g45, auto.clone()) },
            output: "Plain answer, no thinking.",
            engine_finish: ChatFinishReason::Stop,
            expect: Expect {
                reasoning: None,
                content: Some("Plain answer, no thinking."),
                calls: vec![],
                finish: ChatFinishReason::Stop,
            },
        },
        Case {
            name: "named_choice_keeps_only_that_function",
            config: config(g47, Some(ToolChoice::Named("get_time".into()))),
            output: "<think>both</think><tool_call>get_weather<arg_key>city</arg_key><arg_value>Rome</arg_value></tool_call><tool_call>get_time<arg_key>tz</arg_key><arg_value>UTC</arg_value></tool_call>",
            engine_finish: ChatFinishReason::Stop,
            expect: Expect {
                reasoning: Some("both"),
                content: None,
                calls: vec![("get_time", json!({"tz": "UTC"}))],
                finish: ChatFinishReason::ToolCalls,
            },
        },
        Case {
            name: "required_parses_like_auto",
            config: config(g45, Some(ToolChoice::Required)),
            output: "<think>t</think>\n<tool_call>get_time\n<arg_key>tz</arg_key>\n<arg_value>UTC</arg_value>\n</tool_call>",
            engine_finish: ChatFinishReason::Stop,
            expect: Expect {
                reasoning: Some("t"),
                content: None,
                calls: vec![("get_time", json!({"tz": "UTC"}))],
                finish: ChatFinishReason::ToolCalls,
            },
        },
        Case {
            // The parser closes a call cut off mid-way with the arguments complete so far;
            // the finish reason stays `length` so the client knows it was cut.
            name: "cut_by_length_inside_a_call",
            config: config(g45, auto.clone()),
            output: "<think>t</think>\n<tool_call>get_weather\n<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n<arg_key>city</arg_key>\n<arg_value>Par",
            engine_finish: ChatFinishReason::Length,
            expect: Expect {
                reasoning: Some("t"),
                content: None,
                calls: vec![("get_weather", json!({"days": 2}))],
                finish: ChatFinishReason::Length,
            },
        },
        Case {
            name: "cut_by_length_in_reasoning",
            config: config(g45, auto),
            output: "<think>I was thinking about",
            engine_finish: ChatFinishReason::Length,
            expect: Expect {
                reasoning: Some("I was thinking about"),
                content: None,
                calls: vec![],
                finish: ChatFinishReason::Length,
            },
        },
    ]
}

/// Splits into pieces of `n` characters (never inside a character, as the detokenizer).
fn split(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

struct Streamed {
    reasoning: String,
    content: String,
    /// (index, name, concatenated arguments)
    calls: Vec<(usize, String, String)>,
    finish: ChatFinishReason,
}

fn run_stream(config: &PostProcessConfig, pieces: &[String], finish: ChatFinishReason) -> Streamed {
    let mut p = ChatPostProcessor::new(config.clone());
    let mut deltas = Vec::new();
    for piece in pieces {
        deltas.extend(p.feed(piece));
    }
    let (rest, reason) = p.finish(finish);
    deltas.extend(rest);
    let mut s = Streamed {
        reasoning: String::new(),
        content: String::new(),
        calls: vec![],
        finish: reason,
    };
    for d in deltas {
        match d {
            ChatDelta::Reasoning(t) => s.reasoning.push_str(&t),
            ChatDelta::Content(t) => s.content.push_str(&t),
            ChatDelta::ToolCallStart { index, id, name } => {
                assert!(id.starts_with("chatcmpl-tool-"), "{id}");
                assert!(
                    s.calls.iter().all(|c| c.0 != index),
                    "call {index} started twice"
                );
                assert_eq!(index, s.calls.len(), "calls are numbered in order");
                s.calls.push((index, name, String::new()));
            }
            ChatDelta::ToolCallArgs { index, fragment } => {
                let call = s
                    .calls
                    .iter_mut()
                    .find(|c| c.0 == index)
                    .expect("args before start");
                call.2.push_str(&fragment);
            }
        }
    }
    s
}

fn trimmed(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

#[test]
fn full_output_matches_expectations() {
    for case in cases() {
        let out =
            ChatPostProcessor::process_full(case.config.clone(), case.output, case.engine_finish);
        let e = &case.expect;
        assert_eq!(
            trimmed(out.reasoning.as_deref()),
            e.reasoning,
            "{}: reasoning",
            case.name
        );
        assert_eq!(
            trimmed(out.content.as_deref()),
            e.content,
            "{}: content",
            case.name
        );
        let calls: Vec<(&str, Value)> = out
            .tool_calls
            .iter()
            .map(|c| (c.name.as_str(), serde_json::from_str(&c.arguments).unwrap()))
            .collect();
        assert_eq!(calls, e.calls, "{}: calls", case.name);
        assert_eq!(out.finish_reason, e.finish, "{}: finish", case.name);
    }
}

#[test]
fn streaming_at_every_split_size_equals_full_output() {
    for case in cases() {
        let full =
            ChatPostProcessor::process_full(case.config.clone(), case.output, case.engine_finish);
        let len = case.output.chars().count();
        for n in 1..=len {
            let s = run_stream(&case.config, &split(case.output, n), case.engine_finish);
            let ctx = format!("{} split {n}", case.name);
            assert_eq!(
                s.reasoning,
                full.reasoning.clone().unwrap_or_default(),
                "{ctx}: reasoning"
            );
            assert_eq!(
                s.content,
                full.content.clone().unwrap_or_default(),
                "{ctx}: content"
            );
            assert!(
                !s.content.contains("<tool_call") || full.tool_calls.is_empty(),
                "{ctx}: tag leaked"
            );
            let names: Vec<&str> = s.calls.iter().map(|c| c.1.as_str()).collect();
            let full_names: Vec<&str> = full.tool_calls.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, full_names, "{ctx}: names");
            for (sc, fc) in s.calls.iter().zip(&full.tool_calls) {
                assert_eq!(
                    sc.2, fc.arguments,
                    "{ctx}: streamed arguments == non-streaming"
                );
            }
            assert_eq!(s.finish, full.finish_reason, "{ctx}: finish");
        }
    }
}

#[test]
fn thinking_kwarg_follows_jinja_truthiness() {
    let kw = |v: Value| v.as_object().cloned();
    assert!(thinking_enabled(None));
    assert!(thinking_enabled(kw(json!({})).as_ref()));
    assert!(thinking_enabled(
        kw(json!({"enable_thinking": true})).as_ref()
    ));
    assert!(!thinking_enabled(
        kw(json!({"enable_thinking": false})).as_ref()
    ));
    assert!(!thinking_enabled(kw(json!({"thinking": false})).as_ref()));
    assert!(!thinking_enabled(
        kw(json!({"enable_thinking": 0})).as_ref()
    ));
}

#[test]
fn tool_choice_rules_follow_vllm() {
    let tools = weather_tools();
    let on = ToolServerConfig {
        tool_parser: Some(ToolParserKind::Glm45),
        enable_auto_tool_choice: true,
    };
    let off = ToolServerConfig {
        enable_auto_tool_choice: false,
        ..on
    };
    let none = ToolServerConfig {
        tool_parser: None,
        enable_auto_tool_choice: false,
    };
    let named = |n: &str| Some(ToolChoice::Named(n.into()));
    // (server, tools, choice) -> Ok(effective) or Err(field)
    type Row<'a> = (
        ToolServerConfig,
        &'a [ToolDef],
        Option<ToolChoice>,
        Result<Option<ToolChoice>, &'a str>,
    );
    let table: Vec<Row<'_>> = vec![
        (on, &tools, None, Ok(Some(ToolChoice::Auto))),
        (off, &tools, None, Err("tool_choice")),
        (off, &tools, Some(ToolChoice::Auto), Err("tool_choice")),
        (
            off,
            &tools,
            Some(ToolChoice::None),
            Ok(Some(ToolChoice::None)),
        ),
        (
            off,
            &tools,
            Some(ToolChoice::Required),
            Ok(Some(ToolChoice::Required)),
        ),
        (none, &tools, Some(ToolChoice::Required), Err("tool_choice")),
        (on, &tools, named("get_time"), Ok(named("get_time"))),
        (
            on,
            &tools,
            named("missing"),
            Err("tool_choice.function.name"),
        ),
        (on, &[], Some(ToolChoice::Required), Err("tool_choice")),
        (on, &[], Some(ToolChoice::None), Ok(None)),
        (off, &[], None, Ok(None)),
    ];
    for (server, tools, choice, expected) in table {
        let got =
            resolve_tool_choice(server, tools, choice.clone()).map_err(|e| e.field().to_string());
        assert_eq!(
            got,
            expected.map_err(str::to_string),
            "{server:?} {choice:?}"
        );
    }
}

#[test]
fn tool_choice_and_tools_parse_from_openai_json() {
    assert_eq!(ToolChoice::from_openai(None).unwrap(), None);
    assert_eq!(
        ToolChoice::from_openai(Some(&json!("auto"))).unwrap(),
        Some(ToolChoice::Auto)
    );
    assert_eq!(
        ToolChoice::from_openai(Some(&json!("required"))).unwrap(),
        Some(ToolChoice::Required)
    );
    assert_eq!(
        ToolChoice::from_openai(Some(
            &json!({"type": "function", "function": {"name": "f"}})
        ))
        .unwrap(),
        Some(ToolChoice::Named("f".into()))
    );
    assert_eq!(
        ToolChoice::from_openai(Some(&json!("sometimes")))
            .unwrap_err()
            .field(),
        "tool_choice"
    );
    assert_eq!(
        ToolChoice::from_openai(Some(&json!({"type": "function"})))
            .unwrap_err()
            .field(),
        "tool_choice.function.name"
    );
    let tools = ToolDef::list_from_openai(&[
        json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}),
        json!({"type": "function", "function": {"name": "g"}}),
    ])
    .unwrap();
    assert_eq!(tools[0].parameters, Some(json!({"type": "object"})));
    assert_eq!(
        tools[1],
        ToolDef {
            name: "g".into(),
            parameters: None
        }
    );
    let err = ToolDef::list_from_openai(&[
        json!({"type": "function", "function": {"name": "f"}}),
        json!({"type": "retrieval"}),
    ])
    .unwrap_err();
    assert_eq!(err.field(), "tools[1].type");
}
