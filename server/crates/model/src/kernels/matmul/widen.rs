//! How each weight storage type becomes f32: whole rows into a buffer ([`Widen`]) or one
//! SIMD vector at a time in registers ([`Direct`]).

use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

use crate::kernels::fp8::{self, Fp8Ref};

/// How a weight storage type becomes f32 rows.
pub(super) trait Widen {
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

pub(super) struct AsF32;
pub(super) struct AsBf16;
pub(super) struct AsF16;
pub(super) struct AsFp8<'a>(pub(super) Fp8Ref<'a>);

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
pub(super) trait Direct {
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
