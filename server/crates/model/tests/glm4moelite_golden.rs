//! The Glm4MoeLite (GLM-4.7-Flash, MLA) forward pass against transformers' outputs on the
//! tiny fixture model, plus the paged latent cache under chunking, batching and prefix sharing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

mod common;

use common::{argmax, backends, golden_cases_in, init, load};
use glm_model::glm4moelite::Glm4MoeLiteConfig;
use glm_model::ArchConfig;
use glm_model::{CausalLm, ForwardBatch, LoadOptions, SeqInput};
use serde_json::json;

const BLOCK: usize = 16;

fn fixture_dir() -> PathBuf {
    common::fixtures().join("glm4moelite-tiny")
}

fn model() -> Box<dyn CausalLm> {
    load(&fixture_dir(), &LoadOptions::default())
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

#[test]
fn lite_golden_first_step_logits_and_greedy_tokens_match_transformers() {
    for (label, opts, tol) in backends() {
        lite_golden_on(&label, &opts, tol);
    }
}

fn lite_golden_on(label: &str, opts: &LoadOptions, tol: f32) {
    assert_eq!(
        load(&fixture_dir(), opts).info().architecture,
        "Glm4MoeLiteForCausalLM"
    );
    common::check_goldens(label, &fixture_dir(), opts, tol);
}

#[test]
fn lite_fp8_channel_scaled_checkpoint_matches_transformers_on_its_dequantized_weights() {
    // llm-compressor's compressed-tensors layout: float8 e4m3 weights, one `weight_scale`
    // per output row; kv_b_proj (split at load) is FP8 too.
    let dir = common::fixtures().join("glm4moelite-tiny-fp8");
    for (label, opts, tol) in backends() {
        common::check_goldens(&format!("fp8 {label}"), &dir, &opts, tol);
    }
}

#[test]
fn lite_chunked_prefill_equals_one_shot() {
    for (label, opts, _) in backends() {
        println!("{label}");
        lite_chunked_prefill_equals_one_shot_on(&opts);
    }
}

fn lite_chunked_prefill_equals_one_shot_on(opts: &LoadOptions) {
    let mut m = load(&fixture_dir(), opts);
    let case = golden_cases_in(&fixture_dir())
        .into_iter()
        .max_by_key(|c| c.input_ids.len())
        .unwrap();
    assert!(
        case.input_ids.len() > 2 * BLOCK,
        "needs a multi-block prompt"
    );
    let blocks = (case.input_ids.len() + 8).div_ceil(BLOCK) + 1;
    let table: Vec<u32> = (0..blocks as u32).collect();
    init(m.as_mut(), blocks);
    let (one, t1) = greedy(m.as_mut(), &case.input_ids, 8, usize::MAX, &table);
    for chunk in [1usize, 7, BLOCK, 64] {
        init(m.as_mut(), blocks);
        let (chunked, t2) = greedy(m.as_mut(), &case.input_ids, 8, chunk, &table);
        let d = max_diff(&one, &chunked);
        assert!(d < 1e-4, "chunk {chunk}: logits differ by {d}");
        assert_eq!(t1, t2, "chunk {chunk}");
    }
}

#[test]
fn lite_batch_of_different_sequences_equals_each_alone() {
    for (label, opts, _) in backends() {
        println!("{label}");
        lite_batch_of_different_sequences_equals_each_alone_on(&opts);
    }
}

fn lite_batch_of_different_sequences_equals_each_alone_on(opts: &LoadOptions) {
    let mut m = load(&fixture_dir(), opts);
    let prompts: Vec<Vec<u32>> = golden_cases_in(&fixture_dir())
        .iter()
        .take(4)
        .map(|c| c.input_ids.clone())
        .collect();
    let (per_seq, steps) = (8, 6);
    let n = prompts.len();
    init(m.as_mut(), per_seq * n);
    // Interleaved block ids so sequences' blocks alternate in the cache.
    let tables: Vec<Vec<u32>> = (0..n)
        .map(|i| (0..per_seq).map(|b| (b * n + i) as u32).collect())
        .collect();
    let alone: Vec<(Vec<f32>, Vec<u32>)> = prompts
        .iter()
        .zip(&tables)
        .map(|(p, t)| greedy(m.as_mut(), p, steps, usize::MAX, t))
        .collect();
    init(m.as_mut(), per_seq * n);
    let mut cached = vec![0usize; n];
    let mut toks: Vec<Vec<u32>> = vec![Vec::new(); n];
    for s in 0..steps {
        let seqs = (0..n)
            .map(|i| SeqInput {
                tokens: if s == 0 {
                    prompts[i].clone()
                } else {
                    vec![*toks[i].last().unwrap()]
                },
                num_cached: cached[i],
                block_table: tables[i].clone(),
                want_logits: true,
            })
            .collect::<Vec<_>>();
        let lens: Vec<usize> = seqs.iter().map(|q| q.tokens.len()).collect();
        let out = m.forward(&ForwardBatch { seqs }).unwrap();
        for (i, l) in out.iter().enumerate() {
            let l = l.as_ref().unwrap();
            if s == 0 {
                let d = max_diff(l, &alone[i].0);
                assert!(
                    d < 1e-4,
                    "sequence {i}: batched prefill logits differ by {d}"
                );
            }
            toks[i].push(argmax(l));
            cached[i] += lens[i];
        }
    }
    for (i, t) in toks.iter().enumerate() {
        assert_eq!(t, &alone[i].1, "sequence {i}");
    }
}

#[test]
fn lite_prefix_sharing_equals_separate_caches() {
    for (label, opts, _) in backends() {
        println!("{label}");
        lite_prefix_sharing_equals_separate_caches_on(&opts);
    }
}

fn lite_prefix_sharing_equals_separate_caches_on(opts: &LoadOptions) {
    let mut m = load(&fixture_dir(), opts);
    let case = golden_cases_in(&fixture_dir())
        .into_iter()
        .max_by_key(|c| c.input_ids.len())
        .unwrap();
    let shared_blocks = 2;
    let prefix_len = shared_blocks * BLOCK;
    assert!(case.input_ids.len() > prefix_len + 4);
    let prompt_a = case.input_ids.clone();
    // B shares A's first two full blocks, then diverges.
    let mut prompt_b = prompt_a[..prefix_len].to_vec();
    prompt_b.extend([5u32, 77, 1234, 42, 9]);
    let steps = 8;
    let per_seq = (prompt_a.len() + steps).div_ceil(BLOCK) + 1;

    // Reference: each sequence alone in a fresh cache.
    init(m.as_mut(), per_seq);
    let own: Vec<u32> = (0..per_seq as u32).collect();
    let ref_a = greedy(m.as_mut(), &prompt_a, steps, usize::MAX, &own);
    init(m.as_mut(), per_seq);
    let ref_b = greedy(m.as_mut(), &prompt_b, steps, usize::MAX, &own);

    // Shared: A owns blocks 0..per_seq; B's table reuses A's first blocks, then its own.
    init(m.as_mut(), 2 * per_seq);
    let table_a: Vec<u32> = (0..per_seq as u32).collect();
    let table_b: Vec<u32> = table_a[..shared_blocks]
        .iter()
        .copied()
        .chain(per_seq as u32..(2 * per_seq - shared_blocks) as u32)
        .collect();
    let got_a = greedy(m.as_mut(), &prompt_a, steps, usize::MAX, &table_a);
    // B skips the cached prefix: only its own tokens are run.
    let got_b = continue_greedy(
        m.as_mut(),
        &prompt_b[prefix_len..],
        prefix_len,
        steps,
        usize::MAX,
        &table_b,
    );
    assert!(max_diff(&got_a.0, &ref_a.0) < 1e-5);
    assert_eq!(got_a.1, ref_a.1);
    let d = max_diff(&got_b.0, &ref_b.0);
    assert!(d < 1e-4, "prefix-shared B logits differ by {d}");
    assert_eq!(got_b.1, ref_b.1);
    // A keeps decoding correctly after B wrote behind the shared blocks.
    let cached_a = prompt_a.len() + steps - 1;
    let l = step(m.as_mut(), &[*got_a.1.last().unwrap()], cached_a, &table_a);
    init(m.as_mut(), per_seq);
    let mut seq = prompt_a.clone();
    seq.extend(&ref_a.1);
    let l_ref = step(m.as_mut(), &seq, 0, &own);
    assert!(max_diff(&l, &l_ref) < 1e-4);
}

#[test]
fn lite_kv_cache_stores_the_latent_and_reports_its_size() {
    let m = model();
    let r = Glm4MoeLiteConfig::from_dir(&fixture_dir())
        .unwrap()
        .kv_layout();
    // tiny: kv_lora_rank 64 + rope 16 = 80 values; full: 4 heads * (64 + 64) = 512.
    assert_eq!(
        (r.latent_values_per_layer, r.full_values_per_layer),
        (80, 512)
    );
    assert_eq!(r.latent_bytes_per_token, 3 * 80 * 4);
    assert_eq!(m.info().kv_bytes_per_token, r.latent_bytes_per_token);
    println!("glm4moelite-tiny {r}");
    // GLM-4.7-Flash (reference/GLM.md section 2): 512 + 64 = 576 per layer vs 20 * 512.
    let flash = Glm4MoeLiteConfig::from_json(&flash_config()).unwrap();
    let f = flash.kv_layout();
    assert_eq!(
        (f.latent_values_per_layer, f.full_values_per_layer),
        (576, 10240)
    );
    assert_eq!(f.latent_bytes_per_token, 47 * 576 * 4);
    assert!((f.ratio() - 10240.0 / 576.0).abs() < 1e-9);
    println!("GLM-4.7-Flash {f}");
}

fn flash_config() -> serde_json::Value {
    json!({
        "architectures": ["Glm4MoeLiteForCausalLM"], "vocab_size": 154880,
        "hidden_size": 2048, "num_hidden_layers": 47, "num_attention_heads": 20,
        "num_key_value_heads": 20, "q_lora_rank": 768, "kv_lora_rank": 512,
        "qk_nope_head_dim": 192, "qk_rope_head_dim": 64, "v_head_dim": 256,
        "rope_theta": 1000000.0, "rope_scaling": null, "rope_interleave": true,
        "n_routed_experts": 64, "num_experts_per_tok": 4, "n_group": 1, "topk_group": 1,
        "eos_token_id": [154820, 154827, 154829]
    })
}

#[test]
fn lite_config_rejects_what_it_cannot_run() {
    let ok = Glm4MoeLiteConfig::from_json(&flash_config()).unwrap();
    assert_eq!(ok.q_lora_rank, Some(768));
    assert!((ok.routed_scaling_factor - 1.8).abs() < 1e-12);
    let with = |k: &str, v: serde_json::Value| {
        let mut c = flash_config();
        c[k] = v;
        Glm4MoeLiteConfig::from_json(&c).unwrap_err()
    };
    let e = with("rope_scaling", json!({"rope_type": "yarn", "factor": 4.0}));
    assert_eq!(e.kind(), "config");
    assert!(e.to_string().contains("yarn"), "{e}");
    let e = with("architectures", json!(["Glm4MoeForCausalLM"]));
    assert_eq!(e.kind(), "unsupported_architecture");
    assert_eq!(with("qk_rope_head_dim", json!(63)).kind(), "config");
    assert_eq!(with("num_experts_per_tok", json!(65)).kind(), "config");
    assert_eq!(with("hidden_act", json!("gelu")).kind(), "config");
    let e = with("kv_lora_rank", json!("big"));
    assert!(e.to_string().contains("kv_lora_rank"), "{e}");
}

#[test]
fn lite_forward_rejects_bad_batches() {
    let mut m = model();
    let seq = |tokens: Vec<u32>, table: Vec<u32>| ForwardBatch {
        seqs: vec![SeqInput {
            tokens,
            num_cached: 0,
            block_table: table,
            want_logits: true,
        }],
    };
    assert_eq!(
        m.forward(&seq(vec![1], vec![0])).unwrap_err().kind(),
        "cache"
    );
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
