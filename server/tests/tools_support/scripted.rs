//! A scripted token source for API tests: a [`CausalLm`] whose logits force a given token
//! sequence. A random-weight model never calls tools; this one "says" a scripted GLM output
//! (encoded with the fixture tokenizer), so everything from token ids onward — sampling,
//! detokenizer, parsers, streaming, wire format — runs the production code.
//!
//! Scripts are chosen by a trigger string found in the decoded prompt (the last trigger
//! wins, so multi-turn prompts pick the newest); the position inside the script is the
//! longest script prefix the history ends with. A script must therefore not begin with the
//! prompt's last token. After the script the model emits its first EOS id.

use glm_model::{CacheConfig, CausalLm, ForwardBatch, ModelError, ModelInfo};
use glm_tokenizer::GlmTokenizer;

/// Logit of the forced token; every other token gets 0, so even temperature 1 sampling
/// picks it (probability 1 - vocab * e^-100).
const FORCED_LOGIT: f32 = 100.0;

#[derive(Debug, Clone)]
pub struct Script {
    pub trigger: String,
    pub tokens: Vec<u32>,
}

#[derive(Debug)]
pub struct ScriptedModel {
    info: ModelInfo,
    tokenizer: GlmTokenizer,
    scripts: Vec<Script>,
    block_size: usize,
    slots: Vec<Option<u32>>,
}

impl ScriptedModel {
    /// `scripts`: (trigger, GLM output text) pairs; the text is encoded with `tokenizer`.
    pub fn new(tokenizer: GlmTokenizer, scripts: &[(&str, &str)]) -> Self {
        let scripts = scripts
            .iter()
            .map(|(trigger, text)| Script {
                trigger: (*trigger).to_string(),
                tokens: tokenizer.encode(text, false).unwrap(),
            })
            .collect();
        let eos = tokenizer.eos_token_ids().to_vec();
        ScriptedModel {
            info: ModelInfo {
                architecture: "ScriptedForCausalLM".into(),
                vocab_size: tokenizer.vocab_size(),
                max_position_embeddings: 4096,
                num_hidden_layers: 1,
                eos_token_ids: eos,
                kv_bytes_per_token: 64,
                active_weight_bytes_per_token: 0,
                weight_bytes: 0,
                device: "cpu".into(),
                backend: "cpu".into(),
                device_memory: None,
            },
            tokenizer,
            scripts,
            block_size: 0,
            slots: Vec::new(),
        }
    }

    /// The token to emit after `history`.
    pub fn next_token(&self, history: &[u32]) -> u32 {
        let eos = self.info.eos_token_ids.first().copied().unwrap_or(0);
        let text = self.tokenizer.decode(history, false).unwrap_or_default();
        let Some(script) = self
            .scripts
            .iter()
            .filter_map(|s| text.rfind(&s.trigger).map(|pos| (pos, s)))
            .max_by_key(|(pos, _)| *pos)
            .map(|(_, s)| s)
        else {
            return eos;
        };
        let k = (0..=script.tokens.len().min(history.len()))
            .rev()
            .find(|&k| history.ends_with(&script.tokens[..k]))
            .unwrap_or(0);
        script.tokens.get(k).copied().unwrap_or(eos)
    }
}

impl CausalLm for ScriptedModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn init_cache(&mut self, cfg: CacheConfig) -> Result<(), ModelError> {
        self.block_size = cfg.block_size.max(1);
        self.slots = vec![None; cfg.num_blocks * self.block_size];
        Ok(())
    }

    fn forward(&mut self, batch: &ForwardBatch) -> Result<Vec<Option<Vec<f32>>>, ModelError> {
        let bs = self.block_size;
        let slot = |table: &[u32], pos: usize| -> Result<usize, ModelError> {
            let block = table
                .get(pos / bs)
                .ok_or_else(|| ModelError::InvalidBatch(format!("no block for position {pos}")))?;
            Ok(*block as usize * bs + pos % bs)
        };
        let mut out = Vec::with_capacity(batch.seqs.len());
        for seq in &batch.seqs {
            for (i, &t) in seq.tokens.iter().enumerate() {
                let s = slot(&seq.block_table, seq.num_cached + i)?;
                *self
                    .slots
                    .get_mut(s)
                    .ok_or_else(|| ModelError::Cache(format!("slot {s} out of range")))? = Some(t);
            }
            if !seq.want_logits {
                out.push(None);
                continue;
            }
            let len = seq.num_cached + seq.tokens.len();
            let history = (0..len)
                .map(|pos| {
                    let s = slot(&seq.block_table, pos)?;
                    self.slots
                        .get(s)
                        .copied()
                        .flatten()
                        .ok_or_else(|| ModelError::Cache(format!("slot {s} never written")))
                })
                .collect::<Result<Vec<u32>, _>>()?;
            let mut logits = vec![0.0; self.info.vocab_size];
            let next = self.next_token(&history) as usize;
            if let Some(l) = logits.get_mut(next) {
                *l = FORCED_LOGIT;
            }
            out.push(Some(logits));
        }
        Ok(out)
    }
}
