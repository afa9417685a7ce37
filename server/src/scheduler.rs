//! Continuous batching over a token budget (vLLM v1 style), pure bookkeeping.
//!
//! Every step the scheduler walks the running sequences first (decodes and unfinished
//! prefills), then admits waiting ones, until the step's token budget
//! (`max_num_batched_tokens`) or the sequence cap (`max_num_seqs`) is spent. A prompt larger
//! than what is left of the budget is prefilled in chunks across steps, so one long prompt
//! never stalls the decoding streams. When the KV pool runs dry, the most recently admitted
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

    /// Plans the next step.
    pub fn schedule(&mut self) -> SchedulerOutput {
        let mut out = SchedulerOutput::default();
        let mut budget = self.cfg.max_num_batched_tokens;

        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            let Some(seq) = self.seqs.get(&id) else {
                self.running.remove(i);
                continue;
            };
            let n = seq.remaining().min(budget);
            if n == 0 {
                i += 1;
                continue;
            }
            let target = seq.num_computed + n;
            // Make room, preempting from the back of the running list if needed.
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
                let Some(victim) = self.running.pop() else {
                    scheduled_self = false;
                    break;
                };
                self.preempt(victim, &mut out);
                if victim == id {
                    scheduled_self = false;
                    break;
                }
            }
            if !scheduled_self {
                break;
            }
            if let Some(seq) = self.seqs.get(&id) {
                out.seqs.push(ScheduledSeq {
                    id,
                    start: seq.num_computed,
                    len: n,
                    want_logits: target == seq.tokens.len(),
                });
                budget -= n;
            }
            i += 1;
        }

        // Admit from the queue, first come first served, unless this step had to preempt.
        while out.preempted.is_empty() && budget > 0 && self.running.len() < self.cfg.max_num_seqs {
            let Some(&id) = self.waiting.front() else {
                break;
            };
            let Some(seq) = self.seqs.get_mut(&id) else {
                self.waiting.pop_front();
                continue;
            };
            let fresh_table = seq.table.is_none();
            if fresh_table {
                let (table, cached) = self.blocks.allocate(&seq.tokens);
                seq.table = Some(table);
                seq.num_computed = cached;
            }
            let n = seq.remaining().min(budget);
            let target = seq.num_computed + n;
            let fits = seq.table.as_mut().is_some_and(|t| t.ensure(target));
            if !fits {
                if fresh_table {
                    // Give cached blocks back so the queue does not pin them while waiting.
                    seq.table = None;
                    seq.num_computed = 0;
                }
                break;
            }
            self.waiting.pop_front();
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
            budget -= n;
        }
        out
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
