//! A weight matrix as the CPU kernels hold it: f32, bf16/f16 bits, or FP8 bytes with their
//! block scales.

use half::{bf16, f16};
use rayon::prelude::*;

use super::{WeightDtype, FP8_BLOCK};
use crate::kernels::{fp8, Fp8Ref, WeightsRef};

/// A weight matrix in the type it is computed from. Values are the raw bits for 16-bit and
/// 8-bit types.
#[derive(Debug, Clone, PartialEq)]
pub enum Matrix {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
    F16(Vec<u16>),
    /// float8 e4m3 with f32 scales, as [`Fp8Ref`] describes (`scales` are prescaled).
    Fp8 {
        bits: Vec<u8>,
        scales: Vec<f32>,
        scale_cols: usize,
        block: usize,
    },
}

impl Matrix {
    pub fn len(&self) -> usize {
        self.view().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the matrix occupies (FP8 scales included).
    pub fn bytes(&self) -> usize {
        match self {
            Matrix::F32(v) => 4 * v.len(),
            Matrix::Bf16(v) | Matrix::F16(v) => 2 * v.len(),
            Matrix::Fp8 { bits, scales, .. } => bits.len() + 4 * scales.len(),
        }
    }

    /// The matrix as the kernels take it.
    pub fn view(&self) -> WeightsRef<'_> {
        match self {
            Matrix::F32(v) => WeightsRef::F32(v),
            Matrix::Bf16(v) => WeightsRef::Bf16(v),
            Matrix::F16(v) => WeightsRef::F16(v),
            Matrix::Fp8 {
                bits,
                scales,
                scale_cols,
                block,
            } => WeightsRef::Fp8(Fp8Ref {
                bits,
                scales,
                scale_cols: *scale_cols,
                block: *block,
            }),
        }
    }

    /// Values widened to f32 (exact for every type; FP8 values times their scale rounded
    /// once, as PyTorch's `fp8.float() * scale`).
    pub fn to_f32(&self) -> Vec<f32> {
        match self.view() {
            WeightsRef::F32(v) => v.to_vec(),
            WeightsRef::Bf16(v) => v
                .par_iter()
                .map(|&b| f32::from_bits(u32::from(b) << 16))
                .collect(),
            WeightsRef::F16(v) => v.par_iter().map(|&b| f16::from_bits(b).to_f32()).collect(),
            WeightsRef::Fp8(f) => f.to_f32(),
        }
    }

    /// f32 `values` of a `shape` weight in the type `dtype` asks for: `Auto` and `F32` keep
    /// f32, 16-bit types round to nearest even, `Fp8` quantizes with 128 x 128 block scales.
    pub fn from_f32(values: Vec<f32>, dtype: WeightDtype, shape: &[usize]) -> Result<Self, String> {
        Ok(match dtype {
            WeightDtype::Auto | WeightDtype::F32 => Matrix::F32(values),
            WeightDtype::Bf16 => Matrix::Bf16(
                values
                    .par_iter()
                    .map(|&v| bf16::from_f32(v).to_bits())
                    .collect(),
            ),
            WeightDtype::F16 => Matrix::F16(
                values
                    .par_iter()
                    .map(|&v| f16::from_f32(v).to_bits())
                    .collect(),
            ),
            WeightDtype::Fp8 => {
                let &[out, in_dim] = shape else {
                    return Err("fp8 is supported for 2-D weights only".into());
                };
                let (bits, scales) = fp8::quantize_blocks(&values, out, in_dim, FP8_BLOCK);
                Matrix::Fp8 {
                    bits,
                    scales,
                    scale_cols: in_dim.div_ceil(FP8_BLOCK),
                    block: FP8_BLOCK.min(in_dim),
                }
            }
        })
    }

    /// Appends `other`'s rows after this matrix's (fused projections). Both must share a
    /// type; mixed types are widened to f32.
    pub fn concat(self, other: Matrix) -> Matrix {
        match (self, other) {
            (Matrix::F32(mut a), Matrix::F32(b)) => {
                a.extend_from_slice(&b);
                Matrix::F32(a)
            }
            (Matrix::Bf16(mut a), Matrix::Bf16(b)) => {
                a.extend_from_slice(&b);
                Matrix::Bf16(a)
            }
            (Matrix::F16(mut a), Matrix::F16(b)) => {
                a.extend_from_slice(&b);
                Matrix::F16(a)
            }
            (
                Matrix::Fp8 {
                    bits: mut a,
                    scales: mut sa,
                    scale_cols,
                    block,
                },
                Matrix::Fp8 {
                    bits: b,
                    scales: sb,
                    scale_cols: cb,
                    block: bb,
                },
            ) if scale_cols == cb && block == bb => {
                a.extend_from_slice(&b);
                sa.extend_from_slice(&sb);
                Matrix::Fp8 {
                    bits: a,
                    scales: sa,
                    scale_cols,
                    block,
                }
            }
            (a, b) => {
                let mut v = a.to_f32();
                v.extend_from_slice(&b.to_f32());
                Matrix::F32(v)
            }
        }
    }
}
