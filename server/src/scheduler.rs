//! Continuous batching over a token budget (vLLM v1 style), pure bookkeeping.
//!
//! Every step the scheduler fills the step's token budget (`max_num_batched_tokens`) in
//! vLLM's chunked-prefill order: running decodes, running short prefills, waiting short
//! prompts, then long prefills (running, then waiting), until the budget or the sequence
//! cap (`max_num_seqs`) is spent. A prompt larger than what is left of the budget is
//! prefilled in chunks across steps, so one long prompt never stalls the decoding streams
//! nor a short request's first token. When the KV pool runs dry, the most recently admitted
//! running sequence is preempted: its blocks are released and it goes back to the front of
//! the queue, to be recomputed (prompt + output so far) later.

use std::collections::{HashMap, VecDeque};

use crate::kv_cache::{BlockManager, BlockTable};

mod sequence;

pub use sequence::{Sequence, SequenceStatus};

/// Engine-assigned sequence id.
pub type SeqId = u64;

/// Limits of one scheduling step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
}

/// One sequence's share of a step: compute `tokens[start..start + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledSeq {
    pub id: SeqId,
    pub start: usize,
    pub len: usize,
    /// The chunk reaches the end of the known tokens: sample the next one.
    pub want_logits: bool,
}

/// The plan of one step.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SchedulerOutput {
    pub seqs: Vec<ScheduledSeq>,
    /// Sequences moved back to the queue this step (their KV was released).
    pub preempted: Vec<SeqId>,
    /// Sequences that left the queue for the first time this step.
    pub started: Vec<SeqId>,
}

impl SchedulerOutput {
    pub fn num_tokens(&self) -> usize {
        self.seqs.iter().map(|s| s.len).sum()
    }
}

#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedulerConfig,
    blocks: BlockManager,
    seqs: HashMap<SeqId, Sequence>,
    waiting: VecDeque<SeqId>,
    running: Vec<SeqId>,
    num_preemptions: u64,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig, blocks: BlockManager) -> Self {
        Self {
            cfg: SchedulerConfig {
                max_num_seqs: cfg.max_num_seqs.max(1),
                max_num_batched_tokens: cfg.max_num_batched_tokens.max(1),
            },
            blocks,
            seqs: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            num_preemptions: 0,
        }
    }

    pub fn blocks(&self) -> &BlockManager {
        &self.blocks
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn num_preemptions(&self) -> u64 {
        self.num_preemptions
    }

    pub fn is_idle(&self) -> bool {
        self.seqs.is_empty()
    }

    pub fn get(&self, id: SeqId) -> Option<&Sequence> {
        self.seqs.get(&id)
    }

    /// The sequence at the head of the queue.
    pub fn first_waiting(&self) -> Option<SeqId> {
        self.waiting.front().copied()
    }

    /// Queues a new sequence. An empty prompt is refused (nothing to run the model on).
    pub fn add(&mut self, id: SeqId, prompt: Vec<u32>) -> bool {
        if prompt.is_empty() || self.seqs.contains_key(&id) {
            return false;
        }
        self.seqs.insert(id, Sequence::new(id, prompt));
        self.waiting.push_back(id);
        true
    }

    /// Appends a sampled token to a running sequence.
    pub fn append_token(&mut self, id: SeqId, token: u32) {
        if let Some(s) = self.seqs.get_mut(&id) {
            s.tokens.push(token);
        }
    }

    /// Removes a sequence (finished or aborted) and releases its blocks. False if unknown.
    pub fn remove(&mut self, id: SeqId) -> bool {
        let Some(seq) = self.seqs.remove(&id) else {
            return false;
        };
        self.running.retain(|&r| r != id);
        self.waiting.retain(|&w| w != id);
        drop(seq); // the BlockTable inside returns the blocks
        true
    }

    /// Prefills with more tokens left than this are "long": they get the budget only after
    /// the decodes and the short prefills (running or waiting) took theirs, and while a
    /// short prompt waits for its first token, at most this many tokens a step.
    pub fn long_prefill_threshold(&self) -> usize {
        (self.cfg.max_num_batched_tokens / 4).max(1)
    }

    /// Plans the next step, vLLM's chunked-prefill order: running decodes first, then
    /// running short prefills, then waiting short prompts, then chunks of long prefills
    /// (running, then waiting), so one long prompt never delays a short request's first
    /// token by more than a step.
    pub fn schedule(&mut self) -> SchedulerOutput {
        let mut out = SchedulerOutput::default();
        let mut budget = self.cfg.max_num_batched_tokens;
        let threshold = self.long_prefill_threshold();
        let (mut first, mut long) = (Vec::new(), Vec::new());
        let mut decodes = Vec::new();
        for &id in &self.running {
            match self.seqs.get(&id).map(Sequence::remaining) {
                Some(r) if r <= 1 => decodes.push(id),
                Some(r) if r <= threshold => first.push(id),
                Some(_) => long.push(id),
                None => {}
            }
        }
        let running_shorts = !first.is_empty();
        decodes.append(&mut first);
        self.run_phase(&decodes, true, None, &mut budget, &mut out);
        let planned = out.seqs.len();
        self.admit_phase(Some(threshold), None, &mut budget, &mut out);
        // While a short prompt waits for its first token (in this step or in the queue),
        // a long prefill advances by at most `threshold` tokens a step so the step stays
        // short; otherwise it takes what is left of the budget.
        let shorts = running_shorts || out.seqs.len() > planned;
        let cap = (shorts || !self.waiting.is_empty()).then_some(threshold);
        self.run_phase(&long, false, cap, &mut budget, &mut out);
        let cap = (shorts || self.waiting.len() > 1).then_some(threshold);
        self.admit_phase(None, cap, &mut budget, &mut out);
        out
    }

    /// Schedules running sequences in `ids` order. With `may_preempt`, a sequence that needs
    /// blocks takes them from the most recently admitted running ones; without, it waits.
    fn run_phase(
        &mut self,
        ids: &[SeqId],
        may_preempt: bool,
        chunk_cap: Option<usize>,
        budget: &mut usize,
        out: &mut SchedulerOutput,
    ) {
        for &id in ids {
            if *budget == 0 {
                return;
            }
            if !self.running.contains(&id) {
                continue; // preempted earlier in this step
            }
            let Some(seq) = self.seqs.get(&id) else {
                self.running.retain(|&r| r != id);
                continue;
            };
            let n = seq
                .remaining()
                .min(*budget)
                .min(chunk_cap.unwrap_or(usize::MAX));
            if n == 0 {
                continue;
            }
            let target = seq.num_computed + n;
            let mut scheduled_self = true;
            loop {
                let fits = self
                    .seqs
                    .get_mut(&id)
                    .and_then(|s| s.table.as_mut())
                    .is_some_and(|t| t.ensure(target));
                if fits {
                    break;
                }
                let victim = if may_preempt {
                    self.running.pop()
                } else {
                    None
                };
                let Some(victim) = victim else {
                    scheduled_self = false;
                    break;
                };
                // A victim already planned this step gives its tokens back.
                if let Some(pos) = out.seqs.iter().position(|s| s.id == victim) {
                    *budget += out.seqs.remove(pos).len;
                }
                self.preempt(victim, out);
                if victim == id {
                    scheduled_self = false;
                    break;
                }
            }
            if !scheduled_self {
                if may_preempt {
                    return;
                }
                continue;
            }
            if let Some(seq) = self.seqs.get(&id) {
                out.seqs.push(ScheduledSeq {
                    id,
                    start: seq.num_computed,
                    len: n,
                    want_logits: target == seq.tokens.len(),
                });
                *budget -= n;
            }
        }
    }

    /// Admits waiting sequences first come first served (only those with at most
    /// `max_remaining` tokens to compute, when given), unless this step had to preempt.
    fn admit_phase(
        &mut self,
        max_remaining: Option<usize>,
        chunk_cap: Option<usize>,
        budget: &mut usize,
        out: &mut SchedulerOutput,
    ) {
        let mut i = 0;
        while out.preempted.is_empty()
            && *budget > 0
            && self.running.len() < self.cfg.max_num_seqs
            && i < self.waiting.len()
        {
            let id = self.waiting[i];
            let Some(seq) = self.seqs.get_mut(&id) else {
                self.waiting.remove(i);
                continue;
            };
            if max_remaining.is_some_and(|m| seq.tokens.len() - seq.num_computed > m) {
                i += 1;
                continue;
            }
            let fresh_table = seq.table.is_none();
            if fresh_table {
                let (table, cached) = self.blocks.allocate(&seq.tokens);
                seq.table = Some(table);
                seq.num_computed = cached;
            }
            let n = seq
                .remaining()
                .min(*budget)
                .min(chunk_cap.unwrap_or(usize::MAX));
            let target = seq.num_computed + n;
            let fits = seq.table.as_mut().is_some_and(|t| t.ensure(target));
            if !fits {
                if fresh_table {
                    // Give cached blocks back so the queue does not pin them while waiting.
                    seq.table = None;
                    seq.num_computed = 0;
                }
                return;
            }
            self.waiting.remove(i);
            if seq.status == SequenceStatus::Waiting {
                out.started.push(id);
            }
            seq.status = SequenceStatus::Running;
            out.seqs.push(ScheduledSeq {
                id,
                start: seq.num_computed,
                len: n,
                want_logits: target == seq.tokens.len(),
            });
            self.running.push(id);
            *budget -= n;
        }
    }

    fn preempt(&mut self, id: SeqId, out: &mut SchedulerOutput) {
        if let Some(seq) = self.seqs.get_mut(&id) {
            seq.table = None;
            seq.num_computed = 0;
            seq.status = SequenceStatus::Preempted;
            seq.preemptions += 1;
            self.waiting.push_front(id);
            self.num_preemptions += 1;
            out.preempted.push(id);
        }
    }

    /// Records that the step ran: the scheduled chunks are now in the KV cache.
    pub fn step_done(&mut self, out: &SchedulerOutput) {
        for s in &out.seqs {
            if let Some(seq) = self.seqs.get_mut(&s.id) {
                seq.num_computed = (s.start + s.len).min(seq.tokens.len());
                let Sequence {
                    tokens,
                    table,
                    num_computed,
                    ..
                } = seq;
                if let Some(t) = table.as_mut() {
                    t.register_computed(tokens, *num_computed);
                }
            }
        }
    }

    /// The block table of a scheduled sequence.
    pub fn block_table(&self, id: SeqId) -> &[u32] {
        self.seqs
            .get(&id)
            .and_then(|s| s.table.as_ref())
            .map(BlockTable::blocks)
            .unwrap_or(&[])
    }
}

#[cfg(test)]
#[path = "scheduler/tests.rs"]
mod tests;
