//! [`GlmTokenizer`]: `tokenizers::Tokenizer` plus the special-token facts a server needs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{ModelTokenIds, SpecialTokens};
use crate::error::{read_json, TokenizerError};
use crate::template::ChatTemplate;

/// A loaded tokenizer. Cheap to clone (the state is shared behind an `Arc`), `Send + Sync`.
#[derive(Clone)]
pub struct GlmTokenizer {
    inner: Arc<Inner>,
}

struct Inner {
    tokenizer: tokenizers::Tokenizer,
    special: SpecialTokens,
    eos_ids: Vec<u32>,
    bos_id: Option<u32>,
    pad_id: Option<u32>,
    special_ids: HashSet<u32>,
    dir: PathBuf,
}

impl std::fmt::Debug for GlmTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlmTokenizer")
            .field("dir", &self.inner.dir)
            .field("vocab_size", &self.vocab_size())
            .field("eos_token_ids", &self.inner.eos_ids)
            .finish()
    }
}

impl GlmTokenizer {
    /// Loads `tokenizer.json` and the special tokens from a model (or tokenizer) directory.
    ///
    /// - token strings (`eos_token`, `pad_token`, ...) come from `tokenizer_config.json`;
    /// - end-of-sequence ids are `generation_config.json` `eos_token_id` (else `config.json`),
    ///   plus the id of `tokenizer_config.json` `eos_token` when it is not already listed;
    /// - special ids are the added tokens that `tokenizer.json` marks `special`.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let _span = tracing::debug_span!("tokenizer_load", dir = %dir.display()).entered();
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| {
            TokenizerError::Load {
                path: tokenizer_path.clone(),
                reason: e.to_string(),
            }
        })?;
        let config_path = dir.join("tokenizer_config.json");
        let special = if config_path.is_file() {
            SpecialTokens::from_tokenizer_config(&read_json(&config_path)?, &config_path)?
        } else {
            SpecialTokens::default()
        };
        let model_ids = ModelTokenIds::load(dir)?;

        let lookup = |token: &Option<String>, field: &str| -> Result<Option<u32>, TokenizerError> {
            match token {
                None => Ok(None),
                Some(t) => {
                    tokenizer
                        .token_to_id(t)
                        .map(Some)
                        .ok_or_else(|| TokenizerError::Config {
                            path: config_path.clone(),
                            field: field.to_string(),
                            reason: format!("token {t:?} is not in the vocabulary"),
                        })
                }
            }
        };
        let config_eos = lookup(&special.eos_token, "eos_token")?;
        let mut eos_ids = model_ids.eos.clone();
        if let Some(id) = config_eos {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        let pad_id = match lookup(&special.pad_token, "pad_token")? {
            Some(id) => Some(id),
            None => model_ids.pad,
        };
        let bos_id = match lookup(&special.bos_token, "bos_token")? {
            Some(id) => Some(id),
            None => model_ids.bos,
        };
        let special_ids = tokenizer
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, token)| token.special)
            .map(|(id, _)| *id)
            .collect();
        tracing::debug!(eos = ?eos_ids, ?pad_id, ?bos_id, "tokenizer loaded");
        Ok(GlmTokenizer {
            inner: Arc::new(Inner {
                tokenizer,
                special,
                eos_ids,
                bos_id,
                pad_id,
                special_ids,
                dir: dir.to_path_buf(),
            }),
        })
    }

    /// Encodes text. `add_special_tokens` applies the tokenizer's post-processor (GLM's adds
    /// nothing: the chat template writes `[gMASK]<sop>` itself). Special tokens written in the
    /// text (`<|user|>`) are recognised as single ids, as in transformers.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        self.inner
            .tokenizer
            .encode_fast(text, add_special_tokens)
            .map(|enc| enc.get_ids().to_vec())
            .map_err(|e| TokenizerError::Encode(e.to_string()))
    }

    /// Decodes ids. With `skip_special_tokens` the ids marked special are dropped; GLM's tool
    /// and think tags are not special and always survive. Invalid UTF-8 (a character cut
    /// between ids) becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.inner
            .tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// The id of a token string (added tokens included), if it exists.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.tokenizer.token_to_id(token)
    }

    /// The token string of an id, if it exists.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.tokenizer.id_to_token(id)
    }

    /// Number of ids the tokenizer can produce, added tokens included. The model's embedding
    /// table may be larger (padded); ids past this are never produced by encoding.
    pub fn vocab_size(&self) -> usize {
        self.inner.tokenizer.get_vocab_size(true)
    }

    /// Ids that end generation: `generation_config.json` (else `config.json`) `eos_token_id`
    /// followed by the tokenizer's `eos_token` when not already present. For GLM-4.5 these are
    /// `<|endoftext|>`, `<|user|>` and `<|observation|>`.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.inner.eos_ids
    }

    /// The beginning-of-sequence id, if the model has one (GLM has none).
    pub fn bos_token_id(&self) -> Option<u32> {
        self.inner.bos_id
    }

    /// The padding id, if any.
    pub fn pad_token_id(&self) -> Option<u32> {
        self.inner.pad_id
    }

    /// True if `id` is an added token marked special (dropped by `skip_special_tokens`).
    pub fn is_special(&self, id: u32) -> bool {
        self.inner.special_ids.contains(&id)
    }

    /// The special-token strings from `tokenizer_config.json`.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.inner.special
    }

    /// The directory the tokenizer was loaded from.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The underlying `tokenizers` object, for anything not wrapped here.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner.tokenizer
    }

    /// Loads the chat template that ships in the same directory (`chat_template.jinja` or
    /// `tokenizer_config.json` `chat_template`), wired to this tokenizer's special tokens.
    pub fn chat_template(&self) -> Result<ChatTemplate, TokenizerError> {
        ChatTemplate::from_dir(&self.inner.dir)
    }
}
