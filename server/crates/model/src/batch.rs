//! The contract between the serving engine and a model.

/// One sequence's part of a forward step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqInput {
    /// New tokens to run (a prefill chunk, or one decode token).
    pub tokens: Vec<u32>,
    /// Tokens of this sequence already in the KV cache; `tokens[0]` sits at this position.
    pub num_cached: usize,
    /// Physical KV block ids of the sequence in order; covers `num_cached + tokens.len()`.
    pub block_table: Vec<u32>,
    /// Return logits for the last of `tokens` (false for a prefill chunk that is not the last).
    pub want_logits: bool,
}

/// All sequences of one engine step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardBatch {
    pub seqs: Vec<SeqInput>,
}

/// Size of the paged KV cache the model allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    pub num_blocks: usize,
    pub block_size: usize,
}

/// What the engine needs to know about a loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// `architectures[0]` of config.json, e.g. `Glm4MoeForCausalLM`.
    pub architecture: String,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub num_hidden_layers: usize,
    /// End-of-sequence ids from config.json / generation_config.json.
    pub eos_token_ids: Vec<u32>,
    /// Bytes of KV cache one token occupies over all layers (for sizing the cache).
    pub kv_bytes_per_token: usize,
    /// Bytes of weights read to decode one token at batch 1 (active experts only).
    pub active_weight_bytes_per_token: u64,
    /// Bytes of all weights as held in memory.
    pub weight_bytes: u64,
    /// Device the model runs on, e.g. `cpu` or `cuda:0`.
    pub device: String,
    /// Backend that runs it: `cpu`, `reference` or `cuda`.
    pub backend: String,
    /// Total memory of the device in bytes when known (GPUs); sizes `--kv-cache-memory` as a
    /// fraction. `None` on the CPU (the server reads system memory).
    pub device_memory: Option<u64>,
}

/// Errors a model can report. `kind()` is a stable snake_case tag.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unsupported architecture {0:?}")]
    UnsupportedArchitecture(String),
    #[error("config.json: {0}")]
    Config(String),
    #[error("tensor {tensor} in {file}: {message}")]
    Tensor {
        tensor: String,
        file: String,
        message: String,
    },
    #[error("io error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    #[error("KV cache not initialised or too small: {0}")]
    Cache(String),
    #[error("compute error: {0}")]
    Compute(String),
    #[error("device: {0}")]
    Device(String),
}

impl ModelError {
    pub fn kind(&self) -> &'static str {
        match self {
            ModelError::UnsupportedArchitecture(_) => "unsupported_architecture",
            ModelError::Config(_) => "config",
            ModelError::Tensor { .. } => "tensor",
            ModelError::Io { .. } => "io",
            ModelError::InvalidBatch(_) => "invalid_batch",
            ModelError::Cache(_) => "cache",
            ModelError::Compute(_) => "compute",
            ModelError::Device(_) => "device",
        }
    }
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError::Compute(e.to_string())
    }
}

/// A causal language model with a paged KV cache, driven by the engine thread.
pub trait CausalLm: Send {
    fn info(&self) -> &ModelInfo;
    /// Allocate (or re-allocate, dropping contents) the paged KV cache.
    fn init_cache(&mut self, cfg: CacheConfig) -> Result<(), ModelError>;
    /// Run one step. Returns, per sequence in order, the logits (`vocab_size` floats) of its
    /// last token when `want_logits` is set, else `None`. Writes the new tokens' K/V into
    /// the sequence's blocks.
    fn forward(&mut self, batch: &ForwardBatch) -> Result<Vec<Option<Vec<f32>>>, ModelError>;
}
