//! Building blocks shared by the GLM architectures: linear layers, RMSNorm, the SwiGLU MLP
//! and NeoX-style (half rotation) RoPE over the leading `rotary_dim` dims of each head.

use candle_core::{Device, Storage, Tensor};

use crate::batch::ModelError;
use crate::kernels;
use crate::weights::Checkpoint;

/// Below this many rows `kernels::matmul_t` wins: it streams each weight row once per tile
/// of rows with no packing, while candle's gemm packs the whole weight matrix per call, which
/// dominated decode steps (experts see a handful of rows each). From here on (prefill) the
/// packed gemm's compute efficiency pays for the packing.
pub const GEMM_MIN_ROWS: usize = 64;

/// `y = x W^T (+ b)` with `W` stored `[out, in]` in f32 on the CPU.
#[derive(Debug)]
pub struct Linear {
    weight: Tensor,
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
        let weight = Tensor::from_vec(weight, (out_dim, in_dim), &Device::Cpu)?;
        if bias.as_ref().is_some_and(|b| b.len() != out_dim) {
            return Err(ModelError::Compute(format!(
                "bias length differs from {out_dim}"
            )));
        }
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
        let weight = ck.f32(&format!("{prefix}.weight"), &[out_dim, in_dim])?;
        let bias = if bias {
            Some(ck.f32(&format!("{prefix}.bias"), &[out_dim])?)
        } else {
            None
        };
        Self::new(weight, bias, in_dim, out_dim)
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
        if rows >= GEMM_MIN_ROWS {
            let xt = Tensor::from_slice(x, (rows, self.in_dim), &Device::Cpu)?;
            let mut y = xt
                .matmul(&self.weight.t()?)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            if let Some(b) = &self.bias {
                for row in y.chunks_exact_mut(self.out_dim) {
                    row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                }
            }
            return Ok(y);
        }
        let mut y = vec![0f32; rows * self.out_dim];
        let (storage, layout) = self.weight.storage_and_layout();
        let w = match (&*storage, layout.contiguous_offsets()) {
            (Storage::Cpu(cpu), Some((a, b))) => &cpu.as_slice::<f32>()?[a..b],
            _ => {
                return Err(ModelError::Compute(
                    "linear weight is not contiguous CPU f32".into(),
                ))
            }
        };
        kernels::matmul_t(
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

    pub fn bytes(&self) -> u64 {
        4 * (self.in_dim * self.out_dim + self.bias.as_ref().map_or(0, Vec::len)) as u64
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
/// experts.
#[derive(Debug)]
pub struct Mlp {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Mlp {
    pub fn load(
        ck: &Checkpoint,
        prefix: &str,
        hidden: usize,
        inter: usize,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            gate: Linear::load(ck, &format!("{prefix}.gate_proj"), hidden, inter, false)?,
            up: Linear::load(ck, &format!("{prefix}.up_proj"), hidden, inter, false)?,
            down: Linear::load(ck, &format!("{prefix}.down_proj"), inter, hidden, false)?,
        })
    }

    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>, ModelError> {
        let mut g = self.gate.forward(x, rows)?;
        let u = self.up.forward(x, rows)?;
        kernels::swiglu_in_place(&mut g, &u);
        self.down.forward(&g, rows)
    }

    pub fn bytes(&self) -> u64 {
        self.gate.bytes() + self.up.bytes() + self.down.bytes()
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
