//! The Glm4Moe forward pass against transformers' outputs on the tiny fixture model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use glm_model::{CausalLm, ForwardBatch, LoadOptions, SeqInput};

fn model() -> Box<dyn CausalLm> {
    load(&fixture_dir(), &LoadOptions::default())
}

#[test]
fn golden_first_step_logits_and_greedy_tokens_match_transformers() {
    for (label, opts, tol) in backends() {
        golden_on(&label, &opts, tol);
    }
}

fn golden_on(label: &str, opts: &LoadOptions, tol: f32) {
    check_goldens(label, &fixture_dir(), opts, tol);
}

#[test]
fn fp8_block_scaled_checkpoint_matches_transformers_on_its_dequantized_weights() {
    // zai-org's layout: float8 e4m3 weights, 128x128 blocks of `weight_scale_inv`
    // (partial blocks included: the tiny dims are not multiples of 128).
    let dir = fixtures().join("glm4moe-tiny-fp8");
    for (label, opts, tol) in backends() {
        check_goldens(&format!("fp8 {label}"), &dir, &opts, tol);
    }
}

#[test]
fn chunked_prefill_equals_one_shot() {
    for (label, opts, _) in backends() {
        println!("{label}");
        chunked_on(&opts);
    }
}

fn chunked_on(opts: &LoadOptions) {
    let mut m = load(&fixture_dir(), opts);
    let case = golden_cases()
        .into_iter()
        .max_by_key(|c| c.input_ids.len())
        .unwrap();
    let blocks = (case.input_ids.len() + 8).div_ceil(BLOCK) + 1;
    let table: Vec<u32> = (0..blocks as u32).collect();
    init(m.as_mut(), blocks);
    let (one, t1) = greedy(m.as_mut(), &case.input_ids, 8, usize::MAX, &table);
    for chunk in [1usize, 7, 64] {
        init(m.as_mut(), blocks);
        let (chunked, t2) = greedy(m.as_mut(), &case.input_ids, 8, chunk, &table);
        let d = one
            .iter()
            .zip(&chunked)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-4, "chunk {chunk}: logits differ by {d}");
        assert_eq!(t1, t2, "chunk {chunk}");
    }
}

#[test]
fn batch_of_different_sequences_equals_each_alone() {
    for (label, opts, _) in backends() {
        println!("{label}");
        batch_on(&opts);
    }
}

fn batch_on(opts: &LoadOptions) {
    let mut m = load(&fixture_dir(), opts);
    let cases = golden_cases();
    let prompts: Vec<Vec<u32>> = cases.iter().take(4).map(|c| c.input_ids.clone()).collect();
    let per_seq = 8;
    let steps = 6;
    init(m.as_mut(), per_seq * prompts.len());
    let tables: Vec<Vec<u32>> = (0..prompts.len())
        .map(|i| {
            (0..per_seq as u32)
                .map(|b| b * prompts.len() as u32 + i as u32)
                .collect()
        })
        .collect();
    let mut alone = Vec::new();
    for (p, t) in prompts.iter().zip(&tables) {
        alone.push(greedy(m.as_mut(), p, steps, usize::MAX, t));
    }
    // All prompts prefilled in one batch, then decoded together.
    init(m.as_mut(), per_seq * prompts.len());
    let out = m
        .forward(&ForwardBatch {
            seqs: prompts
                .iter()
                .zip(&tables)
                .map(|(p, t)| SeqInput {
                    tokens: p.clone(),
                    num_cached: 0,
                    block_table: t.clone(),
                    want_logits: true,
                })
                .collect(),
        })
        .unwrap();
    let mut cached: Vec<usize> = prompts.iter().map(Vec::len).collect();
    let mut toks: Vec<Vec<u32>> = out
        .iter()
        .map(|l| vec![argmax(l.as_ref().unwrap())])
        .collect();
    for (i, l) in out.iter().enumerate() {
        let d = l
            .as_ref()
            .unwrap()
            .iter()
            .zip(&alone[i].0)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            d < 1e-4,
            "sequence {i}: batched prefill logits differ by {d}"
        );
    }
    for _ in 1..steps {
        let out = m
            .forward(&ForwardBatch {
                seqs: (0..prompts.len())
                    .map(|i| SeqInput {
                        tokens: vec![*toks[i].last().unwrap()],
                        num_cached: cached[i],
                        block_table: tables[i].clone(),
                        want_logits: true,
                    })
                    .collect(),
            })
            .unwrap();
        for (i, l) in out.iter().enumerate() {
            toks[i].push(argmax(l.as_ref().unwrap()));
            cached[i] += 1;
        }
    }
    for (i, t) in toks.iter().enumerate() {
        assert_eq!(t, &alone[i].1, "sequence {i}");
    }
}

#[test]
fn forward_rejects_bad_batches() {
    let mut m = model();
    let seq = |tokens: Vec<u32>, table: Vec<u32>| ForwardBatch {
        seqs: vec![SeqInput {
            tokens,
            num_cached: 0,
            block_table: table,
            want_logits: true,
        }],
    };
    let e = m.forward(&seq(vec![1], vec![0])).unwrap_err();
    assert_eq!(e.kind(), "cache");
    init(m.as_mut(), 4);
    let cases = [
        (seq(vec![], vec![0]), "no tokens"),
        (seq(vec![5000], vec![0]), "vocab_size"),
        (seq(vec![1; 17], vec![0]), "block_table"),
        (seq(vec![1], vec![9]), "block id 9"),
    ];
    for (b, needle) in cases {
        let e = m.forward(&b).unwrap_err();
        assert_eq!(e.kind(), "invalid_batch");
        assert!(e.to_string().contains(needle), "{e}");
    }
    // A batch that wants no logits still runs and returns None.
    let out = m
        .forward(&ForwardBatch {
            seqs: vec![SeqInput {
                tokens: vec![1, 2],
                num_cached: 0,
                block_table: vec![0],
                want_logits: false,
            }],
        })
        .unwrap();
    assert_eq!(out, vec![None]);
}

#[test]
fn bf16_weights_kept_16_bit_equal_weights_widened_to_f32() {
    // The fixture stores bf16 matrices; widening is exact, so keeping them 16-bit (the
    // default) must give the logits of the f32 copy, through prefill and decode.
    narrow_equals_f32(&fixture_dir());
}

#[test]
fn fp8_weights_kept_8_bit_equal_weights_dequantized_to_f32() {
    narrow_equals_f32(&fixtures().join("glm4moe-tiny-fp8"));
    // 8-bit matrices (plus one f32 scale per 128 x 128 block) against 16-bit ones.
    let fp8 = load(
        &fixtures().join("glm4moe-tiny-fp8"),
        &LoadOptions::default(),
    );
    let bf16 = model();
    let (a, b) = (fp8.info().weight_bytes, bf16.info().weight_bytes);
    println!("weight bytes: fp8 {a}, bf16 {b}");
    assert!(a < b, "fp8 {a} bytes vs bf16 {b}");
}

/// The checkpoint in `dir` loaded in its own (narrow) type and loaded as f32 give the same
/// logits (within 1e-5: long prompts take the f32 gemm) and the same greedy tokens.
fn narrow_equals_f32(dir: &std::path::Path) {
    let mut narrow = load(dir, &LoadOptions::default());
    let mut full = load(
        dir,
        &LoadOptions {
            dtype: glm_model::WeightDtype::F32,
            ..LoadOptions::default()
        },
    );
    assert!(narrow.info().weight_bytes < full.info().weight_bytes);
    for case in golden_cases_in(dir) {
        let blocks = (case.input_ids.len() + 12).div_ceil(BLOCK) + 1;
        let table: Vec<u32> = (0..blocks as u32).collect();
        init(narrow.as_mut(), blocks);
        init(full.as_mut(), blocks);
        let (a, ta) = greedy(narrow.as_mut(), &case.input_ids, 12, usize::MAX, &table);
        let (b, tb) = greedy(full.as_mut(), &case.input_ids, 12, usize::MAX, &table);
        let d = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            d < 1e-5,
            "{} {}: logits differ by {d}",
            dir.display(),
            case.name
        );
        assert_eq!(ta, tb, "{} {}", dir.display(), case.name);
    }
}
