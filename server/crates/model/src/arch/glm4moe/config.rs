//! config.json of `Glm4MoeForCausalLM` (GLM-4.5, 4.5-Air, 4.6, 4.7): the shared fields plus
//! GQA attention's, with the defaults of transformers' `modular_glm4_moe.py`.

use crate::batch::ModelError;
use crate::config::{ArchConfig, CommonConfig, CommonDefaults, RawConfig};

/// Architecture name of GLM-4.5 / 4.5-Air / 4.6 / 4.7.
pub const GLM4_MOE: &str = "Glm4MoeForCausalLM";

const DEFAULTS: CommonDefaults = CommonDefaults {
    intermediate_size: 10944,
    max_position_embeddings: 131072,
    n_routed_experts: 128,
    num_experts_per_tok: 8,
    moe_intermediate_size: 1408,
    routed_scaling_factor: 1.0,
};

#[derive(Debug, Clone, PartialEq)]
pub struct Glm4MoeConfig {
    pub common: CommonConfig,
    pub num_key_value_heads: usize,
    /// Explicit in GLM checkpoints and not `hidden_size / num_attention_heads` there.
    pub head_dim: usize,
    pub partial_rotary_factor: f64,
    pub use_qk_norm: bool,
}

impl std::ops::Deref for Glm4MoeConfig {
    type Target = CommonConfig;

    fn deref(&self) -> &CommonConfig {
        &self.common
    }
}

impl Glm4MoeConfig {
    /// Number of head dims that get RoPE (the rest pass through).
    pub fn rotary_dim(&self) -> usize {
        // transformers: int(head_dim * partial_rotary_factor); keep it even for half rotation.
        let d = (self.head_dim as f64 * self.partial_rotary_factor) as usize;
        d - d % 2
    }

    /// K and V per token per layer, f32.
    pub fn kv_bytes_per_token(&self) -> usize {
        self.num_hidden_layers * 2 * self.num_key_value_heads * self.head_dim * 4
    }

    fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.num_key_value_heads == 0 || self.head_dim == 0 {
            return bad("num_key_value_heads and head_dim must be > 0".into());
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !(0.0..=1.0).contains(&self.partial_rotary_factor) || self.rotary_dim() == 0 {
            return bad(format!(
                "partial_rotary_factor {} gives no rotary dims for head_dim {}",
                self.partial_rotary_factor, self.head_dim
            ));
        }
        Ok(())
    }
}

impl ArchConfig for Glm4MoeConfig {
    fn from_raw(raw: &RawConfig) -> Result<Self, ModelError> {
        let common = CommonConfig::from_raw(raw, GLM4_MOE, DEFAULTS)?;
        let heads = common.num_attention_heads;
        let cfg = Self {
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(8),
            head_dim: raw.head_dim.unwrap_or(common.hidden_size / heads.max(1)),
            partial_rotary_factor: raw
                .partial_rotary_factor
                .or_else(|| raw.rope_param("partial_rotary_factor"))
                .unwrap_or(0.5),
            use_qk_norm: raw.use_qk_norm.unwrap_or(false),
            common,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn common_mut(&mut self) -> &mut CommonConfig {
        &mut self.common
    }
}
