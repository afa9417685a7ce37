//! Prints encode, streaming-decode and chat-template timings.
//! `cargo run --release -p glm-tokenizer --example tokenizer_bench [MODEL_DIR]`
//! (default: server/fixtures/tokenizer).

use std::path::PathBuf;
use std::time::Instant;

use glm_tokenizer::{GlmTokenizer, IncrementalDecoder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizer")
        });
    let tok = GlmTokenizer::from_dir(&dir)?;
    let unit = "The weather in 北京 is sunny 😀 today; tomorrow <tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>上海</arg_value>\n</tool_call> ";
    let text = unit.repeat(2000);

    let start = Instant::now();
    let ids = tok.encode(&text, false)?;
    let encode_s = start.elapsed().as_secs_f64();
    println!(
        "encode: {} bytes -> {} tokens in {:.1} ms ({:.1} MB/s, {:.0} tokens/s)",
        text.len(),
        ids.len(),
        encode_s * 1e3,
        text.len() as f64 / encode_s / 1e6,
        ids.len() as f64 / encode_s
    );

    let start = Instant::now();
    let mut decoder = IncrementalDecoder::new(tok.clone(), true);
    let mut out = String::new();
    for id in &ids {
        out.push_str(&decoder.push(*id)?);
    }
    out.push_str(&decoder.flush()?);
    let decode_s = start.elapsed().as_secs_f64();
    println!(
        "incremental decode: {} tokens in {:.1} ms ({:.2} us/token)",
        ids.len(),
        decode_s * 1e3,
        decode_s * 1e6 / ids.len() as f64
    );
    if out != tok.decode(&ids, true)? {
        return Err("incremental decode differs from full decode".into());
    }

    if let Ok(template) = tok.chat_template() {
        let messages = serde_json::json!([
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "What's the weather in 北京?"},
            {"role": "assistant", "content": "Let me check.", "reasoning_content": "need tool"},
            {"role": "user", "content": "Thanks"}
        ]);
        let n = 2000;
        let start = Instant::now();
        for _ in 0..n {
            template.render(&messages, None, true, &serde_json::Map::new())?;
        }
        println!(
            "chat template render: {:.1} us/render",
            start.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
    Ok(())
}
