//! `Glm4MoeForCausalLM` (GLM-4.5, GLM-4.5-Air, GLM-4.6, GLM-4.7), as transformers'
//! `modeling_glm4_moe.py`: GQA attention with q/k/v bias, optional per-head qk-norm, partial
//! NeoX RoPE; dense SwiGLU MLP for the first layers, MoE for the rest. Only the config and the
//! attention live here; the shell and the stacks are shared.

pub mod attention;
pub mod config;
pub mod tensor;

use std::path::Path;

use crate::backend::cpu::CpuLayer;
use crate::batch::ModelError;
use crate::config::ArchConfig;
use crate::layers::{Linear, RmsNorm};
use crate::weights::Checkpoint;
pub use attention::Attention;
pub use config::{Glm4MoeConfig, GLM4_MOE};

/// The MTP (next-token prediction) block GLM checkpoints ship at `model.layers.{N}`.
/// Loaded only on request (speculative decoding); normal decoding never reads it.
#[derive(Debug)]
pub struct MtpLayer {
    pub enorm: RmsNorm,
    pub hnorm: RmsNorm,
    /// `[H, 2H]`: projects `cat(enorm(embedding), hnorm(previous hidden))`.
    pub eh_proj: Linear,
    pub block: CpuLayer<Attention>,
    pub shared_head_norm: RmsNorm,
    pub shared_head: Linear,
}

/// Loads MTP layer `k` (0-based) of a checkpoint: `model.layers.{num_hidden_layers + k}`.
pub fn load_mtp_layer(dir: &Path, k: usize) -> Result<MtpLayer, ModelError> {
    let c = Glm4MoeConfig::from_dir(dir)?;
    if k >= c.num_nextn_predict_layers {
        return Err(ModelError::Config(format!(
            "MTP layer {k} requested but num_nextn_predict_layers is {}",
            c.num_nextn_predict_layers
        )));
    }
    let ck = Checkpoint::open(dir)?.with_fp8(c.fp8);
    let i = c.num_hidden_layers + k;
    let p = format!("model.layers.{i}");
    let (h, eps) = (c.hidden_size, c.rms_norm_eps);
    Ok(MtpLayer {
        enorm: RmsNorm::load(&ck, &format!("{p}.enorm.weight"), h, eps)?,
        hnorm: RmsNorm::load(&ck, &format!("{p}.hnorm.weight"), h, eps)?,
        eh_proj: Linear::load(&ck, &format!("{p}.eh_proj"), 2 * h, h, false)?,
        block: CpuLayer::load(&ck, &c, i, &|ck: &Checkpoint, p: &str| {
            Attention::load(ck, p, &c)
        })?,
        shared_head_norm: RmsNorm::load(&ck, &format!("{p}.shared_head.norm.weight"), h, eps)?,
        shared_head: Linear::load(
            &ck,
            &format!("{p}.shared_head.head"),
            h,
            c.vocab_size,
            false,
        )?,
    })
}
