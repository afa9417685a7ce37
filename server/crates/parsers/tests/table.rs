//! Table tests on realistic GLM outputs, each checked whole and streamed in pieces of
//! 1..=7 characters (argument fragments must concatenate to the non-streaming arguments).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod support;

use glm_parsers::{
    OutputEvent, OutputParser, OutputParserConfig, ParsedOutput, ReasoningParser,
    ReasoningParserKind, ToolCallEvent, ToolCallIdGenerator, ToolCallParser, ToolParserKind,
    ToolParserOptions, ToolSet,
};
use serde_json::json;

fn tools() -> ToolSet {
    ToolSet::from_json(&json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "date": {"type": "string"}, "days": {"type": "integer"}}}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
        {"type": "function", "function": {"name": "write_file", "parameters": {"type": "object", "properties": {
            "path": {"type": "string"}, "content": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {
            "query": {"type": "string"}, "limit": {"type": "integer"}, "threshold": {"type": "number"},
            "exact": {"type": "boolean"}, "filters": {"type": "object"}, "fields": {"type": "array"},
            "cursor": {"type": ["string", "null"]}}}}}
    ]))
    .unwrap()
}

struct Case {
    name: &'static str,
    text: &'static str,
    reasoning: Option<&'static str>,
    content: Option<&'static str>,
    calls: &'static [(&'static str, &'static str)],
}

fn parser(literal_newlines: bool) -> OutputParser {
    let mut config =
        OutputParserConfig::new(ReasoningParserKind::Glm45, ToolParserKind::Glm45, tools())
            .with_ids(ToolCallIdGenerator::sequential("call_"));
    config.tool_options.tolerate_literal_newlines = literal_newlines;
    OutputParser::new(config)
}

const CASES: &[Case] = &[
    Case {
        name: "glm45 reasoning, content and two calls",
        text: "<think>The user wants the weather in two cities. I'll call the tool twice.</think>\nLet me look that up.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>北京</arg_value>\n<arg_key>date</arg_key>\n<arg_value>2024-06-27</arg_value>\n</tool_call>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>上海</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>",
        reasoning: Some("The user wants the weather in two cities. I'll call the tool twice."),
        content: Some("Let me look that up."),
        calls: &[
            ("get_weather", r##"{"city": "北京", "date": "2024-06-27"}"##),
            ("get_weather", r##"{"city": "上海", "days": 3}"##),
        ],
    },
    Case {
        name: "glm47 output starting inside reasoning, calls back to back",
        text: "Need both.</think><tool_call>get_weather<arg_key>city</arg_key><arg_value>Seoul</arg_value></tool_call><tool_call>get_time</tool_call>",
        reasoning: Some("Need both."),
        content: None,
        calls: &[("get_weather", r##"{"city": "Seoul"}"##), ("get_time", "{}")],
    },
    Case {
        name: "no-argument tool, glm45 layout",
        text: "<think>time</think>\n<tool_call>get_time\n</tool_call>",
        reasoning: Some("time"),
        content: None,
        calls: &[("get_time", "{}")],
    },
    Case {
        name: "unicode and multi-line string value stays raw",
        text: "<think>write</think>\n<tool_call>write_file\n<arg_key>path</arg_key>\n<arg_value>docs/说明.md</arg_value>\n<arg_key>content</arg_key>\n<arg_value># 标题 😀\n\n  indented \"quoted\" line\n\ttab <b>&amp;</b>\n</arg_value>\n</tool_call>",
        reasoning: Some("write"),
        content: None,
        calls: &[(
            "write_file",
            r##"{"path": "docs/说明.md", "content": "# 标题 😀\n\n  indented \"quoted\" line\n\ttab <b>&amp;</b>\n"}"##,
        )],
    },
    Case {
        name: "numbers, booleans, objects, arrays and null typed by schema",
        text: "<think>search</think>\n<tool_call>search\n<arg_key>query</arg_key>\n<arg_value>rust 2024</arg_value>\n<arg_key>limit</arg_key>\n<arg_value> 10 </arg_value>\n<arg_key>threshold</arg_key>\n<arg_value>0.25</arg_value>\n<arg_key>exact</arg_key>\n<arg_value>False</arg_value>\n<arg_key>filters</arg_key>\n<arg_value>{\"lang\": \"en\", \"years\": [2023, 2024]}</arg_value>\n<arg_key>fields</arg_key>\n<arg_value>[\"title\", \"url\"]</arg_value>\n<arg_key>cursor</arg_key>\n<arg_value>null</arg_value>\n<arg_key>extra</arg_key>\n<arg_value>42</arg_value>\n</tool_call>",
        reasoning: Some("search"),
        content: None,
        calls: &[(
            "search",
            r##"{"query": "rust 2024", "limit": 10, "threshold": 0.25, "exact": false, "filters": {"lang": "en", "years": [2023, 2024]}, "fields": ["title", "url"], "cursor": null, "extra": "42"}"##,
        )],
    },
    Case {
        name: "output cut at max_tokens inside a value",
        text: "<think>go</think>\nOne moment.\n<tool_call>search\n<arg_key>query</arg_key>\n<arg_value>cats</arg_value>\n<arg_key>limit</arg_key>\n<arg_value>5</arg_value>\n<arg_key>filters</arg_key>\n<arg_value>{\"a\":",
        reasoning: Some("go"),
        content: Some("One moment."),
        calls: &[("search", r##"{"query": "cats", "limit": 5}"##)],
    },
    Case {
        name: "output cut inside the reasoning",
        text: "<think>Considering options: first, the",
        reasoning: Some("Considering options: first, the"),
        content: None,
        calls: &[],
    },
    Case {
        name: "unknown tool is dropped, surrounding text kept",
        text: "<think>x</think>\nI'll try something.\n<tool_call>launch_rocket\n<arg_key>target</arg_key>\n<arg_value>moon</arg_value>\n</tool_call>",
        reasoning: Some("x"),
        content: Some("\nI'll try something.\n"),
        calls: &[],
    },
    Case {
        name: "plain answer after reasoning keeps its leading newline",
        text: "<think>Easy.\n\n</think>\nThe answer is **4**.",
        reasoning: Some("Easy."),
        content: Some("\nThe answer is **4**."),
        calls: &[],
    },
    Case {
        name: "tags split like tokens never leak into content",
        text: "Hmm </think>Result: a<b and c>d <tool_call>get_time</tool_call>",
        reasoning: Some("Hmm"),
        content: Some("Result: a<b and c>d"),
        calls: &[("get_time", "{}")],
    },
];

fn check(parser: &OutputParser, case: &Case) {
    let whole = parser.parse(case.text);
    let calls: Vec<(String, String)> = whole
        .tool_calls
        .iter()
        .map(|c| (c.name.clone(), c.arguments.clone()))
        .collect();
    let want: Vec<(String, String)> = case
        .calls
        .iter()
        .map(|(n, a)| (n.to_string(), a.to_string()))
        .collect();
    assert_eq!(
        whole.reasoning.as_deref(),
        case.reasoning,
        "{}: reasoning",
        case.name
    );
    assert_eq!(
        whole.content.as_deref(),
        case.content,
        "{}: content",
        case.name
    );
    assert_eq!(calls, want, "{}: calls", case.name);
    for call in &whole.tool_calls {
        assert!(serde_json::from_str::<serde_json::Value>(&call.arguments)
            .unwrap()
            .is_object());
    }
    support::assert_stream_matches(parser, case.text, &whole, case.name);
    assert_no_retraction(parser, case.text, &whole);
}

/// Whatever the stream has emitted at any point is a prefix of the final text: nothing is
/// ever sent that later turns out to be markup.
fn assert_no_retraction(parser: &OutputParser, text: &str, whole: &ParsedOutput) {
    let reasoning = whole.reasoning.clone().unwrap_or_default();
    let content = whole.content.clone().unwrap_or_default();
    for size in 1..=7 {
        let mut stream = parser.stream();
        let (mut r, mut c) = (String::new(), String::new());
        for piece in support::pieces(text, size) {
            for event in stream.feed(&piece) {
                match event {
                    OutputEvent::Reasoning(t) => r.push_str(&t),
                    OutputEvent::Content(t) => c.push_str(&t),
                    _ => {}
                }
            }
            assert!(
                reasoning.starts_with(&r),
                "reasoning {r:?} is not a prefix of {reasoning:?}"
            );
            let emitted = if whole.tool_calls.is_empty() {
                c.as_str()
            } else {
                support::py_trim_start(&c)
            };
            assert!(
                content.starts_with(emitted),
                "content {c:?} is not a prefix of {content:?}"
            );
        }
    }
}

#[test]
fn table_cases_whole_and_streamed() {
    let parser = parser(false);
    for case in CASES {
        check(&parser, case);
    }
}

#[test]
fn literal_backslash_n_is_tolerated_when_enabled() {
    let text = "<think>x</think>\n<tool_call>get_weather\\n<arg_key>city</arg_key>\\n<arg_value>Kyiv</arg_value>\\n<arg_key>days</arg_key>\\n<arg_value>2</arg_value>\\n</tool_call>";
    let case = Case {
        name: "literal \\n",
        text,
        reasoning: Some("x"),
        content: None,
        calls: &[("get_weather", r##"{"city": "Kyiv", "days": 2}"##)],
    };
    check(&parser(true), &case);
    // vLLM-exact mode rejects the name "get_weather\n" (literal backslash-n).
    assert!(parser(false).parse(text).tool_calls.is_empty());
}

#[test]
fn name_is_sent_once_before_arguments() {
    let parser = ToolCallParser::with_options(
        ToolParserKind::Glm47,
        tools(),
        ToolParserOptions {
            ids: ToolCallIdGenerator::sequential("call_"),
            ..Default::default()
        },
    );
    let text = "Sure.<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value><arg_key>days</arg_key><arg_value>2</arg_value></tool_call>";
    let mut stream = parser.stream();
    let mut events = Vec::new();
    for piece in support::pieces(text, 3) {
        events.extend(stream.feed(&piece));
    }
    events.extend(stream.finish());
    let starts: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, ToolCallEvent::ToolCallStart { .. }))
        .collect();
    assert_eq!(
        starts,
        [&ToolCallEvent::ToolCallStart {
            index: 0,
            id: "call_0".into(),
            name: "get_weather".into()
        }]
    );
    let first_start = events
        .iter()
        .position(|e| matches!(e, ToolCallEvent::ToolCallStart { .. }))
        .unwrap();
    let first_args = events
        .iter()
        .position(|e| matches!(e, ToolCallEvent::ToolArgumentsDelta { .. }))
        .unwrap();
    assert!(first_start < first_args);
    let args: String = events
        .iter()
        .filter_map(|e| match e {
            ToolCallEvent::ToolArgumentsDelta { fragment, .. } => Some(fragment.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(args, r##"{"city": "Paris", "days": 2}"##);
    // Arguments stream per complete pair, not all at the end.
    let fragments = events
        .iter()
        .filter(|e| matches!(e, ToolCallEvent::ToolArgumentsDelta { .. }))
        .count();
    assert!(fragments >= 2, "{events:?}");
    let output = stream.output();
    assert_eq!(output.content.as_deref(), Some("Sure."));
    assert!(output.tools_called());
}

#[test]
fn without_a_tool_parser_tool_text_stays_content() {
    let text = "<tool_call>get_time</tool_call>";
    let parser = ToolCallParser::new(ToolParserKind::None, tools());
    let out = parser.parse(text);
    assert_eq!(out.content.as_deref(), Some(text));
    assert!(out.tool_calls.is_empty());
}

#[test]
fn tool_choice_none_drops_markup() {
    let parser = ToolCallParser::with_options(
        ToolParserKind::Glm45,
        tools(),
        ToolParserOptions {
            suppress_tool_calls: true,
            ..Default::default()
        },
    );
    let out = parser.parse("Before.\n<tool_call>get_time\n</tool_call>\nAfter.");
    assert_eq!(out.content.as_deref(), Some("Before.\n\nAfter."));
    assert!(out.tool_calls.is_empty());
}

#[test]
fn reasoning_parser_modes() {
    // GLM-4.7 prompt ended in <think>: the output starts inside the reasoning.
    let r = ReasoningParser::new(true);
    assert_eq!(
        r.parse("plan</think>answer"),
        (Some("plan".into()), Some("answer".into()))
    );
    assert_eq!(r.parse("never closed"), (Some("never closed".into()), None));
    // Prompt closed the reasoning: only explicit <think> blocks are reasoning.
    let r = ReasoningParser::new(false);
    assert_eq!(
        r.parse("direct answer"),
        (None, Some("direct answer".into()))
    );
    assert_eq!(
        r.parse("<think>a</think>b"),
        (Some("a".into()), Some("b".into()))
    );
    // Thinking disabled: tags are plain text.
    let r = ReasoningParser::with_thinking(false, true);
    assert_eq!(
        r.parse("<think>a</think>b"),
        (None, Some("<think>a</think>b".into()))
    );
}

#[test]
fn reasoning_stream_never_leaks_partial_tags() {
    let r = ReasoningParser::new(true);
    let text = "Let me think.\n\n</think>\n\nDone.";
    for size in 1..=7 {
        let mut stream = r.stream();
        let (mut reasoning, mut content) = (String::new(), String::new());
        for piece in support::pieces(text, size) {
            let d = stream.feed(&piece);
            reasoning.push_str(&d.reasoning);
            content.push_str(&d.content);
            assert!(
                !reasoning.contains('<') && !content.contains('<'),
                "leak at size {size}: {reasoning:?} {content:?}"
            );
        }
        let d = stream.finish();
        reasoning.push_str(&d.reasoning);
        content.push_str(&d.content);
        assert_eq!(reasoning, "Let me think.");
        assert_eq!(content, "\n\nDone.");
        assert!(stream.reasoning_ended());
    }
}

#[test]
fn drop_tokens_are_removed() {
    let mut config =
        OutputParserConfig::new(ReasoningParserKind::Glm45, ToolParserKind::Glm45, tools());
    config.tool_options.drop_tokens = vec!["<|observation|>".into(), "<|user|>".into()];
    let parser = OutputParser::new(config);
    let out = parser
        .parse("<think>r</think>Hi<|user|>\n<tool_call>get_time\n</tool_call><|observation|>");
    assert_eq!(out.content.as_deref(), Some("Hi"));
    assert_eq!(out.tool_calls.len(), 1);
}
