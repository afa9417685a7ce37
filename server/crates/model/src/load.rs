//! Loading a checkpoint directory onto a backend, and `--check`: everything a load would
//! decide, without reading weights.

use std::path::Path;

use crate::arch::glm4moe::{self, Glm4MoeConfig, GLM4_MOE};
use crate::arch::glm4moelite::{self, Glm4MoeLiteConfig, GLM4_MOE_LITE};
use crate::backend::cpu::CpuStack;
use crate::backend::tensor::{TensorCtx, TensorStack};
use crate::backend::{Backend, DeviceSpec, LoadOptions};
use crate::batch::{CausalLm, ModelError, ModelInfo};
use crate::config::{read_json, ArchConfig, CommonConfig, RawConfig};
use crate::layers::Rope;
use crate::shell::Model;
use crate::weights::{Checkpoint, WeightDtype};

/// What a load of a directory would run, decided from config.json and the flags alone.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPlan {
    pub architecture: String,
    pub backend: Backend,
    pub device: DeviceSpec,
    pub dtype: WeightDtype,
    /// The checkpoint's FP8 scheme, when its weights are float8.
    pub fp8: Option<crate::config::Fp8Scheme>,
    pub num_hidden_layers: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub kv_bytes_per_token: usize,
}

impl std::fmt::Display for ModelPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} layers, vocab {}, context {}) on {} with backend {}, weights {:?}{}, \
             KV cache {} B per token",
            self.architecture,
            self.num_hidden_layers,
            self.vocab_size,
            self.max_position_embeddings,
            self.device,
            self.backend,
            self.dtype,
            match self.fp8.map(|s| s.block) {
                None => String::new(),
                Some(None) => " of an FP8 checkpoint (per-tensor/per-row scales)".to_owned(),
                Some(Some([r, c])) => format!(" of an FP8 checkpoint ({r}x{c} block scales)"),
            },
            self.kv_bytes_per_token
        )
    }
}

enum AnyArch {
    Gqa(Glm4MoeConfig),
    Mla(Glm4MoeLiteConfig),
}

impl AnyArch {
    fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let raw = RawConfig::from_json(&read_json(&dir.join("config.json"))?)?;
        let mut cfg = match raw.architecture()?.as_str() {
            GLM4_MOE => AnyArch::Gqa(Glm4MoeConfig::from_raw(&raw)?),
            GLM4_MOE_LITE => AnyArch::Mla(Glm4MoeLiteConfig::from_raw(&raw)?),
            other => return Err(ModelError::UnsupportedArchitecture(other.to_owned())),
        };
        match &mut cfg {
            AnyArch::Gqa(c) => c.common.merge_generation_config(dir)?,
            AnyArch::Mla(c) => c.common.merge_generation_config(dir)?,
        }
        Ok(cfg)
    }

    fn common(&self) -> &CommonConfig {
        match self {
            AnyArch::Gqa(c) => &c.common,
            AnyArch::Mla(c) => &c.common,
        }
    }

    fn kv_bytes_per_token(&self) -> usize {
        match self {
            AnyArch::Gqa(c) => c.kv_bytes_per_token(),
            AnyArch::Mla(c) => c.kv_layout().latent_bytes_per_token,
        }
    }

    fn rope(&self) -> Rope {
        match self {
            AnyArch::Gqa(c) => Rope::new(c.rotary_dim(), c.rope_theta),
            AnyArch::Mla(c) => Rope::new(c.qk_rope_head_dim, c.rope_theta),
        }
    }
}

/// Checks what [`load_model`] would run for `dir` and `opts` without reading weights: the
/// architecture and config, the backend against the device, and (when `this_build`) that this
/// build has the device compiled in.
pub fn check_model(
    dir: &Path,
    opts: &LoadOptions,
    this_build: bool,
) -> Result<ModelPlan, ModelError> {
    let cfg = AnyArch::from_dir(dir)?;
    let backend = opts.resolve()?;
    if this_build && !opts.device.compiled_in() {
        // The same error opening the device gives.
        opts.device.open()?;
    }
    let c = cfg.common();
    Ok(ModelPlan {
        architecture: c.architecture.clone(),
        backend,
        device: opts.device,
        dtype: opts.dtype,
        fp8: c.fp8,
        num_hidden_layers: c.num_hidden_layers,
        vocab_size: c.vocab_size,
        max_position_embeddings: c.max_position_embeddings,
        kv_bytes_per_token: cfg.kv_bytes_per_token(),
    })
}

/// Loads the model in `dir` onto `opts`' backend and device, dispatching on
/// `architectures[0]` of its config.json.
pub fn load_model(dir: &Path, opts: &LoadOptions) -> Result<Box<dyn CausalLm>, ModelError> {
    let backend = opts.resolve()?;
    let _span = tracing::info_span!("load_model", dir = %dir.display(), %backend).entered();
    if backend == Backend::Cpu {
        tracing::info!(
            isa = crate::kernels::isa::selected().name(),
            "CPU kernels (GLM_CPU_ISA picks avx2 or scalar below the CPU's best)"
        );
    }
    let cfg = AnyArch::from_dir(dir)?;
    let rope = cfg.rope();
    let c = cfg.common().clone();
    let info = |active: u64, total: u64, device_memory: Option<u64>| ModelInfo {
        architecture: c.architecture.clone(),
        vocab_size: c.vocab_size,
        max_position_embeddings: c.max_position_embeddings,
        num_hidden_layers: c.num_hidden_layers,
        eos_token_ids: c.eos_token_ids.clone(),
        kv_bytes_per_token: cfg.kv_bytes_per_token(),
        active_weight_bytes_per_token: active,
        weight_bytes: total,
        device: opts.device.to_string(),
        backend: backend.to_string(),
        device_memory,
    };
    let model: Box<dyn CausalLm> = match backend {
        Backend::Cpu => {
            let ck = Checkpoint::open(dir)?
                .with_dtype(opts.dtype)
                .with_fp8(c.fp8);
            match &cfg {
                AnyArch::Gqa(a) => {
                    let s = CpuStack::load(&ck, &c, rope, |ck: &Checkpoint, p: &str| {
                        glm4moe::Attention::load(ck, p, a)
                    })?;
                    let i = info(s.active_weight_bytes(), s.weight_bytes(), None);
                    Box::new(Model::new(i, s))
                }
                AnyArch::Mla(a) => {
                    let s = CpuStack::load(&ck, &c, rope, |ck: &Checkpoint, p: &str| {
                        glm4moelite::MlaAttention::load(ck, p, a)
                    })?;
                    let i = info(s.active_weight_bytes(), s.weight_bytes(), None);
                    Box::new(Model::new(i, s))
                }
            }
        }
        Backend::Reference | Backend::Cuda => {
            let ctx = TensorCtx::new(opts.device.open()?, opts.dtype, backend == Backend::Cuda)?;
            let ck = Checkpoint::open(dir)?.with_fp8(c.fp8);
            match &cfg {
                AnyArch::Gqa(a) => {
                    let s = TensorStack::load(&ck, &c, rope, &ctx, |ck, p, ctx| {
                        glm4moe::tensor::Attention::load(ck, p, a, ctx)
                    })?;
                    let i = info(s.active_weight_bytes(), s.weight_bytes(), ctx.memory());
                    Box::new(Model::new(i, s))
                }
                AnyArch::Mla(a) => {
                    let s = TensorStack::load(&ck, &c, rope, &ctx, |ck, p, ctx| {
                        glm4moelite::tensor::MlaAttention::load(ck, p, a, ctx)
                    })?;
                    let i = info(s.active_weight_bytes(), s.weight_bytes(), ctx.memory());
                    Box::new(Model::new(i, s))
                }
            }
        }
    };
    let i = model.info();
    tracing::info!(
        architecture = %i.architecture,
        layers = i.num_hidden_layers,
        weight_mib = i.weight_bytes >> 20,
        device = %i.device,
        backend = %i.backend,
        peak_host_rss_mib = peak_rss_bytes().map(|b| b >> 20),
        "model loaded"
    );
    Ok(model)
}

/// Peak resident memory of this process (`VmHWM`, Linux): what a load cost the host. On a
/// GPU, weights go from the mmap to the device tensor by tensor, so it stays near the largest
/// tensor plus the page cache's share of the mapping rather than the checkpoint's size.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}
