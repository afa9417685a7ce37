//! Streaming detokenization that never emits half a character.
//!
//! Byte-level BPE splits one UTF-8 character (CJK, emoji) over several ids, and decoding a
//! single id in isolation yields U+FFFD or, for tokenizers that treat leading spaces
//! specially, the wrong spacing. So, as vLLM and TGI do, the decoder keeps two offsets into the
//! ids seen so far:
//!
//! - `prefix_offset`: start of a short window of already-emitted ids decoded again for context;
//! - `read_offset`: end of the ids whose text has been emitted.
//!
//! For each new id it decodes `ids[prefix_offset..read_offset]` and `ids[prefix_offset..]`;
//! the difference is the new text. When that text ends in U+FFFD the character is not finished
//! yet and nothing is emitted until a later id completes it.

use crate::error::TokenizerError;
use crate::tokenizer::GlmTokenizer;

/// How many prompt ids seed the context window (vLLM's
/// `INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET`).
const PROMPT_CONTEXT_IDS: usize = 5;

/// Incremental detokenizer for one sequence. Push ids one at a time with [`push`]; call
/// [`flush`] when generation ends.
///
/// [`push`]: IncrementalDecoder::push
/// [`flush`]: IncrementalDecoder::flush
#[derive(Debug, Clone)]
pub struct IncrementalDecoder {
    tokenizer: GlmTokenizer,
    skip_special_tokens: bool,
    /// Ids from `prefix_offset` on; older ids are dropped so memory stays bounded.
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl IncrementalDecoder {
    /// A decoder for a sequence with no context.
    pub fn new(tokenizer: GlmTokenizer, skip_special_tokens: bool) -> Self {
        IncrementalDecoder {
            tokenizer,
            skip_special_tokens,
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
        }
    }

    /// A decoder whose first output is decoded in the context of the last few prompt ids, so
    /// that tokenizers with space-prefix rules produce the same text as decoding everything.
    /// The prompt's own text is never emitted.
    pub fn with_prompt(
        tokenizer: GlmTokenizer,
        prompt_ids: &[u32],
        skip_special_tokens: bool,
    ) -> Self {
        let start = prompt_ids.len().saturating_sub(PROMPT_CONTEXT_IDS);
        let ids = prompt_ids[start..].to_vec();
        let read_offset = ids.len();
        IncrementalDecoder {
            tokenizer,
            skip_special_tokens,
            ids,
            prefix_offset: 0,
            read_offset,
        }
    }

    /// Adds one generated id and returns the text it completes (often empty: an id that ends
    /// inside a multi-byte character, or a skipped special token).
    pub fn push(&mut self, id: u32) -> Result<String, TokenizerError> {
        self.ids.push(id);
        self.step(false)
    }

    /// Adds several ids at once (e.g. speculative decoding, `stream_interval > 1`).
    pub fn push_many(&mut self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.ids.extend_from_slice(ids);
        self.step(false)
    }

    /// Emits whatever is still held back (an unfinished character at the very end becomes
    /// U+FFFD, as a full decode would give). Call once when the sequence ends.
    pub fn flush(&mut self) -> Result<String, TokenizerError> {
        self.step(true)
    }

    /// True when some decoded text is being held back waiting for more ids.
    pub fn has_pending(&self) -> bool {
        self.read_offset < self.ids.len()
    }

    fn step(&mut self, flush: bool) -> Result<String, TokenizerError> {
        if self.read_offset >= self.ids.len() {
            return Ok(String::new());
        }
        let prefix_text = self.tokenizer.decode(
            &self.ids[self.prefix_offset..self.read_offset],
            self.skip_special_tokens,
        )?;
        let new_text = self
            .tokenizer
            .decode(&self.ids[self.prefix_offset..], self.skip_special_tokens)?;
        if !flush && (new_text.len() <= prefix_text.len() || new_text.ends_with('\u{FFFD}')) {
            // Either an unfinished character, or an id that adds no text (skipped special
            // token). In the second case advance anyway so the window does not grow.
            if !new_text.ends_with('\u{FFFD}') && new_text == prefix_text {
                self.advance();
            }
            return Ok(String::new());
        }
        let delta = suffix_after(&new_text, &prefix_text).to_string();
        self.advance();
        Ok(delta)
    }

    /// Everything up to now has been emitted: the last emitted ids become the context window.
    fn advance(&mut self) {
        let len = self.ids.len();
        self.prefix_offset = self.read_offset;
        self.read_offset = len;
        // Drop ids before the window; offsets are relative to `ids`.
        if self.prefix_offset > 0 {
            self.ids.drain(..self.prefix_offset);
            self.read_offset -= self.prefix_offset;
            self.prefix_offset = 0;
        }
    }
}

/// The part of `new` after `old`. Normally `old` is a prefix of `new`; if a decoder rewrote
/// earlier text, fall back to the longest common prefix on a character boundary.
fn suffix_after<'a>(new: &'a str, old: &str) -> &'a str {
    if let Some(rest) = new.strip_prefix(old) {
        return rest;
    }
    let common = new
        .char_indices()
        .zip(old.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| new.len().min(old.len()));
    // `common` is a char boundary of `new` by construction.
    new.get(common..).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::suffix_after;

    #[test]
    fn suffix_after_prefix_and_rewrite() {
        assert_eq!(suffix_after("hello world", "hello"), " world");
        assert_eq!(suffix_after("héllo", "hex"), "éllo");
        assert_eq!(suffix_after("abc", "abc"), "");
    }
}
