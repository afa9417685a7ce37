//! f32 CPU kernels on plain slices. Decode is memory bound, so the matrix-vector path reads
//! each weight row once for all rows of the batch and splits output rows across threads;
//! weights may be bf16/f16/fp8 (`matmul_w`), widened to f32 on the fly.

/// `a . b` on the CPU's widest vectors ([`isa::selected`]).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    isa::selected_arch().dispatch(Dot(a, b))
}

struct Dot<'a>(&'a [f32], &'a [f32]);

impl pulp::WithSimd for Dot<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> f32 {
        vector::dot(simd, self.0, self.1)
    }
}

pub mod fp8;
pub mod isa;
mod matmul;
pub mod vector;
pub use fp8::Fp8Ref;
pub use isa::Isa;
pub use matmul::{matmul_t, matmul_w, WeightsRef};

/// RMSNorm over each `dim`-sized row in place: `w * x / sqrt(mean(x^2) + eps)`.
pub fn rms_norm_rows(x: &mut [f32], dim: usize, weight: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(dim) {
        let ms = dot(row, row) / dim as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = w * (*v * inv);
        }
    }
}

#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `gate[i] = silu(gate[i]) * up[i]`.
pub fn swiglu_in_place(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * u;
    }
}

/// Numerically stable softmax in place.
pub fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// `y += a * x`, on the CPU's widest vectors.
#[inline]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    isa::selected_arch().dispatch(Axpy(y, a, x))
}

struct Axpy<'a>(&'a mut [f32], f32, &'a [f32]);

impl pulp::WithSimd for Axpy<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        vector::axpy(simd, self.0, self.1, self.2)
    }
}

#[cfg(test)]
#[path = "kernels/tests.rs"]
mod tests;
