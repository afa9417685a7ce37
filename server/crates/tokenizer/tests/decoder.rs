//! Streaming detokenization on the fixture tokenizer (byte-level BPE with 2000 merges: most
//! CJK characters and emoji are split over several ids).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::path::PathBuf;

use glm_tokenizer::{GlmTokenizer, IncrementalDecoder};

fn tokenizer() -> GlmTokenizer {
    GlmTokenizer::from_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizer"),
    )
    .unwrap()
}

const TEXTS: &[&str] = &[
    "北京今天天气怎么样？晴，最高 27°C。",
    "emoji: 😀👍🏽🇨🇳 family 👨‍👩‍👧 end",
    "mixed ascii and 日本語のテキスト and Ελληνικά and русский",
    "<think>reasoning 思考</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>北京</arg_value>\n</tool_call>",
    "plain ascii text with  double  spaces\nand newlines\n\n",
];

/// Pushes ids one at a time and returns the emitted chunks (flush last).
fn stream(tok: &GlmTokenizer, ids: &[u32], skip: bool) -> Vec<String> {
    let mut decoder = IncrementalDecoder::new(tok.clone(), skip);
    let mut chunks: Vec<String> = ids.iter().map(|id| decoder.push(*id).unwrap()).collect();
    chunks.push(decoder.flush().unwrap());
    chunks
}

#[test]
fn multibyte_characters_span_several_ids_in_the_fixture() {
    let tok = tokenizer();
    let ids = tok.encode("😀北", false).unwrap();
    assert!(
        ids.len() > 2,
        "expected the characters to be split: {ids:?}"
    );
    assert!(
        ids.iter()
            .any(|id| tok.decode(&[*id], false).unwrap().contains('\u{FFFD}')),
        "some single id should decode to a partial character"
    );
}

#[test]
fn streamed_text_equals_full_decode_and_never_splits_a_character() {
    let tok = tokenizer();
    let mut held_back = 0;
    for text in TEXTS {
        let ids = tok.encode(text, false).unwrap();
        let chunks = stream(&tok, &ids, false);
        for chunk in &chunks {
            assert!(
                !chunk.contains('\u{FFFD}'),
                "{text:?}: chunk {chunk:?} has U+FFFD"
            );
        }
        held_back += chunks[..chunks.len() - 1]
            .iter()
            .filter(|c| c.is_empty())
            .count();
        assert_eq!(chunks.concat(), *text);
        assert_eq!(chunks.concat(), tok.decode(&ids, false).unwrap());
    }
    assert!(
        held_back > 0,
        "no id was held back: the test would not catch splitting"
    );
}

#[test]
fn skip_special_tokens_drops_only_special_ids() {
    let tok = tokenizer();
    let text = "<|assistant|>\n<think>x</think>答案<|user|>";
    let ids = tok.encode(text, false).unwrap();
    assert!(tok.is_special(ids[0]));
    let skipped = stream(&tok, &ids, true).concat();
    assert_eq!(skipped, "\n<think>x</think>答案");
    assert_eq!(skipped, tok.decode(&ids, true).unwrap());
    let kept = stream(&tok, &ids, false).concat();
    assert_eq!(kept, text);
}

#[test]
fn prompt_context_is_not_emitted() {
    let tok = tokenizer();
    let prompt = tok
        .encode("[gMASK]<sop><|user|>\n你好<|assistant|>", false)
        .unwrap();
    let answer = tok.encode("\n世界 ok", false).unwrap();
    let mut decoder = IncrementalDecoder::with_prompt(tok.clone(), &prompt, false);
    let mut out = String::new();
    for id in &answer {
        out.push_str(&decoder.push(*id).unwrap());
    }
    out.push_str(&decoder.flush().unwrap());
    assert_eq!(out, "\n世界 ok");
}

#[test]
fn unfinished_character_at_the_end_is_flushed_as_replacement() {
    let tok = tokenizer();
    let ids = tok.encode("a😀", false).unwrap();
    let cut = &ids[..ids.len() - 1];
    let mut decoder = IncrementalDecoder::new(tok.clone(), false);
    let mut out = String::new();
    for id in cut {
        out.push_str(&decoder.push(*id).unwrap());
    }
    assert!(decoder.has_pending());
    assert_eq!(out, "a");
    let rest = decoder.flush().unwrap();
    assert!(rest.ends_with('\u{FFFD}'), "{rest:?}");
    assert_eq!(out + &rest, tok.decode(cut, false).unwrap());
    assert_eq!(decoder.flush().unwrap(), "");
}

#[test]
fn push_many_matches_single_pushes() {
    let tok = tokenizer();
    let ids = tok.encode(TEXTS[1], false).unwrap();
    let mut decoder = IncrementalDecoder::new(tok.clone(), false);
    let mut out = String::new();
    for chunk in ids.chunks(3) {
        out.push_str(&decoder.push_many(chunk).unwrap());
    }
    out.push_str(&decoder.flush().unwrap());
    assert_eq!(out, TEXTS[1]);
}

#[test]
fn special_token_facts_come_from_the_files() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let bare = GlmTokenizer::from_dir(&root.join("tokenizer")).unwrap();
    let endoftext = bare.token_to_id("<|endoftext|>").unwrap();
    assert_eq!(bare.eos_token_ids(), [endoftext]);
    assert_eq!(bare.pad_token_id(), Some(endoftext));
    assert_eq!(bare.bos_token_id(), None);
    assert_eq!(bare.vocab_size(), 2036);
    // The model directory adds <|user|> and <|observation|> from generation_config.json.
    let model = GlmTokenizer::from_dir(&root.join("glm4moe-tiny")).unwrap();
    let user = model.token_to_id("<|user|>").unwrap();
    let observation = model.token_to_id("<|observation|>").unwrap();
    assert_eq!(model.eos_token_ids(), [endoftext, user, observation]);
    assert_eq!(model.id_to_token(user).as_deref(), Some("<|user|>"));
    // Tool and think tags are added but not special.
    for tag in [
        "<think>",
        "</think>",
        "<tool_call>",
        "<arg_key>",
        "/nothink",
    ] {
        let id = model.token_to_id(tag).unwrap();
        assert!(!model.is_special(id), "{tag}");
    }
    assert!(model.is_special(user));
}
