//! Command line (vLLM-style flags) and the sizing derived from it. The only place that reads
//! the environment (`GLM_API_KEY`, `RUST_LOG`).

use std::{net::IpAddr, path::PathBuf};

use clap::{Args, ValueEnum};

use crate::kv_cache::blocks_for;

mod limits;

pub use limits::LimitArgs;

/// Tool-call parsers the server knows.
pub const TOOL_CALL_PARSERS: &[&str] = &["glm45", "glm47"];
/// Reasoning parsers the server knows.
pub const REASONING_PARSERS: &[&str] = &["glm45"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, text otherwise.
    Auto,
    Json,
    Text,
}

/// `glm-server serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Model directory (config.json, *.safetensors, tokenizer files), or `demo` for the
    /// built-in deterministic demo model.
    #[arg(long)]
    pub model: String,
    /// Name clients use in `model`; defaults to the directory name (or `demo`).
    #[arg(long)]
    pub served_model_name: Option<String>,
    #[arg(long, default_value = "0.0.0.0")]
    pub host: IpAddr,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Prompt + output tokens per sequence; defaults to the model's, capped by the KV cache.
    #[arg(long)]
    pub max_model_len: Option<usize>,
    /// Sequences in the running batch at most.
    #[arg(long, default_value_t = 256)]
    pub max_num_seqs: usize,
    /// Tokens per engine step at most (prefill chunks + decodes).
    #[arg(long, default_value_t = 2048)]
    pub max_num_batched_tokens: usize,
    /// KV cache size: bytes (`4GiB`, `512MiB`, `1000000`) or a fraction of memory (`0.9`).
    #[arg(long)]
    pub kv_cache_memory: Option<String>,
    /// Tokens per KV cache block.
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    #[arg(long = "no-enable-prefix-caching", action = clap::ArgAction::SetFalse)]
    pub enable_prefix_caching: bool,
    /// Bearer token required on the API routes (id `default`); none leaves them open
    /// unless `--api-key-file` gives keys.
    #[arg(long, env = "GLM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Tool-call format of the model: glm45 (GLM-4.5/4.6) or glm47 (GLM-4.7).
    #[arg(long)]
    pub tool_call_parser: Option<String>,
    /// Reasoning format: glm45 (`<think>...</think>`).
    #[arg(long)]
    pub reasoning_parser: Option<String>,
    #[arg(long)]
    pub enable_auto_tool_choice: bool,
    /// A Jinja chat template file overriding the model's.
    #[arg(long)]
    pub chat_template: Option<PathBuf>,
    /// Requests waiting for admission before new ones get 429.
    #[arg(long, default_value_t = 1024)]
    pub max_queue: usize,
    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
    /// `cpu`, `cuda` (= `cuda:0`) or `cuda:N`. A GPU needs a build with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// What runs the model: `auto` (`cpu` on the CPU, `cuda` on a GPU), `cpu` (hand-written
    /// SIMD kernels), `reference` (the device-generic tensor path, on any device), `cuda`.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Check instead of serving: parse every flag, read config.json and the tokenizer, check
    /// architecture, backend, device and dtype, print what would run and exit 0 (or 2 with
    /// the reason) without loading weights. `all` also requires this build and machine to
    /// have the device; `args` checks what any glm-server build accepts (the operator's test).
    #[arg(long, value_enum, value_name = "SCOPE", num_args = 0..=1, default_missing_value = "all")]
    pub check: Option<CheckScope>,
    /// Seed for requests that bring none (reproducible sampling across a run).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Accepted for vLLM compatibility; only 1 is supported.
    #[arg(long, default_value_t = 1)]
    pub tensor_parallel_size: usize,
    /// Type the linear-layer weights are kept in (vLLM's spellings): auto keeps the
    /// checkpoint's (bf16 for GLM releases, half the bytes per decoded token of float32;
    /// FP8 checkpoints — zai-org's `fp8` with 128x128 block scales, or compressed-tensors
    /// float8 with tensor/channel/block scales — stay 8-bit with their scales, a quarter of
    /// float32's bytes, widened exactly in the kernels); float32, bfloat16 or float16 convert
    /// at load (FP8 is dequantized first). Compute and activations are f32 either way, so
    /// FP8 activation scales are not applied. The GPU backends dequantize FP8 at load.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// API keys, rate limits, connection limits and timeouts.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `--check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckScope {
    /// The flags, the model directory, and this build and machine.
    All,
    /// The flags and the model directory against what glm-server supports in any build.
    Args,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("--{flag}: {message}")]
    Invalid { flag: &'static str, message: String },
}

impl ConfigError {
    pub fn kind(&self) -> &'static str {
        "invalid_argument"
    }

    pub(crate) fn invalid(flag: &'static str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            flag,
            message: message.into(),
        }
    }
}

/// `--kv-cache-memory` parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KvMemory {
    Bytes(u64),
    /// Of the device's memory (system RAM on the CPU), weights included, as vLLM's
    /// `--gpu-memory-utilization`.
    Fraction(f64),
}

/// Default KV cache on the CPU (vLLM's CPU backend uses 4 GiB too).
pub const DEFAULT_CPU_KV_BYTES: u64 = 4 << 30;

pub fn parse_kv_memory(s: &str) -> Result<KvMemory, ConfigError> {
    let t = s.trim();
    let bad = || {
        ConfigError::invalid(
            "kv-cache-memory",
            format!("{s:?} is not a size or a fraction"),
        )
    };
    if t.contains('.') && !t.chars().any(|c| c.is_ascii_alphabetic()) {
        let f: f64 = t.parse().map_err(|_| bad())?;
        if !(f > 0.0 && f <= 1.0) {
            return Err(ConfigError::invalid(
                "kv-cache-memory",
                "a fraction must be in (0, 1]",
            ));
        }
        return Ok(KvMemory::Fraction(f));
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).map(KvMemory::Bytes).ok_or_else(bad)
}

/// Total system memory in bytes (Linux `/proc/meminfo`).
pub fn system_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What the engine gets from the flags and the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    pub num_blocks: usize,
    pub max_model_len: usize,
}

/// Sizes the KV cache: bytes (or fraction of `total_memory` minus the weights) over the bytes
/// of one block; never more blocks than `max_num_seqs` full-length sequences can use.
pub fn size_kv_cache(
    args: &ServeArgs,
    kv_bytes_per_token: usize,
    weight_bytes: u64,
    max_position_embeddings: usize,
    total_memory: Option<u64>,
) -> Result<Sizing, ConfigError> {
    if args.block_size == 0 || args.block_size > 1024 {
        return Err(ConfigError::invalid(
            "block-size",
            "must be between 1 and 1024",
        ));
    }
    let budget = match args
        .kv_cache_memory
        .as_deref()
        .map(parse_kv_memory)
        .transpose()?
    {
        Some(KvMemory::Bytes(b)) => b,
        Some(KvMemory::Fraction(f)) => {
            let total = total_memory.ok_or_else(|| {
                ConfigError::invalid(
                    "kv-cache-memory",
                    "device memory unknown; give a size in bytes",
                )
            })?;
            ((total as f64 * f) as u64).saturating_sub(weight_bytes)
        }
        None => DEFAULT_CPU_KV_BYTES,
    };
    let block_bytes = (kv_bytes_per_token.max(1) as u64) * args.block_size as u64;
    let mut num_blocks = (budget / block_bytes) as usize;
    let kv_tokens = num_blocks * args.block_size;
    let max_model_len = match args.max_model_len {
        Some(m) if m > kv_tokens => {
            return Err(ConfigError::invalid(
                "max-model-len",
                format!("{m} tokens do not fit in the KV cache ({kv_tokens} tokens); raise --kv-cache-memory"),
            ))
        }
        Some(0) => return Err(ConfigError::invalid("max-model-len", "must be positive")),
        Some(m) => m,
        None => max_position_embeddings.min(kv_tokens),
    };
    if max_model_len < 2 {
        return Err(ConfigError::invalid(
            "kv-cache-memory",
            format!("the KV cache holds only {kv_tokens} tokens"),
        ));
    }
    let useful = args
        .max_num_seqs
        .max(1)
        .saturating_mul(blocks_for(max_model_len, args.block_size));
    num_blocks = num_blocks.min(useful);
    Ok(Sizing {
        num_blocks,
        max_model_len,
    })
}

impl ServeArgs {
    /// `--dtype` parsed.
    pub fn weight_dtype(&self) -> Result<glm_model::WeightDtype, ConfigError> {
        self.dtype
            .parse()
            .map_err(|e: String| ConfigError::invalid("dtype", e))
    }

    /// `--device`, `--backend` and `--dtype` as the model crate takes them.
    pub fn load_options(&self) -> Result<glm_model::LoadOptions, ConfigError> {
        Ok(glm_model::LoadOptions {
            backend: self
                .backend
                .parse()
                .map_err(|e: String| ConfigError::invalid("backend", e))?,
            device: self
                .device
                .parse()
                .map_err(|e: String| ConfigError::invalid("device", e))?,
            dtype: self.weight_dtype()?,
        })
    }

    /// Checks flag combinations that do not depend on the model.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.tensor_parallel_size != 1 {
            return Err(ConfigError::invalid(
                "tensor-parallel-size",
                "only 1 is supported (no tensor parallelism yet)",
            ));
        }
        if let Some(p) = &self.tool_call_parser {
            if !TOOL_CALL_PARSERS.contains(&p.as_str()) {
                return Err(ConfigError::invalid(
                    "tool-call-parser",
                    format!("{p:?} is not one of {TOOL_CALL_PARSERS:?}"),
                ));
            }
        }
        if let Some(p) = &self.reasoning_parser {
            if !REASONING_PARSERS.contains(&p.as_str()) {
                return Err(ConfigError::invalid(
                    "reasoning-parser",
                    format!("{p:?} is not one of {REASONING_PARSERS:?}"),
                ));
            }
        }
        if self.max_num_seqs == 0 || self.max_num_batched_tokens == 0 {
            return Err(ConfigError::invalid(
                "max-num-seqs",
                "limits must be positive",
            ));
        }
        let opts = self.load_options()?;
        opts.resolve()
            .map_err(|e| ConfigError::invalid("backend", e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn args(extra: &[&str]) -> ServeArgs {
        let mut v = vec!["x", "--model", "demo"];
        v.extend_from_slice(extra);
        Cli::parse_from(v).serve
    }

    #[test]
    fn kv_memory_units() {
        assert_eq!(parse_kv_memory("4GiB").unwrap(), KvMemory::Bytes(4 << 30));
        assert_eq!(
            parse_kv_memory("512mib").unwrap(),
            KvMemory::Bytes(512 << 20)
        );
        assert_eq!(parse_kv_memory("1000").unwrap(), KvMemory::Bytes(1000));
        assert_eq!(parse_kv_memory("0.5").unwrap(), KvMemory::Fraction(0.5));
        assert!(parse_kv_memory("1.5").is_err());
        assert!(parse_kv_memory("lots").is_err());
        assert!(parse_kv_memory("3 parsecs").is_err());
    }

    #[test]
    fn sizing_from_bytes_and_fraction() {
        let a = args(&["--kv-cache-memory", "1MiB", "--block-size", "16"]);
        // 1 MiB / (64 B * 16) = 1024 blocks = 16384 tokens.
        let s = size_kv_cache(&a, 64, 0, 4096, None).unwrap();
        assert_eq!(s.max_model_len, 4096);
        assert_eq!(s.num_blocks, 1024);
        let a = args(&["--kv-cache-memory", "0.5", "--max-num-seqs", "1"]);
        let s = size_kv_cache(&a, 64, 1 << 20, 4096, Some(4 << 20)).unwrap();
        // (2 MiB - 1 MiB) / 1 KiB = 1024 blocks, capped at 1 seq * 256 blocks.
        assert_eq!(s.num_blocks, 256);
        assert!(size_kv_cache(&a, 64, 0, 4096, None).is_err());
        let a = args(&["--kv-cache-memory", "64KiB", "--max-model-len", "4096"]);
        assert!(size_kv_cache(&a, 64, 0, 4096, None).is_err());
        let a = args(&["--kv-cache-memory", "64KiB"]);
        assert_eq!(
            size_kv_cache(&a, 64, 0, 4096, None).unwrap().max_model_len,
            1024
        );
    }

    #[test]
    fn flag_checks() {
        assert!(args(&[]).check().is_ok());
        assert!(args(&["--tool-call-parser", "hermes"]).check().is_err());
        // Without a parser flag this is checked after loading: GLM-4.7-Flash has a default.
        assert!(args(&["--enable-auto-tool-choice"]).check().is_ok());
        assert!(
            args(&["--enable-auto-tool-choice", "--tool-call-parser", "glm45"])
                .check()
                .is_ok()
        );
        assert!(args(&["--tensor-parallel-size", "2"]).check().is_err());
        assert!(args(&["--device", "cuda:1"]).check().is_ok());
        assert!(args(&["--device", "gpu"]).check().is_err());
        assert!(args(&["--backend", "reference"]).check().is_ok());
        assert!(args(&["--backend", "tpu"]).check().is_err());
        // The SIMD kernels run on the host only; cuda needs a GPU.
        assert!(args(&["--device", "cuda", "--backend", "cpu"])
            .check()
            .is_err());
        assert!(args(&["--backend", "cuda"]).check().is_err());
        assert!(args(&[]).enable_prefix_caching);
        assert!(!args(&["--no-enable-prefix-caching"]).enable_prefix_caching);
    }
}
