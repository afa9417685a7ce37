//! Paged KV cache accounting.
//!
//! The model owns the KV tensors (one slot per physical block); this module owns which block
//! belongs to which sequence. It is pure bookkeeping, with no candle import, so the scheduler
//! and its tests never need a device.

mod block_manager;

pub use block_manager::{BlockManager, BlockTable, PrefixCacheStats};

/// Blocks needed to hold `tokens` tokens.
pub fn blocks_for(tokens: usize, block_size: usize) -> usize {
    tokens.div_ceil(block_size.max(1))
}
