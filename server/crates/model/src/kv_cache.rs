//! Paged KV cache storage owned by a model, and attention over a sequence's block table.
//!
//! Per layer, K and V are `[num_blocks, block_size, kv_heads, head_dim]` f32. Position `p` of
//! a sequence lives in block `block_table[p / block_size]`, slot `p % block_size`. The engine
//! owns block accounting; this module only reads and writes the slots it is told to.

use rayon::prelude::*;

use crate::batch::{CacheConfig, ModelError, SeqInput};
use crate::kernels;

#[derive(Debug)]
pub struct LayerKv {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

#[derive(Debug)]
pub struct PagedKvCache {
    pub cfg: CacheConfig,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub layers: Vec<LayerKv>,
}

/// Where one row of a flattened batch belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowMeta {
    /// Index of the sequence in the batch.
    pub seq: usize,
    /// Absolute position of the token in its sequence.
    pub pos: usize,
}

impl PagedKvCache {
    pub fn new(
        cfg: CacheConfig,
        n_layers: usize,
        kv_heads: usize,
        head_dim: usize,
    ) -> Result<Self, ModelError> {
        if cfg.block_size == 0 || cfg.num_blocks == 0 {
            return Err(ModelError::Cache(format!(
                "num_blocks {} and block_size {} must be > 0",
                cfg.num_blocks, cfg.block_size
            )));
        }
        let per_layer = cfg
            .num_blocks
            .checked_mul(cfg.block_size)
            .and_then(|n| n.checked_mul(kv_heads * head_dim))
            .ok_or_else(|| ModelError::Cache("cache size overflows usize".into()))?;
        let alloc = || -> Result<Vec<f32>, ModelError> {
            let mut v = Vec::new();
            v.try_reserve_exact(per_layer).map_err(|e| {
                ModelError::Cache(format!(
                    "cannot allocate {} MiB per layer tensor: {e}",
                    (per_layer * 4) >> 20
                ))
            })?;
            v.resize(per_layer, 0.0);
            Ok(v)
        };
        let layers = (0..n_layers)
            .map(|_| {
                Ok(LayerKv {
                    k: alloc()?,
                    v: alloc()?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Self {
            cfg,
            kv_heads,
            head_dim,
            layers,
        })
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

    /// Element offset of (position `pos`, kv head 0) in a layer tensor.
    #[inline]
    fn offset(&self, table: &[u32], pos: usize) -> usize {
        let bs = self.cfg.block_size;
        let slot = table[pos / bs] as usize * bs + pos % bs;
        slot * self.kv_heads * self.head_dim
    }

    /// Writes `rows` K and V rows (`kv_heads * head_dim` each) into their slots.
    pub fn write(
        &mut self,
        layer: usize,
        rows: &[RowMeta],
        tables: &[&[u32]],
        k: &[f32],
        v: &[f32],
    ) {
        let w = self.kv_heads * self.head_dim;
        for (i, r) in rows.iter().enumerate() {
            let off = self.offset(tables[r.seq], r.pos);
            let l = &mut self.layers[layer];
            l.k[off..off + w].copy_from_slice(&k[i * w..(i + 1) * w]);
            l.v[off..off + w].copy_from_slice(&v[i * w..(i + 1) * w]);
        }
    }

    /// Causal GQA attention of each row over positions `0..=pos` of its sequence, read from
    /// the cache (so the current chunk's K/V must already be written). `q` is
    /// `[rows, heads, head_dim]`; returns the same shape.
    pub fn attend(
        &self,
        layer: usize,
        rows: &[RowMeta],
        tables: &[&[u32]],
        q: &[f32],
        heads: usize,
        scale: f32,
    ) -> Vec<f32> {
        let hd = self.head_dim;
        let group = heads / self.kv_heads;
        let bs = self.cfg.block_size;
        let stride = self.kv_heads * hd;
        let l = &self.layers[layer];
        let mut out = vec![0f32; rows.len() * heads * hd];
        out.par_chunks_mut(hd).enumerate().for_each(|(i, o)| {
            let (r, h) = (i / heads, i % heads);
            let meta = rows[r];
            let table = tables[meta.seq];
            let qv = &q[i * hd..(i + 1) * hd];
            let g_off = (h / group) * hd;
            let n = meta.pos + 1;
            let mut scores = Vec::with_capacity(n);
            for (b, &blk) in table.iter().enumerate().take(n.div_ceil(bs)) {
                let base = blk as usize * bs * stride + g_off;
                let in_block = bs.min(n - b * bs);
                for s in 0..in_block {
                    let k = &l.k[base + s * stride..base + s * stride + hd];
                    scores.push(kernels::dot(qv, k) * scale);
                }
            }
            kernels::softmax_in_place(&mut scores);
            let mut j = 0;
            for (b, &blk) in table.iter().enumerate().take(n.div_ceil(bs)) {
                let base = blk as usize * bs * stride + g_off;
                let in_block = bs.min(n - b * bs);
                for s in 0..in_block {
                    let v = &l.v[base + s * stride..base + s * stride + hd];
                    kernels::axpy(o, scores[j], v);
                    j += 1;
                }
            }
        });
        out
    }
}
