//! Building blocks shared by the GLM architectures: linear layers, RMSNorm, the SwiGLU MLP
//! and NeoX-style (half rotation) RoPE over the leading `rotary_dim` dims of each head.

use candle_core::{Device, Storage, Tensor};

use crate::batch::ModelError;
use crate::kernels;
use crate::kernels::WeightsRef;
use crate::weights::{Checkpoint, Matrix};

/// Below this many rows `kernels::matmul_w` wins for f32 weights: it streams each weight
/// row once per tile of rows with no packing, while candle's gemm packs the whole weight
/// matrix per call, which dominated decode steps (experts see a handful of rows each). From
/// here on (prefill) the packed gemm's compute efficiency pays for the packing.
pub const GEMM_MIN_ROWS: usize = 64;

/// The same for 16-bit weights, which must first be widened to an f32 copy for the gemm.
pub const GEMM_MIN_ROWS_HALF: usize = 256;

/// A linear layer's weight `[out, in]`: f32 as a candle tensor (for the prefill gemm), or
/// narrow (16-bit or FP8), widened on the fly.
#[derive(Debug)]
enum Weight {
    F32(Tensor),
    Narrow(Matrix),
}

/// `y = x W^T (+ b)` with `W` stored `[out, in]` on the CPU, in f32, bf16, f16 or FP8.
#[derive(Debug)]
pub struct Linear {
    weight: Weight,
    pub bias: Option<Vec<f32>>,
    pub in_dim: usize,
    pub out_dim: usize,
}

impl Linear {
    pub fn new(
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        in_dim: usize,
        out_dim: usize,
    ) -> Result<Self, ModelError> {
        Self::from_matrix(Matrix::F32(weight), bias, in_dim, out_dim)
    }

    pub fn from_matrix(
        weight: Matrix,
        bias: Option<Vec<f32>>,
        in_dim: usize,
        out_dim: usize,
    ) -> Result<Self, ModelError> {
        if weight.len() != in_dim * out_dim {
            return Err(ModelError::Compute(format!(
                "weight has {} values, expected {out_dim} x {in_dim}",
                weight.len()
            )));
        }
        if bias.as_ref().is_some_and(|b| b.len() != out_dim) {
            return Err(ModelError::Compute(format!(
                "bias length differs from {out_dim}"
            )));
        }
        let weight = match weight {
            Matrix::F32(w) => Weight::F32(Tensor::from_vec(w, (out_dim, in_dim), &Device::Cpu)?),
            narrow => Weight::Narrow(narrow),
        };
        Ok(Self {
            weight,
            bias,
            in_dim,
            out_dim,
        })
    }

    /// Loads `{prefix}.weight` (and `{prefix}.bias` when `bias`).
    pub fn load(
        ck: &Checkpoint,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Self, ModelError> {
        Self::load_fused(ck, &[(prefix, out_dim)], in_dim, bias)
    }

    /// Several projections of the same input as one layer: their output rows one after the
    /// other, in the order given (`(prefix, out_dim)` each). One pass over the input and one
    /// parallel region instead of several.
    pub fn load_fused(
        ck: &Checkpoint,
        parts: &[(&str, usize)],
        in_dim: usize,
        bias: bool,
    ) -> Result<Self, ModelError> {
        let mut weight: Option<Matrix> = None;
        let mut b: Vec<f32> = Vec::new();
        for &(prefix, out) in parts {
            let w = ck.matrix(&format!("{prefix}.weight"), &[out, in_dim])?;
            weight = Some(match weight {
                None => w,
                Some(acc) => acc.concat(w),
            });
            if bias {
                b.extend(ck.f32(&format!("{prefix}.bias"), &[out])?);
            }
        }
        let out_dim = parts.iter().map(|p| p.1).sum();
        let weight = weight.ok_or_else(|| ModelError::Compute("no projection to load".into()))?;
        Self::from_matrix(weight, bias.then_some(b), in_dim, out_dim)
    }

    /// `x` holds `rows` rows of `in_dim`; returns `rows` rows of `out_dim`.
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>, ModelError> {
        if x.len() != rows * self.in_dim {
            return Err(ModelError::Compute(format!(
                "linear input has {} values, expected {rows} x {}",
                x.len(),
                self.in_dim
            )));
        }
        let gemm = match &self.weight {
            Weight::F32(t) if rows >= GEMM_MIN_ROWS => Some(t.clone()),
            Weight::Narrow(w) if rows >= GEMM_MIN_ROWS_HALF => Some(Tensor::from_vec(
                w.to_f32(),
                (self.out_dim, self.in_dim),
                &Device::Cpu,
            )?),
            _ => None,
        };
        if let Some(w) = gemm {
            let xt = Tensor::from_slice(x, (rows, self.in_dim), &Device::Cpu)?;
            let mut y = xt.matmul(&w.t()?)?.flatten_all()?.to_vec1::<f32>()?;
            if let Some(b) = &self.bias {
                for row in y.chunks_exact_mut(self.out_dim) {
                    row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                }
            }
            return Ok(y);
        }
        let mut y = vec![0f32; rows * self.out_dim];
        let storage;
        let w = match &self.weight {
            Weight::F32(t) => {
                let (s, layout) = t.storage_and_layout();
                storage = s;
                match (&*storage, layout.contiguous_offsets()) {
                    (Storage::Cpu(cpu), Some((a, b))) => {
                        WeightsRef::F32(&cpu.as_slice::<f32>()?[a..b])
                    }
                    _ => {
                        return Err(ModelError::Compute(
                            "linear weight is not contiguous CPU f32".into(),
                        ))
                    }
                }
            }
            Weight::Narrow(w) => w.view(),
        };
        kernels::matmul_w(
            x,
            rows,
            w,
            self.in_dim,
            self.out_dim,
            self.bias.as_deref(),
            &mut y,
        );
        Ok(y)
    }

    /// Bytes of weight (at its storage width) and bias.
    pub fn bytes(&self) -> u64 {
        let weight = match &self.weight {
            Weight::F32(_) => 4 * self.in_dim * self.out_dim,
            Weight::Narrow(w) => w.bytes(),
        };
        (weight + 4 * self.bias.as_ref().map_or(0, Vec::len)) as u64
    }
}

#[derive(Debug)]
pub struct RmsNorm {
    pub weight: Vec<f32>,
    pub eps: f32,
}

impl RmsNorm {
    pub fn load(ck: &Checkpoint, name: &str, dim: usize, eps: f64) -> Result<Self, ModelError> {
        Ok(Self {
            weight: ck.f32(name, &[dim])?,
            eps: eps as f32,
        })
    }

    /// Normalises every `weight.len()`-sized row of `x` in place.
    pub fn apply(&self, x: &mut [f32]) {
        kernels::rms_norm_rows(x, self.weight.len(), &self.weight, self.eps);
    }

    pub fn bytes(&self) -> u64 {
        4 * self.weight.len() as u64
    }
}

/// SwiGLU MLP: `down(silu(gate(x)) * up(x))`. Used for dense layers, experts and shared
/// experts. `gate_proj` and `up_proj` are fused at load into one `[2 * inter, hidden]`
/// layer (gate rows first).
#[derive(Debug)]
pub struct Mlp {
    pub gate_up: Linear,
    pub down: Linear,
    pub inter: usize,
}

impl Mlp {
    pub fn load(
        ck: &Checkpoint,
        prefix: &str,
        hidden: usize,
        inter: usize,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            gate_up: Linear::load_fused(
                ck,
                &[
                    (&format!("{prefix}.gate_proj"), inter),
                    (&format!("{prefix}.up_proj"), inter),
                ],
                hidden,
                false,
            )?,
            down: Linear::load(ck, &format!("{prefix}.down_proj"), inter, hidden, false)?,
            inter,
        })
    }

    /// From separate gate and up weights (`[inter, hidden]` each, f32).
    pub fn from_parts(gate: Vec<f32>, up: Vec<f32>, down: Linear) -> Result<Self, ModelError> {
        let (inter, hidden) = (down.in_dim, down.out_dim);
        let mut w = gate;
        w.extend_from_slice(&up);
        Ok(Self {
            gate_up: Linear::new(w, None, hidden, 2 * inter)?,
            down,
            inter,
        })
    }

    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>, ModelError> {
        let gu = self.gate_up.forward(x, rows)?;
        let i = self.inter;
        let mut act = vec![0f32; rows * i];
        for (a, row) in act.chunks_exact_mut(i).zip(gu.chunks_exact(2 * i)) {
            let (g, u) = row.split_at(i);
            a.copy_from_slice(g);
            kernels::swiglu_in_place(a, u);
        }
        self.down.forward(&act, rows)
    }

    pub fn bytes(&self) -> u64 {
        self.gate_up.bytes() + self.down.bytes()
    }
}

/// NeoX-style rotary embedding on the first `rotary_dim` dims of each head.
#[derive(Debug, Clone)]
pub struct Rope {
    pub rotary_dim: usize,
    inv_freq: Vec<f32>,
}

impl Rope {
    pub fn new(rotary_dim: usize, theta: f64) -> Self {
        // As transformers: inv_freq = 1 / theta^(2i/d) evaluated in f32.
        let inv_freq = (0..rotary_dim / 2)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / rotary_dim as f32))
            .collect();
        Self {
            rotary_dim,
            inv_freq,
        }
    }

    /// `(cos, sin)` tables of `rotary_dim / 2` each for one position.
    pub fn cos_sin(&self, pos: usize) -> (Vec<f32>, Vec<f32>) {
        let p = pos as f32;
        self.inv_freq
            .iter()
            .map(|&f| {
                let a = p * f;
                (a.cos(), a.sin())
            })
            .unzip()
    }

    /// Rotates every head (`head_dim` wide) of one token row in place.
    pub fn apply(&self, row: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
        let half = self.rotary_dim / 2;
        for head in row.chunks_exact_mut(head_dim) {
            let (x1, rest) = head.split_at_mut(half);
            let x2 = &mut rest[..half];
            for i in 0..half {
                let (a, b) = (x1[i], x2[i]);
                x1[i] = a * cos[i] - b * sin[i];
                x2[i] = b * cos[i] + a * sin[i];
            }
        }
    }
}

#[cfg(test)]
#[path = "layers/tests.rs"]
mod tests;
