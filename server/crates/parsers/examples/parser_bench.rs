//! Prints whole-output and streaming throughput of the combined reasoning + tool parser.
//! `cargo run --release -p glm-parsers --example parser_bench`

use std::time::Instant;

use glm_parsers::{OutputParser, OutputParserConfig, ReasoningParserKind, ToolParserKind, ToolSet};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tools = ToolSet::from_json(&serde_json::json!([{"type": "function", "function": {
        "name": "write_file", "parameters": {"type": "object", "properties": {
            "path": {"type": "string"}, "content": {"type": "string"}, "mode": {"type": "integer"}}}}}]))?;
    let parser = OutputParser::new(OutputParserConfig::new(
        ReasoningParserKind::Glm45,
        ToolParserKind::Glm45,
        tools,
    ));
    let mut text = String::from("<think>");
    text.push_str(&"I need to write several files with code in them. ".repeat(2000));
    text.push_str("</think>\nWriting the files now.\n");
    for i in 0..200 {
        text.push_str(&format!(
            "<tool_call>write_file\n<arg_key>path</arg_key>\n<arg_value>src/file_{i}.rs</arg_value>\n<arg_key>content</arg_key>\n<arg_value>{}</arg_value>\n<arg_key>mode</arg_key>\n<arg_value>644</arg_value>\n</tool_call>\n",
            "fn main() { println!(\"héllo <world> & 世界\"); }\n".repeat(20)
        ));
    }
    let mb = text.len() as f64 / 1e6;

    let start = Instant::now();
    let out = parser.parse(&text);
    let whole_s = start.elapsed().as_secs_f64();
    println!(
        "parse: {:.2} MB, {} calls in {:.1} ms ({:.1} MB/s)",
        mb,
        out.tool_calls.len(),
        whole_s * 1e3,
        mb / whole_s
    );

    // Token-sized pieces (about 4 bytes each), as the server streams them.
    let pieces: Vec<String> = text
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect())
        .collect();
    let start = Instant::now();
    let mut stream = parser.stream();
    let mut events = 0usize;
    for piece in &pieces {
        events += stream.feed(piece).len();
    }
    events += stream.finish().len();
    let stream_s = start.elapsed().as_secs_f64();
    println!(
        "stream: {} pieces, {} events in {:.1} ms ({:.1} MB/s, {:.2} us/piece)",
        pieces.len(),
        events,
        stream_s * 1e3,
        mb / stream_s,
        stream_s * 1e6 / pieces.len() as f64
    );
    Ok(())
}
