//! f32 CPU kernels on plain slices. Decode is memory bound, so the matrix-vector path reads
//! each weight row once for all rows of the batch and splits output rows across threads.

use rayon::prelude::*;

/// Width of the accumulator arrays; LLVM turns them into SIMD registers.
const LANES: usize = 16;

/// Dot product with independent accumulators (vectorisable, no FP-order dependency chain).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    let mut lanes = acc;
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            lanes[i] += lanes[i + w];
        }
        w /= 2;
    }
    lanes[0] + s
}

/// Four dot products of one weight row against four input rows, reading the weight once.
#[inline]
fn dot4(w: &[f32], x: [&[f32]; 4]) -> [f32; 4] {
    const L: usize = 8;
    let n = w.len();
    let mut acc = [[0f32; L]; 4];
    let full = n - n % L;
    let mut i = 0;
    while i < full {
        let wc = &w[i..i + L];
        for r in 0..4 {
            let xc = &x[r][i..i + L];
            for l in 0..L {
                acc[r][l] += wc[l] * xc[l];
            }
        }
        i += L;
    }
    let mut out = [0f32; 4];
    for r in 0..4 {
        let mut s: f32 = acc[r].iter().sum();
        for j in full..n {
            s += w[j] * x[r][j];
        }
        out[r] = s;
    }
    out
}

/// `y[r, o] = x[r, :] . w[o, :] + bias[o]` for `rows` rows; `w` is `[out, in]` row-major.
/// Work is split over output rows so that every weight row is read once per call.
pub fn matmul_t(
    x: &[f32],
    rows: usize,
    w: &[f32],
    in_dim: usize,
    out_dim: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    debug_assert_eq!(x.len(), rows * in_dim);
    debug_assert_eq!(w.len(), out_dim * in_dim);
    debug_assert_eq!(y.len(), rows * out_dim);
    if rows == 0 || out_dim == 0 {
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    // Enough chunks to balance threads, each big enough to amortise task overhead.
    let chunk = (out_dim / (threads * 4)).clamp(8, 1024).min(out_dim);
    if rows == 1 {
        y.par_chunks_mut(chunk).enumerate().for_each(|(ci, yc)| {
            let o0 = ci * chunk;
            for (j, yo) in yc.iter_mut().enumerate() {
                let o = o0 + j;
                *yo = dot(&w[o * in_dim..(o + 1) * in_dim], x) + bias.map_or(0.0, |b| b[o]);
            }
        });
        return;
    }
    // Transposed result [out, rows] so each task writes one contiguous block.
    let mut yt = vec![0f32; out_dim * rows];
    yt.par_chunks_mut(chunk * rows)
        .enumerate()
        .for_each(|(ci, yc)| {
            let o0 = ci * chunk;
            for (j, yo) in yc.chunks_mut(rows).enumerate() {
                let o = o0 + j;
                let wr = &w[o * in_dim..(o + 1) * in_dim];
                let b = bias.map_or(0.0, |b| b[o]);
                let mut r = 0;
                while r + 4 <= rows {
                    let xr = |k: usize| &x[(r + k) * in_dim..(r + k + 1) * in_dim];
                    let d = dot4(wr, [xr(0), xr(1), xr(2), xr(3)]);
                    for k in 0..4 {
                        yo[r + k] = d[k] + b;
                    }
                    r += 4;
                }
                while r < rows {
                    yo[r] = dot(wr, &x[r * in_dim..(r + 1) * in_dim]) + b;
                    r += 1;
                }
            }
        });
    for o in 0..out_dim {
        for r in 0..rows {
            y[r * out_dim + o] = yt[o * rows + r];
        }
    }
}

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

/// `y += a * x`.
#[inline]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

#[cfg(test)]
#[path = "kernels/tests.rs"]
mod tests;
