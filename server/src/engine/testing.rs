//! A deterministic stand-in model for engine and API tests.
//!
//! It honours the paged-cache contract for real: a forward step writes each new token into
//! the slot its block table names, and the logits of a sequence's last token are a hash of
//! the whole history *read back from the cache* plus the position. A wrong block table, a
//! shared block overwritten by another sequence, or a chunking bug therefore changes the
//! output, which is what the batching tests need to notice.

use glm_model::{CacheConfig, CausalLm, ForwardBatch, ModelError, ModelInfo};

/// See the module docs.
#[derive(Debug)]
pub struct ToyModel {
    info: ModelInfo,
    block_size: usize,
    /// One slot per cached token position: the token written there.
    slots: Vec<Option<u32>>,
    /// Forward calls so far (tests read it to see batching happen).
    pub steps: usize,
    /// Largest number of sequences seen in one step.
    pub max_batch: usize,
    /// Makes every forward fail (fault-injection tests).
    pub fail: bool,
    /// Makes the engine thread die on the first forward (dead-engine tests).
    pub die: bool,
    /// Sleeps this long per forward, so tests can act while a request runs.
    pub step_delay: std::time::Duration,
}

impl ToyModel {
    pub fn new(vocab_size: usize, eos_token_ids: Vec<u32>) -> Self {
        Self {
            info: ModelInfo {
                architecture: "ToyForCausalLM".into(),
                vocab_size,
                max_position_embeddings: 4096,
                num_hidden_layers: 1,
                eos_token_ids,
                kv_bytes_per_token: 64,
                active_weight_bytes_per_token: 0,
                weight_bytes: 0,
                device: "cpu".into(),
                backend: "cpu".into(),
                device_memory: None,
            },
            block_size: 0,
            slots: Vec::new(),
            steps: 0,
            max_batch: 0,
            fail: false,
            die: false,
            step_delay: std::time::Duration::ZERO,
        }
    }

    /// The logits the model produces after `history` (a pure function, for expectations).
    pub fn logits_for(vocab_size: usize, history: &[u32]) -> Vec<f32> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (pos, &t) in history.iter().enumerate() {
            h ^= u64::from(t).wrapping_add((pos as u64) << 32);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (0..vocab_size as u64)
            .map(|i| {
                let mut x = h ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                x ^= x >> 29;
                x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
                x ^= x >> 32;
                (x % 10_000) as f32 / 1000.0
            })
            .collect()
    }
}

impl CausalLm for ToyModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn init_cache(&mut self, cfg: CacheConfig) -> Result<(), ModelError> {
        if cfg.block_size == 0 {
            return Err(ModelError::Cache("block size 0".into()));
        }
        self.block_size = cfg.block_size;
        self.slots = vec![None; cfg.num_blocks * cfg.block_size];
        Ok(())
    }

    fn forward(&mut self, batch: &ForwardBatch) -> Result<Vec<Option<Vec<f32>>>, ModelError> {
        if self.fail {
            return Err(ModelError::Compute("injected failure".into()));
        }
        if self.die {
            // Simulates a crashed engine thread; the server must answer 503, not hang.
            std::panic::resume_unwind(Box::new("injected engine crash"));
        }
        if !self.step_delay.is_zero() {
            std::thread::sleep(self.step_delay);
        }
        self.steps += 1;
        self.max_batch = self.max_batch.max(batch.seqs.len());
        let bs = self.block_size;
        let slot = |table: &[u32], pos: usize| -> Result<usize, ModelError> {
            let block = table
                .get(pos / bs)
                .ok_or_else(|| ModelError::InvalidBatch(format!("no block for position {pos}")))?;
            Ok(*block as usize * bs + pos % bs)
        };
        let mut out = Vec::with_capacity(batch.seqs.len());
        for seq in &batch.seqs {
            for (i, &t) in seq.tokens.iter().enumerate() {
                let s = slot(&seq.block_table, seq.num_cached + i)?;
                let cell = self
                    .slots
                    .get_mut(s)
                    .ok_or_else(|| ModelError::Cache(format!("slot {s} out of range")))?;
                *cell = Some(t);
            }
            if !seq.want_logits {
                out.push(None);
                continue;
            }
            let len = seq.num_cached + seq.tokens.len();
            let mut history = Vec::with_capacity(len);
            for pos in 0..len {
                let s = slot(&seq.block_table, pos)?;
                let t = self
                    .slots
                    .get(s)
                    .copied()
                    .flatten()
                    .ok_or_else(|| ModelError::Cache(format!("slot {s} never written")))?;
                history.push(t);
            }
            out.push(Some(Self::logits_for(self.info.vocab_size, &history)));
        }
        Ok(out)
    }
}
