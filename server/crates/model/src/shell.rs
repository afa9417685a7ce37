//! The model shell, written once for every architecture and backend: batch validation, the
//! flattened rows of a step (sequence, position, block table), the paged cache's lifetime, and
//! the scatter of last-row logits back to sequences. What runs between embedding and logits
//! is a [`Stack`]: the backend's layers for one architecture.

use crate::batch::{CacheConfig, CausalLm, ForwardBatch, ModelError, ModelInfo};
use crate::store::{PagedLayout, RowMeta};

/// One forward step, flattened: row `i` is token `tokens[i]` of sequence `rows[i].seq` at
/// position `rows[i].pos`.
#[derive(Debug)]
pub struct Step<'a> {
    pub tokens: Vec<u32>,
    pub rows: Vec<RowMeta>,
    pub tables: Vec<&'a [u32]>,
    /// Rows whose logits are wanted (the last row of each sequence with `want_logits`).
    pub logit_rows: Vec<usize>,
    pub layout: PagedLayout,
}

impl Step<'_> {
    /// Store slot of each row.
    pub fn slots(&self) -> Vec<u32> {
        self.rows
            .iter()
            .map(|r| self.layout.slot(self.tables[r.seq], r.pos) as u32)
            .collect()
    }
}

/// Embedding -> decoder layers -> final norm -> lm_head of one architecture on one backend.
pub trait Stack: Send {
    /// The paged stores of all layers.
    type Cache: Send;

    fn alloc_cache(&self, layout: PagedLayout) -> Result<Self::Cache, ModelError>;

    /// Runs the step's rows through the model, writing their K/V (or latent) into `cache`, and
    /// returns the logits of `step.logit_rows`, `vocab_size` each, one after the other.
    fn forward(&self, step: &Step<'_>, cache: &mut Self::Cache) -> Result<Vec<f32>, ModelError>;
}

/// A loaded model: its [`ModelInfo`], its stack and its paged cache.
pub struct Model<S: Stack> {
    info: ModelInfo,
    stack: S,
    cache: Option<(PagedLayout, S::Cache)>,
}

impl<S: Stack> Model<S> {
    pub fn new(info: ModelInfo, stack: S) -> Self {
        Self {
            info,
            stack,
            cache: None,
        }
    }

    pub fn stack(&self) -> &S {
        &self.stack
    }

    fn validate(&self, batch: &ForwardBatch) -> Result<PagedLayout, ModelError> {
        let (layout, _) = self
            .cache
            .as_ref()
            .ok_or_else(|| ModelError::Cache("init_cache was not called".into()))?;
        for (i, s) in batch.seqs.iter().enumerate() {
            if s.tokens.is_empty() {
                return Err(ModelError::InvalidBatch(format!(
                    "sequence {i} has no tokens"
                )));
            }
            if let Some(t) = s
                .tokens
                .iter()
                .find(|&&t| t as usize >= self.info.vocab_size)
            {
                return Err(ModelError::InvalidBatch(format!(
                    "sequence {i}: token id {t} >= vocab_size {}",
                    self.info.vocab_size
                )));
            }
        }
        layout.check_tables(&batch.seqs)?;
        Ok(*layout)
    }
}

/// Flattens a validated batch into a [`Step`].
fn step_of(batch: &ForwardBatch, layout: PagedLayout) -> Step<'_> {
    let mut step = Step {
        tokens: Vec::new(),
        rows: Vec::new(),
        tables: batch
            .seqs
            .iter()
            .map(|s| s.block_table.as_slice())
            .collect(),
        logit_rows: Vec::new(),
        layout,
    };
    for (si, s) in batch.seqs.iter().enumerate() {
        for (j, &t) in s.tokens.iter().enumerate() {
            step.rows.push(RowMeta {
                seq: si,
                pos: s.num_cached + j,
            });
            step.tokens.push(t);
        }
        if s.want_logits {
            step.logit_rows.push(step.rows.len() - 1);
        }
    }
    step
}

impl<S: Stack> CausalLm for Model<S> {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn init_cache(&mut self, cfg: CacheConfig) -> Result<(), ModelError> {
        self.cache = None; // free the old cache before allocating the new one
        let layout = PagedLayout::new(cfg)?;
        self.cache = Some((layout, self.stack.alloc_cache(layout)?));
        Ok(())
    }

    fn forward(&mut self, batch: &ForwardBatch) -> Result<Vec<Option<Vec<f32>>>, ModelError> {
        let _span = tracing::debug_span!(
            "forward",
            arch = %self.info.architecture,
            seqs = batch.seqs.len(),
            tokens = batch.seqs.iter().map(|s| s.tokens.len()).sum::<usize>()
        )
        .entered();
        let layout = self.validate(batch)?;
        let step = step_of(batch, layout);
        let (_, cache) = self
            .cache
            .as_mut()
            .ok_or_else(|| ModelError::Cache("init_cache was not called".into()))?;
        let logits = self.stack.forward(&step, cache)?;
        let v = self.info.vocab_size;
        if logits.len() != step.logit_rows.len() * v {
            return Err(ModelError::Compute(format!(
                "stack returned {} logits for {} rows of {v}",
                logits.len(),
                step.logit_rows.len()
            )));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; batch.seqs.len()];
        for (k, &r) in step.logit_rows.iter().enumerate() {
            out[step.rows[r].seq] = Some(logits[k * v..(k + 1) * v].to_vec());
        }
        Ok(out)
    }
}
