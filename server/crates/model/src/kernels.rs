//! f32 CPU kernels on plain slices. Decode is memory bound, so the matrix-vector path reads
//! each weight row once for all rows of the batch and splits output rows across threads.

use rayon::prelude::*;

/// Width of the accumulator arrays; LLVM turns them into SIMD registers.
const LANES: usize = 16;

/// Dot product with independent accumulators (vectorisable, no FP-order dependency chain).
#[inline(always)]
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

/// Rows of `x` processed together against one weight row: their slices stay in L1/L2 while
/// the weight streams from memory once per tile.
const ROW_TILE: usize = 32;

/// `y[r, o] = x[r, :] . w[o, :] + bias[o]` for `rows` rows; `w` is `[out, in]` row-major.
/// Work is split over output rows so that every weight row is read once per tile of
/// `ROW_TILE` input rows. The inner loops use `pulp`'s runtime AVX2+FMA / AVX-512 dispatch:
/// the crate is built for baseline x86-64, where plain code would only get SSE2.
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
    if rows == 0 || out_dim == 0 || in_dim == 0 {
        y.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = bias.map_or(0.0, |b| b[i % out_dim.max(1)]));
        return;
    }
    let arch = pulp::Arch::new();
    let threads = rayon::current_num_threads().max(1);
    // Enough chunks to balance threads, each big enough to amortise task overhead.
    let chunk = (out_dim / (threads * 4)).clamp(8, 1024).min(out_dim);
    if rows == 1 {
        // Memory bound: one pass over the weights, written straight into `y`.
        y.par_chunks_mut(chunk).enumerate().for_each(|(ci, yc)| {
            arch.dispatch(Chunk {
                x,
                rows,
                w,
                in_dim,
                bias,
                o0: ci * chunk,
                yc,
            })
        });
        return;
    }
    // Transposed result [out, rows] so each task writes one contiguous block.
    let mut yt = vec![0f32; out_dim * rows];
    yt.par_chunks_mut(chunk * rows)
        .enumerate()
        .for_each(|(ci, yc)| {
            arch.dispatch(Chunk {
                x,
                rows,
                w,
                in_dim,
                bias,
                o0: ci * chunk,
                yc,
            })
        });
    for (r, yr) in y.chunks_exact_mut(out_dim).enumerate() {
        for (o, v) in yr.iter_mut().enumerate() {
            *v = yt[o * rows + r];
        }
    }
}

/// One task of `matmul_t`: output rows `o0..o0 + yc.len() / rows`, written `[out, rows]`.
struct Chunk<'a> {
    x: &'a [f32],
    rows: usize,
    w: &'a [f32],
    in_dim: usize,
    bias: Option<&'a [f32]>,
    o0: usize,
    yc: &'a mut [f32],
}

impl pulp::WithSimd for Chunk<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Chunk {
            x,
            rows,
            w,
            in_dim,
            bias,
            o0,
            yc,
        } = self;
        let n_out = yc.len() / rows;
        let wrow = |j: usize| &w[(o0 + j) * in_dim..(o0 + j + 1) * in_dim];
        let xrow = |r: usize| &x[r * in_dim..(r + 1) * in_dim];
        // The weight rows after `j..j + 2` (empty past the end of the matrix).
        let ahead = |j: usize| {
            let a = ((o0 + j + 2) * in_dim).min(w.len());
            let b = ((o0 + j + 4) * in_dim).min(w.len());
            &w[a..b]
        };
        let mut t0 = 0;
        while t0 < rows {
            let t1 = (t0 + ROW_TILE).min(rows);
            let mut j = 0;
            while j < n_out {
                // Two weight rows at a time when possible: 8 independent FMA chains. The
                // passes over them prefetch the next two, so that memory keeps streaming
                // while later row blocks compute from cache.
                let pair = j + 1 < n_out;
                let next = ahead(j);
                let passes = (t1 - t0).div_ceil(4);
                let mut r = t0;
                while r < t1 {
                    // Each pass over the pair prefetches its share of the next pair.
                    let k = (r - t0) / 4;
                    let pf = &next[(k * next.len() / passes).min(next.len())
                        ..((k + 1) * next.len() / passes).min(next.len())];
                    let quad = r + 4 <= t1;
                    match (pair, quad) {
                        (true, true) => {
                            let d = dots::<S, 2, 4>(
                                simd,
                                [wrow(j), wrow(j + 1)],
                                [xrow(r), xrow(r + 1), xrow(r + 2), xrow(r + 3)],
                                pf,
                            );
                            for (a, dr) in d.iter().enumerate() {
                                yc[(j + a) * rows + r..(j + a) * rows + r + 4].copy_from_slice(dr);
                            }
                            r += 4;
                        }
                        (true, false) => {
                            let d = dots::<S, 2, 1>(simd, [wrow(j), wrow(j + 1)], [xrow(r)], pf);
                            yc[j * rows + r] = d[0][0];
                            yc[(j + 1) * rows + r] = d[1][0];
                            r += 1;
                        }
                        (false, true) => {
                            let d = dots::<S, 1, 4>(
                                simd,
                                [wrow(j)],
                                [xrow(r), xrow(r + 1), xrow(r + 2), xrow(r + 3)],
                                pf,
                            );
                            yc[j * rows + r..j * rows + r + 4].copy_from_slice(&d[0]);
                            r += 4;
                        }
                        (false, false) => {
                            yc[j * rows + r] =
                                dots::<S, 1, 1>(simd, [wrow(j)], [xrow(r)], pf)[0][0];
                            r += 1;
                        }
                    }
                }
                j += if pair { 2 } else { 1 };
            }
            t0 = t1;
        }
        if let Some(b) = bias {
            for (j, yo) in yc.chunks_exact_mut(rows).enumerate() {
                yo.iter_mut().for_each(|v| *v += b[o0 + j]);
            }
        }
    }
}

/// `W x R` dot products (each weight row against each input row) in one pass over the
/// vectors, with `W * R` independent SIMD accumulators. `pf` (the next weight rows, or empty)
/// is prefetched into L2 along the way, a cache line per 64 bytes of a weight row.
#[inline(always)]
fn dots<S: pulp::Simd, const W: usize, const R: usize>(
    simd: S,
    w: [&[f32]; W],
    x: [&[f32]; R],
    pf: &[f32],
) -> [[f32; R]; W] {
    let ws = w.map(|s| S::as_simd_f32s(s));
    let xs = x.map(|s| S::as_simd_f32s(s));
    let n = ws[0].0.len();
    // Floats of `pf` to cover per vector step so that it is done when the rows are.
    let pf_step = pf.len().div_ceil(n.max(1)).next_multiple_of(16);
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; R]; W];
    let mut p = 0;
    for i in 0..n {
        if p < pf.len() {
            let end = (p + pf_step).min(pf.len());
            while p < end {
                prefetch::l2(&pf[p]);
                p += 16;
            }
        }
        let xv: [S::f32s; R] = core::array::from_fn(|b| xs[b].0[i]);
        for a in 0..W {
            let wv = ws[a].0[i];
            for b in 0..R {
                acc[a][b] = simd.mul_add_f32s(wv, xv[b], acc[a][b]);
            }
        }
    }
    let mut out = [[0f32; R]; W];
    for a in 0..W {
        for b in 0..R {
            let mut s = simd.reduce_sum_f32s(acc[a][b]);
            for (p, q) in ws[a].1.iter().zip(xs[b].1) {
                s += p * q;
            }
            out[a][b] = s;
        }
    }
    out
}

/// Software prefetch: the hardware prefetchers alone leave DRAM idle while a weight row that
/// is already in cache is multiplied with several input rows.
mod prefetch {
    /// Hints that the cache line holding `v` will be read soon (into L2). A hint only: it
    /// never faults and has no effect on results.
    #[inline(always)]
    pub fn l2(v: &f32) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetch is a hint that cannot fault, and the pointer comes from a live
        // reference.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T1 }>(
                (v as *const f32).cast::<i8>(),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = v;
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
