//! Structured outputs in the engine: constrained and free sequences batched together give
//! exactly what each gives alone (also when a tight KV pool preempts and recomputes them),
//! every finished constrained output matches its grammar, and a dead end ends cleanly.

use std::path::Path;

use glm_tokenizer::GlmTokenizer;
use serde_json::{json, Value};

use super::{testing::ToyModel, *};
use crate::{
    constraint::{GrammarCompiler, GrammarSpec},
    metrics::Metrics,
};

fn tokenizer() -> GlmTokenizer {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/glm4moe-tiny");
    GlmTokenizer::from_dir(&dir).unwrap()
}

fn spawn(tok: &GlmTokenizer, num_blocks: usize) -> (EngineHandle, Metrics) {
    let metrics = Metrics::new("toy");
    let model = Box::new(ToyModel::new(
        tok.vocab_size(),
        tok.eos_token_ids().to_vec(),
    ));
    let cfg = EngineConfig {
        num_blocks,
        block_size: 4,
        max_num_seqs: 64,
        max_num_batched_tokens: 64,
        max_model_len: 512,
        max_queue: 1000,
        enable_prefix_caching: true,
    };
    (
        EngineHandle::spawn(model, cfg, metrics.clone()).unwrap(),
        metrics,
    )
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 6},
            "rank": {"type": "integer", "minimum": 1, "maximum": 99},
            "ok": {"type": "boolean"},
            "kind": {"enum": ["x", "y", "z"]}
        },
        "required": ["city", "rank", "ok", "kind"],
        "additionalProperties": false
    })
}

async fn run(h: &EngineHandle, prompt: Vec<u32>, params: GenerationParams) -> (Vec<u32>, Finished) {
    let mut s = h.submit(prompt, params, tracing::Span::none()).unwrap();
    let mut toks = Vec::new();
    while let Some(ev) = s.recv().await {
        match ev {
            EngineEvent::Token(t) => toks.push(t.token),
            EngineEvent::Finished(f) => return (toks, f),
            EngineEvent::Error(e) => panic!("engine error {e}"),
        }
    }
    panic!("stream ended without Finished")
}

/// Request i: even ones constrained by the schema, odd ones free; all greedy.
fn requests(comp: &GrammarCompiler, vocab: u32) -> Vec<(Vec<u32>, GenerationParams)> {
    let constraint = comp.compile(&GrammarSpec::JsonSchema(schema())).unwrap();
    (0..12u32)
        .map(|i| {
            let prompt: Vec<u32> = (0..6 + i % 5)
                .map(|j| (i * 31 + j * 7 + 3) % vocab)
                .collect();
            let mut params = GenerationParams::greedy(120);
            if i % 2 == 0 {
                params.constraint = Some(constraint.clone());
            }
            (prompt, params)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constrained_and_free_batched_match_solo_and_outputs_are_valid() {
    let tok = tokenizer();
    let comp = GrammarCompiler::new(&tok, tok.vocab_size(), tok.eos_token_ids()).unwrap();
    // Token ids the toy prompts use: plain vocabulary entries.
    let reqs = requests(&comp, 1000);

    let (solo_engine, _) = spawn(&tok, 512);
    let mut solo = Vec::new();
    for (p, params) in &reqs {
        solo.push(run(&solo_engine, p.clone(), params.clone()).await);
    }
    // Ample pool, then a tight one (preemption + recompute mid-grammar).
    for blocks in [512, 40] {
        let (h, metrics) = spawn(&tok, blocks);
        let tasks: Vec<_> = reqs
            .iter()
            .cloned()
            .map(|(p, params)| {
                let h = h.clone();
                tokio::spawn(async move { run(&h, p, params).await })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            let (toks, fin) = t.await.unwrap();
            assert_eq!(toks, solo[i].0, "request {i} with {blocks} blocks");
            assert_eq!(
                fin.reason, solo[i].1.reason,
                "request {i} with {blocks} blocks"
            );
        }
        let masks = crate::metrics::sample_value(&metrics.encode(), "glm_grammar_masks_total");
        assert!(masks.unwrap_or(0.0) > 0.0);
    }

    let mut valid = 0;
    for (i, (toks, fin)) in solo.iter().enumerate() {
        if i % 2 == 1 {
            // Free: the toy model may hit an end token by chance.
            continue;
        }
        if fin.reason == FinishReason::Length {
            continue;
        }
        assert_eq!(fin.reason, FinishReason::Stop, "request {i}");
        // The last token is the end token (not output text).
        let text = tok.decode(&toks[..toks.len() - 1], false).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let o = v.as_object().unwrap();
        assert_eq!(o.len(), 4, "{text}");
        assert!(o["city"].as_str().unwrap().chars().count() <= 6);
        assert!((1..=99).contains(&o["rank"].as_i64().unwrap()));
        assert!(o["ok"].is_boolean());
        assert!(["x", "y", "z"].contains(&o["kind"].as_str().unwrap()));
        valid += 1;
    }
    assert!(
        valid >= 4,
        "only {valid} of 6 constrained outputs completed"
    );
}

#[tokio::test]
async fn a_dead_end_ends_the_sequence_with_its_own_reason() {
    let tok = tokenizer();
    let comp = GrammarCompiler::new(&tok, tok.vocab_size(), tok.eos_token_ids()).unwrap();
    let (h, metrics) = spawn(&tok, 128);
    let mut params = GenerationParams::greedy(30);
    params.constraint = Some(
        comp.compile(&GrammarSpec::Choice(vec!["ok".into()]))
            .unwrap(),
    );
    // "ok" then the end.
    let (toks, fin) = run(&h, vec![5, 6, 7], params.clone()).await;
    assert_eq!(fin.reason, FinishReason::Stop);
    assert_eq!(tok.decode(&toks[..toks.len() - 1], false).unwrap(), "ok");
    let text = metrics.encode();
    assert!(crate::metrics::sample_value(&text, "glm_grammar_mask_seconds_total").is_some());

    // A model whose output layer is smaller than the tokenizer (ids 0..9 only): no token
    // it can produce spells "ok", so the first masked step has nothing left.
    let metrics = Metrics::new("toy");
    let model = Box::new(ToyModel::new(10, tok.eos_token_ids().to_vec()));
    let cfg = EngineConfig {
        num_blocks: 64,
        block_size: 4,
        max_num_seqs: 8,
        max_num_batched_tokens: 64,
        max_model_len: 128,
        max_queue: 10,
        enable_prefix_caching: true,
    };
    let small = EngineHandle::spawn(model, cfg, metrics).unwrap();
    let (toks, fin) = run(&small, vec![1, 2, 3], params).await;
    assert_eq!((toks.len(), fin.reason), (0, FinishReason::GrammarDeadEnd));
    assert_eq!(small.active(), 0);
}
