//! GLM-4.5 family models (Glm4Moe, Glm4MoeLite) behind one seam.
//!
//! The engine in `glm-server` talks to a model only through [`CausalLm`]: it hands over a
//! [`ForwardBatch`] (new tokens per sequence, how many are cached, the sequence's paged KV
//! block table) and gets logits back. The model owns the KV stores; the engine owns block
//! accounting (which physical block belongs to which sequence).
//!
//! Layout: [`shell`] is the model written once (validation, rows, cache lifetime, logits);
//! [`arch`] holds only what differs per architecture (config, attention); [`store`] is the one
//! paged store for K, V and the MLA latent; [`backend`] has the `cpu` stack (hand-written SIMD
//! kernels, bf16/f16 weights widened in registers) and the tensor stack that runs on candle's
//! CPU device (`reference`) and on NVIDIA GPUs (`cuda`).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod arch;
pub mod attention;
pub mod backend;
pub mod batch;
pub mod config;
pub mod demo;
pub mod kernels;
pub mod layers;
pub mod load;
pub mod moe;
pub mod sampling;
pub mod shell;
pub mod store;
pub mod weights;

pub use arch::{glm4moe, glm4moelite};
pub use backend::{Backend, BackendChoice, DeviceSpec, LoadOptions};
pub use batch::{CacheConfig, CausalLm, ForwardBatch, ModelError, ModelInfo, SeqInput};
pub use config::{ArchConfig, Glm4MoeConfig};
pub use load::{check_model, load_model, peak_rss_bytes, ModelPlan};
pub use sampling::{apply_token_mask, Sampled, Sampler, SamplingParams};
pub use weights::WeightDtype;
