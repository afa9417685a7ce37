//! The `cpu` backend: host f32 activations, linear weights kept 16-bit and widened inside the
//! hand-written SIMD kernels (`kernels`), paged stores in host memory. [`CpuStack`] is the
//! decoder stack written once for both architectures; the attention is the architecture's.

use crate::batch::ModelError;
use crate::config::CommonConfig;
use crate::layers::{Linear, Mlp, RmsNorm, Rope};
use crate::moe::Moe;
use crate::shell::{Stack, Step};
use crate::store::{PagedLayout, PagedRows, RowMeta};
use crate::weights::Checkpoint;

/// What an attention block sees of a step on the CPU.
pub struct LayerStep<'a> {
    pub rows: &'a [RowMeta],
    pub tables: &'a [&'a [u32]],
    /// RoPE `(cos, sin)` of each row's position.
    pub cos_sin: &'a [(Vec<f32>, Vec<f32>)],
}

/// An architecture's attention on the CPU backend.
pub trait CpuAttention: Send + Sync + std::fmt::Debug + Sized {
    /// `h`: normed hidden rows. Writes the rows' K/V (or latent) into `stores` (this layer's,
    /// as [`CpuAttention::store_widths`] asked) and returns `o_proj(attention)`.
    fn forward(
        &self,
        h: &[f32],
        step: &LayerStep<'_>,
        stores: &mut [PagedRows],
    ) -> Result<Vec<f32>, ModelError>;

    /// Widths of the paged stores one layer needs (K and V, or the latent).
    fn store_widths(&self) -> Vec<usize>;

    /// Weight bytes.
    fn bytes(&self) -> u64;
}

#[derive(Debug)]
pub enum FeedForward {
    Dense(Mlp),
    Moe(Moe),
}

impl FeedForward {
    /// Loads `{prefix}.mlp` of layer `index`: MoE from `first_k_dense_replace` on.
    pub fn load(
        ck: &Checkpoint,
        c: &CommonConfig,
        prefix: &str,
        index: usize,
    ) -> Result<Self, ModelError> {
        let h = c.hidden_size;
        Ok(if c.is_moe_layer(index) {
            FeedForward::Moe(Moe::load(
                ck,
                prefix,
                h,
                c.moe_intermediate_size,
                c.n_shared_experts,
                c.router_config(),
            )?)
        } else {
            FeedForward::Dense(Mlp::load(ck, prefix, h, c.intermediate_size)?)
        })
    }

    pub fn forward(&self, h: &[f32], rows: usize) -> Result<Vec<f32>, ModelError> {
        match self {
            FeedForward::Dense(m) => m.forward(h, rows),
            FeedForward::Moe(m) => m.forward(h, rows),
        }
    }

    /// Weight bytes one decoded token reads.
    pub fn active_bytes(&self) -> u64 {
        match self {
            FeedForward::Dense(m) => m.bytes(),
            FeedForward::Moe(m) => m.active_bytes(),
        }
    }

    pub fn bytes(&self) -> u64 {
        match self {
            FeedForward::Dense(m) => m.bytes(),
            FeedForward::Moe(m) => m.bytes(),
        }
    }
}

/// One pre-norm decoder layer: `x += attn(norm(x)); x += ffn(norm(x))`.
#[derive(Debug)]
pub struct CpuLayer<A> {
    pub input_norm: RmsNorm,
    pub attn: A,
    pub post_norm: RmsNorm,
    pub ffn: FeedForward,
}

impl<A: CpuAttention> CpuLayer<A> {
    /// Loads `model.layers.{index}` with `attn` built by the architecture.
    pub fn load(
        ck: &Checkpoint,
        c: &CommonConfig,
        index: usize,
        load_attn: &impl Fn(&Checkpoint, &str) -> Result<A, ModelError>,
    ) -> Result<Self, ModelError> {
        let p = format!("model.layers.{index}");
        let norm = |n: &str| {
            RmsNorm::load(
                ck,
                &format!("{p}.{n}.weight"),
                c.hidden_size,
                c.rms_norm_eps,
            )
        };
        Ok(Self {
            input_norm: norm("input_layernorm")?,
            attn: load_attn(ck, &format!("{p}.self_attn"))?,
            post_norm: norm("post_attention_layernorm")?,
            ffn: FeedForward::load(ck, c, &format!("{p}.mlp"), index)?,
        })
    }

    pub fn forward(
        &self,
        x: &mut [f32],
        step: &LayerStep<'_>,
        stores: &mut [PagedRows],
    ) -> Result<(), ModelError> {
        let n = step.rows.len();
        let mut h = x.to_vec();
        self.input_norm.apply(&mut h);
        let a = self.attn.forward(&h, step, stores)?;
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

/// The decoder stack on the CPU.
#[derive(Debug)]
pub struct CpuStack<A> {
    hidden: usize,
    embed: Vec<f32>,
    layers: Vec<CpuLayer<A>>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
}

impl<A: CpuAttention> CpuStack<A> {
    /// Loads embedding, `num_hidden_layers` layers, final norm and lm_head (tied to the
    /// embedding when the config says so and the checkpoint has no `lm_head.weight`).
    pub fn load(
        ck: &Checkpoint,
        c: &CommonConfig,
        rope: Rope,
        load_attn: impl Fn(&Checkpoint, &str) -> Result<A, ModelError>,
    ) -> Result<Self, ModelError> {
        let (h, v) = (c.hidden_size, c.vocab_size);
        let embed = ck.f32("model.embed_tokens.weight", &[v, h])?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| CpuLayer::load(ck, c, i, &load_attn))
            .collect::<Result<Vec<_>, _>>()?;
        let norm = RmsNorm::load(ck, "model.norm.weight", h, c.rms_norm_eps)?;
        let lm_head = if c.tie_word_embeddings && !ck.contains("lm_head.weight") {
            Linear::new(embed.clone(), None, h, v)?
        } else {
            Linear::load(ck, "lm_head", h, v, false)?
        };
        Ok(Self {
            hidden: h,
            embed,
            layers,
            norm,
            lm_head,
            rope,
        })
    }

    /// Weight bytes one decoded token reads at batch 1 (active experts only).
    pub fn active_weight_bytes(&self) -> u64 {
        let layers: u64 = self
            .layers
            .iter()
            .map(|l| l.fixed_bytes() + l.ffn.active_bytes())
            .sum();
        layers + self.norm.bytes() + self.lm_head.bytes() + 4 * self.hidden as u64
    }

    /// Bytes of all weights as held in memory.
    pub fn weight_bytes(&self) -> u64 {
        let layers: u64 = self
            .layers
            .iter()
            .map(|l| l.fixed_bytes() + l.ffn.bytes())
            .sum();
        layers + self.norm.bytes() + self.lm_head.bytes() + 4 * self.embed.len() as u64
    }
}

impl<A: CpuAttention> Stack for CpuStack<A> {
    type Cache = Vec<Vec<PagedRows>>;

    fn alloc_cache(&self, layout: PagedLayout) -> Result<Self::Cache, ModelError> {
        self.layers
            .iter()
            .map(|l| {
                l.attn
                    .store_widths()
                    .into_iter()
                    .map(|w| PagedRows::new(layout, w))
                    .collect()
            })
            .collect()
    }

    fn forward(&self, step: &Step<'_>, cache: &mut Self::Cache) -> Result<Vec<f32>, ModelError> {
        let h = self.hidden;
        let mut x = Vec::with_capacity(step.tokens.len() * h);
        for &t in &step.tokens {
            let t = t as usize;
            x.extend_from_slice(&self.embed[t * h..(t + 1) * h]);
        }
        let cos_sin: Vec<_> = step.rows.iter().map(|r| self.rope.cos_sin(r.pos)).collect();
        let ls = LayerStep {
            rows: &step.rows,
            tables: &step.tables,
            cos_sin: &cos_sin,
        };
        for (layer, stores) in self.layers.iter().zip(cache.iter_mut()) {
            layer.forward(&mut x, &ls, stores)?;
        }
        // Only the rows whose logits are wanted go through norm + lm_head.
        let mut last = Vec::with_capacity(step.logit_rows.len() * h);
        for &r in &step.logit_rows {
            last.extend_from_slice(&x[r * h..(r + 1) * h]);
        }
        self.norm.apply(&mut last);
        self.lm_head.forward(&last, step.logit_rows.len())
    }
}
