//! Multi-head latent attention of Glm4MoeLite on the tensor backends, in the absorbed form of
//! [`super::attention`]: queries are absorbed through `W_uk` per head (a batched matmul),
//! scores and values read only the latent store, `W_uv` is applied after attention.

use candle_core::{DType, Tensor};

use super::attention::LORA_NORM_EPS;
use super::config::Glm4MoeLiteConfig;
use crate::attention::AttnShape;
use crate::backend::tensor::ops::{tensor_bytes, TLinear, TNorm};
use crate::backend::tensor::paged::{attend, DeviceRows};
use crate::backend::tensor::{TensorAttention, TensorCtx, TensorStep};
use crate::batch::ModelError;
use crate::weights::Checkpoint;

#[derive(Debug)]
enum QueryProj {
    LowRank { a: TLinear, norm: TNorm, b: TLinear },
    Direct(TLinear),
}

#[derive(Debug)]
pub struct MlaAttention {
    q: QueryProj,
    kv_a: TLinear,
    kv_norm: TNorm,
    /// `[heads, nope, rank]`: `q_lat = q_nope W_uk`.
    w_uk: Tensor,
    /// `[heads, rank, v_dim]`: `v = ctx W_uv^T`.
    w_uv_t: Tensor,
    o: TLinear,
    heads: usize,
    nope: usize,
    rope: usize,
    v_dim: usize,
    rank: usize,
    interleave: bool,
    scale: f32,
}

impl MlaAttention {
    pub fn load(
        ck: &Checkpoint,
        p: &str,
        c: &Glm4MoeLiteConfig,
        ctx: &TensorCtx,
    ) -> Result<Self, ModelError> {
        let (hid, heads, rank) = (c.hidden_size, c.num_attention_heads, c.kv_lora_rank);
        let (nope, rope, v_dim) = (c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim);
        let qk = c.qk_head_dim();
        let bias = c.attention_bias;
        let q = match c.q_lora_rank {
            Some(qr) => QueryProj::LowRank {
                a: TLinear::load(ck, &format!("{p}.q_a_proj"), hid, qr, bias, ctx)?,
                norm: TNorm::load(
                    ck,
                    &format!("{p}.q_a_layernorm.weight"),
                    qr,
                    LORA_NORM_EPS,
                    &ctx.device,
                )?,
                b: TLinear::load(ck, &format!("{p}.q_b_proj"), qr, heads * qk, false, ctx)?,
            },
            None => QueryProj::Direct(TLinear::load(
                ck,
                &format!("{p}.q_proj"),
                hid,
                heads * qk,
                false,
                ctx,
            )?),
        };
        // kv_b_proj rows per head: `nope` rows of W_uk then `v_dim` rows of W_uv.
        let kv_b = ck
            .tensor(
                &format!("{p}.kv_b_proj.weight"),
                &[heads * (nope + v_dim), rank],
                &ctx.device,
                DType::F32,
            )?
            .reshape((heads, nope + v_dim, rank))?;
        Ok(Self {
            q,
            kv_a: TLinear::load(
                ck,
                &format!("{p}.kv_a_proj_with_mqa"),
                hid,
                rank + rope,
                bias,
                ctx,
            )?,
            kv_norm: TNorm::load(
                ck,
                &format!("{p}.kv_a_layernorm.weight"),
                rank,
                LORA_NORM_EPS,
                &ctx.device,
            )?,
            w_uk: kv_b.narrow(1, 0, nope)?.contiguous()?,
            w_uv_t: kv_b.narrow(1, nope, v_dim)?.transpose(1, 2)?.contiguous()?,
            o: TLinear::load(ck, &format!("{p}.o_proj"), heads * v_dim, hid, bias, ctx)?,
            heads,
            nope,
            rope,
            v_dim,
            rank,
            interleave: c.rope_interleave,
            // No YaRN mscale: config parsing refuses rope scaling.
            scale: (qk as f32).powf(-0.5),
        })
    }
}

impl TensorAttention for MlaAttention {
    fn forward(
        &self,
        h: &Tensor,
        step: &TensorStep<'_>,
        stores: &mut [DeviceRows],
    ) -> Result<Tensor, ModelError> {
        let n = step.rows().len();
        let (heads, qk) = (self.heads, self.nope + self.rope);
        let q = match &self.q {
            QueryProj::LowRank { a, norm, b } => b.forward(&norm.forward(&a.forward(h)?)?)?,
            QueryProj::Direct(l) => l.forward(h)?,
        }
        .reshape((n, heads, qk))?;
        let q_pe = step
            .rope
            .apply(&q.narrow(2, self.nope, self.rope)?, self.interleave)?;
        let latent = self.kv_a.forward(h)?;
        let c_kv = self.kv_norm.forward(&latent.narrow(1, 0, self.rank)?)?;
        let k_pe = step.rope.apply(
            &latent
                .narrow(1, self.rank, self.rope)?
                .reshape((n, 1, self.rope))?,
            self.interleave,
        )?;
        let latent = Tensor::cat(&[c_kv, k_pe.reshape((n, self.rope))?], 1)?;
        let [store] = stores else {
            return Err(ModelError::Cache("MLA needs one latent store".into()));
        };
        store.write(step.meta, &latent)?;
        // q_lat[h] = q_nope[h] W_uk[h]: [heads, n, nope] x [heads, nope, rank].
        let q_nope = q.narrow(2, 0, self.nope)?.transpose(0, 1)?.contiguous()?;
        let q_lat = q_nope.matmul(&self.w_uk)?.transpose(0, 1)?;
        let q_abs = Tensor::cat(&[q_lat, q_pe], 2)?.contiguous()?;
        let width = self.rank + self.rope;
        let shape = AttnShape::latent(heads, width, self.rank, self.scale);
        let ctx = attend(&q_abs, store, store, step.meta, &shape, step.ctx.kernels)?;
        // v[h] = ctx[h] W_uv[h]^T: [heads, n, rank] x [heads, rank, v_dim].
        let v = ctx
            .transpose(0, 1)?
            .contiguous()?
            .matmul(&self.w_uv_t)?
            .transpose(0, 1)?
            .reshape((n, heads * self.v_dim))?;
        self.o.forward(&v)
    }

    fn store_widths(&self) -> Vec<usize> {
        vec![self.rank + self.rope]
    }

    fn bytes(&self) -> u64 {
        let q = match &self.q {
            QueryProj::LowRank { a, norm, b } => a.bytes() + norm.bytes() + b.bytes(),
            QueryProj::Direct(l) => l.bytes(),
        };
        q + self.kv_a.bytes()
            + self.kv_norm.bytes()
            + tensor_bytes(&self.w_uk)
            + tensor_bytes(&self.w_uv_t)
            + self.o.bytes()
    }
}
