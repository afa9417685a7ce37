//! DeepSeek-V3-style multi-head latent attention (MLA) as `Glm4MoeLiteAttention` in
//! transformers, run in the absorbed form that DeepSeek and vLLM use for decode:
//!
//! `k_nope[h, s] = W_uk[h] c[s]` and `v[h, s] = W_uv[h] c[s]` are linear in the cached latent
//! `c[s]` (kv_a_layernorm'd `c_kv`), so `q_nope . k_nope = (W_uk[h]^T q_nope) . c[s]` and
//! `sum_s p_s v[h, s] = W_uv[h] (sum_s p_s c[s])`. Attention therefore reads only the latent
//! cache row (`kv_lora_rank + rope_dim` values) per position, never per-head K/V.

use rayon::prelude::*;

use super::config::Glm4MoeLiteConfig;
use crate::attention::{paged_attention, AttnShape};
use crate::backend::cpu::{CpuAttention, LayerStep};
use crate::batch::ModelError;
use crate::kernels;
use crate::layers::{Linear, RmsNorm};
use crate::store::PagedRows;
use crate::weights::Checkpoint;

/// transformers' `DeepseekV3RMSNorm(q_lora_rank)` / `(kv_lora_rank)` keep the class default
/// eps of 1e-6 rather than `config.rms_norm_eps`.
pub(crate) const LORA_NORM_EPS: f64 = 1e-6;

#[derive(Debug)]
enum QueryProj {
    /// `q_b_proj(q_a_layernorm(q_a_proj(h)))`.
    LowRank {
        a: Linear,
        norm: RmsNorm,
        b: Linear,
    },
    Direct(Linear),
}

#[derive(Debug)]
pub struct MlaAttention {
    q: QueryProj,
    kv_a: Linear,
    kv_norm: RmsNorm,
    /// Per head `W_uk^T`, `[heads, kv_lora_rank, qk_nope_head_dim]`: absorbs into the query.
    w_uk_t: Vec<f32>,
    /// Per head `W_uv`, `[heads, v_head_dim, kv_lora_rank]`: applied after attention.
    w_uv: Vec<f32>,
    o: Linear,
    heads: usize,
    nope: usize,
    rope: usize,
    v_dim: usize,
    rank: usize,
    interleave: bool,
    scale: f32,
}

impl MlaAttention {
    pub fn load(ck: &Checkpoint, p: &str, c: &Glm4MoeLiteConfig) -> Result<Self, ModelError> {
        let (hid, heads, rank) = (c.hidden_size, c.num_attention_heads, c.kv_lora_rank);
        let (nope, rope, v_dim) = (c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim);
        let qk = c.qk_head_dim();
        let bias = c.attention_bias;
        let q = match c.q_lora_rank {
            Some(qr) => QueryProj::LowRank {
                a: Linear::load(ck, &format!("{p}.q_a_proj"), hid, qr, bias)?,
                norm: RmsNorm::load(ck, &format!("{p}.q_a_layernorm.weight"), qr, LORA_NORM_EPS)?,
                b: Linear::load(ck, &format!("{p}.q_b_proj"), qr, heads * qk, false)?,
            },
            None => QueryProj::Direct(Linear::load(
                ck,
                &format!("{p}.q_proj"),
                hid,
                heads * qk,
                false,
            )?),
        };
        let kv_b = ck.f32(
            &format!("{p}.kv_b_proj.weight"),
            &[heads * (nope + v_dim), rank],
        )?;
        let (w_uk_t, w_uv) = super::split_kv_b(&kv_b, heads, nope, v_dim, rank);
        Ok(Self {
            q,
            kv_a: Linear::load(
                ck,
                &format!("{p}.kv_a_proj_with_mqa"),
                hid,
                rank + rope,
                bias,
            )?,
            kv_norm: RmsNorm::load(
                ck,
                &format!("{p}.kv_a_layernorm.weight"),
                rank,
                LORA_NORM_EPS,
            )?,
            w_uk_t,
            w_uv,
            o: Linear::load(ck, &format!("{p}.o_proj"), heads * v_dim, hid, bias)?,
            heads,
            nope,
            rope,
            v_dim,
            rank,
            interleave: c.rope_interleave,
            // No YaRN mscale: config parsing refuses rope scaling.
            scale: (qk as f32).powf(-0.5),
        })
    }

    fn weight_bytes(&self) -> u64 {
        let q = match &self.q {
            QueryProj::LowRank { a, norm, b } => a.bytes() + norm.bytes() + b.bytes(),
            QueryProj::Direct(l) => l.bytes(),
        };
        q + self.kv_a.bytes()
            + self.kv_norm.bytes()
            + 4 * (self.w_uk_t.len() + self.w_uv.len()) as u64
            + self.o.bytes()
    }

    /// `[q_lat | q_pe]` per row and head (`rank + rope` wide): the query absorbed through
    /// `W_uk`, ready for scores against latent rows.
    fn absorbed_query(&self, q: &[f32], n: usize) -> Vec<f32> {
        let (qk, r, dk) = (self.nope + self.rope, self.rank, self.rank + self.rope);
        let mut out = vec![0f32; n * self.heads * dk];
        out.par_chunks_mut(dk).enumerate().for_each(|(i, o)| {
            let h = i % self.heads;
            let (q_nope, q_pe) = q[i * qk..(i + 1) * qk].split_at(self.nope);
            let uk = &self.w_uk_t[h * r * self.nope..(h + 1) * r * self.nope];
            for (v, w) in o[..r].iter_mut().zip(uk.chunks_exact(self.nope)) {
                *v = kernels::dot(w, q_nope);
            }
            o[r..].copy_from_slice(q_pe);
        });
        out
    }
}

impl CpuAttention for MlaAttention {
    /// Writes the rows' latents into the store (before attending, so a chunk sees itself)
    /// and returns `o_proj(attn)`.
    fn forward(
        &self,
        h: &[f32],
        step: &LayerStep<'_>,
        stores: &mut [PagedRows],
    ) -> Result<Vec<f32>, ModelError> {
        let n = step.rows.len();
        let mut q = match &self.q {
            QueryProj::LowRank { a, norm, b } => {
                let mut qa = a.forward(h, n)?;
                norm.apply(&mut qa);
                b.forward(&qa, n)?
            }
            QueryProj::Direct(l) => l.forward(h, n)?,
        };
        let mut latent = self.kv_a.forward(h, n)?;
        let (qk, width) = (self.nope + self.rope, self.rank + self.rope);
        for (i, (qr, lr)) in q
            .chunks_exact_mut(self.heads * qk)
            .zip(latent.chunks_exact_mut(width))
            .enumerate()
        {
            let (cos, sin) = &step.cos_sin[i];
            for head in qr.chunks_exact_mut(qk) {
                rotate(&mut head[self.nope..], cos, sin, self.interleave);
            }
            let (c_kv, k_pe) = lr.split_at_mut(self.rank);
            self.kv_norm.apply(c_kv);
            rotate(k_pe, cos, sin, self.interleave);
        }
        let [store] = stores else {
            return Err(ModelError::Cache("MLA needs one latent store".into()));
        };
        store.write(step.rows, step.tables, &latent);
        let q_abs = self.absorbed_query(&q, n);
        let shape = AttnShape::latent(self.heads, width, self.rank, self.scale);
        let ctx = paged_attention(
            &q_abs,
            store.view(),
            store.view(),
            step.rows,
            step.tables,
            &shape,
        );
        // W_uv per head on the attended latent.
        let r = self.rank;
        let mut attn = vec![0f32; n * self.heads * self.v_dim];
        attn.par_chunks_mut(self.v_dim)
            .zip(ctx.par_chunks(r))
            .enumerate()
            .for_each(|(i, (out, c))| {
                let h = i % self.heads;
                let uv = &self.w_uv[h * self.v_dim * r..(h + 1) * self.v_dim * r];
                for (o, w) in out.iter_mut().zip(uv.chunks_exact(r)) {
                    *o = kernels::dot(w, c);
                }
            });
        self.o.forward(&attn, n)
    }

    fn store_widths(&self) -> Vec<usize> {
        vec![self.rank + self.rope]
    }

    fn bytes(&self) -> u64 {
        self.weight_bytes()
    }
}

/// RoPE on `x` (the rope dims of one head). Interleaved: pairs `(2i, 2i+1)`, written back
/// de-interleaved (evens then odds) as transformers' `apply_rotary_pos_emb_interleave` does;
/// q and k get the same permutation so their dot product is unchanged. Otherwise NeoX pairs
/// `(i, i + d/2)`.
pub fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32], interleave: bool) {
    let half = x.len() / 2;
    if interleave {
        let src = x.to_vec();
        for i in 0..half {
            let (a, b) = (src[2 * i], src[2 * i + 1]);
            x[i] = a * cos[i] - b * sin[i];
            x[half + i] = b * cos[i] + a * sin[i];
        }
    } else {
        let (x1, x2) = x.split_at_mut(half);
        for i in 0..half {
            let (a, b) = (x1[i], x2[i]);
            x1[i] = a * cos[i] - b * sin[i];
            x2[i] = b * cos[i] + a * sin[i];
        }
    }
}

#[cfg(test)]
#[path = "attention_tests.rs"]
mod tests;
