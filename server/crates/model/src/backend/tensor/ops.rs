//! Device-generic layers on candle tensors: linear, RMSNorm, RoPE, SwiGLU MLP. Activations
//! between layers are f32; matrix products run in the weights' type (bf16 on GPUs, f32 on the
//! CPU reference) and come back as f32, as vLLM's mixed precision does.

use candle_core::{DType, Device, Tensor, D};

use super::TensorCtx;
use crate::batch::ModelError;
use crate::weights::Checkpoint;

/// `y = x W^T (+ b)`, `W` `[out, in]` in the context's weight type.
#[derive(Debug)]
pub struct TLinear {
    pub w: Tensor,
    pub b: Option<Tensor>,
}

impl TLinear {
    /// Several projections of the same input fused as one `[sum(out), in]` matrix, in order.
    pub fn load_fused(
        ck: &Checkpoint,
        parts: &[(&str, usize)],
        in_dim: usize,
        bias: bool,
        ctx: &TensorCtx,
    ) -> Result<Self, ModelError> {
        let mut ws = Vec::with_capacity(parts.len());
        let mut bs = Vec::new();
        for &(p, out) in parts {
            ws.push(ck.tensor(
                &format!("{p}.weight"),
                &[out, in_dim],
                &ctx.device,
                ctx.dtype,
            )?);
            if bias {
                bs.push(ck.tensor(&format!("{p}.bias"), &[out], &ctx.device, DType::F32)?);
            }
        }
        let cat = |v: Vec<Tensor>| -> Result<Tensor, ModelError> {
            Ok(if v.len() == 1 {
                v.into_iter()
                    .next()
                    .ok_or_else(|| ModelError::Compute("empty".into()))?
            } else {
                Tensor::cat(&v, 0)?
            })
        };
        Ok(Self {
            w: cat(ws)?,
            b: if bias { Some(cat(bs)?) } else { None },
        })
    }

    pub fn load(
        ck: &Checkpoint,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        ctx: &TensorCtx,
    ) -> Result<Self, ModelError> {
        Self::load_fused(ck, &[(prefix, out_dim)], in_dim, bias, ctx)
    }

    /// `x`: `[rows, in]` f32; returns `[rows, out]` f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let y = x
            .to_dtype(self.w.dtype())?
            .matmul(&self.w.t()?)?
            .to_dtype(DType::F32)?;
        Ok(match &self.b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    pub fn bytes(&self) -> u64 {
        tensor_bytes(&self.w) + self.b.as_ref().map_or(0, tensor_bytes)
    }
}

pub fn tensor_bytes(t: &Tensor) -> u64 {
    (t.elem_count() * t.dtype().size_in_bytes()) as u64
}

/// RMSNorm over the last dimension, in f32.
#[derive(Debug)]
pub struct TNorm {
    pub w: Tensor,
    pub eps: f64,
}

impl TNorm {
    pub fn load(
        ck: &Checkpoint,
        name: &str,
        dim: usize,
        eps: f64,
        device: &Device,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            w: ck.tensor(name, &[dim], device, DType::F32)?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (ms + self.eps)?.sqrt()?.recip()?;
        Ok(x.broadcast_mul(&inv)?.broadcast_mul(&self.w)?)
    }

    pub fn bytes(&self) -> u64 {
        tensor_bytes(&self.w)
    }
}

/// RoPE tables of one step: `[rows, 1, half]` cos and sin.
#[derive(Debug)]
pub struct RopeTables {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl RopeTables {
    /// Rotates the first `2 * half` dims of each head of `x` (`[rows, heads, head_dim]`).
    /// NeoX pairs `(i, i + half)`; interleaved pairs `(2i, 2i + 1)` written back
    /// de-interleaved (evens then odds), as transformers' `apply_rotary_pos_emb_interleave`.
    pub fn apply(&self, x: &Tensor, interleave: bool) -> Result<Tensor, ModelError> {
        let (rows, heads, hd) = x.dims3()?;
        let half = self.cos.dim(D::Minus1)?;
        let rot = x.narrow(2, 0, 2 * half)?;
        let (a, b) = if interleave {
            let pairs = rot.reshape((rows, heads, half, 2))?;
            (
                pairs.narrow(3, 0, 1)?.squeeze(3)?,
                pairs.narrow(3, 1, 1)?.squeeze(3)?,
            )
        } else {
            (rot.narrow(2, 0, half)?, rot.narrow(2, half, half)?)
        };
        let o1 = (a.broadcast_mul(&self.cos)? - b.broadcast_mul(&self.sin)?)?;
        let o2 = (b.broadcast_mul(&self.cos)? + a.broadcast_mul(&self.sin)?)?;
        let mut parts = vec![o1, o2];
        if hd > 2 * half {
            parts.push(x.narrow(2, 2 * half, hd - 2 * half)?);
        }
        Ok(Tensor::cat(&parts, 2)?)
    }
}

/// SwiGLU MLP with gate and up fused: `down(silu(gate(x)) * up(x))`.
#[derive(Debug)]
pub struct TMlp {
    pub gate_up: TLinear,
    pub down: TLinear,
    pub inter: usize,
}

impl TMlp {
    pub fn load(
        ck: &Checkpoint,
        prefix: &str,
        hidden: usize,
        inter: usize,
        ctx: &TensorCtx,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            gate_up: TLinear::load_fused(
                ck,
                &[
                    (&format!("{prefix}.gate_proj"), inter),
                    (&format!("{prefix}.up_proj"), inter),
                ],
                hidden,
                false,
                ctx,
            )?,
            down: TLinear::load(
                ck,
                &format!("{prefix}.down_proj"),
                inter,
                hidden,
                false,
                ctx,
            )?,
            inter,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let gu = self.gate_up.forward(x)?;
        let g = gu.narrow(1, 0, self.inter)?;
        let u = gu.narrow(1, self.inter, self.inter)?;
        let act = (g.silu()? * u)?;
        self.down.forward(&act)
    }

    pub fn bytes(&self) -> u64 {
        self.gate_up.bytes() + self.down.bytes()
    }
}
