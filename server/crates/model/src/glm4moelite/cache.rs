//! Paged cache of the compressed MLA latent: per token per layer one row of
//! `kv_lora_rank` normalised `c_kv` values followed by `qk_rope_head_dim` roped `k_pe` values,
//! shared by all heads. That row is all attention needs (the per-head K/V are linear in it),
//! so the cache is `num_heads * (qk_head_dim + v_head_dim) / (kv_lora_rank + rope_dim)` times
//! smaller than a full K/V cache.
//!
//! Position `p` of a sequence lives in block `block_table[p / block_size]`, slot
//! `p % block_size`, exactly as in [`crate::kv_cache`], so the engine's block accounting and
//! prefix sharing work unchanged.

use crate::batch::{CacheConfig, ModelError, SeqInput};
use crate::kv_cache::RowMeta;

#[derive(Debug)]
pub struct LatentCache {
    pub cfg: CacheConfig,
    /// Values per cached token per layer.
    pub width: usize,
    /// Per layer `[num_blocks, block_size, width]` f32.
    pub layers: Vec<Vec<f32>>,
}

impl LatentCache {
    pub fn new(cfg: CacheConfig, n_layers: usize, width: usize) -> Result<Self, ModelError> {
        if cfg.block_size == 0 || cfg.num_blocks == 0 {
            return Err(ModelError::Cache(format!(
                "num_blocks {} and block_size {} must be > 0",
                cfg.num_blocks, cfg.block_size
            )));
        }
        let per_layer = cfg
            .num_blocks
            .checked_mul(cfg.block_size)
            .and_then(|n| n.checked_mul(width))
            .ok_or_else(|| ModelError::Cache("cache size overflows usize".into()))?;
        let layers = (0..n_layers)
            .map(|_| {
                let mut v = Vec::new();
                v.try_reserve_exact(per_layer).map_err(|e| {
                    ModelError::Cache(format!(
                        "cannot allocate {} MiB per layer latent cache: {e}",
                        (per_layer * 4) >> 20
                    ))
                })?;
                v.resize(per_layer, 0.0);
                Ok(v)
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Self { cfg, width, layers })
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

    /// Element offset of position `pos` of the sequence with block table `table`.
    #[inline]
    pub fn offset(&self, table: &[u32], pos: usize) -> usize {
        let bs = self.cfg.block_size;
        (table[pos / bs] as usize * bs + pos % bs) * self.width
    }

    /// Writes one latent row (`width` values) per batch row into its slot.
    pub fn write(&mut self, layer: usize, rows: &[RowMeta], tables: &[&[u32]], latent: &[f32]) {
        let w = self.width;
        for (i, r) in rows.iter().enumerate() {
            let off = self.offset(tables[r.seq], r.pos);
            self.layers[layer][off..off + w].copy_from_slice(&latent[i * w..(i + 1) * w]);
        }
    }

    /// The cached latent row of position `pos` (must be below the sequence's length).
    #[inline]
    pub fn row(&self, layer: usize, table: &[u32], pos: usize) -> &[f32] {
        let off = self.offset(table, pos);
        &self.layers[layer][off..off + self.width]
    }
}
