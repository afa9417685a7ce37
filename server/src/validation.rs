//! Raw request fields -> engine parameters. Every error names the offending field and the
//! limit, and becomes a 400 with `param` set.

use glm_model::SamplingParams;

use crate::engine::GenerationParams;

/// Server-wide limits requests are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_model_len: usize,
    pub max_n: usize,
    pub max_logprobs: usize,
    pub max_stop_sequences: usize,
    /// Generated tokens a non-streamed response may hold across its choices (n x
    /// max_tokens): the body is built in memory, so larger answers must stream.
    pub max_nonstream_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_model_len: 4096,
            max_n: 128,
            max_logprobs: 20,
            max_stop_sequences: 32,
            max_nonstream_tokens: 262_144,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    /// The request field at fault (OpenAI `param`).
    pub param: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: param.to_string(),
            message: message.into(),
        }
    }
}

/// Sampling and stopping fields shared by chat and completions, as they arrive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawSampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub seed: Option<i64>,
    /// The effective max tokens and the name of the field it came from.
    pub max_tokens: Option<(i64, &'static str)>,
    pub min_tokens: Option<i64>,
    pub n: Option<i64>,
    pub stop: Vec<String>,
    pub stop_token_ids: Vec<u32>,
    pub ignore_eos: bool,
    /// Top alternatives per token (None: no logprobs at all) and the field it came from.
    pub logprobs: Option<(i64, &'static str)>,
}

/// A request's generation settings, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSampling {
    pub params: GenerationParams,
    pub n: usize,
    pub stop: Vec<String>,
}

fn check_range(
    param: &str,
    v: Option<f64>,
    lo: f64,
    hi: f64,
) -> Result<Option<f32>, ValidationError> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && x >= lo && x <= hi => Ok(Some(x as f32)),
        Some(x) => Err(ValidationError::new(
            param,
            format!("`{param}` must be between {lo} and {hi}, got {x}"),
        )),
    }
}

/// Checks sampling fields against the limits for a prompt of `prompt_len` tokens.
pub fn validate_sampling(
    raw: &RawSampling,
    prompt_len: usize,
    prompt_param: &str,
    limits: &Limits,
) -> Result<ValidSampling, ValidationError> {
    if prompt_len == 0 {
        return Err(ValidationError::new(prompt_param, "the prompt is empty"));
    }
    if prompt_len >= limits.max_model_len {
        return Err(ValidationError::new(
            prompt_param,
            format!(
                "This model's maximum context length is {} tokens. However, your prompt has {} tokens; leave room for at least one generated token.",
                limits.max_model_len, prompt_len
            ),
        ));
    }
    let room = limits.max_model_len - prompt_len;
    let max_tokens = match raw.max_tokens {
        None => room,
        Some((v, name)) if v < 1 => {
            return Err(ValidationError::new(
                name,
                format!("`{name}` must be at least 1, got {v}"),
            ))
        }
        Some((v, name)) => {
            let v = usize::try_from(v).unwrap_or(usize::MAX);
            if v > room {
                return Err(ValidationError::new(
                    name,
                    format!(
                        "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the prompt, {} in the completion). Please reduce the length of the prompt or `{name}`.",
                        limits.max_model_len,
                        prompt_len.saturating_add(v),
                        prompt_len,
                        v
                    ),
                ));
            }
            v
        }
    };
    let min_tokens = match raw.min_tokens {
        None => 0,
        Some(v) if v >= 0 && (v as usize) <= max_tokens => v as usize,
        Some(v) => {
            return Err(ValidationError::new(
                "min_tokens",
                format!("`min_tokens` must be between 0 and max_tokens ({max_tokens}), got {v}"),
            ))
        }
    };
    let n = match raw.n {
        None => 1,
        Some(v) if v >= 1 && (v as usize) <= limits.max_n => v as usize,
        Some(v) => {
            return Err(ValidationError::new(
                "n",
                format!("`n` must be between 1 and {}, got {v}", limits.max_n),
            ))
        }
    };
    let temperature = check_range("temperature", raw.temperature, 0.0, 100.0)?.unwrap_or(1.0);
    let top_p = check_range("top_p", raw.top_p, f64::MIN_POSITIVE, 1.0)?.unwrap_or(1.0);
    let min_p = check_range("min_p", raw.min_p, 0.0, 1.0)?.unwrap_or(0.0);
    let repetition_penalty = check_range(
        "repetition_penalty",
        raw.repetition_penalty,
        f64::MIN_POSITIVE,
        100.0,
    )?
    .unwrap_or(1.0);
    let presence_penalty =
        check_range("presence_penalty", raw.presence_penalty, -2.0, 2.0)?.unwrap_or(0.0);
    let frequency_penalty =
        check_range("frequency_penalty", raw.frequency_penalty, -2.0, 2.0)?.unwrap_or(0.0);
    let top_k = match raw.top_k {
        None | Some(-1) | Some(0) => 0,
        Some(v) if v > 0 => usize::try_from(v).unwrap_or(usize::MAX),
        Some(v) => {
            return Err(ValidationError::new(
                "top_k",
                format!("`top_k` must be -1 (disabled) or at least 1, got {v}"),
            ))
        }
    };
    let logprobs = match raw.logprobs {
        None => None,
        Some((v, _)) if v >= 0 && (v as usize) <= limits.max_logprobs => Some(v as usize),
        Some((v, name)) => {
            return Err(ValidationError::new(
                name,
                format!(
                    "`{name}` must be between 0 and {}, got {v}",
                    limits.max_logprobs
                ),
            ))
        }
    };
    if raw.stop.len() > limits.max_stop_sequences {
        return Err(ValidationError::new(
            "stop",
            format!(
                "at most {} stop sequences, got {}",
                limits.max_stop_sequences,
                raw.stop.len()
            ),
        ));
    }
    if raw.stop.iter().any(String::is_empty) {
        return Err(ValidationError::new(
            "stop",
            "stop sequences must not be empty",
        ));
    }
    Ok(ValidSampling {
        params: GenerationParams {
            sampling: SamplingParams {
                temperature,
                top_p,
                top_k,
                min_p,
                repetition_penalty,
                presence_penalty,
                frequency_penalty,
                // Negative seeds (allowed by OpenAI's schema) map to distinct u64 values.
                seed: raw.seed.map(|s| s as u64),
                logprobs,
            },
            max_tokens,
            min_tokens,
            stop_token_ids: raw.stop_token_ids.clone(),
            ignore_eos: raw.ignore_eos,
            constraint: None,
        },
        n,
        stop: raw.stop.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_model_len: 100,
            ..Limits::default()
        }
    }

    #[test]
    fn defaults_fill_the_context() {
        let v = validate_sampling(&RawSampling::default(), 30, "prompt", &limits()).unwrap();
        assert_eq!(v.params.max_tokens, 70);
        assert_eq!(v.n, 1);
        assert_eq!(v.params.sampling.temperature, 1.0);
        assert_eq!(v.params.sampling.logprobs, None);
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(RawSampling, &str)> = vec![
            (
                RawSampling {
                    temperature: Some(-1.0),
                    ..Default::default()
                },
                "temperature",
            ),
            (
                RawSampling {
                    top_p: Some(0.0),
                    ..Default::default()
                },
                "top_p",
            ),
            (
                RawSampling {
                    top_k: Some(-3),
                    ..Default::default()
                },
                "top_k",
            ),
            (
                RawSampling {
                    min_p: Some(1.5),
                    ..Default::default()
                },
                "min_p",
            ),
            (
                RawSampling {
                    n: Some(0),
                    ..Default::default()
                },
                "n",
            ),
            (
                RawSampling {
                    max_tokens: Some((0, "max_tokens")),
                    ..Default::default()
                },
                "max_tokens",
            ),
            (
                RawSampling {
                    max_tokens: Some((71, "max_completion_tokens")),
                    ..Default::default()
                },
                "max_completion_tokens",
            ),
            (
                RawSampling {
                    logprobs: Some((21, "top_logprobs")),
                    ..Default::default()
                },
                "top_logprobs",
            ),
            (
                RawSampling {
                    stop: vec![String::new()],
                    ..Default::default()
                },
                "stop",
            ),
            (
                RawSampling {
                    min_tokens: Some(80),
                    ..Default::default()
                },
                "min_tokens",
            ),
            (
                RawSampling {
                    presence_penalty: Some(f64::NAN),
                    ..Default::default()
                },
                "presence_penalty",
            ),
        ];
        for (raw, param) in cases {
            let e = validate_sampling(&raw, 30, "prompt", &limits()).unwrap_err();
            assert_eq!(e.param, param, "{raw:?}");
        }
        let e = validate_sampling(&RawSampling::default(), 100, "messages", &limits()).unwrap_err();
        assert_eq!(e.param, "messages");
        assert!(e.message.contains("100"));
    }

    #[test]
    fn values_pass_through() {
        let raw = RawSampling {
            temperature: Some(0.0),
            top_k: Some(5),
            seed: Some(-1),
            max_tokens: Some((70, "max_tokens")),
            logprobs: Some((3, "top_logprobs")),
            stop: vec!["END".into()],
            stop_token_ids: vec![9],
            ignore_eos: true,
            n: Some(2),
            ..Default::default()
        };
        let v = validate_sampling(&raw, 30, "prompt", &limits()).unwrap();
        assert!(v.params.sampling.is_greedy());
        assert_eq!(v.params.sampling.top_k, 5);
        assert_eq!(v.params.sampling.seed, Some(u64::MAX));
        assert_eq!(v.params.max_tokens, 70);
        assert_eq!(v.params.sampling.logprobs, Some(3));
        assert_eq!(v.stop, vec!["END".to_string()]);
        assert_eq!(v.params.stop_token_ids, vec![9]);
        assert!(v.params.ignore_eos);
        assert_eq!(v.n, 2);
    }
}
