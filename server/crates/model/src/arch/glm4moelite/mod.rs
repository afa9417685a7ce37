//! `Glm4MoeLiteForCausalLM` (GLM-4.7-Flash), as transformers' `modeling_glm4_moe_lite.py`:
//! DeepSeek-V3 multi-head latent attention with interleaved RoPE on the rope dims, and the
//! shared dense MLP / MoE / RMSNorm blocks. Only the config and the attention live here.
//!
//! The paged store holds the compressed latent (`kv_lora_rank + qk_rope_head_dim` values per
//! token per layer); attention runs in the absorbed form, see [`attention`].

pub mod attention;
pub mod config;
pub mod tensor;

pub use attention::MlaAttention;
pub use config::{Glm4MoeLiteConfig, KvLayoutReport, GLM4_MOE_LITE};

/// Splits `kv_b_proj.weight` (`[heads * (nope + v_dim), rank]`, per head `nope` rows of `W_uk`
/// then `v_dim` rows of `W_uv`) into per-head `W_uk^T` (`[heads, rank, nope]`) and `W_uv`
/// (`[heads, v_dim, rank]`).
pub fn split_kv_b(
    kv_b: &[f32],
    heads: usize,
    nope: usize,
    v_dim: usize,
    rank: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut w_uk_t = vec![0f32; heads * rank * nope];
    let mut w_uv = Vec::with_capacity(heads * v_dim * rank);
    for h in 0..heads {
        let base = h * (nope + v_dim) * rank;
        for i in 0..nope {
            for j in 0..rank {
                w_uk_t[(h * rank + j) * nope + i] = kv_b[base + i * rank + j];
            }
        }
        w_uv.extend_from_slice(&kv_b[base + nope * rank..base + (nope + v_dim) * rank]);
    }
    (w_uk_t, w_uv)
}
