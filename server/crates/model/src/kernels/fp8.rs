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
    /// Columns per scale: a multiple of 16 (every SIMD width) unless one scale covers the row.
    pub block: usize,
}

impl Fp8Ref<'_> {
    /// Row `o`'s scales.
    #[inline(always)]
    pub fn row_scales(&self, o: usize) -> &[f32] {
        &self.scales[o * self.scale_cols..(o + 1) * self.scale_cols]
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
