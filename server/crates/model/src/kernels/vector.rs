//! Vector helpers for code already running inside a `pulp` SIMD context (a
//! [`pulp::WithSimd`] dispatched by [`super::isa`]): the attention loops call them once per
//! cached position, so they must use the CPU's widest vectors, not baseline SSE2.
//!
//! No closure here calls a SIMD operation (a closure would not inherit the target features
//! of the function it is written in).

/// `a . b` over `min(a.len(), b.len())` values: four SIMD accumulators, then the tail.
#[inline(always)]
pub fn dot<S: pulp::Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (av, at) = S::as_simd_f32s(&a[..n]);
    let (bv, bt) = S::as_simd_f32s(&b[..n]);
    let zero = simd.splat_f32s(0.0);
    let mut acc = [zero; 4];
    let quads = av.len() / 4;
    for q in 0..quads {
        for (u, ac) in acc.iter_mut().enumerate() {
            *ac = simd.mul_add_f32s(av[4 * q + u], bv[4 * q + u], *ac);
        }
    }
    for i in 4 * quads..av.len() {
        acc[0] = simd.mul_add_f32s(av[i], bv[i], acc[0]);
    }
    let sum = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
    let mut s = simd.reduce_sum_f32s(sum);
    for (x, y) in at.iter().zip(bt) {
        s += x * y;
    }
    s
}

/// `y += a * x` over `min(y.len(), x.len())` values.
#[inline(always)]
pub fn axpy<S: pulp::Simd>(simd: S, y: &mut [f32], a: f32, x: &[f32]) {
    let n = y.len().min(x.len());
    let (yv, yt) = S::as_mut_simd_f32s(&mut y[..n]);
    let (xv, xt) = S::as_simd_f32s(&x[..n]);
    let av = simd.splat_f32s(a);
    for (yi, xi) in yv.iter_mut().zip(xv) {
        *yi = simd.mul_add_f32s(av, *xi, *yi);
    }
    for (yi, xi) in yt.iter_mut().zip(xt) {
        *yi += a * xi;
    }
}
