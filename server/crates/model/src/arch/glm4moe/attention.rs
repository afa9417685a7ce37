//! GQA attention of Glm4Moe on the CPU backend: fused q/k/v projection with bias, optional
//! per-head qk-norm, partial NeoX RoPE, K and V in two paged stores.

use super::config::Glm4MoeConfig;
use crate::attention::{paged_attention, AttnShape};
use crate::backend::cpu::{CpuAttention, LayerStep};
use crate::batch::ModelError;
use crate::layers::{Linear, RmsNorm, Rope};
use crate::store::PagedRows;
use crate::weights::Checkpoint;

#[derive(Debug)]
pub struct Attention {
    /// q, k and v projections fused at load: `[q | k | v]` per row.
    pub qkv: Linear,
    pub o: Linear,
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rope: Rope,
}

impl Attention {
    pub fn load(ck: &Checkpoint, p: &str, c: &Glm4MoeConfig) -> Result<Self, ModelError> {
        let (h, hd) = (c.hidden_size, c.head_dim);
        let norm = |n: &str| RmsNorm::load(ck, &format!("{p}.{n}.weight"), hd, c.rms_norm_eps);
        let (q, kv) = (c.num_attention_heads * hd, c.num_key_value_heads * hd);
        Ok(Self {
            qkv: Linear::load_fused(
                ck,
                &[
                    (&format!("{p}.q_proj"), q),
                    (&format!("{p}.k_proj"), kv),
                    (&format!("{p}.v_proj"), kv),
                ],
                h,
                c.attention_bias,
            )?,
            o: Linear::load(ck, &format!("{p}.o_proj"), q, h, false)?,
            q_norm: c.use_qk_norm.then(|| norm("q_norm")).transpose()?,
            k_norm: c.use_qk_norm.then(|| norm("k_norm")).transpose()?,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: hd,
            rope: Rope::new(c.rotary_dim(), c.rope_theta),
        })
    }
}

impl CpuAttention for Attention {
    fn forward(
        &self,
        h: &[f32],
        step: &LayerStep<'_>,
        stores: &mut [PagedRows],
    ) -> Result<Vec<f32>, ModelError> {
        let n = step.rows.len();
        let hd = self.head_dim;
        let (qw, kvw) = (self.heads * hd, self.kv_heads * hd);
        let qkv = self.qkv.forward(h, n)?;
        let mut q = Vec::with_capacity(n * qw);
        let mut k = Vec::with_capacity(n * kvw);
        let mut v = Vec::with_capacity(n * kvw);
        for row in qkv.chunks_exact(qw + 2 * kvw) {
            q.extend_from_slice(&row[..qw]);
            k.extend_from_slice(&row[qw..qw + kvw]);
            v.extend_from_slice(&row[qw + kvw..]);
        }
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            qn.apply(&mut q);
            kn.apply(&mut k);
        }
        for (i, (qr, kr)) in q
            .chunks_exact_mut(qw)
            .zip(k.chunks_exact_mut(kvw))
            .enumerate()
        {
            let (cos, sin) = &step.cos_sin[i];
            self.rope.apply(qr, hd, cos, sin);
            self.rope.apply(kr, hd, cos, sin);
        }
        let [ks, vs] = stores else {
            return Err(ModelError::Cache("GQA needs a K and a V store".into()));
        };
        ks.write(step.rows, step.tables, &k);
        vs.write(step.rows, step.tables, &v);
        let shape = AttnShape::gqa(self.heads, self.kv_heads, hd, (hd as f32).powf(-0.5));
        let attn = paged_attention(&q, ks.view(), vs.view(), step.rows, step.tables, &shape);
        self.o.forward(&attn, n)
    }

    fn store_widths(&self) -> Vec<usize> {
        vec![self.kv_heads * self.head_dim; 2]
    }

    fn bytes(&self) -> u64 {
        self.qkv.bytes()
            + self.o.bytes()
            + self.q_norm.as_ref().map_or(0, RmsNorm::bytes)
            + self.k_norm.as_ref().map_or(0, RmsNorm::bytes)
    }
}
