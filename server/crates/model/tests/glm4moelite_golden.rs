//! The Glm4MoeLite (GLM-4.7-Flash, MLA) forward pass against transformers' outputs on the
//! tiny fixture model, plus the paged latent cache under chunking, batching and prefix sharing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use glm_model::glm4moelite::Glm4MoeLiteConfig;
use glm_model::{load_model, CacheConfig, CausalLm, ForwardBatch, Glm4MoeLite, SeqInput};

const BLOCK: usize = 16;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/glm4moelite-tiny")
}

fn model() -> Box<dyn CausalLm> {
    load_model(&fixture_dir(), &candle_core::Device::Cpu).unwrap()
}

struct Case {
    name: String,
    input_ids: Vec<u32>,
    first_step_logits: Vec<f32>,
    generated_ids: Vec<u32>,
    step_top1_margin: Vec<f32>,
}

fn golden_cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixture_dir().join("golden.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_owned(),
            input_ids: ids(&c["input_ids"]),
            first_step_logits: floats(&c["first_step_logits"]),
            generated_ids: ids(&c["generated_ids"]),
            step_top1_margin: floats(&c["step_top1_margin"]),
        })
        .collect()
}

fn init(model: &mut dyn CausalLm, num_blocks: usize) {
    model
        .init_cache(CacheConfig {
            num_blocks,
            block_size: BLOCK,
        })
        .unwrap();
}

fn argmax(v: &[f32]) -> u32 {
    glm_model::sampling::argmax(v)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn step(model: &mut dyn CausalLm, tokens: &[u32], cached: usize, table: &[u32]) -> Vec<f32> {
    let out = model
        .forward(&ForwardBatch {
            seqs: vec![SeqInput {
                tokens: tokens.to_vec(),
                num_cached: cached,
                block_table: table.to_vec(),
                want_logits: true,
            }],
        })
        .unwrap();
    out.into_iter().next().unwrap().unwrap()
}

/// Feeds `tokens` after `cached` cached ones in chunks of `chunk`, then decodes greedily
/// until `steps` tokens exist. Returns the logits after the prompt and the generated tokens.
fn continue_greedy(
    model: &mut dyn CausalLm,
    tokens: &[u32],
    mut cached: usize,
    steps: usize,
    chunk: usize,
    table: &[u32],
) -> (Vec<f32>, Vec<u32>) {
    let mut logits = None;
    let parts: Vec<&[u32]> = tokens.chunks(chunk).collect();
    for (i, part) in parts.iter().enumerate() {
        let out = model
            .forward(&ForwardBatch {
                seqs: vec![SeqInput {
                    tokens: part.to_vec(),
                    num_cached: cached,
                    block_table: table.to_vec(),
                    want_logits: i + 1 == parts.len(),
                }],
            })
            .unwrap();
        cached += part.len();
        logits = out.into_iter().next().unwrap();
    }
    let first = logits.unwrap();
    let mut out = vec![argmax(&first)];
    while out.len() < steps {
        let l = step(model, &[*out.last().unwrap()], cached, table);
        cached += 1;
        out.push(argmax(&l));
    }
    (first, out)
}

fn greedy(
    model: &mut dyn CausalLm,
    prompt: &[u32],
    steps: usize,
    chunk: usize,
    table: &[u32],
) -> (Vec<f32>, Vec<u32>) {
    continue_greedy(model, prompt, 0, steps, chunk, table)
}

/// Leading steps that must match exactly: up to the first step whose reference top-1
/// margin is below 0.02 (float rounding may flip the argmax there).
fn comparable_steps(margins: &[f32]) -> usize {
    margins
        .iter()
        .position(|&m| m < 0.02)
        .unwrap_or(margins.len())
}

#[test]
fn lite_golden_first_step_logits_and_greedy_tokens_match_transformers() {
    let mut m = model();
    assert_eq!(m.info().architecture, "Glm4MoeLiteForCausalLM");
    let cases = golden_cases();
    assert_eq!(cases.len(), 6);
    for case in &cases {
        let blocks = (case.input_ids.len() + case.generated_ids.len()).div_ceil(BLOCK) + 1;
        init(m.as_mut(), blocks);
        let table: Vec<u32> = (0..blocks as u32).rev().collect(); // non-contiguous on purpose
        let (first, tokens) = greedy(
            m.as_mut(),
            &case.input_ids,
            case.generated_ids.len(),
            usize::MAX,
            &table,
        );
        let d = max_diff(&first, &case.first_step_logits);
        let n = comparable_steps(&case.step_top1_margin);
        println!(
            "{}: max |logit diff| {d:.2e}; {n} comparable greedy steps",
            case.name
        );
        assert!(d < 1e-3, "{}: first-step logits differ by {d}", case.name);
        assert!(n >= 1);
        assert_eq!(
            tokens[..n],
            case.generated_ids[..n],
            "{}: greedy tokens differ within the first {n} steps",
            case.name
        );
    }
}
