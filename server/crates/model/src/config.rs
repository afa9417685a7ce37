//! config.json / generation_config.json parsing with Hugging Face defaults.

use std::path::Path;

use serde_json::{Map, Value};

use crate::batch::ModelError;

/// Architecture name of GLM-4.5 / 4.5-Air / 4.6 / 4.7.
pub const GLM4_MOE: &str = "Glm4MoeForCausalLM";

/// `Glm4MoeConfig` with every field transformers reads; absent optional fields take the
/// transformers defaults (`modular_glm4_moe.py`).
#[derive(Debug, Clone, PartialEq)]
pub struct Glm4MoeConfig {
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Explicit in GLM checkpoints and not `hidden_size / num_attention_heads` there.
    pub head_dim: usize,
    pub partial_rotary_factor: f64,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub use_qk_norm: bool,
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

impl Glm4MoeConfig {
    /// Number of head dims that get RoPE (the rest pass through).
    pub fn rotary_dim(&self) -> usize {
        // transformers: int(head_dim * partial_rotary_factor); keep it even for half rotation.
        let d = (self.head_dim as f64 * self.partial_rotary_factor) as usize;
        d - d % 2
    }

    pub fn is_moe_layer(&self, layer: usize) -> bool {
        layer >= self.first_k_dense_replace
    }

    /// Parses an already-read config.json value.
    pub fn from_json(v: &Value) -> Result<Self, ModelError> {
        let obj = v
            .as_object()
            .ok_or_else(|| ModelError::Config("config.json is not a JSON object".into()))?;
        let architecture = architecture_of(obj)?;
        if architecture != GLM4_MOE {
            return Err(ModelError::UnsupportedArchitecture(architecture));
        }
        let f = Fields(obj);
        let hidden_size = f.req_usize("hidden_size")?;
        let num_attention_heads = f.req_usize("num_attention_heads")?;
        let rope = obj.get("rope_parameters").and_then(Value::as_object);
        if let Some(scaling) = obj.get("rope_scaling").filter(|v| !v.is_null()) {
            let kind = scaling
                .get("rope_type")
                .or_else(|| scaling.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            if kind != "default" {
                return Err(ModelError::Config(format!(
                    "rope_scaling type {kind:?} is not supported (only default RoPE)"
                )));
            }
        }
        let rope_theta = match f.opt_f64("rope_theta")? {
            Some(t) => t,
            None => rope
                .and_then(|r| r.get("rope_theta"))
                .and_then(Value::as_f64)
                .unwrap_or(10000.0),
        };
        let partial_rotary_factor = match f.opt_f64("partial_rotary_factor")? {
            Some(p) => p,
            None => rope
                .and_then(|r| r.get("partial_rotary_factor"))
                .and_then(Value::as_f64)
                .unwrap_or(0.5),
        };
        let cfg = Self {
            architecture,
            vocab_size: f.req_usize("vocab_size")?,
            hidden_size,
            intermediate_size: f.usize_or("intermediate_size", 10944)?,
            num_hidden_layers: f.req_usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads: f.usize_or("num_key_value_heads", 8)?,
            head_dim: f.usize_or("head_dim", hidden_size / num_attention_heads.max(1))?,
            partial_rotary_factor,
            rope_theta,
            rms_norm_eps: f.f64_or("rms_norm_eps", 1e-5)?,
            max_position_embeddings: f.usize_or("max_position_embeddings", 131072)?,
            use_qk_norm: f.bool_or("use_qk_norm", false)?,
            attention_bias: f.bool_or("attention_bias", false)?,
            first_k_dense_replace: f.usize_or("first_k_dense_replace", 1)?,
            n_routed_experts: f.usize_or("n_routed_experts", 128)?,
            n_shared_experts: f.usize_or("n_shared_experts", 1)?,
            num_experts_per_tok: f.usize_or("num_experts_per_tok", 8)?,
            moe_intermediate_size: f.usize_or("moe_intermediate_size", 1408)?,
            routed_scaling_factor: f.f64_or("routed_scaling_factor", 1.0)?,
            norm_topk_prob: f.bool_or("norm_topk_prob", true)?,
            n_group: f.usize_or("n_group", 1)?,
            topk_group: f.usize_or("topk_group", 1)?,
            num_nextn_predict_layers: f.usize_or("num_nextn_predict_layers", 0)?,
            tie_word_embeddings: f.bool_or("tie_word_embeddings", false)?,
            hidden_act: f.str_or("hidden_act", "silu")?,
            eos_token_ids: token_ids(obj.get("eos_token_id"), "eos_token_id")?,
            pad_token_id: token_ids(obj.get("pad_token_id"), "pad_token_id")?
                .first()
                .copied(),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads `dir/config.json` and merges eos ids from `dir/generation_config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let v = read_json(&dir.join("config.json"))?;
        let mut cfg = Self::from_json(&v)?;
        let extra = generation_eos_ids(dir)?;
        for id in extra {
            if !cfg.eos_token_ids.contains(&id) {
                cfg.eos_token_ids.push(id);
            }
        }
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("n_group", self.n_group),
        ];
        for (name, v) in positive {
            if v == 0 {
                return bad(format!("{name} must be > 0"));
            }
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
        if self.hidden_act != "silu" {
            return bad(format!(
                "hidden_act {:?} is not supported (silu only)",
                self.hidden_act
            ));
        }
        if !(0.0..=1.0).contains(&self.partial_rotary_factor) || self.rotary_dim() == 0 {
            return bad(format!(
                "partial_rotary_factor {} gives no rotary dims for head_dim {}",
                self.partial_rotary_factor, self.head_dim
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

/// `architectures[0]` of a config.json object.
pub fn architecture_of(obj: &Map<String, Value>) -> Result<String, ModelError> {
    obj.get("architectures")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ModelError::Config("missing required field architectures".into()))
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
    let path = dir.join("generation_config.json");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let v = read_json(&path)?;
    token_ids(v.get("eos_token_id"), "generation_config.json eos_token_id")
}

/// A token id field that may be null, an integer or a list of integers.
fn token_ids(v: Option<&Value>, name: &str) -> Result<Vec<u32>, ModelError> {
    let one = |v: &Value| {
        v.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| ModelError::Config(format!("{name}: {v} is not a token id")))
    };
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().map(one).collect(),
        Some(v) => Ok(vec![one(v)?]),
    }
}

/// Typed field access that names the field in every error.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn req_usize(&self, name: &str) -> Result<usize, ModelError> {
        self.opt_usize(name)?
            .ok_or_else(|| ModelError::Config(format!("missing required field {name}")))
    }

    fn opt_usize(&self, name: &str) -> Result<Option<usize>, ModelError> {
        self.get(name)
            .map(|v| {
                v.as_u64()
                    .and_then(|x| usize::try_from(x).ok())
                    .ok_or_else(|| {
                        ModelError::Config(format!(
                            "field {name}: {v} is not a non-negative integer"
                        ))
                    })
            })
            .transpose()
    }

    fn usize_or(&self, name: &str, default: usize) -> Result<usize, ModelError> {
        Ok(self.opt_usize(name)?.unwrap_or(default))
    }

    fn opt_f64(&self, name: &str) -> Result<Option<f64>, ModelError> {
        self.get(name)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| ModelError::Config(format!("field {name}: {v} is not a number")))
            })
            .transpose()
    }

    fn f64_or(&self, name: &str, default: f64) -> Result<f64, ModelError> {
        Ok(self.opt_f64(name)?.unwrap_or(default))
    }

    fn bool_or(&self, name: &str, default: bool) -> Result<bool, ModelError> {
        self.get(name)
            .map(|v| {
                v.as_bool().ok_or_else(|| {
                    ModelError::Config(format!("field {name}: {v} is not a boolean"))
                })
            })
            .transpose()
            .map(|b| b.unwrap_or(default))
    }

    fn str_or(&self, name: &str, default: &str) -> Result<String, ModelError> {
        self.get(name)
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ModelError::Config(format!("field {name}: {v} is not a string")))
            })
            .transpose()
            .map(|s| s.unwrap_or_else(|| default.to_owned()))
    }
}

#[cfg(test)]
#[path = "config/tests.rs"]
mod tests;
