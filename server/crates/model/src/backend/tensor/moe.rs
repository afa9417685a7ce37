//! Mixture of experts on tensors. The router runs on the device in f32; its `[rows, experts]`
//! logits come to the host, where the same [`route_one`] as the CPU backend picks experts
//! (group-limited top-k with `e_score_correction_bias`). Rows are then grouped by expert and
//! each chosen expert runs once as a batched GEMM over its rows (not one GEMM per token); the
//! shared experts run over all rows.

use candle_core::{DType, Tensor};

use super::ops::{TLinear, TMlp};
use super::TensorCtx;
use crate::batch::ModelError;
use crate::moe::{route_one, RouterConfig};
use crate::weights::Checkpoint;

#[derive(Debug)]
pub struct TMoe {
    pub cfg: RouterConfig,
    /// Router `[experts, hidden]`, f32.
    pub gate: TLinear,
    pub correction_bias: Vec<f32>,
    pub experts: Vec<TMlp>,
    pub shared: Option<TMlp>,
}

impl TMoe {
    pub fn load(
        ck: &Checkpoint,
        prefix: &str,
        hidden: usize,
        moe_inter: usize,
        n_shared: usize,
        cfg: RouterConfig,
        ctx: &TensorCtx,
    ) -> Result<Self, ModelError> {
        let gate_name = format!("{prefix}.gate");
        let f32_ctx = TensorCtx {
            dtype: DType::F32,
            ..ctx.clone()
        };
        let gate = TLinear::load(ck, &gate_name, hidden, cfg.n_experts, false, &f32_ctx)?;
        let correction_bias = ck
            .f32_opt(
                &format!("{gate_name}.e_score_correction_bias"),
                &[cfg.n_experts],
            )?
            .unwrap_or_else(|| vec![0.0; cfg.n_experts]);
        let experts = (0..cfg.n_experts)
            .map(|e| TMlp::load(ck, &format!("{prefix}.experts.{e}"), hidden, moe_inter, ctx))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = (n_shared > 0)
            .then(|| {
                TMlp::load(
                    ck,
                    &format!("{prefix}.shared_experts"),
                    hidden,
                    moe_inter * n_shared,
                    ctx,
                )
            })
            .transpose()?;
        Ok(Self {
            cfg,
            gate,
            correction_bias,
            experts,
            shared,
        })
    }

    /// `x`: `[rows, hidden]` f32; returns routed + shared output.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let logits = self.gate.forward(x)?.to_vec2::<f32>()?;
        let mut per_expert: Vec<(Vec<u32>, Vec<f32>)> =
            vec![Default::default(); self.cfg.n_experts];
        for (r, row) in logits.iter().enumerate() {
            let (ids, ws) = route_one(&self.cfg, &self.correction_bias, row);
            for (e, w) in ids.into_iter().zip(ws) {
                per_expert[e].0.push(r as u32);
                per_expert[e].1.push(w);
            }
        }
        let mut out = match &self.shared {
            Some(s) => s.forward(x)?,
            None => x.zeros_like()?,
        };
        for (expert, (rows, ws)) in self.experts.iter().zip(per_expert) {
            if rows.is_empty() {
                continue;
            }
            let n = rows.len();
            let idx = Tensor::from_vec(rows, n, x.device())?;
            let w = Tensor::from_vec(ws, (n, 1), x.device())?;
            let y = expert
                .forward(&x.index_select(&idx, 0)?)?
                .broadcast_mul(&w)?;
            out = out.index_add(&idx, &y, 0)?;
        }
        Ok(out)
    }

    /// Weight bytes one token reads: router, `top_k` experts and the shared experts.
    pub fn active_bytes(&self) -> u64 {
        let expert = self.experts.first().map_or(0, TMlp::bytes);
        self.gate.bytes()
            + self.cfg.top_k as u64 * expert
            + self.shared.as_ref().map_or(0, TMlp::bytes)
    }

    pub fn bytes(&self) -> u64 {
        self.gate.bytes()
            + self.experts.iter().map(TMlp::bytes).sum::<u64>()
            + self.shared.as_ref().map_or(0, TMlp::bytes)
    }
}
