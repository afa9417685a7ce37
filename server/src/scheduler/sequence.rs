//! One sequence as the scheduler sees it: its tokens and how many of them are in the cache.

use crate::kv_cache::BlockTable;

use super::SeqId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceStatus {
    /// Queued, never scheduled yet.
    Waiting,
    Running,
    /// Back in the queue after losing its KV blocks; will be recomputed.
    Preempted,
}

#[derive(Debug)]
pub struct Sequence {
    pub id: SeqId,
    /// Prompt followed by the generated tokens.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// Leading tokens whose K/V are in the cache.
    pub num_computed: usize,
    pub table: Option<BlockTable>,
    pub status: SequenceStatus,
    pub preemptions: u32,
}

impl Sequence {
    pub fn new(id: SeqId, prompt: Vec<u32>) -> Self {
        Self {
            id,
            prompt_len: prompt.len(),
            tokens: prompt,
            num_computed: 0,
            table: None,
            status: SequenceStatus::Waiting,
            preemptions: 0,
        }
    }

    /// Tokens still to run through the model before the next one can be sampled.
    pub fn remaining(&self) -> usize {
        self.tokens.len().saturating_sub(self.num_computed)
    }

    pub fn prompt(&self) -> &[u32] {
        &self.tokens[..self.prompt_len]
    }

    pub fn output(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }
}
