//! GLM/DeepSeek-V3 style mixture of experts: sigmoid router in f32, correction bias used only
//! to choose experts, group-limited top-k, optional renormalisation, routed scaling, plus
//! shared experts. Only experts chosen by at least one token are computed.

use rayon::prelude::*;

use crate::batch::ModelError;
use crate::kernels;
use crate::layers::{Linear, Mlp};
use crate::weights::Checkpoint;

/// Router settings (from config.json).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouterConfig {
    pub n_experts: usize,
    pub top_k: usize,
    pub n_group: usize,
    pub topk_group: usize,
    pub norm_topk_prob: bool,
    pub routed_scaling_factor: f32,
}

#[derive(Debug)]
pub struct Router {
    pub cfg: RouterConfig,
    /// `[n_experts, hidden]`, no bias.
    pub gate: Linear,
    /// `e_score_correction_bias` `[n_experts]`; zeros when the checkpoint has none.
    pub correction_bias: Vec<f32>,
}

impl Router {
    pub fn load(
        ck: &Checkpoint,
        prefix: &str,
        hidden: usize,
        cfg: RouterConfig,
    ) -> Result<Self, ModelError> {
        let gate = Linear::load(ck, prefix, hidden, cfg.n_experts, false)?;
        let correction_bias = ck
            .f32_opt(
                &format!("{prefix}.e_score_correction_bias"),
                &[cfg.n_experts],
            )?
            .unwrap_or_else(|| vec![0.0; cfg.n_experts]);
        Ok(Self {
            cfg,
            gate,
            correction_bias,
        })
    }

    /// Per row: chosen expert ids and their weights (`top_k` each, flattened).
    pub fn route(&self, h: &[f32], rows: usize) -> Result<(Vec<usize>, Vec<f32>), ModelError> {
        let logits = self.gate.forward(h, rows)?;
        let k = self.cfg.top_k;
        let mut ids = Vec::with_capacity(rows * k);
        let mut weights = Vec::with_capacity(rows * k);
        for row in logits.chunks_exact(self.cfg.n_experts) {
            let (i, w) = self.route_one(row);
            ids.extend(i);
            weights.extend(w);
        }
        Ok((ids, weights))
    }

    /// Mirrors transformers' `Glm4MoeTopkRouter` / `get_topk_indices` for one token.
    pub fn route_one(&self, logits: &[f32]) -> (Vec<usize>, Vec<f32>) {
        route_one(&self.cfg, &self.correction_bias, logits)
    }
}

/// Mirrors transformers' `Glm4MoeTopkRouter` / `get_topk_indices` for one token.
pub fn route_one(
    c: &RouterConfig,
    correction_bias: &[f32],
    logits: &[f32],
) -> (Vec<usize>, Vec<f32>) {
    let scores: Vec<f32> = logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect();
    let mut choice: Vec<f32> = scores
        .iter()
        .zip(correction_bias)
        .map(|(s, b)| s + b)
        .collect();
    if c.n_group > 1 {
        let per = c.n_experts / c.n_group;
        // Group score = sum of its two best choice scores.
        let group_scores: Vec<f32> = choice
            .chunks_exact(per)
            .map(|g| {
                let best = top_indices(g, 2.min(g.len()));
                best.iter().map(|&i| g[i]).sum()
            })
            .collect();
        let keep = top_indices(&group_scores, c.topk_group);
        for (gi, g) in choice.chunks_exact_mut(per).enumerate() {
            if !keep.contains(&gi) {
                // transformers masks with 0.0 (not -inf): keep that exactly.
                g.iter_mut().for_each(|v| *v = 0.0);
            }
        }
    }
    let idx = top_indices(&choice, c.top_k);
    let mut w: Vec<f32> = idx.iter().map(|&i| scores[i]).collect();
    if c.norm_topk_prob {
        let denom = w.iter().sum::<f32>() + 1e-20;
        w.iter_mut().for_each(|v| *v /= denom);
    }
    w.iter_mut().for_each(|v| *v *= c.routed_scaling_factor);
    (idx, w)
}

/// Indices of the `k` largest values, best first; the lower index wins ties (as torch.topk
/// on CPU does in practice for distinct values).
pub fn top_indices(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

#[derive(Debug)]
pub struct Moe {
    pub router: Router,
    pub experts: Vec<Mlp>,
    pub shared: Option<Mlp>,
}

impl Moe {
    /// Loads `{prefix}.gate`, `{prefix}.experts.{e}.*` and `{prefix}.shared_experts.*`.
    pub fn load(
        ck: &Checkpoint,
        prefix: &str,
        hidden: usize,
        moe_inter: usize,
        n_shared: usize,
        cfg: RouterConfig,
    ) -> Result<Self, ModelError> {
        let router = Router::load(ck, &format!("{prefix}.gate"), hidden, cfg)?;
        let experts = (0..cfg.n_experts)
            .map(|e| Mlp::load(ck, &format!("{prefix}.experts.{e}"), hidden, moe_inter))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = if n_shared > 0 {
            Some(Mlp::load(
                ck,
                &format!("{prefix}.shared_experts"),
                hidden,
                moe_inter * n_shared,
            )?)
        } else {
            None
        };
        Ok(Self {
            router,
            experts,
            shared,
        })
    }

    /// `h`: `rows` rows of hidden; returns routed + shared output.
    pub fn forward(&self, h: &[f32], rows: usize) -> Result<Vec<f32>, ModelError> {
        let hidden = self.router.gate.in_dim;
        let k = self.router.cfg.top_k;
        let (ids, weights) = self.router.route(h, rows)?;
        // Group (row, weight) by expert so each chosen expert reads its weights once.
        let mut per_expert: Vec<Vec<(usize, f32)>> = vec![Vec::new(); self.experts.len()];
        for r in 0..rows {
            for j in 0..k {
                per_expert[ids[r * k + j]].push((r, weights[r * k + j]));
            }
        }
        // The chosen experts (and the shared experts) run side by side: one parallel region
        // for the layer's experts instead of one per projection.
        let jobs: Vec<(&Mlp, &[(usize, f32)])> = self
            .experts
            .iter()
            .zip(&per_expert)
            .filter(|(_, a)| !a.is_empty())
            .map(|(e, a)| (e, a.as_slice()))
            .collect();
        let shared = || self.shared.as_ref().map(|s| s.forward(h, rows)).transpose();
        let routed = || {
            jobs.par_iter()
                .map(|&(expert, assigned)| {
                    let mut gathered = Vec::with_capacity(assigned.len() * hidden);
                    for &(r, _) in assigned {
                        gathered.extend_from_slice(&h[r * hidden..(r + 1) * hidden]);
                    }
                    expert.forward(&gathered, assigned.len())
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let (shared_out, routed_out) = rayon::join(shared, routed);
        let mut out = shared_out?.unwrap_or_else(|| vec![0f32; rows * hidden]);
        for (&(_, assigned), y) in jobs.iter().zip(routed_out?) {
            for (i, &(r, w)) in assigned.iter().enumerate() {
                kernels::axpy(
                    &mut out[r * hidden..(r + 1) * hidden],
                    w,
                    &y[i * hidden..(i + 1) * hidden],
                );
            }
        }
        Ok(out)
    }

    /// Weight bytes one token reads: router, `top_k` experts and the shared experts.
    pub fn active_bytes(&self) -> u64 {
        let expert = self.experts.first().map_or(0, Mlp::bytes);
        self.router.gate.bytes()
            + self.router.cfg.top_k as u64 * expert
            + self.shared.as_ref().map_or(0, Mlp::bytes)
    }

    pub fn bytes(&self) -> u64 {
        self.router.gate.bytes()
            + self.experts.iter().map(Mlp::bytes).sum::<u64>()
            + self.shared.as_ref().map_or(0, Mlp::bytes)
    }
}

#[cfg(test)]
#[path = "moe/tests.rs"]
mod tests;
