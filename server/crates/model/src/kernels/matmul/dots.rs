//! The inner loops of the matmul kernel: `W x R` dot products of weight rows against input
//! rows, f32 weights ([`dots`]) or narrow ones widened in registers ([`dots_direct`]), with
//! the next weight rows prefetched along the way.

use super::prefetch;
use super::widen::Direct;

/// [`dots`] with narrow weight rows (`o` are their row numbers, for the scales), each SIMD
/// vector of weights widened in registers: one scale per block of columns, so the scale is
/// a broadcast per block, not a lookup per lane.
///
/// No closure in these loops calls a SIMD operation: a closure does not inherit the target
/// features of the function it is written in, so it would call the intrinsics out of line.
// `u` and `v` index several arrays (one per row and input) at once.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
pub(super) fn dots_direct<S: pulp::Simd, K: Direct, P, const W: usize, const R: usize>(
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
pub(super) fn dots<S: pulp::Simd, P, const W: usize, const R: usize>(
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
