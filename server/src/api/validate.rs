//! The one validation step every generating route runs, in TGI's shape
//! (`Validation::validate(request) -> ValidRequest`): model name, unsupported fields,
//! tools, the prompt (bounded rendering and tokenization), sampling, stop, `max_tokens`
//! against the context, and whole-request limits. Everything after it may assume a
//! request that can run; every refusal is a 400 naming the field and the limit.

use serde_json::Value;

use super::{
    structured::{self, forced_tool_call, grammar_spec, StructuredFields},
    types::*,
    ApiError, AppState, ChatPrompt,
};
use crate::{
    postprocess::{openai::prepare, PostProcessConfig},
    validation::{validate_sampling, RawSampling, ValidSampling},
};

/// A request to validate.
#[derive(Debug, Clone, Copy)]
pub enum GenerateRequest<'a> {
    /// `/v1/chat/completions`, or `/v1/messages` converted to it.
    Chat {
        req: &'a ChatCompletionRequest,
        max_tokens: MaxTokens,
    },
    /// `/v1/completions`.
    Completion(&'a CompletionRequest),
}

/// How a chat request's `max_tokens` meets the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTokens {
    /// OpenAI: more than the room left is a 400.
    Strict,
    /// Anthropic: a ceiling (clients send large fixed values), capped at the room left.
    Ceiling(u64),
}

/// A request that can run.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    /// The served model name.
    pub model: String,
    /// One or more prompts, each checked against the context.
    pub prompts: Vec<Vec<u32>>,
    pub sampling: ValidSampling,
    /// Chat: tool and reasoning parsing settings.
    pub post: Option<PostProcessConfig>,
    /// The request field holding the prompt (`messages` or `prompt`), for later errors.
    pub prompt_param: &'static str,
    pub stream: bool,
    pub skip_special_tokens: bool,
    pub include_stop_str: bool,
}

impl ValidRequest {
    pub fn prompt_tokens(&self) -> usize {
        self.prompts.iter().map(Vec::len).sum()
    }
}

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Validation<'a> {
    state: &'a AppState,
}

impl<'a> Validation<'a> {
    pub fn new(state: &'a AppState) -> Self {
        Self { state }
    }

    pub async fn validate(&self, req: GenerateRequest<'_>) -> Result<ValidRequest, ApiError> {
        let valid = match req {
            GenerateRequest::Chat { req, max_tokens } => self.chat(req, max_tokens).await?,
            GenerateRequest::Completion(req) => self.completion(req).await?,
        };
        self.whole_request(&valid)?;
        Ok(valid)
    }

    async fn chat(
        &self,
        req: &ChatCompletionRequest,
        max_tokens: MaxTokens,
    ) -> Result<ValidRequest, ApiError> {
        let state = self.state;
        let model = state.check_model(req.model.as_deref())?;
        check_chat_fields(req)?;
        let post = prepare(state.config(), req)?;
        let prompt = ChatPrompt {
            messages: crate::postprocess::openai::template_messages(req)?,
            tools: req.tools.clone().map(Value::Array),
            add_generation_prompt: req.add_generation_prompt.unwrap_or(true),
            kwargs: req.chat_template_kwargs.clone().unwrap_or_default(),
            add_special_tokens: false,
        };
        let prompt = state
            .prompts()
            .chat(state.template()?, state.tokenizer().clone(), prompt)
            .await?;
        let mut raw = raw_sampling(&req.common);
        if let Some(v) = req.max_completion_tokens {
            raw.max_tokens = Some((v, "max_completion_tokens"));
        }
        if req.logprobs {
            raw.logprobs = Some((req.top_logprobs.unwrap_or(0), "top_logprobs"));
        }
        let limits = &state.config().limits;
        if let MaxTokens::Ceiling(requested) = max_tokens {
            let capped = clamp_max_tokens(requested, prompt.len(), limits.max_model_len);
            raw.max_tokens = Some((capped, "max_tokens"));
        }
        let mut sampling = validate_sampling(&raw, prompt.len(), "messages", limits)?;
        let fields = StructuredFields {
            response_format: req.response_format.as_ref(),
            common: Some(&req.common),
        };
        let forced = forced_tool_call(&post, req.parallel_tool_calls.unwrap_or(true))?;
        let spec = match (grammar_spec(fields)?, forced) {
            (Some((_, param)), Some(_)) => {
                return Err(ApiError::invalid(
                    &param,
                    "a forced tool call (tool_choice \"required\" or a named function) and a structured output cannot be combined",
                ))
            }
            (a, b) => a.or(b),
        };
        if let Some((spec, param)) = spec {
            // Reasoning-aware: the <think> block stays free, the grammar starts after it.
            let reasoning = post.reasoning_parser.is_some() && post.starts_in_reasoning;
            let c = structured::compile(state, spec, param, reasoning).await?;
            sampling.params.constraint = Some(c);
        }
        Ok(ValidRequest {
            model,
            prompts: vec![prompt],
            sampling,
            post: Some(post),
            prompt_param: "messages",
            stream: req.common.stream,
            skip_special_tokens: req.common.skip_special_tokens.unwrap_or(true),
            include_stop_str: req.common.include_stop_str_in_output,
        })
    }

    async fn completion(&self, req: &CompletionRequest) -> Result<ValidRequest, ApiError> {
        let state = self.state;
        let model = state.check_model(req.model.as_deref())?;
        check_completion_fields(req)?;
        let prompts = self.tokenize_prompts(req).await?;
        if prompts.is_empty() {
            return Err(ApiError::invalid("prompt", "`prompt` must not be empty"));
        }
        let vocab = state.tokenizer().vocab_size();
        if prompts.iter().flatten().any(|&t| t as usize >= vocab) {
            return Err(ApiError::invalid(
                "prompt",
                format!("token ids must be below {vocab}"),
            ));
        }
        let mut raw = raw_sampling(&req.common);
        raw.logprobs = req.logprobs.map(|v| (v, "logprobs"));
        let mut sampling: Option<ValidSampling> = None;
        for p in &prompts {
            let v = validate_sampling(&raw, p.len(), "prompt", &state.config().limits)?;
            // Without max_tokens each prompt may fill its own context: keep the smallest
            // room so every prompt fits (vLLM validates per prompt the same way).
            sampling = Some(match sampling {
                Some(prev) if prev.params.max_tokens <= v.params.max_tokens => prev,
                _ => v,
            });
        }
        let Some(mut sampling) = sampling else {
            return Err(ApiError::invalid("prompt", "`prompt` must not be empty"));
        };
        let fields = StructuredFields {
            response_format: req.response_format.as_ref(),
            common: Some(&req.common),
        };
        if let Some((spec, param)) = grammar_spec(fields)? {
            let c = structured::compile(state, spec, param, false).await?;
            sampling.params.constraint = Some(c);
        }
        Ok(ValidRequest {
            model,
            prompts,
            sampling,
            post: None,
            prompt_param: "prompt",
            stream: req.common.stream,
            skip_special_tokens: req.common.skip_special_tokens.unwrap_or(true),
            include_stop_str: req.common.include_stop_str_in_output,
        })
    }

    /// Text prompts are checked against the byte bound, then tokenized (bounded).
    async fn tokenize_prompts(&self, req: &CompletionRequest) -> Result<Vec<Vec<u32>>, ApiError> {
        let add_special = req.add_special_tokens.unwrap_or(true);
        let texts = match &req.prompt {
            PromptField::Tokens(t) => return Ok(vec![t.clone()]),
            PromptField::TokenLists(l) => return Ok(l.clone()),
            PromptField::Text(t) => vec![t.clone()],
            PromptField::Texts(t) => t.clone(),
        };
        let limiter = self.state.prompts().clone();
        for t in &texts {
            limiter.check_bytes("prompt", t.len())?;
        }
        let tokenizer = self.state.tokenizer().clone();
        let worker = limiter.clone();
        limiter
            .run(move || {
                texts
                    .iter()
                    .map(|t| worker.encode(&tokenizer, "prompt", t, add_special))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
    }

    /// Limits of the request as a whole: sequences the queue can ever hold, and the size
    /// of a non-streamed answer (built in memory).
    fn whole_request(&self, valid: &ValidRequest) -> Result<(), ApiError> {
        let n = valid.sampling.n;
        let prompts = valid.prompts.len();
        // More sequences than the queue can ever hold would get 429 forever: that is a
        // bad request, not a busy server.
        let total = prompts.saturating_mul(n);
        let cap = self.state.engine().max_queue();
        if total > cap {
            let param = if prompts > 1 { valid.prompt_param } else { "n" };
            return Err(ApiError::invalid(
                param,
                format!(
                    "{prompts} prompt(s) x n={n} is {total} sequences; at most {cap} can ever be queued (--max-queue)"
                ),
            ));
        }
        let most = self.state.config().limits.max_nonstream_tokens;
        let max_tokens = valid.sampling.params.max_tokens;
        if !valid.stream && total.saturating_mul(max_tokens) > most {
            return Err(ApiError::invalid(
                "max_tokens",
                format!(
                    "{total} choice(s) x max_tokens {max_tokens} exceeds the {most} tokens a non-streamed response may hold; lower max_tokens or n, or set stream: true"
                ),
            ));
        }
        Ok(())
    }
}

fn check_chat_fields(req: &ChatCompletionRequest) -> Result<(), ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must not be empty",
        ));
    }
    if req.chat_template.is_some() {
        return Err(ApiError::invalid(
            "chat_template",
            "per-request chat templates are disabled; start the server with --chat-template",
        ));
    }
    if req.continue_final_message {
        return Err(ApiError::invalid("continue_final_message", "not supported"));
    }
    if req.echo {
        return Err(ApiError::invalid(
            "echo",
            "not supported for chat completions",
        ));
    }
    if req
        .common
        .logit_bias
        .as_ref()
        .is_some_and(|m| !m.is_empty())
    {
        return Err(ApiError::invalid("logit_bias", "not supported"));
    }
    if req.top_logprobs.is_some() && !req.logprobs {
        return Err(ApiError::invalid(
            "top_logprobs",
            "`top_logprobs` requires `logprobs: true`",
        ));
    }
    Ok(())
}

fn check_completion_fields(req: &CompletionRequest) -> Result<(), ApiError> {
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid("suffix", "not supported"));
    }
    if let Some(b) = req.best_of {
        if b > req.common.n.unwrap_or(1) {
            return Err(ApiError::invalid("best_of", "best_of > n is not supported"));
        }
    }
    if req
        .common
        .logit_bias
        .as_ref()
        .is_some_and(|m| !m.is_empty())
    {
        return Err(ApiError::invalid("logit_bias", "not supported"));
    }
    Ok(())
}

/// The sampling fields chat and completions share, as they arrive.
pub(crate) fn raw_sampling(common: &CommonParams) -> RawSampling {
    RawSampling {
        temperature: common.temperature,
        top_p: common.top_p,
        top_k: common.top_k,
        min_p: common.min_p,
        repetition_penalty: common.repetition_penalty,
        presence_penalty: common.presence_penalty,
        frequency_penalty: common.frequency_penalty,
        seed: common.seed,
        max_tokens: common.max_tokens.map(|v| (v, "max_tokens")),
        min_tokens: common.min_tokens,
        n: common.n,
        stop: common
            .stop
            .clone()
            .map(StopField::into_vec)
            .unwrap_or_default(),
        stop_token_ids: common.stop_token_ids.clone().unwrap_or_default(),
        ignore_eos: common.ignore_eos,
        logprobs: None,
    }
}

/// Anthropic's `max_tokens` is a ceiling, and clients such as Claude Code send large fixed
/// values (32000) whatever the prompt: cap it at the room left in the context instead of
/// refusing, so the answer ends with `stop_reason: "max_tokens"` at worst. A prompt that
/// leaves no room at all gets 1, so validation reports the over-long prompt.
fn clamp_max_tokens(requested: u64, prompt_len: usize, max_model_len: usize) -> i64 {
    let room = max_model_len.saturating_sub(prompt_len).max(1) as u64;
    i64::try_from(requested.min(room)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::clamp_max_tokens;

    #[test]
    fn max_tokens_is_capped_at_the_room_left() {
        assert_eq!(clamp_max_tokens(32000, 1000, 4096), 3096);
        assert_eq!(clamp_max_tokens(100, 1000, 4096), 100);
        // No room: 1, so validation reports the over-long prompt.
        assert_eq!(clamp_max_tokens(100, 5000, 4096), 1);
    }
}
