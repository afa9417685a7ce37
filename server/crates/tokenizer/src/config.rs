//! Special tokens as declared by `tokenizer_config.json`, `generation_config.json` and
//! `config.json`. Nothing here is hard-coded: GLM-4.5 and GLM-4.7-Flash use different ids.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{read_json, TokenizerError};

/// The special-token strings of a tokenizer, as transformers' `special_tokens_map` exposes
/// them to chat templates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    pub unk_token: Option<String>,
    pub additional_special_tokens: Vec<String>,
}

impl SpecialTokens {
    /// Reads the token strings from a parsed `tokenizer_config.json`. Each entry may be a plain
    /// string or an `AddedToken` object with a `content` field; null means "none".
    pub fn from_tokenizer_config(config: &Value, path: &Path) -> Result<Self, TokenizerError> {
        let get = |field: &str| token_string(config.get(field), path, field);
        let additional = match config.get("additional_special_tokens") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    token_string(Some(item), path, "additional_special_tokens")
                        .map(Option::unwrap_or_default)
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(TokenizerError::Config {
                    path: path.to_path_buf(),
                    field: "additional_special_tokens".into(),
                    reason: "expected a list".into(),
                })
            }
        };
        Ok(SpecialTokens {
            bos_token: get("bos_token")?,
            eos_token: get("eos_token")?,
            pad_token: get("pad_token")?,
            unk_token: get("unk_token")?,
            additional_special_tokens: additional,
        })
    }

    /// The variables transformers passes to every chat template (`**special_tokens_map`).
    /// Absent tokens are left out so that `eos_token is defined` behaves as in Python.
    pub fn template_variables(&self) -> Map<String, Value> {
        let mut vars = Map::new();
        for (name, token) in [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("unk_token", &self.unk_token),
            ("pad_token", &self.pad_token),
        ] {
            if let Some(token) = token {
                vars.insert(name.to_string(), Value::String(token.clone()));
            }
        }
        if !self.additional_special_tokens.is_empty() {
            vars.insert(
                "additional_special_tokens".into(),
                Value::Array(
                    self.additional_special_tokens
                        .iter()
                        .cloned()
                        .map(Value::String)
                        .collect(),
                ),
            );
        }
        vars
    }
}

fn token_string(
    value: Option<&Value>,
    path: &Path,
    field: &str,
) -> Result<Option<String>, TokenizerError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(obj)) => match obj.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(TokenizerError::Config {
                path: path.to_path_buf(),
                field: field.to_string(),
                reason: "token object without a string `content`".into(),
            }),
        },
        Some(other) => Err(TokenizerError::Config {
            path: path.to_path_buf(),
            field: field.to_string(),
            reason: format!("expected a string or token object, got {other}"),
        }),
    }
}

/// Reads `eos_token_id` / `pad_token_id` / `bos_token_id` style fields (an int, a list of ints
/// or null) from `generation_config.json`, falling back to `config.json`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelTokenIds {
    pub eos: Vec<u32>,
    pub pad: Option<u32>,
    pub bos: Option<u32>,
}

impl ModelTokenIds {
    /// Reads the ids from `dir`. `generation_config.json` wins over `config.json` field by
    /// field, as in transformers' `GenerationConfig.from_model_config`. Missing files are fine
    /// (a bare tokenizer directory has neither).
    pub fn load(dir: &Path) -> Result<Self, TokenizerError> {
        let mut sources = Vec::new();
        for name in ["generation_config.json", "config.json"] {
            let path = dir.join(name);
            if path.is_file() {
                sources.push((read_json(&path)?, path));
            }
        }
        let mut ids = ModelTokenIds::default();
        let mut eos_found = false;
        let mut pad_found = false;
        let mut bos_found = false;
        for (json, path) in &sources {
            // config.json of multimodal checkpoints nests the text config.
            let candidates = [Some(json), json.get("text_config")];
            for section in candidates.into_iter().flatten() {
                if !eos_found {
                    if let Some(v) = present(section, "eos_token_id") {
                        ids.eos = id_list(v, path, "eos_token_id")?;
                        eos_found = true;
                    }
                }
                if !pad_found {
                    if let Some(v) = present(section, "pad_token_id") {
                        ids.pad = id_list(v, path, "pad_token_id")?.first().copied();
                        pad_found = true;
                    }
                }
                if !bos_found {
                    if let Some(v) = present(section, "bos_token_id") {
                        ids.bos = id_list(v, path, "bos_token_id")?.first().copied();
                        bos_found = true;
                    }
                }
            }
        }
        Ok(ids)
    }
}

fn present<'a>(section: &'a Value, field: &str) -> Option<&'a Value> {
    section.get(field).filter(|v| !v.is_null())
}

fn id_list(value: &Value, path: &Path, field: &str) -> Result<Vec<u32>, TokenizerError> {
    let one = |v: &Value| -> Result<u32, TokenizerError> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| TokenizerError::Config {
                path: path.to_path_buf(),
                field: field.to_string(),
                reason: format!("expected a token id, got {v}"),
            })
    };
    match value {
        Value::Array(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}
