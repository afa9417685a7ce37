//! GLM-4.5 family models (Glm4Moe, Glm4MoeLite) on candle-core.
//!
//! The engine in `glm-server` talks to a model only through [`CausalLm`]: it hands over a
//! [`ForwardBatch`] (new tokens per sequence, how many are cached, the sequence's paged KV
//! block table) and gets logits back. The model owns the KV cache tensors; the engine owns
//! block accounting (which physical block belongs to which sequence).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod batch;
pub mod sampling;

pub use batch::{CacheConfig, CausalLm, ForwardBatch, ModelError, ModelInfo, SeqInput};
pub use sampling::{Sampled, Sampler, SamplingParams};
