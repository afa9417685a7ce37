//! GLM-4.5 family models (Glm4Moe, Glm4MoeLite) on candle-core.
//!
//! The engine in `glm-server` talks to a model only through [`CausalLm`]: it hands over a
//! [`ForwardBatch`] (new tokens per sequence, how many are cached, the sequence's paged KV
//! block table) and gets logits back. The model owns the KV cache tensors; the engine owns
//! block accounting (which physical block belongs to which sequence).
//!
//! On the CPU the linear-layer weights keep the checkpoint's type (bf16 for the GLM releases)
//! and run through hand-written kernels (`kernels`) that widen them to f32 exactly as they
//! stream: decode is memory bound, and candle's bf16 matrix-vector path is far slower.
//! Everything else (norms, biases, embeddings, activations, KV cache) is f32.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod batch;
pub mod config;
pub mod demo;
pub mod glm4moe;
pub mod glm4moelite;
pub mod kernels;
pub mod kv_cache;
pub mod layers;
pub mod moe;
pub mod sampling;
pub mod weights;

use std::path::Path;

pub use batch::{CacheConfig, CausalLm, ForwardBatch, ModelError, ModelInfo, SeqInput};
pub use config::Glm4MoeConfig;
pub use glm4moe::Glm4Moe;
pub use glm4moelite::Glm4MoeLite;
pub use sampling::{Sampled, Sampler, SamplingParams};
pub use weights::WeightDtype;

/// Loads the model in `dir`, dispatching on `architectures[0]` of its config.json.
/// Unknown architectures give [`ModelError::UnsupportedArchitecture`].
pub fn load_model(
    dir: &Path,
    device: &candle_core::Device,
) -> Result<Box<dyn CausalLm>, ModelError> {
    load_model_with(dir, device, WeightDtype::Auto)
}

/// [`load_model`] keeping linear-layer weights as `dtype` (vLLM's `--dtype`).
pub fn load_model_with(
    dir: &Path,
    device: &candle_core::Device,
    dtype: WeightDtype,
) -> Result<Box<dyn CausalLm>, ModelError> {
    if !device.is_cpu() {
        return Err(ModelError::Config(format!(
            "device {:?} is not supported by this build: the model kernels run on the CPU",
            device.location()
        )));
    }
    let v = config::read_json(&dir.join("config.json"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ModelError::Config("config.json is not a JSON object".into()))?;
    match config::architecture_of(obj)?.as_str() {
        config::GLM4_MOE => Ok(Box::new(Glm4Moe::load_with(dir, dtype)?)),
        glm4moelite::GLM4_MOE_LITE => Ok(Box::new(Glm4MoeLite::load_with(dir, dtype)?)),
        other => Err(ModelError::UnsupportedArchitecture(other.to_owned())),
    }
}
