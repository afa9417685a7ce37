//! config.json / generation_config.json: one serde mirror of the fields transformers reads for
//! both GLM architectures ([`RawConfig`]), the fields they share ([`CommonConfig`]), and the
//! helpers each architecture's typed config (`arch::*::config`) is built with. Absent or null
//! fields take the transformers defaults of the architecture; a field of the wrong type is an
//! error naming the field.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::batch::ModelError;
use crate::moe::RouterConfig;

pub use crate::arch::glm4moe::config::{Glm4MoeConfig, GLM4_MOE};
pub use crate::arch::glm4moelite::config::GLM4_MOE_LITE;

/// config.json as transformers writes it for Glm4Moe and Glm4MoeLite. Every field is optional
/// here; the architecture's config applies its defaults and checks.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawConfig {
    pub architectures: Option<Vec<String>>,
    pub vocab_size: Option<usize>,
    pub hidden_size: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub partial_rotary_factor: Option<f64>,
    pub rope_theta: Option<f64>,
    pub rope_scaling: Option<Value>,
    pub rope_parameters: Option<Value>,
    pub rope_interleave: Option<bool>,
    pub rms_norm_eps: Option<f64>,
    pub max_position_embeddings: Option<usize>,
    pub use_qk_norm: Option<bool>,
    pub attention_bias: Option<bool>,
    pub first_k_dense_replace: Option<usize>,
    pub n_routed_experts: Option<usize>,
    pub n_shared_experts: Option<usize>,
    pub num_experts_per_tok: Option<usize>,
    pub moe_intermediate_size: Option<usize>,
    pub routed_scaling_factor: Option<f64>,
    pub norm_topk_prob: Option<bool>,
    pub n_group: Option<usize>,
    pub topk_group: Option<usize>,
    pub num_nextn_predict_layers: Option<usize>,
    pub tie_word_embeddings: Option<bool>,
    pub hidden_act: Option<String>,
    pub eos_token_id: Option<TokenIds>,
    pub pad_token_id: Option<TokenIds>,
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: Option<usize>,
    pub qk_nope_head_dim: Option<usize>,
    pub qk_rope_head_dim: Option<usize>,
    pub v_head_dim: Option<usize>,
    pub quantization_config: Option<QuantizationConfig>,
}

/// A token id field: one id or a list of ids.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(t) => vec![*t],
            TokenIds::Many(v) => v.clone(),
        }
    }
}

/// `quantization_config` of a checkpoint: FP8 weights ([`Fp8Scheme`]) are run, any other
/// method is refused at load with its name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct QuantizationConfig {
    pub quant_method: Option<String>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

impl QuantizationConfig {
    pub fn method(&self) -> &str {
        self.quant_method.as_deref().unwrap_or("unknown")
    }
}

impl RawConfig {
    /// Parses a config.json value; a field of the wrong type is an error naming it.
    pub fn from_json(v: &Value) -> Result<Self, ModelError> {
        if !v.is_object() {
            return Err(ModelError::Config(
                "config.json is not a JSON object".into(),
            ));
        }
        serde_path_to_error::deserialize(v)
            .map_err(|e| ModelError::Config(format!("field {}: {}", e.path(), e.inner())))
    }

    /// `architectures[0]`.
    pub fn architecture(&self) -> Result<String, ModelError> {
        self.architectures
            .as_ref()
            .and_then(|a| a.first())
            .cloned()
            .ok_or_else(|| ModelError::Config("missing required field architectures".into()))
    }

    /// Checks that the config is for `arch`.
    pub fn expect_architecture(&self, arch: &str) -> Result<String, ModelError> {
        let a = self.architecture()?;
        if a != arch {
            return Err(ModelError::UnsupportedArchitecture(a));
        }
        Ok(a)
    }

    /// Refuses RoPE scaling (YaRN etc. would change frequencies and the softmax scale).
    pub fn check_default_rope(&self) -> Result<(), ModelError> {
        let kind_of = |v: &Value| {
            v.get("rope_type")
                .or_else(|| v.get("type"))
                .map(|k| k.as_str().unwrap_or("unknown").to_owned())
        };
        let kinds = [
            self.rope_scaling
                .as_ref()
                .filter(|v| !v.is_null())
                .map(|v| kind_of(v).unwrap_or_else(|| "unknown".to_owned())),
            self.rope_parameters.as_ref().and_then(kind_of),
        ];
        for kind in kinds.into_iter().flatten() {
            if kind != "default" {
                return Err(ModelError::Config(format!(
                    "rope_scaling type {kind:?} is not supported (only default RoPE)"
                )));
            }
        }
        Ok(())
    }

    /// `rope_theta`, top level or in `rope_parameters`.
    pub fn rope_theta_or(&self, default: f64) -> f64 {
        self.rope_theta
            .or_else(|| self.rope_param("rope_theta"))
            .unwrap_or(default)
    }

    /// A number in `rope_parameters` (transformers 5 style).
    pub fn rope_param(&self, name: &str) -> Option<f64> {
        self.rope_parameters
            .as_ref()
            .and_then(|r| r.get(name))
            .and_then(Value::as_f64)
    }

    fn required(v: Option<usize>, name: &str) -> Result<usize, ModelError> {
        v.ok_or_else(|| ModelError::Config(format!("missing required field {name}")))
    }
}

/// Architecture defaults for the fields both architectures share.
#[derive(Debug, Clone, Copy)]
pub struct CommonDefaults {
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub n_routed_experts: usize,
    pub num_experts_per_tok: usize,
    pub moe_intermediate_size: usize,
    pub routed_scaling_factor: f64,
}

/// The fields Glm4Moe and Glm4MoeLite share: sizes, norms, the MoE router, ids.
#[derive(Debug, Clone, PartialEq)]
pub struct CommonConfig {
    pub architecture: String,
    /// How float8 weights are scaled, when `quantization_config` declares FP8.
    pub fp8: Option<Fp8Scheme>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub attention_bias: bool,
    pub first_k_dense_replace: usize,
    pub n_routed_experts: usize,
    pub n_shared_experts: usize,
    pub num_experts_per_tok: usize,
    pub moe_intermediate_size: usize,
    pub routed_scaling_factor: f64,
    pub norm_topk_prob: bool,
    pub n_group: usize,
    pub topk_group: usize,
    pub num_nextn_predict_layers: usize,
    pub tie_word_embeddings: bool,
    pub hidden_act: String,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
}

impl CommonConfig {
    /// The shared fields of `raw` for architecture `arch`, with its defaults, checked.
    pub fn from_raw(raw: &RawConfig, arch: &str, d: CommonDefaults) -> Result<Self, ModelError> {
        let architecture = raw.expect_architecture(arch)?;
        let fp8 = raw
            .quantization_config
            .as_ref()
            .map(QuantizationConfig::fp8_scheme)
            .transpose()?;
        raw.check_default_rope()?;
        let c = Self {
            architecture,
            fp8,
            vocab_size: RawConfig::required(raw.vocab_size, "vocab_size")?,
            hidden_size: RawConfig::required(raw.hidden_size, "hidden_size")?,
            intermediate_size: raw.intermediate_size.unwrap_or(d.intermediate_size),
            num_hidden_layers: RawConfig::required(raw.num_hidden_layers, "num_hidden_layers")?,
            num_attention_heads: RawConfig::required(
                raw.num_attention_heads,
                "num_attention_heads",
            )?,
            rope_theta: raw.rope_theta_or(10000.0),
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-5),
            max_position_embeddings: raw
                .max_position_embeddings
                .unwrap_or(d.max_position_embeddings),
            attention_bias: raw.attention_bias.unwrap_or(false),
            first_k_dense_replace: raw.first_k_dense_replace.unwrap_or(1),
            n_routed_experts: raw.n_routed_experts.unwrap_or(d.n_routed_experts),
            n_shared_experts: raw.n_shared_experts.unwrap_or(1),
            num_experts_per_tok: raw.num_experts_per_tok.unwrap_or(d.num_experts_per_tok),
            moe_intermediate_size: raw.moe_intermediate_size.unwrap_or(d.moe_intermediate_size),
            routed_scaling_factor: raw.routed_scaling_factor.unwrap_or(d.routed_scaling_factor),
            norm_topk_prob: raw.norm_topk_prob.unwrap_or(true),
            n_group: raw.n_group.unwrap_or(1),
            topk_group: raw.topk_group.unwrap_or(1),
            num_nextn_predict_layers: raw.num_nextn_predict_layers.unwrap_or(0),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            hidden_act: raw.hidden_act.clone().unwrap_or_else(|| "silu".into()),
            eos_token_ids: raw
                .eos_token_id
                .as_ref()
                .map_or_else(Vec::new, TokenIds::to_vec),
            pad_token_id: raw
                .pad_token_id
                .as_ref()
                .and_then(|p| p.to_vec().first().copied()),
        };
        c.validate()?;
        Ok(c)
    }

    pub fn is_moe_layer(&self, layer: usize) -> bool {
        layer >= self.first_k_dense_replace
    }

    pub fn router_config(&self) -> RouterConfig {
        RouterConfig {
            n_experts: self.n_routed_experts,
            top_k: self.num_experts_per_tok,
            n_group: self.n_group,
            topk_group: self.topk_group,
            norm_topk_prob: self.norm_topk_prob,
            routed_scaling_factor: self.routed_scaling_factor as f32,
        }
    }

    /// Merges the eos ids of `dir/generation_config.json`.
    pub fn merge_generation_config(&mut self, dir: &Path) -> Result<(), ModelError> {
        for id in generation_eos_ids(dir)? {
            if !self.eos_token_ids.contains(&id) {
                self.eos_token_ids.push(id);
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("n_group", self.n_group),
        ];
        for (name, v) in positive {
            if v == 0 {
                return bad(format!("{name} must be > 0"));
            }
        }
        if self.hidden_act != "silu" {
            return bad(format!(
                "hidden_act {:?} is not supported (silu only)",
                self.hidden_act
            ));
        }
        if self.num_hidden_layers > self.first_k_dense_replace {
            if self.n_routed_experts == 0 || self.num_experts_per_tok == 0 {
                return bad("MoE layers need n_routed_experts and num_experts_per_tok > 0".into());
            }
            if !self.n_routed_experts.is_multiple_of(self.n_group) {
                return bad(format!(
                    "n_routed_experts {} is not divisible by n_group {}",
                    self.n_routed_experts, self.n_group
                ));
            }
            let per_group = self.n_routed_experts / self.n_group;
            if self.topk_group == 0
                || self.topk_group > self.n_group
                || self.num_experts_per_tok > self.topk_group * per_group
            {
                return bad(format!(
                    "num_experts_per_tok {} cannot be chosen from topk_group {} of n_group {} groups",
                    self.num_experts_per_tok, self.topk_group, self.n_group
                ));
            }
        }
        Ok(())
    }
}

/// An architecture's typed config: the shared fields plus its own, built from the raw mirror.
pub trait ArchConfig: Sized {
    /// Applies the architecture's defaults to `raw` and checks the result.
    fn from_raw(raw: &RawConfig) -> Result<Self, ModelError>;

    fn common_mut(&mut self) -> &mut CommonConfig;

    /// Parses an already-read config.json value.
    fn from_json(v: &Value) -> Result<Self, ModelError> {
        Self::from_raw(&RawConfig::from_json(v)?)
    }

    /// Reads `dir/config.json` and merges eos ids from `dir/generation_config.json`.
    fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let mut cfg = Self::from_json(&read_json(&dir.join("config.json"))?)?;
        cfg.common_mut().merge_generation_config(dir)?;
        Ok(cfg)
    }
}

/// `architectures[0]` of a config.json value.
pub fn architecture_of(v: &Value) -> Result<String, ModelError> {
    RawConfig::from_json(v)?.architecture()
}

pub fn read_json(path: &Path) -> Result<Value, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text)
        .map_err(|e| ModelError::Config(format!("{}: invalid JSON: {e}", path.display())))
}

/// eos ids from generation_config.json (absent file = none).
pub fn generation_eos_ids(dir: &Path) -> Result<Vec<u32>, ModelError> {
    #[derive(Deserialize)]
    struct Generation {
        eos_token_id: Option<TokenIds>,
    }
    let path = dir.join("generation_config.json");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let g: Generation = serde_path_to_error::deserialize(read_json(&path)?).map_err(|e| {
        ModelError::Config(format!(
            "generation_config.json field {}: {}",
            e.path(),
            e.inner()
        ))
    })?;
    Ok(g.eos_token_id
        .as_ref()
        .map_or_else(Vec::new, TokenIds::to_vec))
}

mod quant;
pub use quant::Fp8Scheme;

#[cfg(test)]
#[path = "config/tests.rs"]
mod tests;
