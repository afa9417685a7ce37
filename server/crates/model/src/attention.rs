//! Paged attention over paged stores ([`RowsRef`]), on the host. One function serves GQA (K and V
//! stores, `kv_heads` groups) and MLA (one latent store read as both K, `rank + rope` wide,
//! and V, its first `rank` values). It is the CPU backend's attention and the Rust reference
//! the CUDA paged-attention kernel is tested against (same arguments, see
//! `backend::tensor::paged`).

use rayon::prelude::*;

use crate::kernels::{self, vector};
use crate::store::{RowMeta, RowsRef};

/// Shape of one paged attention call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnShape {
    /// Query heads per row.
    pub heads: usize,
    /// K/V heads per store row (query head `h` reads group `h / (heads / kv_heads)`).
    pub kv_heads: usize,
    /// Width of a query head and of a K head.
    pub dk: usize,
    /// Width of a V head.
    pub dv: usize,
    /// Offset between consecutive K heads in a store row (`dk` for GQA).
    pub k_head_stride: usize,
    /// Offset between consecutive V heads in a store row (`dv` for GQA).
    pub v_head_stride: usize,
    pub scale: f32,
}

impl AttnShape {
    /// GQA over separate K and V stores of `kv_heads * head_dim`.
    pub fn gqa(heads: usize, kv_heads: usize, head_dim: usize, scale: f32) -> Self {
        Self {
            heads,
            kv_heads,
            dk: head_dim,
            dv: head_dim,
            k_head_stride: head_dim,
            v_head_stride: head_dim,
            scale,
        }
    }

    /// MLA in the absorbed form: one latent row per position, `dk` wide for scores, its first
    /// `dv` values as the value.
    pub fn latent(heads: usize, dk: usize, dv: usize, scale: f32) -> Self {
        Self {
            heads,
            kv_heads: 1,
            dk,
            dv,
            k_head_stride: 0,
            v_head_stride: 0,
            scale,
        }
    }

    /// Store row offsets of query head `h`'s K and V.
    #[inline]
    pub fn kv_offsets(&self, h: usize) -> (usize, usize) {
        let g = h / (self.heads / self.kv_heads).max(1);
        (g * self.k_head_stride, g * self.v_head_stride)
    }
}

/// Causal attention of each row over positions `0..=pos` of its sequence, read from the
/// stores (the current chunk's K/V must already be written). `q` is `[rows, heads, dk]`;
/// returns `[rows, heads, dv]`.
pub fn paged_attention(
    q: &[f32],
    k: RowsRef<'_>,
    v: RowsRef<'_>,
    rows: &[RowMeta],
    tables: &[&[u32]],
    s: &AttnShape,
) -> Vec<f32> {
    let mut out = vec![0f32; rows.len() * s.heads * s.dv];
    let arch = kernels::isa::selected_arch();
    out.par_chunks_mut(s.dv).enumerate().for_each(|(i, o)| {
        let (r, h) = (i / s.heads, i % s.heads);
        let meta = rows[r];
        arch.dispatch(Head {
            q: &q[i * s.dk..(i + 1) * s.dk],
            k,
            v,
            table: tables[meta.seq],
            positions: meta.pos + 1,
            offsets: s.kv_offsets(h),
            shape: s,
            out: o,
        })
    });
    out
}

/// One query head of one row against its sequence's cached positions.
struct Head<'a> {
    q: &'a [f32],
    k: RowsRef<'a>,
    v: RowsRef<'a>,
    table: &'a [u32],
    positions: usize,
    /// Store row offsets of this head's K and V.
    offsets: (usize, usize),
    shape: &'a AttnShape,
    out: &'a mut [f32],
}

impl pulp::WithSimd for Head<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Head {
            q,
            k,
            v,
            table,
            positions,
            offsets: (ko, vo),
            shape: s,
            out,
        } = self;
        let mut scores = vec![0f32; positions];
        for (p, sc) in scores.iter_mut().enumerate() {
            *sc = vector::dot(simd, q, &k.row(table, p)[ko..ko + s.dk]) * s.scale;
        }
        kernels::softmax_in_place(&mut scores);
        for (p, &w) in scores.iter().enumerate() {
            vector::axpy(simd, out, w, &v.row(table, p)[vo..vo + s.dv]);
        }
    }
}
