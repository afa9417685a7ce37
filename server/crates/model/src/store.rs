//! The paged KV store: one layout (block math, table checks) and one host store
//! ([`PagedRows`]) used for K, V and the MLA latent alike. Position `p` of a sequence lives in
//! block `block_table[p / block_size]`, slot `p % block_size`; the slot's row is `width` f32
//! values. The engine owns block accounting; a store only reads and writes the slots it is
//! told to. The device backends keep the same layout in a tensor (`backend::tensor::store`).

use crate::batch::{CacheConfig, ModelError, SeqInput};

/// Where one row of a flattened batch belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowMeta {
    /// Index of the sequence in the batch.
    pub seq: usize,
    /// Absolute position of the token in its sequence.
    pub pos: usize,
}

/// Block geometry of a paged store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagedLayout {
    pub cfg: CacheConfig,
}

impl PagedLayout {
    pub fn new(cfg: CacheConfig) -> Result<Self, ModelError> {
        if cfg.block_size == 0 || cfg.num_blocks == 0 {
            return Err(ModelError::Cache(format!(
                "num_blocks {} and block_size {} must be > 0",
                cfg.num_blocks, cfg.block_size
            )));
        }
        Ok(Self { cfg })
    }

    /// Slots (rows) in the store: `num_blocks * block_size`.
    pub fn slots(&self) -> Result<usize, ModelError> {
        self.cfg
            .num_blocks
            .checked_mul(self.cfg.block_size)
            .ok_or_else(|| ModelError::Cache("cache size overflows usize".into()))
    }

    /// Slot of position `pos` of the sequence with block table `table`.
    #[inline]
    pub fn slot(&self, table: &[u32], pos: usize) -> usize {
        let bs = self.cfg.block_size;
        table[pos / bs] as usize * bs + pos % bs
    }

    /// Checks that every sequence's block table covers its tokens with valid block ids.
    pub fn check_tables(&self, seqs: &[SeqInput]) -> Result<(), ModelError> {
        let bs = self.cfg.block_size;
        for (i, s) in seqs.iter().enumerate() {
            let total = s.num_cached + s.tokens.len();
            let needed = total.div_ceil(bs);
            if s.block_table.len() < needed {
                return Err(ModelError::InvalidBatch(format!(
                    "sequence {i}: {total} tokens need {needed} blocks of {bs}, block_table has {}",
                    s.block_table.len()
                )));
            }
            if let Some(b) = s.block_table[..needed]
                .iter()
                .find(|&&b| b as usize >= self.cfg.num_blocks)
            {
                return Err(ModelError::InvalidBatch(format!(
                    "sequence {i}: block id {b} >= num_blocks {}",
                    self.cfg.num_blocks
                )));
            }
        }
        Ok(())
    }
}

/// One paged store of `width`-wide f32 rows in host memory (K, V or the MLA latent of a layer).
#[derive(Debug)]
pub struct PagedRows {
    pub layout: PagedLayout,
    pub width: usize,
    pub data: Vec<f32>,
}

impl PagedRows {
    pub fn new(layout: PagedLayout, width: usize) -> Result<Self, ModelError> {
        let n = layout
            .slots()?
            .checked_mul(width)
            .ok_or_else(|| ModelError::Cache("cache size overflows usize".into()))?;
        let mut data = Vec::new();
        data.try_reserve_exact(n).map_err(|e| {
            ModelError::Cache(format!(
                "cannot allocate {} MiB for a cache store: {e}",
                (n * 4) >> 20
            ))
        })?;
        data.resize(n, 0.0);
        Ok(Self {
            layout,
            width,
            data,
        })
    }

    /// Writes one row (`width` values of `src`) per batch row into its slot.
    pub fn write(&mut self, rows: &[RowMeta], tables: &[&[u32]], src: &[f32]) {
        let w = self.width;
        for (i, r) in rows.iter().enumerate() {
            let off = self.layout.slot(tables[r.seq], r.pos) * w;
            self.data[off..off + w].copy_from_slice(&src[i * w..(i + 1) * w]);
        }
    }

    pub fn view(&self) -> RowsRef<'_> {
        RowsRef {
            layout: self.layout,
            width: self.width,
            data: &self.data,
        }
    }
}

/// A paged store's rows, borrowed (host memory or a CPU tensor's storage).
#[derive(Debug, Clone, Copy)]
pub struct RowsRef<'a> {
    pub layout: PagedLayout,
    pub width: usize,
    pub data: &'a [f32],
}

impl RowsRef<'_> {
    /// The row of position `pos` (below the sequence's length).
    #[inline]
    pub fn row(&self, table: &[u32], pos: usize) -> &[f32] {
        let off = self.layout.slot(table, pos) * self.width;
        &self.data[off..off + self.width]
    }
}
