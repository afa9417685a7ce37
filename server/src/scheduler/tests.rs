use super::*;

fn sched(num_blocks: usize, block_size: usize, max_seqs: usize, budget: usize) -> Scheduler {
    Scheduler::new(
        SchedulerConfig {
            max_num_seqs: max_seqs,
            max_num_batched_tokens: budget,
        },
        BlockManager::new(num_blocks, block_size, true),
    )
}

fn prompt(n: usize, base: u32) -> Vec<u32> {
    (0..n as u32).map(|i| base + i).collect()
}

/// Runs one step, "sampling" token 1 for every sequence that wants logits.
fn step(s: &mut Scheduler) -> SchedulerOutput {
    let out = s.schedule();
    s.step_done(&out);
    for seq in &out.seqs {
        if seq.want_logits {
            s.append_token(seq.id, 1);
        }
    }
    out
}

#[test]
fn prefill_then_decode_within_budget() {
    let mut s = sched(64, 4, 8, 100);
    assert!(s.add(1, prompt(10, 0)));
    assert!(s.add(2, prompt(7, 50)));
    let out = step(&mut s);
    assert_eq!(out.started, vec![1, 2]);
    assert_eq!(
        out.seqs,
        vec![
            ScheduledSeq {
                id: 1,
                start: 0,
                len: 10,
                want_logits: true
            },
            ScheduledSeq {
                id: 2,
                start: 0,
                len: 7,
                want_logits: true
            },
        ]
    );
    let out = step(&mut s);
    assert_eq!(
        out.seqs,
        vec![
            ScheduledSeq {
                id: 1,
                start: 10,
                len: 1,
                want_logits: true
            },
            ScheduledSeq {
                id: 2,
                start: 7,
                len: 1,
                want_logits: true
            },
        ]
    );
    assert_eq!(s.block_table(1).len(), 3);
}

#[test]
fn long_prompt_is_chunked_and_decodes_keep_running() {
    let mut s = sched(64, 4, 8, 8);
    s.add(1, prompt(3, 0));
    step(&mut s); // seq 1 prefilled, now decoding
    s.add(2, prompt(20, 100));
    let out = step(&mut s);
    // Decode of 1 first, then a 7-token chunk of 2 without logits.
    assert_eq!(
        out.seqs[0],
        ScheduledSeq {
            id: 1,
            start: 3,
            len: 1,
            want_logits: true
        }
    );
    assert_eq!(
        out.seqs[1],
        ScheduledSeq {
            id: 2,
            start: 0,
            len: 7,
            want_logits: false
        }
    );
    assert_eq!(out.num_tokens(), 8);
    let out = step(&mut s);
    assert_eq!(
        out.seqs[1],
        ScheduledSeq {
            id: 2,
            start: 7,
            len: 7,
            want_logits: false
        }
    );
    let out = step(&mut s);
    assert_eq!(
        out.seqs[1],
        ScheduledSeq {
            id: 2,
            start: 14,
            len: 6,
            want_logits: true
        }
    );
    let out = step(&mut s);
    assert_eq!(out.seqs.len(), 2);
    assert!(out.seqs.iter().all(|x| x.len == 1 && x.want_logits));
}

#[test]
fn max_num_seqs_caps_the_batch() {
    let mut s = sched(64, 4, 2, 100);
    for id in 1..=3 {
        s.add(id, prompt(4, id as u32 * 10));
    }
    let out = step(&mut s);
    assert_eq!(out.seqs.len(), 2);
    assert_eq!(s.num_running(), 2);
    assert_eq!(s.num_waiting(), 1);
    assert!(s.remove(1));
    let out = step(&mut s);
    assert_eq!(out.started, vec![3]);
    assert_eq!(s.num_running(), 2);
}

#[test]
fn preempts_latest_when_blocks_run_out_and_recomputes() {
    // 4 blocks of 2 tokens: two sequences of 4 tokens take 2 blocks each.
    let mut s = sched(4, 2, 8, 100);
    s.add(1, prompt(4, 0));
    s.add(2, prompt(4, 10));
    step(&mut s); // both prefilled: 5 tokens each now (4 + sampled), 2 blocks each
    assert_eq!(s.blocks().num_free(), 0);
    // Next decode of seq 1 needs slot 5 -> a third block; seq 2 (latest) is preempted.
    let out = step(&mut s);
    assert_eq!(out.preempted, vec![2]);
    assert_eq!(
        out.seqs,
        vec![ScheduledSeq {
            id: 1,
            start: 4,
            len: 1,
            want_logits: true
        }]
    );
    assert_eq!(s.num_waiting(), 1);
    assert_eq!(s.get(2).map(|q| q.status), Some(SequenceStatus::Preempted));
    // Once 1 finishes, 2 is recomputed from scratch: prompt + its sampled token.
    assert!(s.remove(1));
    let out = step(&mut s);
    assert!(
        out.started.is_empty(),
        "a preempted sequence is not a new start"
    );
    assert_eq!(out.seqs.len(), 1);
    let q = out.seqs[0];
    assert_eq!((q.id, q.want_logits), (2, true));
    assert_eq!(q.start + q.len, 5);
    assert_eq!(s.num_preemptions(), 1);
}

#[test]
fn a_sequence_preempts_itself_when_alone_and_stuck() {
    let mut s = sched(2, 2, 8, 100);
    s.add(1, prompt(4, 0));
    step(&mut s); // 2 blocks used, 5 tokens known
    let out = step(&mut s); // needs a 3rd block, nobody else to preempt
    assert_eq!(out.preempted, vec![1]);
    assert!(out.seqs.is_empty());
}

#[test]
fn waiting_sequence_does_not_pin_cached_blocks() {
    let mut s = sched(3, 2, 8, 100);
    s.add(1, prompt(5, 0));
    step(&mut s); // 3 blocks
    s.add(2, prompt(5, 0)); // prefix hit on 2 blocks, but needs 1 more: none free
    let out = step(&mut s);
    // seq 1 decodes into its 3rd block (slot 5), seq 2 cannot be admitted.
    assert_eq!(out.seqs.len(), 1);
    assert!(s.get(2).is_some_and(|q| q.table.is_none()));
    assert!(s.remove(1));
    assert_eq!(s.blocks().usage(), 0.0);
    let out = step(&mut s);
    assert_eq!(
        out.seqs[0].start, 4,
        "prefix cache hit after seq 1 freed its blocks"
    );
}

#[test]
fn remove_releases_everything() {
    let mut s = sched(16, 4, 8, 100);
    for id in 0..4 {
        s.add(id, prompt(9, id as u32 * 100));
    }
    step(&mut s);
    step(&mut s);
    assert!(s.blocks().usage() > 0.0);
    for id in 0..4 {
        assert!(s.remove(id));
    }
    assert!(!s.remove(0));
    assert!(s.is_idle());
    assert_eq!(s.blocks().usage(), 0.0);
}

#[test]
fn empty_or_duplicate_prompt_is_refused() {
    let mut s = sched(16, 4, 8, 100);
    assert!(!s.add(1, vec![]));
    assert!(s.add(1, vec![1]));
    assert!(!s.add(1, vec![2]));
}

#[test]
fn a_long_prefill_shares_each_step_with_decodes_and_short_prompts() {
    // Budget 64: prompts over 16 tokens are long.
    let mut s = sched(256, 4, 8, 64);
    assert_eq!(s.long_prefill_threshold(), 16);
    // Alone, a long prompt takes the whole budget.
    assert!(s.add(9, prompt(100, 5000)));
    assert_eq!(step(&mut s).num_tokens(), 64);
    s.remove(9);
    assert!(s.add(1, prompt(5, 0))); // becomes a decode
    step(&mut s);
    // Beside decodes, a long prompt takes what they leave.
    assert!(s.add(2, prompt(300, 100)));
    let plan = |out: &SchedulerOutput| -> Vec<(SeqId, usize)> {
        out.seqs.iter().map(|x| (x.id, x.len)).collect()
    };
    assert_eq!(plan(&step(&mut s)), vec![(1, 1), (2, 63)]);
    // A short prompt arriving behind the long one starts in the very next step, after
    // the decode and before the long prefill's chunk, which is capped at the threshold
    // so the step stays short.
    assert!(s.add(3, prompt(10, 900)));
    let out = step(&mut s);
    assert_eq!(plan(&out), vec![(1, 1), (3, 10), (2, 16)]);
    assert_eq!(out.started, vec![3]);
    assert!(
        out.seqs[1].want_logits,
        "the short prompt gets its first token now"
    );
    // A long prompt waiting does not jump ahead of a short one queued after it.
    assert!(s.add(4, prompt(200, 2000)));
    assert!(s.add(5, prompt(8, 3000)));
    let out = step(&mut s);
    assert_eq!(plan(&out), vec![(1, 1), (3, 1), (5, 8), (2, 16), (4, 16)]);
}

fn plan(out: &SchedulerOutput) -> Vec<(SeqId, usize)> {
    out.seqs.iter().map(|x| (x.id, x.len)).collect()
}

/// Prefills `p` as sequence `id`, decodes `decodes` tokens, then finishes it.
fn run_once(s: &mut Scheduler, id: SeqId, p: Vec<u32>, decodes: usize) {
    assert!(s.add(id, p));
    while s.get(id).is_some_and(|q| q.output().len() <= decodes) {
        step(s);
    }
    assert!(s.remove(id));
}

#[test]
fn a_new_prompt_beside_running_decodes_is_prefilled_whole_in_the_next_step() {
    let mut s = sched(1024, 16, 64, 2048);
    for id in 0..8 {
        assert!(s.add(id, prompt(20, id as u32 * 1000)));
    }
    step(&mut s);
    assert!(s.add(100, prompt(128, 50_000)));
    let out = step(&mut s);
    let mut want: Vec<(SeqId, usize)> = (0..8).map(|id| (id, 1)).collect();
    want.push((100, 128));
    assert_eq!(plan(&out), want);
    assert_eq!(out.started, vec![100]);
    assert!(out.seqs.iter().all(|x| x.want_logits));
}

#[test]
fn a_repeated_prompt_computes_only_its_last_token() {
    let mut s = sched(1024, 16, 64, 2048);
    let p = prompt(152, 7000);
    run_once(&mut s, 1, p.clone(), 20);
    assert!(s.add(2, p));
    let out = step(&mut s);
    // 9 full blocks (144 tokens) and 7 of the 10th block's 8 prompt tokens are cached.
    assert_eq!(
        out.seqs,
        vec![ScheduledSeq {
            id: 2,
            start: 151,
            len: 1,
            want_logits: true
        }]
    );
    assert_eq!(s.blocks().prefix_stats().hits, 151);
}

#[test]
fn a_burst_of_repeated_prompts_gets_its_first_tokens_in_one_small_step() {
    // glm-loadgen's shape: 32 prompts of 152 tokens seen before, 8 streams decoding.
    let mut s = sched(4096, 16, 64, 2048);
    for i in 0..32u64 {
        run_once(&mut s, i, prompt(152, 10_000 * (i as u32 + 1)), 16);
    }
    for id in 100..108 {
        assert!(s.add(id, prompt(30, 900_000 + id as u32 * 100)));
    }
    step(&mut s);
    for i in 0..32u64 {
        assert!(s.add(200 + i, prompt(152, 10_000 * (i as u32 + 1))));
    }
    let out = step(&mut s);
    assert_eq!(out.num_tokens(), 8 + 32, "{:?}", plan(&out));
    assert_eq!(out.started, (200..232).collect::<Vec<_>>());
    assert!(out.seqs.iter().all(|x| x.len == 1 && x.want_logits));
}

#[test]
fn a_prompt_never_takes_over_a_block_a_running_sequence_holds() {
    let mut s = sched(1024, 16, 64, 2048);
    let p = prompt(40, 300);
    assert!(s.add(1, p.clone()));
    // Prefill and 8 decodes: 48 tokens computed, 3 full blocks cached, all held by seq 1.
    for _ in 0..9 {
        step(&mut s);
    }
    assert!(s.add(2, p));
    let out = step(&mut s);
    assert_eq!(plan(&out), vec![(1, 1), (2, 8)]);
    assert_ne!(s.block_table(1)[2], s.block_table(2)[2]);
    assert_eq!(s.block_table(1)[..2], s.block_table(2)[..2]);
}
