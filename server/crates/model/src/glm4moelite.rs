//! `Glm4MoeLiteForCausalLM` (GLM-4.7-Flash), as transformers' `modeling_glm4_moe_lite.py`:
//! DeepSeek-V3 multi-head latent attention with interleaved RoPE on the rope dims, and the
//! Glm4Moe dense MLP / MoE / RMSNorm blocks (shared with [`crate::glm4moe`]).
//!
//! The paged KV cache holds the compressed latent (`kv_lora_rank + qk_rope_head_dim` values
//! per token per layer), see [`cache`]; attention runs in the absorbed form, see [`attention`].

pub mod attention;
pub mod cache;
pub mod config;

use std::path::Path;

use tracing::info_span;

use crate::batch::{CacheConfig, CausalLm, ForwardBatch, ModelError, ModelInfo};
use crate::kv_cache::RowMeta;
use crate::layers::{Linear, Mlp, RmsNorm, Rope};
use crate::moe::Moe;
use crate::weights::{Checkpoint, WeightDtype};
use attention::MlaAttention;
use cache::LatentCache;
pub use config::{Glm4MoeLiteConfig, KvLayoutReport, GLM4_MOE_LITE};

#[derive(Debug)]
enum FeedForward {
    Dense(Mlp),
    Moe(Moe),
}

impl FeedForward {
    fn forward(&self, h: &[f32], rows: usize) -> Result<Vec<f32>, ModelError> {
        match self {
            FeedForward::Dense(m) => m.forward(h, rows),
            FeedForward::Moe(m) => m.forward(h, rows),
        }
    }

    fn active_bytes(&self) -> u64 {
        match self {
            FeedForward::Dense(m) => m.bytes(),
            FeedForward::Moe(m) => m.active_bytes(),
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            FeedForward::Dense(m) => m.bytes(),
            FeedForward::Moe(m) => m.bytes(),
        }
    }
}

#[derive(Debug)]
struct DecoderLayer {
    input_norm: RmsNorm,
    attn: MlaAttention,
    post_norm: RmsNorm,
    ffn: FeedForward,
}

impl DecoderLayer {
    fn load(ck: &Checkpoint, c: &Glm4MoeLiteConfig, index: usize) -> Result<Self, ModelError> {
        let p = format!("model.layers.{index}");
        let h = c.hidden_size;
        let ffn = if c.is_moe_layer(index) {
            FeedForward::Moe(Moe::load(
                ck,
                &format!("{p}.mlp"),
                h,
                c.moe_intermediate_size,
                c.n_shared_experts,
                c.router_config(),
            )?)
        } else {
            FeedForward::Dense(Mlp::load(ck, &format!("{p}.mlp"), h, c.intermediate_size)?)
        };
        let norm = |n: &str| RmsNorm::load(ck, &format!("{p}.{n}.weight"), h, c.rms_norm_eps);
        Ok(Self {
            input_norm: norm("input_layernorm")?,
            attn: MlaAttention::load(ck, &format!("{p}.self_attn"), c)?,
            post_norm: norm("post_attention_layernorm")?,
            ffn,
        })
    }

    fn forward(
        &self,
        x: &mut [f32],
        step: &Step<'_>,
        cache: &mut LatentCache,
        layer: usize,
    ) -> Result<(), ModelError> {
        let n = step.rows.len();
        let mut h = x.to_vec();
        self.input_norm.apply(&mut h);
        let a = self
            .attn
            .forward(&h, step.rows, step.tables, &step.cos_sin, cache, layer)?;
        x.iter_mut().zip(&a).for_each(|(x, a)| *x += a);
        h.copy_from_slice(x);
        self.post_norm.apply(&mut h);
        let m = self.ffn.forward(&h, n)?;
        x.iter_mut().zip(&m).for_each(|(x, m)| *x += m);
        Ok(())
    }

    fn fixed_bytes(&self) -> u64 {
        self.input_norm.bytes() + self.attn.bytes() + self.post_norm.bytes()
    }
}

/// Per-step data shared by all layers.
struct Step<'a> {
    rows: &'a [RowMeta],
    tables: &'a [&'a [u32]],
    cos_sin: Vec<(Vec<f32>, Vec<f32>)>,
}

#[derive(Debug)]
pub struct Glm4MoeLite {
    pub config: Glm4MoeLiteConfig,
    info: ModelInfo,
    embed: Vec<f32>,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    cache: Option<LatentCache>,
}

impl Glm4MoeLite {
    /// Loads config.json, generation_config.json and the safetensors weights of `dir`.
    /// MTP layers (`model.layers.{num_hidden_layers}..`) are not loaded.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        Self::load_with(dir, WeightDtype::Auto)
    }

    /// [`Self::load`] keeping linear-layer weights as `dtype`.
    pub fn load_with(dir: &Path, dtype: WeightDtype) -> Result<Self, ModelError> {
        let _span = info_span!("load_glm4moelite", dir = %dir.display()).entered();
        let c = Glm4MoeLiteConfig::from_dir(dir)?;
        let ck = Checkpoint::open(dir)?.with_dtype(dtype);
        let (h, v) = (c.hidden_size, c.vocab_size);
        let embed = ck.f32("model.embed_tokens.weight", &[v, h])?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| DecoderLayer::load(&ck, &c, i))
            .collect::<Result<Vec<_>, _>>()?;
        let norm = RmsNorm::load(&ck, "model.norm.weight", h, c.rms_norm_eps)?;
        let lm_head = if c.tie_word_embeddings && !ck.contains("lm_head.weight") {
            Linear::new(embed.clone(), None, h, v)?
        } else {
            Linear::load(&ck, "lm_head", h, v, false)?
        };
        let fixed: u64 = layers.iter().map(DecoderLayer::fixed_bytes).sum();
        let active: u64 = layers.iter().map(|l| l.ffn.active_bytes()).sum();
        let total: u64 = layers.iter().map(|l| l.ffn.bytes()).sum();
        let head = norm.bytes() + lm_head.bytes();
        let info = ModelInfo {
            architecture: c.architecture.clone(),
            vocab_size: v,
            max_position_embeddings: c.max_position_embeddings,
            num_hidden_layers: c.num_hidden_layers,
            eos_token_ids: c.eos_token_ids.clone(),
            kv_bytes_per_token: c.kv_layout().latent_bytes_per_token,
            active_weight_bytes_per_token: fixed + active + head + 4 * h as u64,
            weight_bytes: fixed + total + head + 4 * embed.len() as u64,
            device: "cpu".into(),
        };
        tracing::info!(
            layers = c.num_hidden_layers,
            weight_mib = info.weight_bytes >> 20,
            kv = %c.kv_layout(),
            "model loaded"
        );
        Ok(Self {
            rope: Rope::new(c.qk_rope_head_dim, c.rope_theta),
            config: c,
            info,
            embed,
            layers,
            norm,
            lm_head,
            cache: None,
        })
    }

    /// Latent vs full K/V bytes per token for this model's config.
    pub fn kv_layout(&self) -> KvLayoutReport {
        self.config.kv_layout()
    }

    fn validate(&self, batch: &ForwardBatch) -> Result<(), ModelError> {
        let cache = self
            .cache
            .as_ref()
            .ok_or_else(|| ModelError::Cache("init_cache was not called".into()))?;
        for (i, s) in batch.seqs.iter().enumerate() {
            if s.tokens.is_empty() {
                return Err(ModelError::InvalidBatch(format!(
                    "sequence {i} has no tokens"
                )));
            }
            if let Some(t) = s
                .tokens
                .iter()
                .find(|&&t| t as usize >= self.info.vocab_size)
            {
                return Err(ModelError::InvalidBatch(format!(
                    "sequence {i}: token id {t} >= vocab_size {}",
                    self.info.vocab_size
                )));
            }
        }
        cache.check_tables(&batch.seqs)
    }
}

impl CausalLm for Glm4MoeLite {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn init_cache(&mut self, cfg: CacheConfig) -> Result<(), ModelError> {
        self.cache = None; // free the old cache before allocating the new one
        let c = &self.config;
        self.cache = Some(LatentCache::new(cfg, c.num_hidden_layers, c.latent_dim())?);
        Ok(())
    }

    fn forward(&mut self, batch: &ForwardBatch) -> Result<Vec<Option<Vec<f32>>>, ModelError> {
        let _span = tracing::debug_span!(
            "forward",
            arch = GLM4_MOE_LITE,
            seqs = batch.seqs.len(),
            tokens = batch.seqs.iter().map(|s| s.tokens.len()).sum::<usize>()
        )
        .entered();
        self.validate(batch)?;
        let h = self.config.hidden_size;
        let mut rows = Vec::new();
        let mut x = Vec::new();
        for (si, s) in batch.seqs.iter().enumerate() {
            for (j, &t) in s.tokens.iter().enumerate() {
                rows.push(RowMeta {
                    seq: si,
                    pos: s.num_cached + j,
                });
                let t = t as usize;
                x.extend_from_slice(&self.embed[t * h..(t + 1) * h]);
            }
        }
        let tables: Vec<&[u32]> = batch
            .seqs
            .iter()
            .map(|s| s.block_table.as_slice())
            .collect();
        let step = Step {
            rows: &rows,
            tables: &tables,
            cos_sin: rows.iter().map(|r| self.rope.cos_sin(r.pos)).collect(),
        };
        let cache = self
            .cache
            .as_mut()
            .ok_or_else(|| ModelError::Cache("init_cache was not called".into()))?;
        for (li, layer) in self.layers.iter().enumerate() {
            layer.forward(&mut x, &step, cache, li)?;
        }
        // Only the last row of sequences that want logits goes through norm + lm_head.
        let mut want = Vec::new();
        let mut last = Vec::new();
        let mut end = 0;
        for (si, s) in batch.seqs.iter().enumerate() {
            end += s.tokens.len();
            if s.want_logits {
                want.push(si);
                last.extend_from_slice(&x[(end - 1) * h..end * h]);
            }
        }
        self.norm.apply(&mut last);
        let logits = self.lm_head.forward(&last, want.len())?;
        let v = self.info.vocab_size;
        let mut out: Vec<Option<Vec<f32>>> = vec![None; batch.seqs.len()];
        for (k, si) in want.into_iter().enumerate() {
            out[si] = Some(logits[k * v..(k + 1) * v].to_vec());
        }
        Ok(out)
    }
}
