//! config.json of `Glm4MoeLiteForCausalLM` (GLM-4.7-Flash), with the transformers defaults
//! of `configuration_glm4_moe_lite.py` for absent optional fields.

use std::path::Path;

use serde_json::{Map, Value};

use crate::batch::ModelError;
use crate::config::{architecture_of, generation_eos_ids, read_json};
use crate::moe::RouterConfig;

/// Architecture name of GLM-4.7-Flash.
pub const GLM4_MOE_LITE: &str = "Glm4MoeLiteForCausalLM";

/// Bytes of one cached f32 value.
const F32_BYTES: usize = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct Glm4MoeLiteConfig {
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// `None`: queries come from a plain `q_proj` (no low-rank query path).
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
    pub rope_theta: f64,
    /// GPT-J pair rotation on the rope dims (true for every released checkpoint).
    pub rope_interleave: bool,
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
    pub eos_token_ids: Vec<u32>,
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

    pub fn from_json(v: &Value) -> Result<Self, ModelError> {
        let obj = v
            .as_object()
            .ok_or_else(|| ModelError::Config("config.json is not a JSON object".into()))?;
        let architecture = architecture_of(obj)?;
        if architecture != GLM4_MOE_LITE {
            return Err(ModelError::UnsupportedArchitecture(architecture));
        }
        let f = Fields(obj);
        let rope = obj.get("rope_parameters").and_then(Value::as_object);
        // YaRN would change both the frequencies and the softmax scale (mscale); the released
        // checkpoint has rope_scaling null, so anything else is refused rather than mis-run.
        let kinds = [
            obj.get("rope_scaling")
                .and_then(Value::as_object)
                .and_then(|o| o.get("rope_type").or_else(|| o.get("type"))),
            rope.and_then(|r| r.get("rope_type")),
        ];
        for kind in kinds.into_iter().flatten() {
            let kind = kind.as_str().unwrap_or("unknown");
            if kind != "default" {
                return Err(ModelError::Config(format!(
                    "rope type {kind:?} is not supported (only default RoPE)"
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
        let cfg = Self {
            architecture,
            vocab_size: f.req_usize("vocab_size")?,
            hidden_size: f.req_usize("hidden_size")?,
            intermediate_size: f.usize_or("intermediate_size", 10240)?,
            num_hidden_layers: f.req_usize("num_hidden_layers")?,
            num_attention_heads: f.req_usize("num_attention_heads")?,
            q_lora_rank: f.opt_usize("q_lora_rank")?,
            kv_lora_rank: f.usize_or("kv_lora_rank", 512)?,
            qk_nope_head_dim: f.usize_or("qk_nope_head_dim", 192)?,
            qk_rope_head_dim: f.usize_or("qk_rope_head_dim", 64)?,
            v_head_dim: f.usize_or("v_head_dim", 256)?,
            rope_theta,
            rope_interleave: f.bool_or("rope_interleave", true)?,
            rms_norm_eps: f.f64_or("rms_norm_eps", 1e-5)?,
            max_position_embeddings: f.usize_or("max_position_embeddings", 202752)?,
            attention_bias: f.bool_or("attention_bias", false)?,
            first_k_dense_replace: f.usize_or("first_k_dense_replace", 1)?,
            n_routed_experts: f.usize_or("n_routed_experts", 64)?,
            n_shared_experts: f.usize_or("n_shared_experts", 1)?,
            num_experts_per_tok: f.usize_or("num_experts_per_tok", 4)?,
            moe_intermediate_size: f.usize_or("moe_intermediate_size", 1536)?,
            routed_scaling_factor: f.f64_or("routed_scaling_factor", 1.8)?,
            norm_topk_prob: f.bool_or("norm_topk_prob", true)?,
            n_group: f.usize_or("n_group", 1)?,
            topk_group: f.usize_or("topk_group", 1)?,
            num_nextn_predict_layers: f.usize_or("num_nextn_predict_layers", 0)?,
            tie_word_embeddings: f.bool_or("tie_word_embeddings", false)?,
            eos_token_ids: token_ids(obj.get("eos_token_id"))?,
        };
        let act = f.str_or("hidden_act", "silu")?;
        if act != "silu" {
            return Err(ModelError::Config(format!(
                "hidden_act {act:?} is not supported (silu only)"
            )));
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads `dir/config.json` and merges eos ids from `dir/generation_config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let mut cfg = Self::from_json(&read_json(&dir.join("config.json"))?)?;
        for id in generation_eos_ids(dir)? {
            if !cfg.eos_token_ids.contains(&id) {
                cfg.eos_token_ids.push(id);
            }
        }
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ModelError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("kv_lora_rank", self.kv_lora_rank),
            ("qk_rope_head_dim", self.qk_rope_head_dim),
            ("v_head_dim", self.v_head_dim),
            ("n_group", self.n_group),
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
        if self.num_hidden_layers > self.first_k_dense_replace {
            let per_group = self.n_routed_experts / self.n_group;
            if self.n_routed_experts == 0
                || !self.n_routed_experts.is_multiple_of(self.n_group)
                || self.topk_group == 0
                || self.topk_group > self.n_group
                || self.num_experts_per_tok == 0
                || self.num_experts_per_tok > self.topk_group * per_group
            {
                return Err(ModelError::Config(format!(
                    "cannot route {} of {} experts in {} groups keeping {}",
                    self.num_experts_per_tok, self.n_routed_experts, self.n_group, self.topk_group
                )));
            }
        }
        Ok(())
    }
}

/// A token id field that may be null, an integer or a list of integers.
fn token_ids(v: Option<&Value>) -> Result<Vec<u32>, ModelError> {
    let one = |v: &Value| {
        v.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| ModelError::Config(format!("eos_token_id: {v} is not a token id")))
    };
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().map(one).collect(),
        Some(v) => Ok(vec![one(v)?]),
    }
}

/// Typed field access that names the field in every error (null counts as absent).
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn bad(name: &str, v: &Value, what: &str) -> ModelError {
        ModelError::Config(format!("field {name}: {v} is not {what}"))
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
                    .ok_or_else(|| Self::bad(name, v, "a non-negative integer"))
            })
            .transpose()
    }

    fn usize_or(&self, name: &str, default: usize) -> Result<usize, ModelError> {
        Ok(self.opt_usize(name)?.unwrap_or(default))
    }

    fn opt_f64(&self, name: &str) -> Result<Option<f64>, ModelError> {
        self.get(name)
            .map(|v| v.as_f64().ok_or_else(|| Self::bad(name, v, "a number")))
            .transpose()
    }

    fn f64_or(&self, name: &str, default: f64) -> Result<f64, ModelError> {
        Ok(self.opt_f64(name)?.unwrap_or(default))
    }

    fn bool_or(&self, name: &str, default: bool) -> Result<bool, ModelError> {
        self.get(name)
            .map(|v| v.as_bool().ok_or_else(|| Self::bad(name, v, "a boolean")))
            .transpose()
            .map(|b| b.unwrap_or(default))
    }

    fn str_or(&self, name: &str, default: &str) -> Result<String, ModelError> {
        self.get(name)
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Self::bad(name, v, "a string"))
            })
            .transpose()
            .map(|s| s.unwrap_or_else(|| default.to_owned()))
    }
}
