//! `y = x W^T + b` for the CPU, with `W` in f32, bf16, f16 or fp8 (e4m3 with block scales).
//!
//! Work is split over output rows so that every weight row is read once per tile of
//! `ROW_TILE` input rows, with the next weight rows prefetched while the current ones are
//! multiplied. Narrow weight rows are widened to f32 (exactly) into a small buffer in L1 and
//! then used for every input row of the tile, so decode reads a half or a quarter of the
//! bytes for the same arithmetic; with a few input rows they are widened in registers
//! instead. The inner loops use `pulp`'s runtime AVX2+FMA / AVX-512 dispatch ([`Isa`]): the
//! crate is built for baseline x86-64, where plain code would only get SSE2.

use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use rayon::prelude::*;

use super::fp8::{self, Fp8Ref};
use super::isa;

/// Rows of `x` processed together against one weight row: their slices stay in L1/L2 while
/// the weight streams from memory once per tile.
const ROW_TILE: usize = 32;

/// Below this many multiply-adds a product runs on the calling thread: waking the pool
/// costs more than it saves (the MoE router, tiny test models).
const PAR_MIN_MACS: usize = 1 << 16;

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

/// How a weight storage type becomes f32 rows.
trait Widen {
    type Raw: Copy;
    /// Whether rows are widened into a buffer (false: used in place).
    const BUFFERED: bool;
    /// `raw` (whole rows from row `o` on, `in_dim` each) as f32, in place or in `buf`.
    fn widen<'a>(
        &self,
        o: usize,
        in_dim: usize,
        raw: &'a [Self::Raw],
        buf: &'a mut [f32],
    ) -> &'a [f32];
}

struct AsF32;
struct AsBf16;
struct AsF16;
struct AsFp8<'a>(Fp8Ref<'a>);

impl Widen for AsF32 {
    type Raw = f32;
    const BUFFERED: bool = false;
    #[inline(always)]
    fn widen<'a>(&self, _: usize, _: usize, raw: &'a [f32], _: &'a mut [f32]) -> &'a [f32] {
        raw
    }
}

impl Widen for AsBf16 {
    type Raw = u16;
    const BUFFERED: bool = true;
    /// bf16 is the top half of an f32: a shift, which vectorises in the SIMD context.
    #[inline(always)]
    fn widen<'a>(&self, _: usize, _: usize, raw: &'a [u16], buf: &'a mut [f32]) -> &'a [f32] {
        let out = &mut buf[..raw.len()];
        for (d, s) in out.iter_mut().zip(raw) {
            *d = AsBf16::lane(*s, 1.0);
        }
        out
    }
}

impl Widen for AsF16 {
    type Raw = u16;
    const BUFFERED: bool = true;
    /// `half` converts with F16C when the CPU has it.
    #[inline(always)]
    fn widen<'a>(&self, _: usize, _: usize, raw: &'a [u16], buf: &'a mut [f32]) -> &'a [f32] {
        let out = &mut buf[..raw.len()];
        raw.reinterpret_cast::<half::f16>()
            .convert_to_f32_slice(out);
        out
    }
}

impl Widen for AsFp8<'_> {
    type Raw = u8;
    const BUFFERED: bool = true;
    /// Shift, mask and one multiply by the row's block scale (see [`fp8`]).
    #[inline(always)]
    fn widen<'a>(&self, o: usize, in_dim: usize, raw: &'a [u8], buf: &'a mut [f32]) -> &'a [f32] {
        let out = &mut buf[..raw.len()];
        for (r, (d, s)) in out
            .chunks_exact_mut(in_dim)
            .zip(raw.chunks_exact(in_dim))
            .enumerate()
        {
            self.0.widen_row(o + r, s, d);
        }
        out
    }
}

/// Narrow types widened in registers, one SIMD vector at a time, for a few input rows.
trait Direct {
    type Raw: Copy;
    /// Columns that share one scale (`usize::MAX`: the type has no scales).
    fn block(&self) -> usize;
    /// Row `o`'s scale for block `k` of its columns.
    fn scale(&self, o: usize, k: usize) -> f32;
    /// One weight as f32, given its block's scale.
    fn lane(raw: Self::Raw, scale: f32) -> f32;
}

impl Direct for AsBf16 {
    type Raw = u16;
    #[inline(always)]
    fn block(&self) -> usize {
        usize::MAX
    }
    #[inline(always)]
    fn scale(&self, _: usize, _: usize) -> f32 {
        1.0
    }
    #[inline(always)]
    fn lane(raw: u16, _: f32) -> f32 {
        f32::from_bits(u32::from(raw) << 16)
    }
}

impl Direct for AsFp8<'_> {
    type Raw = u8;
    #[inline(always)]
    fn block(&self) -> usize {
        self.0.block
    }
    #[inline(always)]
    fn scale(&self, o: usize, k: usize) -> f32 {
        self.0.scales[o * self.0.scale_cols + k]
    }
    #[inline(always)]
    fn lane(raw: u8, scale: f32) -> f32 {
        fp8::bits_as_f32(raw) * scale
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
    /// The two weight rows after `j..j + 2` of this task (empty past the end of `w`).
    #[inline(always)]
    fn ahead<'w, T>(&self, w: &'w [T], j: usize) -> &'w [T] {
        let a = ((self.o0 + j + 2) * self.in_dim).min(w.len());
        let b = ((self.o0 + j + 4) * self.in_dim).min(w.len());
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
                // that both sum in the same order (see [`paired`]).
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

/// [`dots`] with narrow weight rows (`o` are their row numbers, for the scales), each SIMD
/// vector of weights widened in registers: one scale per block of columns, so the scale is
/// a broadcast per block, not a lookup per lane.
///
/// No closure in these loops calls a SIMD operation: a closure does not inherit the target
/// features of the function it is written in, so it would call the intrinsics out of line.
// `u` and `v` index several arrays (one per row and input) at once.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn dots_direct<S: pulp::Simd, K: Direct, P, const W: usize, const R: usize>(
    simd: S,
    k: &K,
    o: [usize; W],
    w: [&[K::Raw]; W],
    x: [&[f32]; R],
    pf: &[P],
) -> [[f32; R]; W] {
    // Four vectors per step, so the loop, prefetch and bookkeeping cost is shared by
    // 4 x lanes weights of each row (a 128-column block is 8 or 16 vectors).
    const UNROLL: usize = 4;
    let lanes = core::mem::size_of::<S::f32s>() / 4;
    let xs = x.map(|s| S::as_simd_f32s(s));
    let n = xs[0].0.len();
    let in_dim = x[0].len();
    let block = k.block();
    // Vectors per scale block. A block is an even number of vectors of every SIMD width
    // (a multiple of 32 columns) unless one block covers the whole row.
    debug_assert!(block >= in_dim || block.is_multiple_of(2 * lanes));
    let per_block = if block >= in_dim {
        n.max(1)
    } else {
        block / lanes
    };
    let mut pf = prefetch::Spread::new(pf, n.div_ceil(UNROLL));
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; R]; W];
    let mut odd = [[zero; R]; W];
    let pair = paired(R);
    let mut i = 0;
    let mut blk = 0;
    while i < n {
        // Blocks start at even vectors (a block is an even number of vectors), so the
        // parity of a vector within its block is its parity in the row, as in [`dots`].
        let end = (i + per_block).min(n);
        let mut sc = [0f32; W];
        for a in 0..W {
            sc[a] = k.scale(o[a], blk);
        }
        // Slices of exactly this block, so the loops below have no bounds checks.
        let xb: [&[S::f32s]; R] = core::array::from_fn(|b| &xs[b].0[i..end]);
        let wb: [&[K::Raw]; W] = core::array::from_fn(|a| &w[a][i * lanes..end * lanes]);
        let steps = (end - i) / UNROLL;
        let ul = UNROLL * lanes;
        for q in 0..steps {
            pf.step();
            // This step's 4 vectors of each row and input, checked once per step.
            let cw: [&[K::Raw]; W] = core::array::from_fn(|a| &wb[a][q * ul..(q + 1) * ul]);
            let cx: [&[S::f32s]; R] =
                core::array::from_fn(|b| &xb[b][q * UNROLL..(q + 1) * UNROLL]);
            for u in 0..UNROLL {
                let cols = u * lanes..(u + 1) * lanes;
                direct_step::<S, K, W, R>(
                    simd,
                    (&mut acc, &mut odd),
                    pair && u % 2 == 1,
                    core::array::from_fn(|b| cx[b][u]),
                    core::array::from_fn(|a| &cw[a][cols.clone()]),
                    &sc,
                );
            }
        }
        for v in steps * UNROLL..end - i {
            pf.step();
            direct_step::<S, K, W, R>(
                simd,
                (&mut acc, &mut odd),
                pair && v % 2 == 1,
                core::array::from_fn(|b| xb[b][v]),
                core::array::from_fn(|a| &wb[a][v * lanes..(v + 1) * lanes]),
                &sc,
            );
        }
        i = end;
        blk += 1;
    }
    let mut out = [[0f32; R]; W];
    for a in 0..W {
        for b in 0..R {
            let mut s = simd.reduce_sum_f32s(simd.add_f32s(acc[a][b], odd[a][b]));
            for (c, q) in (n * lanes..in_dim).zip(xs[b].1) {
                let scale = k.scale(o[a], if block >= in_dim { 0 } else { c / block });
                s += K::lane(w[a][c], scale) * q;
            }
            out[a][b] = s;
        }
    }
    out
}

/// `W x R` SIMD accumulators, one per weight row and input row.
type Acc<S, const W: usize, const R: usize> = [[<S as pulp::Simd>::f32s; R]; W];

/// One vector position of [`dots_direct`]: each row's raw weights there (`raw`) widened with
/// its block scale, times the input vectors `x`, into the even or the odd accumulator set.
#[inline(always)]
fn direct_step<S: pulp::Simd, K: Direct, const W: usize, const R: usize>(
    simd: S,
    (acc, odd): (&mut Acc<S, W, R>, &mut Acc<S, W, R>),
    odd_vector: bool,
    x: [S::f32s; R],
    raw: [&[K::Raw]; W],
    sc: &[f32; W],
) {
    let mut wv = [simd.splat_f32s(0.0); W];
    for a in 0..W {
        wv[a] = widen_vec::<S, K>(raw[a], sc[a]);
    }
    // Two arms, not a chosen reference: both sets stay in registers.
    if odd_vector {
        fma_into(simd, odd, &wv, &x);
    } else {
        fma_into(simd, acc, &wv, &x);
    }
}

/// One SIMD vector of narrow weights (`raw`, one vector's worth) widened with `scale`.
#[inline(always)]
fn widen_vec<S: pulp::Simd, K: Direct>(raw: &[K::Raw], scale: f32) -> S::f32s {
    let mut wide = [0f32; 16];
    for (d, s) in wide.iter_mut().zip(raw) {
        *d = K::lane(*s, scale);
    }
    pulp::cast_lossy(wide)
}

/// `acc[a][b] += w[a] * x[b]` for every weight and input vector.
#[inline(always)]
fn fma_into<S: pulp::Simd, const W: usize, const R: usize>(
    simd: S,
    acc: &mut [[S::f32s; R]; W],
    w: &[S::f32s; W],
    x: &[S::f32s; R],
) {
    for a in 0..W {
        for b in 0..R {
            acc[a][b] = simd.mul_add_f32s(w[a], x[b], acc[a][b]);
        }
    }
}

/// Whether dot products against `r` input rows keep two sets of accumulators (even and odd
/// vectors). With one input row there are only `W` FMA chains, and their latency, not
/// memory, bounds a narrow (fp8) row; with more rows the chains are already independent
/// and a second set would spill registers. Every kernel follows this same rule, so narrow
/// weights and their f32 widening still sum in the same order.
#[inline(always)]
const fn paired(r: usize) -> bool {
    r == 1
}

/// `W x R` dot products (each weight row against each input row) in one pass over the
/// vectors, with `W * R` independent SIMD accumulators (twice that for one input row, see
/// [`paired`]). `pf` (the next weight rows, or empty) is prefetched into L2 along the way,
/// one hint per 64-byte line.
#[inline(always)]
fn dots<S: pulp::Simd, P, const W: usize, const R: usize>(
    simd: S,
    w: [&[f32]; W],
    x: [&[f32]; R],
    pf: &[P],
) -> [[f32; R]; W] {
    let ws = w.map(|s| S::as_simd_f32s(s));
    let xs = x.map(|s| S::as_simd_f32s(s));
    let n = ws[0].0.len();
    let mut pf = prefetch::Spread::new(pf, n);
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; R]; W];
    let mut odd = [[zero; R]; W];
    let pair = paired(R);
    for i in 0..n {
        pf.step();
        let mut xv = [zero; R];
        for b in 0..R {
            xv[b] = xs[b].0[i];
        }
        let mut wv = [zero; W];
        for a in 0..W {
            wv[a] = ws[a].0[i];
        }
        if pair && i % 2 == 1 {
            fma_into(simd, &mut odd, &wv, &xv);
        } else {
            fma_into(simd, &mut acc, &wv, &xv);
        }
    }
    let mut out = [[0f32; R]; W];
    for a in 0..W {
        for b in 0..R {
            let mut s = simd.reduce_sum_f32s(simd.add_f32s(acc[a][b], odd[a][b]));
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
    /// Prefetch hints for a slice spread evenly over the `n` steps of a loop, one per
    /// 64-byte line, so that the slice is in cache when the loop ends.
    pub struct Spread<'a, P> {
        pf: &'a [P],
        next: usize,
        per_step: usize,
        per_line: usize,
    }

    impl<'a, P> Spread<'a, P> {
        #[inline(always)]
        pub fn new(pf: &'a [P], n: usize) -> Self {
            let per_line = (64 / core::mem::size_of::<P>().max(1)).max(1);
            Self {
                pf,
                next: 0,
                per_step: pf.len().div_ceil(n.max(1)).next_multiple_of(per_line),
                per_line,
            }
        }

        /// Issues this step's share of the hints.
        #[inline(always)]
        pub fn step(&mut self) {
            let end = (self.next + self.per_step).min(self.pf.len());
            while self.next < end {
                l2(&self.pf[self.next]);
                self.next += self.per_line;
            }
        }
    }

    /// Hints that the cache line holding `v` will be read soon (into L2). A hint only: it
    /// never faults and has no effect on results.
    #[inline(always)]
    pub fn l2<T>(v: &T) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetch is a hint that cannot fault, and the pointer comes from a live
        // reference.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T1 }>(
                (v as *const T).cast::<i8>(),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = v;
    }
}
