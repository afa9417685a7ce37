//! The tensor stack: the decoder written once in device-generic candle ops, for both
//! architectures (the attention is the architecture's). It runs on candle's CPU device as the
//! `reference` backend, which the transformers goldens check in CI, and on an NVIDIA GPU as
//! the `cuda` backend, where hand-written kernels (`paged`) replace generic ops.

pub mod moe;
pub mod ops;
pub mod paged;

use candle_core::{DType, Device, Tensor};

use crate::batch::ModelError;
use crate::config::CommonConfig;
use crate::layers::Rope;
use crate::shell::{Stack, Step};
use crate::store::{PagedLayout, RowMeta};
use crate::weights::{Checkpoint, WeightDtype};
use moe::TMoe;
use ops::{tensor_bytes, RopeTables, TLinear, TMlp, TNorm};
use paged::{DeviceRows, PagedMeta};

/// Where and how the tensor stack runs.
#[derive(Debug, Clone)]
pub struct TensorCtx {
    pub device: Device,
    /// Type of the linear-layer weights and of the matrix products.
    pub dtype: DType,
    /// Use the hand-written device kernels where one exists (the `cuda` backend); the
    /// `reference` backend runs generic ops only.
    pub kernels: bool,
}

impl TensorCtx {
    /// `auto` keeps bf16 on a GPU (the GLM releases' type) and f32 on the CPU reference,
    /// where candle has no fast 16-bit matrix product and the goldens are f32.
    pub fn new(device: Device, dtype: WeightDtype, kernels: bool) -> Result<Self, ModelError> {
        let dtype = match dtype {
            WeightDtype::Auto if device.is_cpu() => DType::F32,
            WeightDtype::Auto | WeightDtype::Bf16 => DType::BF16,
            WeightDtype::F16 => DType::F16,
            WeightDtype::F32 => DType::F32,
            WeightDtype::Fp8 => {
                return Err(ModelError::Device(
                    "the tensor backends do not keep fp8 weights (--dtype auto)".into(),
                ))
            }
        };
        Ok(Self {
            device,
            dtype,
            kernels,
        })
    }

    /// Total device memory in bytes (GPUs only).
    pub fn memory(&self) -> Option<u64> {
        paged::device_memory(&self.device)
    }
}

/// What an attention block sees of a step on the tensor backends.
pub struct TensorStep<'a> {
    pub step: &'a Step<'a>,
    pub meta: &'a PagedMeta,
    pub rope: &'a RopeTables,
    pub ctx: &'a TensorCtx,
}

impl TensorStep<'_> {
    pub fn rows(&self) -> &[RowMeta] {
        &self.step.rows
    }
}

/// An architecture's attention on the tensor backends.
pub trait TensorAttention: Send + Sync + std::fmt::Debug + Sized {
    /// `h`: normed hidden rows `[rows, hidden]` f32. Writes the rows' K/V (or latent) into
    /// `stores` and returns `o_proj(attention)`.
    fn forward(
        &self,
        h: &Tensor,
        step: &TensorStep<'_>,
        stores: &mut [DeviceRows],
    ) -> Result<Tensor, ModelError>;

    fn store_widths(&self) -> Vec<usize>;

    fn bytes(&self) -> u64;
}

#[derive(Debug)]
enum TFeedForward {
    Dense(TMlp),
    Moe(TMoe),
}

impl TFeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        match self {
            TFeedForward::Dense(m) => m.forward(x),
            TFeedForward::Moe(m) => m.forward(x),
        }
    }

    fn active_bytes(&self) -> u64 {
        match self {
            TFeedForward::Dense(m) => m.bytes(),
            TFeedForward::Moe(m) => m.active_bytes(),
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            TFeedForward::Dense(m) => m.bytes(),
            TFeedForward::Moe(m) => m.bytes(),
        }
    }
}

#[derive(Debug)]
struct TLayer<A> {
    input_norm: TNorm,
    attn: A,
    post_norm: TNorm,
    ffn: TFeedForward,
}

/// The decoder stack on a candle device.
#[derive(Debug)]
pub struct TensorStack<A> {
    ctx: TensorCtx,
    embed: Tensor,
    layers: Vec<TLayer<A>>,
    norm: TNorm,
    lm_head: TLinear,
    rope: Rope,
}

impl<A: TensorAttention> TensorStack<A> {
    /// Loads embedding, layers (`load_attn(checkpoint, "model.layers.N.self_attn", ctx)`
    /// builds the architecture's attention), final norm and lm_head onto `ctx.device`.
    pub fn load(
        ck: &Checkpoint,
        c: &CommonConfig,
        rope: Rope,
        ctx: &TensorCtx,
        load_attn: impl Fn(&Checkpoint, &str, &TensorCtx) -> Result<A, ModelError>,
    ) -> Result<Self, ModelError> {
        let (h, v, dev) = (c.hidden_size, c.vocab_size, &ctx.device);
        let embed = ck.tensor("model.embed_tokens.weight", &[v, h], dev, ctx.dtype)?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let norm =
                |n: &str| TNorm::load(ck, &format!("{p}.{n}.weight"), h, c.rms_norm_eps, dev);
            let ffn = if c.is_moe_layer(i) {
                TFeedForward::Moe(TMoe::load(
                    ck,
                    &format!("{p}.mlp"),
                    h,
                    c.moe_intermediate_size,
                    c.n_shared_experts,
                    c.router_config(),
                    ctx,
                )?)
            } else {
                TFeedForward::Dense(TMlp::load(
                    ck,
                    &format!("{p}.mlp"),
                    h,
                    c.intermediate_size,
                    ctx,
                )?)
            };
            layers.push(TLayer {
                input_norm: norm("input_layernorm")?,
                attn: load_attn(ck, &format!("{p}.self_attn"), ctx)?,
                post_norm: norm("post_attention_layernorm")?,
                ffn,
            });
        }
        let norm = TNorm::load(ck, "model.norm.weight", h, c.rms_norm_eps, dev)?;
        let lm_head = if c.tie_word_embeddings && !ck.contains("lm_head.weight") {
            TLinear {
                w: embed.clone(),
                b: None,
            }
        } else {
            TLinear::load(ck, "lm_head", h, v, false, ctx)?
        };
        Ok(Self {
            ctx: ctx.clone(),
            embed,
            layers,
            norm,
            lm_head,
            rope,
        })
    }

    fn fixed_bytes(l: &TLayer<A>) -> u64 {
        l.input_norm.bytes() + l.attn.bytes() + l.post_norm.bytes()
    }

    /// Weight bytes one decoded token reads at batch 1 (active experts only).
    pub fn active_weight_bytes(&self) -> u64 {
        let layers: u64 = self
            .layers
            .iter()
            .map(|l| Self::fixed_bytes(l) + l.ffn.active_bytes())
            .sum();
        let row = tensor_bytes(&self.embed) / self.embed.dim(0).unwrap_or(1).max(1) as u64;
        layers + self.norm.bytes() + self.lm_head.bytes() + row
    }

    /// Bytes of all weights as held on the device.
    pub fn weight_bytes(&self) -> u64 {
        let layers: u64 = self
            .layers
            .iter()
            .map(|l| Self::fixed_bytes(l) + l.ffn.bytes())
            .sum();
        layers + self.norm.bytes() + self.lm_head.bytes() + tensor_bytes(&self.embed)
    }

    fn rope_tables(&self, rows: &[RowMeta]) -> Result<RopeTables, ModelError> {
        let half = self.rope.rotary_dim / 2;
        let (mut cos, mut sin) = (Vec::with_capacity(rows.len() * half), Vec::new());
        for r in rows {
            let (c, s) = self.rope.cos_sin(r.pos);
            cos.extend(c);
            sin.extend(s);
        }
        let shape = (rows.len(), 1, half);
        Ok(RopeTables {
            cos: Tensor::from_vec(cos, shape, &self.ctx.device)?,
            sin: Tensor::from_vec(sin, shape, &self.ctx.device)?,
        })
    }
}

impl<A: TensorAttention> Stack for TensorStack<A> {
    type Cache = Vec<Vec<DeviceRows>>;

    fn alloc_cache(&self, layout: PagedLayout) -> Result<Self::Cache, ModelError> {
        self.layers
            .iter()
            .map(|l| {
                l.attn
                    .store_widths()
                    .into_iter()
                    .map(|w| DeviceRows::new(layout, w, &self.ctx.device))
                    .collect()
            })
            .collect()
    }

    fn forward(&self, step: &Step<'_>, cache: &mut Self::Cache) -> Result<Vec<f32>, ModelError> {
        let dev = &self.ctx.device;
        let n = step.tokens.len();
        let ids = Tensor::from_vec(step.tokens.clone(), n, dev)?;
        let mut x = self.embed.index_select(&ids, 0)?.to_dtype(DType::F32)?;
        let meta = PagedMeta::new(step, dev, self.ctx.kernels)?;
        let rope = self.rope_tables(&step.rows)?;
        let ts = TensorStep {
            step,
            meta: &meta,
            rope: &rope,
            ctx: &self.ctx,
        };
        for (layer, stores) in self.layers.iter().zip(cache.iter_mut()) {
            let a = layer
                .attn
                .forward(&layer.input_norm.forward(&x)?, &ts, stores)?;
            x = (x + a)?;
            let m = layer.ffn.forward(&layer.post_norm.forward(&x)?)?;
            x = (x + m)?;
        }
        if step.logit_rows.is_empty() {
            return Ok(Vec::new());
        }
        let last: Vec<u32> = step.logit_rows.iter().map(|&r| r as u32).collect();
        let last = Tensor::from_vec(last, step.logit_rows.len(), dev)?;
        let h = self.norm.forward(&x.index_select(&last, 0)?)?;
        Ok(self.lm_head.forward(&h)?.flatten_all()?.to_vec1::<f32>()?)
    }
}
