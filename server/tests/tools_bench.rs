//! Throughput of the chat post-processor and the Anthropic event builder (prints figures,
//! asserts nothing about time). Run:
//! `cargo test -p glm-server --test tools_bench -- --ignored --nocapture` (workspace dev
//! profile: opt-level 1, dependencies 2).

use std::time::Instant;

use glm_server::anthropic::MessageStream;
use glm_server::postprocess::{
    ChatFinishReason, ChatPostProcessor, PostProcessConfig, ReasoningParserKind, ToolChoice,
    ToolDef, ToolParserKind,
};
use serde_json::json;

/// A long realistic turn: reasoning, text, then calls with a long multi-line string value.
fn output() -> String {
    let reasoning = "I need to look at the file first, then patch it. ".repeat(40);
    let code = "fn main() {\n    println!(\"hello \\\"world\\\" ✓\");\n}\n".repeat(60);
    format!(
        "<think>{reasoning}</think>\nI'll write the file.\n<tool_call>write_file\n<arg_key>path</arg_key>\n<arg_value>src/main.rs</arg_value>\n<arg_key>content</arg_key>\n<arg_value>{code}</arg_value>\n<arg_key>mode</arg_key>\n<arg_value>420</arg_value>\n</tool_call>"
    )
}

fn config() -> PostProcessConfig {
    PostProcessConfig {
        tool_parser: Some(ToolParserKind::Glm45),
        reasoning_parser: Some(ReasoningParserKind::Glm45),
        tools: Some(vec![ToolDef {
            name: "write_file".into(),
            parameters: Some(json!({"type": "object", "properties": {
                "path": {"type": "string"}, "content": {"type": "string"}, "mode": {"type": "integer"}}})),
        }]),
        tool_choice: Some(ToolChoice::Auto),
        starts_in_reasoning: true,
        include_reasoning: true,
    }
}

/// Splits into ~4-character pieces, about one token each.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect()).collect()
}

#[test]
#[ignore = "benchmark: prints figures"]
fn postprocess_throughput() {
    let text = output();
    let pieces = pieces(&text);
    let rounds = 50;
    let start = Instant::now();
    let mut events = 0usize;
    for _ in 0..rounds {
        let mut p = ChatPostProcessor::new(config());
        let mut stream = MessageStream::new("msg_bench".into(), "m".into(), 10);
        let mut sse_bytes = 0usize;
        for piece in &pieces {
            for d in p.feed(piece) {
                for ev in stream.push(d) {
                    sse_bytes += ev.to_sse().len();
                    events += 1;
                }
            }
        }
        let (rest, reason) = p.finish(ChatFinishReason::Stop);
        assert_eq!(reason, ChatFinishReason::ToolCalls);
        for d in rest {
            events += stream.push(d).len();
        }
        assert!(sse_bytes > text.len() / 2);
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = (text.len() * rounds) as f64;
    println!(
        "postprocess+anthropic SSE: {:.1} MB/s, {:.0} pieces/s ({} bytes/output, {} pieces, {} events/run)",
        bytes / secs / 1e6,
        (pieces.len() * rounds) as f64 / secs,
        text.len(),
        pieces.len(),
        events / rounds
    );
    let start = Instant::now();
    for _ in 0..rounds {
        let out = ChatPostProcessor::process_full(config(), &text, ChatFinishReason::Stop);
        assert_eq!(out.tool_calls.len(), 1);
    }
    let secs = start.elapsed().as_secs_f64();
    println!("process_full: {:.1} MB/s", bytes / secs / 1e6);
}
