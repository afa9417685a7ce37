//! Shared helpers: run a parser over an output whole and in pieces.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic
#![allow(dead_code)]

use glm_parsers::{OutputEvent, OutputParser, ParsedOutput};

/// What the streaming events add up to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Streamed {
    pub reasoning: String,
    pub content: String,
    /// (id, name, concatenated argument fragments), by index.
    pub calls: Vec<(String, String, String)>,
}

/// Splits `text` into pieces of `size` characters.
pub fn pieces(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// Feeds `text` in pieces of `size` characters and accumulates the events, checking that
/// each call starts once, before its arguments, with consecutive indexes.
pub fn stream(parser: &OutputParser, text: &str, size: usize) -> Streamed {
    let mut stream = parser.stream();
    let mut events = Vec::new();
    for piece in pieces(text, size) {
        events.extend(stream.feed(&piece));
    }
    events.extend(stream.finish());
    let mut out = Streamed::default();
    for event in events {
        match event {
            OutputEvent::Reasoning(t) => {
                assert!(!t.is_empty(), "empty reasoning event");
                out.reasoning.push_str(&t)
            }
            OutputEvent::Content(t) => {
                assert!(!t.is_empty(), "empty content event");
                out.content.push_str(&t)
            }
            OutputEvent::ToolCallStart { index, id, name } => {
                assert_eq!(index, out.calls.len(), "call indexes must be consecutive");
                out.calls.push((id, name, String::new()));
            }
            OutputEvent::ToolArgumentsDelta { index, fragment } => {
                assert!(index < out.calls.len(), "arguments before the call start");
                assert!(!fragment.is_empty(), "empty argument fragment");
                out.calls[index].2.push_str(&fragment);
            }
        }
    }
    // The stream's own non-streaming view must agree with a fresh parse.
    let (a, b) = (stream.output(), parser.parse(text));
    let strip = |p: &ParsedOutput| {
        let calls: Vec<(String, String)> = p
            .tool_calls
            .iter()
            .map(|c| (c.name.clone(), c.arguments.clone()))
            .collect();
        (p.reasoning.clone(), p.content.clone(), calls)
    };
    assert_eq!(strip(&a), strip(&b), "stream.output() differs from parse()");
    out
}

/// Python's `str.strip()` whitespace.
pub fn py_trim_start(s: &str) -> &str {
    s.trim_start_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Checks that streaming in every piece size 1..=7 adds up to the non-streaming result.
/// Content may differ only by leading whitespace when calls were made (the stream cannot
/// know in advance that a call will strip it; vLLM streams it too).
pub fn assert_stream_matches(parser: &OutputParser, text: &str, whole: &ParsedOutput, label: &str) {
    for size in 1..=7 {
        let s = stream(parser, text, size);
        assert_eq!(
            s.reasoning,
            whole.reasoning.clone().unwrap_or_default(),
            "{label}: reasoning, piece size {size}"
        );
        let expected_content = whole.content.clone().unwrap_or_default();
        if whole.tool_calls.is_empty() {
            assert_eq!(
                s.content, expected_content,
                "{label}: content, piece size {size}"
            );
        } else {
            assert_eq!(
                py_trim_start(&s.content),
                expected_content,
                "{label}: content, piece size {size}"
            );
        }
        let calls: Vec<(String, String)> = s
            .calls
            .iter()
            .map(|(_, n, a)| (n.clone(), a.clone()))
            .collect();
        let want: Vec<(String, String)> = whole
            .tool_calls
            .iter()
            .map(|c| (c.name.clone(), c.arguments.clone()))
            .collect();
        assert_eq!(calls, want, "{label}: tool calls, piece size {size}");
    }
}
