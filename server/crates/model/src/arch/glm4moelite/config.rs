//! config.json of `Glm4MoeLiteForCausalLM` (GLM-4.7-Flash): the shared fields plus MLA's,
//! with the defaults of transformers' `configuration_glm4_moe_lite.py`.

use crate::batch::ModelError;
use crate::config::{ArchConfig, CommonConfig, CommonDefaults, RawConfig};

/// Architecture name of GLM-4.7-Flash.
pub const GLM4_MOE_LITE: &str = "Glm4MoeLiteForCausalLM";

/// Bytes of one cached f32 value.
const F32_BYTES: usize = 4;

const DEFAULTS: CommonDefaults = CommonDefaults {
    intermediate_size: 10240,
    max_position_embeddings: 202752,
    n_routed_experts: 64,
    num_experts_per_tok: 4,
    moe_intermediate_size: 1536,
    routed_scaling_factor: 1.8,
};

#[derive(Debug, Clone, PartialEq)]
pub struct Glm4MoeLiteConfig {
    pub common: CommonConfig,
    /// `None`: queries come from a plain `q_proj` (no low-rank query path).
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
    /// GPT-J pair rotation on the rope dims (true for every released checkpoint).
    pub rope_interleave: bool,
}

impl std::ops::Deref for Glm4MoeLiteConfig {
    type Target = CommonConfig;

    fn deref(&self) -> &CommonConfig {
        &self.common
    }
}

/// Per-token KV cache footprint of the latent (MLA) layout against a full per-head K/V layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayoutReport {
    pub num_hidden_layers: usize,
    /// `kv_lora_rank + qk_rope_head_dim` values per token per layer.
    pub latent_values_per_layer: usize,
    /// `num_heads * (qk_head_dim + v_head_dim)` values per token per layer.
    pub full_values_per_layer: usize,
    /// Bytes per token over all layers as this crate caches it (f32).
    pub latent_bytes_per_token: usize,
    pub full_bytes_per_token: usize,
}

impl KvLayoutReport {
    /// How many times smaller the latent cache is than the full K/V cache.
    pub fn ratio(&self) -> f64 {
        self.full_bytes_per_token as f64 / self.latent_bytes_per_token.max(1) as f64
    }
}

impl std::fmt::Display for KvLayoutReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kv cache per token: latent {} B ({} values x {} layers, f32) vs full K/V {} B \
             ({} values x {} layers): {:.1}x smaller",
            self.latent_bytes_per_token,
            self.latent_values_per_layer,
            self.num_hidden_layers,
            self.full_bytes_per_token,
            self.full_values_per_layer,
            self.num_hidden_layers,
            self.ratio()
        )
    }
}

impl Glm4MoeLiteConfig {
    pub fn qk_head_dim(&self) -> usize {
        self.qk_nope_head_dim + self.qk_rope_head_dim
    }

    /// Width of one latent cache entry: normalised `c_kv` then the roped shared `k_pe`.
    pub fn latent_dim(&self) -> usize {
        self.kv_lora_rank + self.qk_rope_head_dim
    }

    pub fn kv_layout(&self) -> KvLayoutReport {
        let latent = self.latent_dim();
        let full = self.num_attention_heads * (self.qk_head_dim() + self.v_head_dim);
        KvLayoutReport {
            num_hidden_layers: self.num_hidden_layers,
            latent_values_per_layer: latent,
            full_values_per_layer: full,
            latent_bytes_per_token: self.num_hidden_layers * latent * F32_BYTES,
            full_bytes_per_token: self.num_hidden_layers * full * F32_BYTES,
        }
    }

    fn validate(&self) -> Result<(), ModelError> {
        let positive = [
            ("kv_lora_rank", self.kv_lora_rank),
            ("qk_rope_head_dim", self.qk_rope_head_dim),
            ("v_head_dim", self.v_head_dim),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(ModelError::Config(format!("{name} must be > 0")));
            }
        }
        if self.q_lora_rank == Some(0) {
            return Err(ModelError::Config("q_lora_rank must be > 0 or null".into()));
        }
        if !self.qk_rope_head_dim.is_multiple_of(2) {
            return Err(ModelError::Config(format!(
                "qk_rope_head_dim {} must be even for rotary pairs",
                self.qk_rope_head_dim
            )));
        }
        Ok(())
    }
}

impl ArchConfig for Glm4MoeLiteConfig {
    fn from_raw(raw: &RawConfig) -> Result<Self, ModelError> {
        let common = CommonConfig::from_raw(raw, GLM4_MOE_LITE, DEFAULTS)?;
        let cfg = Self {
            q_lora_rank: raw.q_lora_rank,
            kv_lora_rank: raw.kv_lora_rank.unwrap_or(512),
            qk_nope_head_dim: raw.qk_nope_head_dim.unwrap_or(192),
            qk_rope_head_dim: raw.qk_rope_head_dim.unwrap_or(64),
            v_head_dim: raw.v_head_dim.unwrap_or(256),
            rope_interleave: raw.rope_interleave.unwrap_or(true),
            common,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn common_mut(&mut self) -> &mut CommonConfig {
        &mut self.common
    }
}
