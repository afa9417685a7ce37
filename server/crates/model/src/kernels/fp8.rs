//! float8 e4m3fn weights (1 sign, 4 exponent bits with bias 7, 3 mantissa bits; no
//! infinities, `0x7f`/`0xff` are NaN) with f32 scales per block of columns.
//!
//! Widening is exact and cheap: a byte sign-extended to 32 bits and shifted left by 20 puts
//! its exponent and mantissa in an f32's exponent and mantissa fields, which reads as the
//! fp8 value times 2^-120 (subnormals included: they land on f32 subnormals). Masking keeps
//! the sign and those 7 bits. The 2^120 is folded into the scale once, at load
//! ([`prescale`]): `bits * (scale * 2^120)` is the exact product `value * scale` rounded
//! once, the same f32 that `fp8.to(float32) * scale` gives in PyTorch, so dequantizing here
//! and in the reference agree bit for bit.

/// 2^120: the factor between an fp8 value and its bits read as an f32 by [`bits_as_f32`].
pub const EXP_SHIFT: f32 = f32::from_bits((127 + 120) << 23);

/// The bits of an e4m3fn byte placed in an f32: its value times 2^-120 (exact).
#[inline(always)]
pub fn bits_as_f32(b: u8) -> f32 {
    f32::from_bits(((i32::from(b as i8) << 20) as u32) & 0x87F0_0000)
}

/// The value of an e4m3fn byte (exact; NaN bytes read as 480, so refuse them at load).
#[inline]
pub fn to_f32(b: u8) -> f32 {
    bits_as_f32(b) * EXP_SHIFT
}

/// Whether an e4m3fn byte is NaN.
#[inline]
pub fn is_nan(b: u8) -> bool {
    b & 0x7f == 0x7f
}

/// A checkpoint scale as the kernels take it (times 2^120), or `None` when it is not finite
/// or too large for that (an fp8 weight scale above 2^8 would mean weights beyond 114,688).
pub fn prescale(scale: f32) -> Option<f32> {
    let s = scale * EXP_SHIFT;
    s.is_finite().then_some(s)
}

/// An fp8 weight matrix `[out, in]` as the kernels take it.
#[derive(Debug, Clone, Copy)]
pub struct Fp8Ref<'a> {
    /// `out * in` e4m3fn bytes, row-major.
    pub bits: &'a [u8],
    /// `out * scale_cols` scales, already [`prescale`]d: row `o`'s scale for columns
    /// `k * block .. (k + 1) * block` is `scales[o * scale_cols + k]`.
    pub scales: &'a [f32],
    pub scale_cols: usize,
    /// Columns per scale: a multiple of 32 (an even number of vectors of every SIMD width)
    /// unless one scale covers the row.
    pub block: usize,
}

impl Fp8Ref<'_> {
    /// Row `o`'s scales.
    #[inline(always)]
    pub fn row_scales(&self, o: usize) -> &[f32] {
        &self.scales[o * self.scale_cols..(o + 1) * self.scale_cols]
    }

    /// The whole matrix widened to f32 (row by row, in parallel).
    pub fn to_f32(&self) -> Vec<f32> {
        use rayon::prelude::*;
        let rows = self.scales.len() / self.scale_cols.max(1);
        let in_dim = (self.bits.len() / rows.max(1)).max(1);
        let mut out = vec![0f32; self.bits.len()];
        out.par_chunks_mut(in_dim)
            .zip(self.bits.par_chunks(in_dim))
            .enumerate()
            .for_each(|(o, (d, s))| self.widen_row(o, s, d));
        out
    }

    /// Widens row `o` (its bytes `raw`) into `out`.
    #[inline(always)]
    pub fn widen_row(&self, o: usize, raw: &[u8], out: &mut [f32]) {
        for ((d, s), &sc) in out
            .chunks_mut(self.block)
            .zip(raw.chunks(self.block))
            .zip(self.row_scales(o))
        {
            for (d, &b) in d.iter_mut().zip(s) {
                *d = bits_as_f32(b) * sc;
            }
        }
    }
}

/// The e4m3fn byte nearest `v` (ties to even), saturating at ±448. NaN gives NaN (`0x7f`).
pub fn from_f32(v: f32) -> u8 {
    if v.is_nan() {
        return 0x7f;
    }
    let sign = if v.is_sign_negative() { 0x80 } else { 0 };
    let a = v.abs();
    if a >= 448.0 {
        return sign | 0x7e;
    }
    let min_normal = f32::from_bits((127 - 6) << 23); // 2^-6
    let code = if a < min_normal {
        // Subnormals are multiples of 2^-9; 8 of them is the smallest normal, code 0x08.
        (a * f32::from_bits((127 + 9) << 23)).round_ties_even() as u8
    } else {
        // a = 2^e * (1 + m/8): e from the f32 exponent field, m rounded to 3 bits.
        let e = ((a.to_bits() >> 23) & 0xff) as i32 - 127;
        let mant = a / f32::from_bits(((e + 127) as u32) << 23);
        let m = ((mant - 1.0) * 8.0).round_ties_even() as i32;
        let (e, m) = if m == 8 { (e + 1, 0) } else { (e, m) };
        // 448 = 2^8 * 1.75 is the largest finite value (2^8 * 1.875 is NaN).
        if e > 8 || (e == 8 && m > 6) {
            0x7e
        } else {
            (((e + 7) as u8) << 3) | m as u8
        }
    };
    sign | code
}

/// Quantizes an f32 matrix `[out, in]` to e4m3 with one scale per `block` x `block` tile
/// (amax / 448, as the FP8 releases and vLLM's online FP8 do). Returns the bytes and the
/// prescaled scales expanded per row (`[out, in.div_ceil(block)]`).
pub fn quantize_blocks(w: &[f32], out: usize, in_dim: usize, block: usize) -> (Vec<u8>, Vec<f32>) {
    use rayon::prelude::*;
    if out == 0 || in_dim == 0 || block == 0 {
        return (Vec::new(), Vec::new());
    }
    let cols = in_dim.div_ceil(block);
    let mut bits = vec![0u8; out * in_dim];
    let mut scales = vec![0f32; out * cols];
    bits.par_chunks_mut(block * in_dim)
        .zip(scales.par_chunks_mut(block * cols))
        .zip(w.par_chunks(block * in_dim))
        .for_each(|((q, s), w)| {
            let rows = w.len() / in_dim;
            for k in 0..cols {
                let (c0, c1) = (k * block, ((k + 1) * block).min(in_dim));
                let amax = (0..rows)
                    .flat_map(|r| &w[r * in_dim + c0..r * in_dim + c1])
                    .fold(0f32, |m, v| m.max(v.abs()));
                let scale = if amax > 0.0 && amax.is_finite() {
                    amax / 448.0
                } else {
                    1.0
                };
                for r in 0..rows {
                    for c in c0..c1 {
                        q[r * in_dim + c] = from_f32(w[r * in_dim + c] / scale);
                    }
                    s[r * cols + k] = scale * EXP_SHIFT;
                }
            }
        });
    (bits, scales)
}
