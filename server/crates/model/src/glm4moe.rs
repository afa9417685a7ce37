//! `Glm4MoeForCausalLM` (GLM-4.5, GLM-4.5-Air, GLM-4.6, GLM-4.7), as transformers'
//! `modeling_glm4_moe.py`: GQA attention with q/k/v bias, optional per-head qk-norm, partial
//! NeoX RoPE; dense SwiGLU MLP for the first layers, MoE for the rest.

use std::path::Path;

use tracing::info_span;

use crate::batch::{CacheConfig, CausalLm, ForwardBatch, ModelError, ModelInfo};
use crate::config::Glm4MoeConfig;
use crate::kv_cache::{PagedKvCache, RowMeta};
use crate::layers::{Linear, Mlp, RmsNorm, Rope};
use crate::moe::{Moe, RouterConfig};
use crate::weights::{Checkpoint, WeightDtype};

#[derive(Debug)]
pub struct Attention {
    /// q, k and v projections fused at load: `[q | k | v]` per row.
    pub qkv: Linear,
    pub o: Linear,
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    fn load(ck: &Checkpoint, p: &str, c: &Glm4MoeConfig) -> Result<Self, ModelError> {
        let (h, hd) = (c.hidden_size, c.head_dim);
        let norm = |n: &str| RmsNorm::load(ck, &format!("{p}.{n}.weight"), hd, c.rms_norm_eps);
        let (q, kv) = (c.num_attention_heads * hd, c.num_key_value_heads * hd);
        Ok(Self {
            qkv: Linear::load_fused(
                ck,
                &[
                    (&format!("{p}.q_proj"), q),
                    (&format!("{p}.k_proj"), kv),
                    (&format!("{p}.v_proj"), kv),
                ],
                h,
                c.attention_bias,
            )?,
            o: Linear::load(ck, &format!("{p}.o_proj"), q, h, false)?,
            q_norm: c.use_qk_norm.then(|| norm("q_norm")).transpose()?,
            k_norm: c.use_qk_norm.then(|| norm("k_norm")).transpose()?,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: hd,
        })
    }

    fn bytes(&self) -> u64 {
        self.qkv.bytes()
            + self.o.bytes()
            + self.q_norm.as_ref().map_or(0, RmsNorm::bytes)
            + self.k_norm.as_ref().map_or(0, RmsNorm::bytes)
    }

    /// `h`: normed hidden rows. Writes the rows' K/V into the cache, returns `o_proj(attn)`.
    fn forward(
        &self,
        h: &[f32],
        step: &Step<'_>,
        cache: &mut PagedKvCache,
        layer: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let n = step.rows.len();
        let hd = self.head_dim;
        let (qw, kvw) = (self.heads * hd, self.kv_heads * hd);
        let qkv = self.qkv.forward(h, n)?;
        let mut q = Vec::with_capacity(n * qw);
        let mut k = Vec::with_capacity(n * kvw);
        let mut v = Vec::with_capacity(n * kvw);
        for row in qkv.chunks_exact(qw + 2 * kvw) {
            q.extend_from_slice(&row[..qw]);
            k.extend_from_slice(&row[qw..qw + kvw]);
            v.extend_from_slice(&row[qw + kvw..]);
        }
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            qn.apply(&mut q);
            kn.apply(&mut k);
        }
        for (i, (qr, kr)) in q
            .chunks_exact_mut(self.heads * hd)
            .zip(k.chunks_exact_mut(self.kv_heads * hd))
            .enumerate()
        {
            let (cos, sin) = &step.cos_sin[i];
            step.rope.apply(qr, hd, cos, sin);
            step.rope.apply(kr, hd, cos, sin);
        }
        cache.write(layer, step.rows, step.tables, &k, &v);
        let scale = (hd as f32).powf(-0.5);
        let attn = cache.attend(layer, step.rows, step.tables, &q, self.heads, scale);
        self.o.forward(&attn, n)
    }
}

#[derive(Debug)]
pub enum FeedForward {
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
}

#[derive(Debug)]
pub struct DecoderLayer {
    pub input_norm: RmsNorm,
    pub attn: Attention,
    pub post_norm: RmsNorm,
    pub ffn: FeedForward,
}

impl DecoderLayer {
    /// Loads `model.layers.{index}`; MoE when `index >= first_k_dense_replace`.
    pub fn load(ck: &Checkpoint, c: &Glm4MoeConfig, index: usize) -> Result<Self, ModelError> {
        let p = format!("model.layers.{index}");
        let h = c.hidden_size;
        let ffn = if c.is_moe_layer(index) {
            FeedForward::Moe(Moe::load(
                ck,
                &format!("{p}.mlp"),
                h,
                c.moe_intermediate_size,
                c.n_shared_experts,
                router_config(c),
            )?)
        } else {
            FeedForward::Dense(Mlp::load(ck, &format!("{p}.mlp"), h, c.intermediate_size)?)
        };
        Ok(Self {
            input_norm: RmsNorm::load(
                ck,
                &format!("{p}.input_layernorm.weight"),
                h,
                c.rms_norm_eps,
            )?,
            attn: Attention::load(ck, &format!("{p}.self_attn"), c)?,
            post_norm: RmsNorm::load(
                ck,
                &format!("{p}.post_attention_layernorm.weight"),
                h,
                c.rms_norm_eps,
            )?,
            ffn,
        })
    }

    fn forward(
        &self,
        x: &mut [f32],
        step: &Step<'_>,
        cache: &mut PagedKvCache,
        layer: usize,
    ) -> Result<(), ModelError> {
        let n = step.rows.len();
        let mut h = x.to_vec();
        self.input_norm.apply(&mut h);
        let a = self.attn.forward(&h, step, cache, layer)?;
        x.iter_mut().zip(&a).for_each(|(x, a)| *x += a);
        h.copy_from_slice(x);
        self.post_norm.apply(&mut h);
        let m = self.ffn.forward(&h, n)?;
        x.iter_mut().zip(&m).for_each(|(x, m)| *x += m);
        Ok(())
    }

    /// Weight bytes one decoded token reads in this layer.
    fn active_bytes(&self) -> u64 {
        let ffn = match &self.ffn {
            FeedForward::Dense(m) => m.bytes(),
            FeedForward::Moe(m) => m.active_bytes(),
        };
        self.input_norm.bytes() + self.attn.bytes() + self.post_norm.bytes() + ffn
    }

    fn bytes(&self) -> u64 {
        let ffn = match &self.ffn {
            FeedForward::Dense(m) => m.bytes(),
            FeedForward::Moe(m) => m.bytes(),
        };
        self.input_norm.bytes() + self.attn.bytes() + self.post_norm.bytes() + ffn
    }
}

pub fn router_config(c: &Glm4MoeConfig) -> RouterConfig {
    RouterConfig {
        n_experts: c.n_routed_experts,
        top_k: c.num_experts_per_tok,
        n_group: c.n_group,
        topk_group: c.topk_group,
        norm_topk_prob: c.norm_topk_prob,
        routed_scaling_factor: c.routed_scaling_factor as f32,
    }
}

/// Per-step data shared by all layers.
struct Step<'a> {
    rows: &'a [RowMeta],
    tables: &'a [&'a [u32]],
    cos_sin: Vec<(Vec<f32>, Vec<f32>)>,
    rope: &'a Rope,
}

/// The MTP (next-token prediction) block GLM checkpoints ship at `model.layers.{N}`.
/// Loaded only on request (speculative decoding); normal decoding never reads it.
#[derive(Debug)]
pub struct MtpLayer {
    pub enorm: RmsNorm,
    pub hnorm: RmsNorm,
    /// `[H, 2H]`: projects `cat(enorm(embedding), hnorm(previous hidden))`.
    pub eh_proj: Linear,
    pub block: DecoderLayer,
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
    let ck = Checkpoint::open(dir)?;
    let i = c.num_hidden_layers + k;
    let p = format!("model.layers.{i}");
    let (h, eps) = (c.hidden_size, c.rms_norm_eps);
    Ok(MtpLayer {
        enorm: RmsNorm::load(&ck, &format!("{p}.enorm.weight"), h, eps)?,
        hnorm: RmsNorm::load(&ck, &format!("{p}.hnorm.weight"), h, eps)?,
        eh_proj: Linear::load(&ck, &format!("{p}.eh_proj"), 2 * h, h, false)?,
        block: DecoderLayer::load(&ck, &c, i)?,
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

#[derive(Debug)]
pub struct Glm4Moe {
    pub config: Glm4MoeConfig,
    info: ModelInfo,
    embed: Vec<f32>,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    cache: Option<PagedKvCache>,
}

impl Glm4Moe {
    /// Loads config.json, generation_config.json and the safetensors weights of `dir`.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        Self::load_with(dir, WeightDtype::Auto)
    }

    /// [`Self::load`] keeping linear-layer weights as `dtype`.
    pub fn load_with(dir: &Path, dtype: WeightDtype) -> Result<Self, ModelError> {
        let _span = info_span!("load_glm4moe", dir = %dir.display()).entered();
        let c = Glm4MoeConfig::from_dir(dir)?;
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
        let layer_active: u64 = layers.iter().map(DecoderLayer::active_bytes).sum();
        let layer_total: u64 = layers.iter().map(DecoderLayer::bytes).sum();
        let info = ModelInfo {
            architecture: c.architecture.clone(),
            vocab_size: v,
            max_position_embeddings: c.max_position_embeddings,
            num_hidden_layers: c.num_hidden_layers,
            eos_token_ids: c.eos_token_ids.clone(),
            kv_bytes_per_token: c.num_hidden_layers * 2 * c.num_key_value_heads * c.head_dim * 4,
            active_weight_bytes_per_token: layer_active
                + norm.bytes()
                + lm_head.bytes()
                + 4 * h as u64,
            weight_bytes: layer_total + norm.bytes() + lm_head.bytes() + 4 * embed.len() as u64,
            device: "cpu".into(),
        };
        tracing::info!(
            layers = c.num_hidden_layers,
            weight_mib = info.weight_bytes >> 20,
            "model loaded"
        );
        Ok(Self {
            rope: Rope::new(c.rotary_dim(), c.rope_theta),
            config: c,
            info,
            embed,
            layers,
            norm,
            lm_head,
            cache: None,
        })
    }

    fn validate(&self, batch: &ForwardBatch) -> Result<&PagedKvCache, ModelError> {
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
        cache.check_tables(&batch.seqs)?;
        Ok(cache)
    }
}

impl CausalLm for Glm4Moe {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn init_cache(&mut self, cfg: CacheConfig) -> Result<(), ModelError> {
        self.cache = None; // free the old cache before allocating the new one
        let c = &self.config;
        self.cache = Some(PagedKvCache::new(
            cfg,
            c.num_hidden_layers,
            c.num_key_value_heads,
            c.head_dim,
        )?);
        Ok(())
    }

    fn forward(&mut self, batch: &ForwardBatch) -> Result<Vec<Option<Vec<f32>>>, ModelError> {
        let _span = tracing::debug_span!(
            "forward",
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
            rope: &self.rope,
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
