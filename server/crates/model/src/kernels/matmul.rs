//! `y = x W^T + b` for the CPU, with `W` in f32, bf16, f16 or fp8 (e4m3 with block scales).
//!
//! Work is split over output rows so that every weight row is read once per tile of
//! `ROW_TILE` input rows, with the next weight rows prefetched while the current ones are
//! multiplied. Narrow weight rows are widened to f32 (exactly) into a small buffer in L1 and
//! then used for every input row of the tile, so decode reads a half or a quarter of the
//! bytes for the same arithmetic; with a few input rows they are widened in registers
//! instead. The inner loops use `pulp`'s runtime AVX2+FMA / AVX-512 dispatch ([`Isa`]): the
//! crate is built for baseline x86-64, where plain code would only get SSE2.

use rayon::prelude::*;

use super::fp8::Fp8Ref;
use super::isa;

mod dots;
mod prefetch;
mod widen;

use dots::{dots, dots_direct};
use widen::{AsBf16, AsF16, AsF32, AsFp8, Direct, Widen};

/// Rows of `x` processed together against one weight row: their slices stay in L1/L2 while
/// the weight streams from memory once per tile.
const ROW_TILE: usize = 32;

/// Below this many multiply-adds a product runs on the calling thread: waking the pool
/// costs more than it saves (the MoE router, tiny test models).
const PAR_MIN_MACS: usize = 1 << 16;

/// How far ahead of the rows being multiplied the next ones are prefetched, at least: about
/// DRAM latency times bandwidth, with margin. Two rows ahead is enough for 4 KiB f32 rows but
/// not for 1 KiB fp8 ones (`kernel_bench fp8` streamed 14 GB/s with two rows, 20 GB/s with
/// this).
const PF_AHEAD_BYTES: usize = 8 << 10;

/// Up to this many input rows, bf16 weights are widened in registers as they stream (each
/// row pass widens again); beyond, once per tile into an L1 buffer.
const DIRECT_MAX_ROWS: usize = 4;

/// A weight matrix `[out, in]`, row-major, in its storage type (16-bit types as raw bits).
#[derive(Debug, Clone, Copy)]
pub enum WeightsRef<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u16]),
    F16(&'a [u16]),
    Fp8(Fp8Ref<'a>),
}

impl WeightsRef<'_> {
    pub fn len(&self) -> usize {
        match self {
            WeightsRef::F32(w) => w.len(),
            WeightsRef::Bf16(w) | WeightsRef::F16(w) => w.len(),
            WeightsRef::Fp8(w) => w.bits.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `y[r, o] = x[r, :] . w[o, :] + bias[o]` for `rows` rows of f32 weights.
pub fn matmul_t(
    x: &[f32],
    rows: usize,
    w: &[f32],
    in_dim: usize,
    out_dim: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    matmul_w(x, rows, WeightsRef::F32(w), in_dim, out_dim, bias, y)
}

/// `y[r, o] = x[r, :] . w[o, :] + bias[o]` for `rows` rows; `w` is `[out, in]` row-major in
/// any [`WeightsRef`] type, accumulated in f32, on the instruction set [`isa::selected`].
pub fn matmul_w(
    x: &[f32],
    rows: usize,
    w: WeightsRef<'_>,
    in_dim: usize,
    out_dim: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    matmul_on(isa::selected_arch(), x, rows, w, in_dim, out_dim, bias, y)
}

/// [`matmul_w`] on the given instruction set (tests compare every path).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_on(
    arch: pulp::Arch,
    x: &[f32],
    rows: usize,
    w: WeightsRef<'_>,
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
    let serial = rows * in_dim * out_dim < PAR_MIN_MACS;
    let threads = rayon::current_num_threads().max(1);
    // Enough chunks to balance threads, each big enough to amortise task overhead.
    let chunk = if serial {
        out_dim
    } else {
        (out_dim / (threads * 4)).clamp(8, 1024).min(out_dim)
    };
    let task = |ci: usize, yc: &mut [f32]| {
        arch.dispatch(Chunk {
            x,
            rows,
            w,
            in_dim,
            bias,
            o0: ci * chunk,
            yc,
        })
    };
    // One task runs here: handing it to the pool would only add a thread handoff.
    let run_all = |out: &mut [f32]| {
        if serial {
            task(0, out)
        } else {
            out.par_chunks_mut(chunk * rows)
                .enumerate()
                .for_each(|(ci, yc)| task(ci, yc))
        }
    };
    if rows == 1 {
        // Written straight into `y` (one row is its own transpose).
        run_all(y);
        return;
    }
    // Transposed result [out, rows] so each task writes one contiguous block.
    let mut yt = vec![0f32; out_dim * rows];
    run_all(&mut yt);
    for (r, yr) in y.chunks_exact_mut(out_dim).enumerate() {
        for (o, v) in yr.iter_mut().enumerate() {
            *v = yt[o * rows + r];
        }
    }
}

/// One task of `matmul_w`: output rows `o0..o0 + yc.len() / rows`, written `[out, rows]`.
struct Chunk<'a> {
    x: &'a [f32],
    rows: usize,
    w: WeightsRef<'a>,
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
        let t = Task {
            x,
            rows,
            in_dim,
            o0,
        };
        match w {
            WeightsRef::F32(w) => t.run(simd, &AsF32, w, yc),
            // A row or a few: widening into registers beats a buffer pass.
            WeightsRef::Bf16(w) if rows <= DIRECT_MAX_ROWS => t.run_direct(simd, &AsBf16, w, yc),
            WeightsRef::Bf16(w) => t.run(simd, &AsBf16, w, yc),
            WeightsRef::F16(w) => t.run(simd, &AsF16, w, yc),
            WeightsRef::Fp8(f) if rows <= DIRECT_MAX_ROWS => {
                t.run_direct(simd, &AsFp8(f), f.bits, yc)
            }
            WeightsRef::Fp8(f) => t.run(simd, &AsFp8(f), f.bits, yc),
        }
        if let Some(b) = bias {
            for (j, yo) in yc.chunks_exact_mut(rows).enumerate() {
                yo.iter_mut().for_each(|v| *v += b[o0 + j]);
            }
        }
    }
}

/// The shape of one task.
struct Task<'a> {
    x: &'a [f32],
    rows: usize,
    in_dim: usize,
    o0: usize,
}

impl Task<'_> {
    /// The two weight rows to prefetch while rows `j..j + 2` of this task are multiplied:
    /// far enough ahead (see [`PF_AHEAD_BYTES`]) that memory latency is covered, empty past
    /// the end of `w`.
    #[inline(always)]
    fn ahead<'w, T>(&self, w: &'w [T], j: usize) -> &'w [T] {
        let row_bytes = (self.in_dim * core::mem::size_of::<T>()).max(1);
        let d = PF_AHEAD_BYTES
            .div_ceil(row_bytes)
            .next_multiple_of(2)
            .max(2);
        let a = ((self.o0 + j + d) * self.in_dim).min(w.len());
        let b = ((self.o0 + j + d + 2) * self.in_dim).min(w.len());
        &w[a..b]
    }

    #[inline(always)]
    fn run<S: pulp::Simd, K: Widen>(&self, simd: S, k: &K, w: &[K::Raw], yc: &mut [f32]) {
        let Task {
            x,
            rows,
            in_dim,
            o0,
        } = *self;
        let n_out = yc.len() / rows;
        let mut buf = if K::BUFFERED {
            vec![0f32; 2 * in_dim]
        } else {
            Vec::new()
        };
        let xrow = |r: usize| &x[r * in_dim..(r + 1) * in_dim];
        let mut t0 = 0;
        while t0 < rows {
            let t1 = (t0 + ROW_TILE).min(rows);
            let mut j = 0;
            while j < n_out {
                // Two weight rows at a time when possible: 8 independent FMA chains. The
                // passes over them prefetch the next two, so that memory keeps streaming
                // while later row blocks compute from cache.
                let pair = j + 1 < n_out;
                let np = if pair { 2 } else { 1 };
                let wr = k.widen(
                    o0 + j,
                    in_dim,
                    &w[(o0 + j) * in_dim..(o0 + j + np) * in_dim],
                    &mut buf,
                );
                let (w0, w1) = wr.split_at(in_dim);
                let next = self.ahead(w, j);
                let passes = (t1 - t0).div_ceil(4);
                let mut r = t0;
                while r < t1 {
                    // Each pass over the pair prefetches its share of the next pair.
                    let pass = (r - t0) / 4;
                    let pf = &next[(pass * next.len() / passes).min(next.len())
                        ..((pass + 1) * next.len() / passes).min(next.len())];
                    let quad = r + 4 <= t1;
                    match (pair, quad) {
                        (true, true) => {
                            let d = dots::<S, _, 2, 4>(
                                simd,
                                [w0, w1],
                                [xrow(r), xrow(r + 1), xrow(r + 2), xrow(r + 3)],
                                pf,
                            );
                            for (a, dr) in d.iter().enumerate() {
                                yc[(j + a) * rows + r..(j + a) * rows + r + 4].copy_from_slice(dr);
                            }
                            r += 4;
                        }
                        (true, false) => {
                            let d = dots::<S, _, 2, 1>(simd, [w0, w1], [xrow(r)], pf);
                            yc[j * rows + r] = d[0][0];
                            yc[(j + 1) * rows + r] = d[1][0];
                            r += 1;
                        }
                        (false, true) => {
                            let d = dots::<S, _, 1, 4>(
                                simd,
                                [w0],
                                [xrow(r), xrow(r + 1), xrow(r + 2), xrow(r + 3)],
                                pf,
                            );
                            yc[j * rows + r..j * rows + r + 4].copy_from_slice(&d[0]);
                            r += 4;
                        }
                        (false, false) => {
                            yc[j * rows + r] = dots::<S, _, 1, 1>(simd, [w0], [xrow(r)], pf)[0][0];
                            r += 1;
                        }
                    }
                }
                j += np;
            }
            t0 = t1;
        }
    }
}

impl Task<'_> {
    /// Rows `<= DIRECT_MAX_ROWS` against narrow weights, widened in registers.
    #[inline(always)]
    fn run_direct<S: pulp::Simd, K: Direct>(&self, simd: S, k: &K, w: &[K::Raw], yc: &mut [f32]) {
        let Task {
            x,
            rows,
            in_dim,
            o0,
        } = *self;
        let n_out = yc.len() / rows;
        let xrow = |r: usize| &x[r * in_dim..(r + 1) * in_dim];
        let wrow = |j: usize| &w[(o0 + j) * in_dim..(o0 + j + 1) * in_dim];
        let mut j = 0;
        while j < n_out {
            let pf = self.ahead(w, j);
            let o = o0 + j;
            if j + 1 < n_out {
                if rows == 4 {
                    let d = dots_direct::<S, K, _, 2, 4>(
                        simd,
                        k,
                        [o, o + 1],
                        [wrow(j), wrow(j + 1)],
                        [xrow(0), xrow(1), xrow(2), xrow(3)],
                        pf,
                    );
                    for (a, dr) in d.iter().enumerate() {
                        yc[(j + a) * rows..(j + a + 1) * rows].copy_from_slice(dr);
                    }
                } else {
                    for r in 0..rows {
                        let pf = if r == 0 { pf } else { &[][..] };
                        let d = dots_direct::<S, K, _, 2, 1>(
                            simd,
                            k,
                            [o, o + 1],
                            [wrow(j), wrow(j + 1)],
                            [xrow(r)],
                            pf,
                        );
                        yc[j * rows + r] = d[0][0];
                        yc[(j + 1) * rows + r] = d[1][0];
                    }
                }
                j += 2;
            } else if rows == 4 {
                // The same row grouping as the f32 path (which sums 4 rows together), so
                // that both sum in the same order (see `dots::paired`).
                let d = dots_direct::<S, K, u8, 1, 4>(
                    simd,
                    k,
                    [o],
                    [wrow(j)],
                    [xrow(0), xrow(1), xrow(2), xrow(3)],
                    &[],
                );
                yc[j * rows..(j + 1) * rows].copy_from_slice(&d[0]);
                j += 1;
            } else {
                for r in 0..rows {
                    yc[j * rows + r] =
                        dots_direct::<S, K, u8, 1, 1>(simd, k, [o], [wrow(j)], [xrow(r)], &[])[0]
                            [0];
                }
                j += 1;
            }
        }
    }
}
