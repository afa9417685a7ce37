use std::time::Duration;

use super::{testing::ToyModel, *};
use crate::metrics::Metrics;

const VOCAB: usize = 64;

fn cfg(num_blocks: usize) -> EngineConfig {
    EngineConfig {
        num_blocks,
        block_size: 4,
        max_num_seqs: 64,
        max_num_batched_tokens: 32,
        max_model_len: 256,
        max_queue: 1000,
        enable_prefix_caching: true,
    }
}

fn spawn(num_blocks: usize) -> (EngineHandle, Metrics) {
    let metrics = Metrics::new("toy");
    let model = Box::new(ToyModel::new(VOCAB, vec![]));
    let h = EngineHandle::spawn(model, cfg(num_blocks), metrics.clone()).unwrap();
    (h, metrics)
}

/// Greedy continuation computed directly from the toy model's pure logits.
fn expected(prompt: &[u32], n: usize) -> Vec<u32> {
    let mut hist = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..n {
        let l = ToyModel::logits_for(VOCAB, &hist);
        let t = glm_model::sampling::argmax(&l);
        out.push(t);
        hist.push(t);
    }
    out
}

async fn collect(mut s: RequestStream) -> (Vec<u32>, Option<Finished>) {
    let mut toks = Vec::new();
    while let Some(ev) = s.recv().await {
        match ev {
            EngineEvent::Token(t) => toks.push(t.token),
            EngineEvent::Finished(f) => return (toks, Some(f)),
            EngineEvent::Error(e) => panic!("engine error {e}"),
        }
    }
    (toks, None)
}

fn prompt(i: u32, len: u32) -> Vec<u32> {
    (0..len).map(|j| (i * 7 + j * 3) % VOCAB as u32).collect()
}

#[tokio::test]
async fn concurrent_requests_match_solo_results_and_free_kv() {
    let (h, metrics) = spawn(512);
    let mut tasks = Vec::new();
    for i in 0..24u32 {
        // Shared prefix for half of them, to exercise prefix-cache sharing under batching.
        let mut p = if i % 2 == 0 { prompt(1, 9) } else { Vec::new() };
        p.extend(prompt(i, 5 + i % 11));
        let stream = h
            .submit(
                p.clone(),
                GenerationParams::greedy(12),
                tracing::Span::none(),
            )
            .unwrap();
        tasks.push(tokio::spawn(async move { (p, collect(stream).await) }));
    }
    for t in tasks {
        let (p, (toks, fin)) = t.await.unwrap();
        assert_eq!(toks, expected(&p, 12), "prompt {p:?}");
        let fin = fin.unwrap();
        assert_eq!(fin.reason, FinishReason::Length);
        assert_eq!(fin.completion_tokens, 12);
        assert_eq!(fin.prompt_tokens, p.len());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let text = metrics.encode();
    assert_eq!(
        crate::metrics::sample_value(&text, crate::metrics::KV_CACHE_USAGE_RATIO),
        Some(0.0)
    );
    assert!(crate::metrics::sample_value(&text, "glm_prefix_cache_hits_total").unwrap() > 0.0);
    assert_eq!(h.active(), 0);
    assert_eq!(h.pending(), 0);
}

#[tokio::test]
async fn a_repeated_prompt_reuses_a_taken_over_block_and_generates_the_same() {
    // Block size 4: a 10-token prompt and 6 generated tokens fill 4 blocks; sent again, the
    // prompt finds 2 full blocks and 1 token of the third, which it takes over and writes.
    let (h, _) = spawn(64);
    let p = prompt(3, 10);
    let mut finishes = Vec::new();
    for _ in 0..3 {
        let s = h
            .submit(
                p.clone(),
                GenerationParams::greedy(6),
                tracing::Span::none(),
            )
            .unwrap();
        let (toks, fin) = collect(s).await;
        assert_eq!(toks, expected(&p, 6));
        finishes.push(fin.unwrap().cached_tokens);
    }
    assert_eq!(finishes, vec![0, 9, 9]);
    // A prompt sharing only the block's first token overwrites the rest of it.
    let mut q = p[..9].to_vec();
    q.push(63);
    assert_ne!(q, p);
    let s = h
        .submit(
            q.clone(),
            GenerationParams::greedy(6),
            tracing::Span::none(),
        )
        .unwrap();
    let (toks, fin) = collect(s).await;
    assert_eq!(toks, expected(&q, 6));
    assert_eq!(fin.unwrap().cached_tokens, 9);
}

#[tokio::test]
async fn tight_kv_pool_preempts_but_results_do_not_change() {
    // 12 blocks of 4 tokens: 48 slots for 6 sequences that each grow to ~30 tokens.
    let (h, _) = spawn(12);
    let mut tasks = Vec::new();
    for i in 0..6u32 {
        let p = prompt(i + 10, 14);
        let s = h
            .submit(
                p.clone(),
                GenerationParams::greedy(16),
                tracing::Span::none(),
            )
            .unwrap();
        tasks.push(tokio::spawn(async move { (p, collect(s).await) }));
    }
    for t in tasks {
        let (p, (toks, fin)) = t.await.unwrap();
        assert_eq!(toks, expected(&p, 16));
        assert_eq!(fin.unwrap().reason, FinishReason::Length);
    }
}

#[tokio::test]
async fn stop_tokens_eos_and_min_tokens() {
    let p = prompt(3, 6);
    let exp = expected(&p, 20);
    let stop = exp[4];
    let first_hit = exp.iter().position(|&t| t == stop).unwrap();
    let (h, _) = spawn(64);
    let mut params = GenerationParams::greedy(20);
    params.stop_token_ids = vec![stop];
    let (toks, fin) = collect(
        h.submit(p.clone(), params.clone(), tracing::Span::none())
            .unwrap(),
    )
    .await;
    assert_eq!(toks, exp[..=first_hit].to_vec());
    let fin = fin.unwrap();
    assert_eq!(
        (fin.reason, fin.stop_token),
        (FinishReason::Stop, Some(stop))
    );

    // EOS from the model info, honoured unless ignore_eos.
    let metrics = Metrics::new("toy");
    let eos_model = Box::new(ToyModel::new(VOCAB, vec![stop]));
    let h2 = EngineHandle::spawn(eos_model, cfg(64), metrics).unwrap();
    let (toks, _) = collect(
        h2.submit(
            p.clone(),
            GenerationParams::greedy(20),
            tracing::Span::none(),
        )
        .unwrap(),
    )
    .await;
    assert_eq!(toks.len(), first_hit + 1);
    let mut ignore = GenerationParams::greedy(20);
    ignore.ignore_eos = true;
    let (toks, _) = collect(h2.submit(p.clone(), ignore, tracing::Span::none()).unwrap()).await;
    assert_eq!(toks, exp);
    let mut min = GenerationParams::greedy(20);
    min.min_tokens = first_hit + 1;
    let (toks, _) = collect(h2.submit(p, min, tracing::Span::none()).unwrap()).await;
    assert!(toks.len() > first_hit + 1);
}

#[tokio::test]
async fn dropped_stream_aborts_and_frees_blocks() {
    let metrics = Metrics::new("toy");
    let mut model = ToyModel::new(VOCAB, vec![]);
    // Slow steps so the request is still running when the stream is dropped.
    model.step_delay = Duration::from_millis(2);
    let h = EngineHandle::spawn(Box::new(model), cfg(256), metrics.clone()).unwrap();
    let mut s = h
        .submit(
            prompt(5, 20),
            GenerationParams::greedy(200),
            tracing::Span::none(),
        )
        .unwrap();
    // Wait for a few tokens so the request holds blocks.
    for _ in 0..3 {
        assert!(matches!(s.recv().await, Some(EngineEvent::Token(_))));
    }
    drop(s);
    for _ in 0..100 {
        if h.active() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.active(), 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let text = metrics.encode();
    assert_eq!(
        crate::metrics::sample_value(&text, crate::metrics::KV_CACHE_USAGE_RATIO),
        Some(0.0)
    );
    assert!(text.contains("finish_reason=\"abort\""), "{text}");
}

#[tokio::test]
async fn model_failure_becomes_an_error_event_and_queue_limit_applies() {
    let metrics = Metrics::new("toy");
    let mut model = ToyModel::new(VOCAB, vec![]);
    model.fail = true;
    let mut c = cfg(64);
    c.max_queue = 1;
    let h = EngineHandle::spawn(Box::new(model), c, metrics).unwrap();
    let mut s = h
        .submit(
            prompt(1, 4),
            GenerationParams::greedy(4),
            tracing::Span::none(),
        )
        .unwrap();
    match s.recv().await {
        Some(EngineEvent::Error(e)) => assert_eq!(e.kind(), "model_error"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(h.is_alive());
    assert!(h.warm_up(vec![1, 2]).await.is_err());
}

#[tokio::test]
async fn warm_up_succeeds_and_prompt_too_long_is_reported() {
    let (h, _) = spawn(64);
    h.warm_up(vec![1, 2, 3]).await.unwrap();
    let mut s = h
        .submit(
            vec![1; 300],
            GenerationParams::greedy(1),
            tracing::Span::none(),
        )
        .unwrap();
    match s.recv().await {
        Some(EngineEvent::Error(e)) => assert_eq!(e.kind(), "too_large"),
        other => panic!("expected an error, got {other:?}"),
    }
}
