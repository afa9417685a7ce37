//! GQA attention of Glm4Moe on the tensor backends: the same computation as
//! [`super::attention`], in device-generic ops.

use candle_core::Tensor;

use super::config::Glm4MoeConfig;
use crate::attention::AttnShape;
use crate::backend::tensor::ops::{TLinear, TNorm};
use crate::backend::tensor::paged::{attend, DeviceRows};
use crate::backend::tensor::{TensorAttention, TensorCtx, TensorStep};
use crate::batch::ModelError;
use crate::weights::Checkpoint;

#[derive(Debug)]
pub struct Attention {
    qkv: TLinear,
    o: TLinear,
    qk_norm: Option<(TNorm, TNorm)>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn load(
        ck: &Checkpoint,
        p: &str,
        c: &Glm4MoeConfig,
        ctx: &TensorCtx,
    ) -> Result<Self, ModelError> {
        let (h, hd) = (c.hidden_size, c.head_dim);
        let (q, kv) = (c.num_attention_heads * hd, c.num_key_value_heads * hd);
        let norm = |n: &str| {
            TNorm::load(
                ck,
                &format!("{p}.{n}.weight"),
                hd,
                c.rms_norm_eps,
                &ctx.device,
            )
        };
        Ok(Self {
            qkv: TLinear::load_fused(
                ck,
                &[
                    (&format!("{p}.q_proj"), q),
                    (&format!("{p}.k_proj"), kv),
                    (&format!("{p}.v_proj"), kv),
                ],
                h,
                c.attention_bias,
                ctx,
            )?,
            o: TLinear::load(ck, &format!("{p}.o_proj"), q, h, false, ctx)?,
            qk_norm: if c.use_qk_norm {
                Some((norm("q_norm")?, norm("k_norm")?))
            } else {
                None
            },
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: hd,
        })
    }
}

impl TensorAttention for Attention {
    fn forward(
        &self,
        h: &Tensor,
        step: &TensorStep<'_>,
        stores: &mut [DeviceRows],
    ) -> Result<Tensor, ModelError> {
        let n = step.rows().len();
        let hd = self.head_dim;
        let (qw, kvw) = (self.heads * hd, self.kv_heads * hd);
        let qkv = self.qkv.forward(h)?;
        let mut q = qkv.narrow(1, 0, qw)?.reshape((n, self.heads, hd))?;
        let mut k = qkv.narrow(1, qw, kvw)?.reshape((n, self.kv_heads, hd))?;
        let v = qkv.narrow(1, qw + kvw, kvw)?;
        if let Some((qn, kn)) = &self.qk_norm {
            q = qn.forward(&q)?;
            k = kn.forward(&k)?;
        }
        let q = step.rope.apply(&q, false)?;
        let k = step.rope.apply(&k, false)?;
        let [ks, vs] = stores else {
            return Err(ModelError::Cache("GQA needs a K and a V store".into()));
        };
        ks.write(step.meta, &k.reshape((n, kvw))?)?;
        vs.write(step.meta, &v)?;
        let shape = AttnShape::gqa(self.heads, self.kv_heads, hd, (hd as f32).powf(-0.5));
        let attn = attend(&q, ks, vs, step.meta, &shape, step.ctx.kernels)?;
        self.o.forward(&attn.reshape((n, qw))?)
    }

    fn store_widths(&self) -> Vec<usize> {
        vec![self.kv_heads * self.head_dim; 2]
    }

    fn bytes(&self) -> u64 {
        self.qkv.bytes()
            + self.o.bytes()
            + self
                .qk_norm
                .as_ref()
                .map_or(0, |(a, b)| a.bytes() + b.bytes())
    }
}
