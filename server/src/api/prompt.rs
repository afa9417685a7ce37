//! Prompt text -> token ids, bounded: a byte-length check against the context length
//! before any tokenization, and a cap on concurrent tokenizations.
//!
//! Every token of the vocabulary stands for at most `max_token_bytes` bytes of text, so a
//! text longer than `max_model_len * max_token_bytes` bytes cannot fit the context whatever
//! it tokenizes to: it is refused in microseconds instead of being tokenized (seconds and
//! gigabytes for megabytes of text). Texts under the bound are tokenized on the blocking
//! pool, at most `permits` at a time; a client that leaves while its request waits for a
//! permit never starts one.

use std::sync::Arc;

use glm_tokenizer::{ChatTemplate, GlmTokenizer};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use super::ApiError;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct PromptLimiter {
    permits: Arc<Semaphore>,
    max_token_bytes: usize,
    max_model_len: usize,
}

impl PromptLimiter {
    /// `concurrency` tokenizations at once (at least one).
    pub fn new(tokenizer: &GlmTokenizer, max_model_len: usize, concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            max_token_bytes: longest_token_bytes(tokenizer),
            max_model_len,
        }
    }

    /// Bytes of prompt text that may still fit the context.
    pub fn max_bytes(&self) -> usize {
        self.max_model_len.saturating_mul(self.max_token_bytes)
    }

    /// Refuses a prompt of `bytes` bytes that cannot fit, naming `param` and the limit.
    pub fn check_bytes(&self, param: &str, bytes: usize) -> Result<(), ApiError> {
        if bytes > self.max_bytes() {
            return Err(ApiError::invalid(
                param,
                format!(
                    "the prompt text is {bytes} bytes; at most {} bytes can fit this model's maximum context length of {} tokens (no token is longer than {} bytes)",
                    self.max_bytes(),
                    self.max_model_len,
                    self.max_token_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Runs `work` (rendering and tokenizing) on the blocking pool under a permit. The
    /// permit is taken before the task starts, so a dropped request never starts it.
    pub async fn run<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal("tokenizer pool closed".into()))?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(work)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("tokenizer task failed: {e}")))?
    }

    /// Checks `text` against the byte bound, then tokenizes it.
    pub fn encode(
        &self,
        tokenizer: &GlmTokenizer,
        param: &str,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<Vec<u32>, ApiError> {
        self.check_bytes(param, text.len())?;
        Ok(tokenizer.encode(text, add_special_tokens)?)
    }
}

/// A conversation to render with the chat template and tokenize.
#[derive(Debug)]
pub struct ChatPrompt {
    pub messages: Value,
    pub tools: Option<Value>,
    pub add_generation_prompt: bool,
    pub kwargs: Map<String, Value>,
    pub add_special_tokens: bool,
}

impl PromptLimiter {
    /// Checks the conversation's text against the byte bound (before and after rendering),
    /// then renders and tokenizes it under a permit. Errors name `messages`.
    pub async fn chat(
        &self,
        template: Arc<ChatTemplate>,
        tokenizer: GlmTokenizer,
        prompt: ChatPrompt,
    ) -> Result<Vec<u32>, ApiError> {
        let raw = text_bytes(&prompt.messages) + prompt.tools.as_ref().map_or(0, text_bytes);
        self.check_bytes("messages", raw)?;
        let this = self.clone();
        self.run(move || {
            let text = template.render(
                &prompt.messages,
                prompt.tools.as_ref(),
                prompt.add_generation_prompt,
                &prompt.kwargs,
            )?;
            this.encode(&tokenizer, "messages", &text, prompt.add_special_tokens)
        })
        .await
    }
}

/// Bytes of all strings inside `v` (object keys included): a lower bound of what a chat
/// template renders from it, cheap to compute before rendering.
pub fn text_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(text_bytes).sum(),
        Value::Object(m) => m.iter().map(|(k, v)| k.len() + text_bytes(v)).sum(),
        _ => 0,
    }
}

/// The longest text any single token stands for, in UTF-8 bytes of its vocabulary entry
/// (byte-level entries spell a byte with up to two UTF-8 bytes, so this over-estimates,
/// which only makes the bound looser).
fn longest_token_bytes(tokenizer: &GlmTokenizer) -> usize {
    tokenizer
        .inner()
        .get_vocab(true)
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tokenizer() -> GlmTokenizer {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tokenizer");
        GlmTokenizer::from_dir(&dir).unwrap()
    }

    #[test]
    fn bound_is_context_times_longest_token() {
        let tok = tokenizer();
        let lim = PromptLimiter::new(&tok, 100, 2);
        assert!(lim.max_token_bytes >= 1);
        assert_eq!(lim.max_bytes(), 100 * lim.max_token_bytes);
        assert!(lim.check_bytes("prompt", lim.max_bytes()).is_ok());
        match lim.check_bytes("prompt", lim.max_bytes() + 1) {
            Err(ApiError::InvalidRequest { param, message }) => {
                assert_eq!(param.as_deref(), Some("prompt"));
                assert!(message.contains(&lim.max_bytes().to_string()), "{message}");
                assert!(message.contains("100 tokens"), "{message}");
            }
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn text_bytes_counts_every_string() {
        let v = json!([{"role": "user", "content": "abc"}, {"content": [{"text": "de"}]}]);
        assert_eq!(text_bytes(&v), 4 + 4 + 7 + 3 + 7 + 4 + 2);
    }
}
