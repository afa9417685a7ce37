//! Structured outputs: a grammar (JSON schema, regex, choice, Lark) compiled by llguidance
//! into a per-sequence matcher that gives the engine a token mask each step.
//!
//! The API compiles the grammar while validating the request (a bad schema is a 400 before
//! anything is queued); the engine owns one [`Constraint`] per sequence, asks it for the
//! mask before sampling and feeds it the sampled token. The matcher lives beside the
//! sequence, not in the KV cache, so preemption and recompute keep its state: the tokens it
//! has consumed are exactly the sequence's output tokens, which a recompute does not change.

use std::sync::Arc;

use glm_tokenizer::GlmTokenizer;
use llguidance::{
    api::{ParserLimits, TopLevelGrammar},
    toktrie::{ApproximateTokEnv, SimpleVob, TokRxInfo, TokTrie},
    Matcher, ParserFactory,
};
use serde_json::{json, Value};

/// Longest grammar source (schema, regex or Lark text) accepted, in bytes.
pub const MAX_GRAMMAR_BYTES: usize = 256 * 1024;

/// What a request asks the output to match.
#[derive(Debug, Clone, PartialEq)]
pub enum GrammarSpec {
    /// A JSON Schema (`response_format.json_schema.schema`, `guided_json`).
    JsonSchema(Value),
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// A regular expression the whole output matches (`guided_regex`).
    Regex(String),
    /// Exactly one of these strings (`guided_choice`).
    Choice(Vec<String>),
    /// A Lark grammar (`guided_grammar`), llguidance's dialect (`%json` embeds a schema).
    Lark(String),
}

impl GrammarSpec {
    /// Stable label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            GrammarSpec::JsonSchema(_) => "json_schema",
            GrammarSpec::JsonObject => "json_object",
            GrammarSpec::Regex(_) => "regex",
            GrammarSpec::Choice(_) => "choice",
            GrammarSpec::Lark(_) => "grammar",
        }
    }

    fn source_len(&self) -> usize {
        match self {
            GrammarSpec::JsonSchema(v) => v.to_string().len(),
            GrammarSpec::JsonObject => 0,
            GrammarSpec::Regex(s) | GrammarSpec::Lark(s) => s.len(),
            GrammarSpec::Choice(c) => c.iter().map(String::len).sum(),
        }
    }

    fn to_grammar(&self) -> Result<TopLevelGrammar, String> {
        Ok(match self {
            GrammarSpec::JsonSchema(schema) => {
                if !schema.is_object() && !schema.is_boolean() {
                    return Err("a JSON Schema must be an object".into());
                }
                TopLevelGrammar::from_json_schema(compact(schema.clone()))
            }
            GrammarSpec::JsonObject => {
                TopLevelGrammar::from_json_schema(compact(json!({"type": "object"})))
            }
            GrammarSpec::Regex(rx) => TopLevelGrammar::from_regex(rx),
            GrammarSpec::Choice(choices) => {
                if choices.is_empty() {
                    return Err("at least one choice is needed".into());
                }
                // Lark string literals take JSON's escapes.
                let alts: Vec<String> = choices
                    .iter()
                    .map(|c| Value::from(c.as_str()).to_string())
                    .collect();
                TopLevelGrammar::from_lark(format!("start: {}", alts.join(" | ")))
            }
            GrammarSpec::Lark(src) => TopLevelGrammar::from_lark(src.clone()),
        })
    }
}

/// JSON is written as Python's `json.dumps` writes it (`", "`, `": "`, no other
/// whitespace) unless the schema sets llguidance's own `x-guidance` options: free
/// whitespace lets a weak model pad forever between tokens.
fn compact(mut schema: Value) -> Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(
            || json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}

/// Why a grammar was refused; the API turns it into a 400 naming the request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GrammarError(pub String);

/// Compiles grammars against the served model's vocabulary. Cheap to clone.
#[derive(Clone)]
pub struct GrammarCompiler {
    factory: Arc<ParserFactory>,
    /// Every end-of-sequence id of the model: the grammar's end allows any of them.
    eos: Arc<[u32]>,
}

impl std::fmt::Debug for GrammarCompiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarCompiler")
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

impl GrammarCompiler {
    /// Builds the token trie of `tokenizer`, padded to the model's `vocab_size` (rows of
    /// the output layer without a token are never allowed).
    pub fn new(
        tokenizer: &GlmTokenizer,
        vocab_size: usize,
        eos: &[u32],
    ) -> Result<Self, GrammarError> {
        let json = tokenizer
            .inner()
            .to_string(false)
            .map_err(|e| GrammarError(format!("tokenizer: {e}")))?;
        let json: Value =
            serde_json::from_str(&json).map_err(|e| GrammarError(format!("tokenizer: {e}")))?;
        let mut words = llguidance::token_bytes_from_tokenizer_json(&json)
            .map_err(|e| GrammarError(format!("tokenizer: {e}")))?;
        let vocab = vocab_size.max(words.len());
        words.resize(vocab, Vec::new());
        let first_eos = eos
            .first()
            .copied()
            .ok_or_else(|| GrammarError("the model has no end-of-sequence token".into()))?;
        let vocab_u32 =
            u32::try_from(vocab).map_err(|_| GrammarError("vocabulary too large".into()))?;
        let info = TokRxInfo::new(vocab_u32, first_eos);
        let trie = TokTrie::from(&info, &words);
        let env: llguidance::toktrie::TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| GrammarError(format!("grammar engine: {e}")))?;
        factory.quiet();
        *factory.limits_mut() = ParserLimits {
            verbose_errors: false,
            ..ParserLimits::default()
        };
        Ok(Self {
            factory: Arc::new(factory),
            eos: eos.into(),
        })
    }

    /// Compiles `spec` into a fresh matcher. CPU work (milliseconds for large schemas):
    /// callers on the async runtime run it on the blocking pool.
    pub fn compile(&self, spec: &GrammarSpec) -> Result<Constraint, GrammarError> {
        if spec.source_len() > MAX_GRAMMAR_BYTES {
            return Err(GrammarError(format!(
                "the grammar is {} bytes; at most {MAX_GRAMMAR_BYTES}",
                spec.source_len()
            )));
        }
        let grammar = spec.to_grammar().map_err(GrammarError)?;
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| GrammarError(short(&e.to_string())))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(GrammarError(short(&e)));
        }
        Ok(Constraint {
            matcher,
            kind: spec.kind(),
            eos: Arc::clone(&self.eos),
            start_after: None,
            started: true,
        })
    }
}

/// Keeps error messages readable in a JSON error body.
fn short(msg: &str) -> String {
    const MAX: usize = 500;
    match msg.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &msg[..i]),
        None => msg.to_string(),
    }
}

/// What the mask says for the next token.
#[derive(Debug)]
pub enum Mask {
    /// No constraint yet (reasoning before `</think>`): sample freely.
    Free,
    /// Only the set bits may be sampled (words of 32 token ids, llguidance's layout).
    Allowed(SimpleVob),
    /// No token can continue the grammar: end the sequence.
    DeadEnd(String),
}

/// What consuming a token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// Go on.
    Continue,
    /// The grammar is complete (an end token was sampled where the grammar may end).
    Complete,
    /// The token broke the grammar (cannot happen with the mask applied; reported, not a
    /// panic).
    Rejected(String),
}

/// One sequence's grammar state.
pub struct Constraint {
    matcher: Matcher,
    kind: &'static str,
    eos: Arc<[u32]>,
    /// Reasoning: the constraint starts after this token (`</think>`).
    start_after: Option<u32>,
    started: bool,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("kind", &self.kind)
            .field("start_after", &self.start_after)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// Each sequence of a request (`n`, several prompts) gets its own copy of the state.
impl Clone for Constraint {
    fn clone(&self) -> Self {
        Self {
            matcher: self.matcher.deep_clone(),
            kind: self.kind,
            eos: Arc::clone(&self.eos),
            start_after: self.start_after,
            started: self.started,
        }
    }
}

/// Two constraints are equal when they constrain the same way from the same start; the
/// matcher state is not compared (it has no equality).
impl PartialEq for Constraint {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.start_after == other.start_after
    }
}

impl Constraint {
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Leaves the output free until `token` (the end of the reasoning block) is sampled.
    pub fn start_after(mut self, token: u32) -> Self {
        self.start_after = Some(token);
        self.started = false;
        self
    }

    /// The mask for the next token.
    pub fn mask(&mut self) -> Mask {
        if !self.started {
            return Mask::Free;
        }
        if self.matcher.is_stopped() && !self.matcher.is_error() {
            // Complete: only an end token may follow.
            let mut m = SimpleVob::alloc(self.matcher_vocab());
            for &e in self.eos.iter() {
                if (e as usize) < m.len() {
                    m.allow_token(e);
                }
            }
            return Mask::Allowed(m);
        }
        match self.matcher.compute_mask() {
            Ok(mut m) => {
                // The grammar names one end token; the model has several (GLM ends a
                // turn with <|user|> or <|observation|>): any of them ends it.
                let first = self.eos.first().copied();
                if first.is_some_and(|e| (e as usize) < m.len() && m.is_allowed(e)) {
                    for &e in self.eos.iter() {
                        if (e as usize) < m.len() {
                            m.allow_token(e);
                        }
                    }
                }
                if m.is_zero() {
                    Mask::DeadEnd(format!("no token can continue the {} grammar", self.kind))
                } else {
                    Mask::Allowed(m)
                }
            }
            Err(e) => Mask::DeadEnd(short(&e.to_string())),
        }
    }

    fn matcher_vocab(&self) -> usize {
        self.matcher
            .tok_env()
            .map(|env| env.tok_trie().vocab_size())
            .unwrap_or(0)
    }

    /// Feeds the sampled token.
    pub fn advance(&mut self, token: u32) -> Advance {
        if !self.started {
            if Some(token) == self.start_after {
                self.started = true;
            }
            return Advance::Continue;
        }
        if self.eos.contains(&token) {
            return if self.matcher.is_stopped() || self.matcher.is_accepting().unwrap_or(false) {
                Advance::Complete
            } else {
                Advance::Rejected("end of sequence before the grammar was complete".into())
            };
        }
        match self.matcher.consume_token(token) {
            Ok(()) => Advance::Continue,
            Err(e) => Advance::Rejected(short(&e.to_string())),
        }
    }
}

/// Sets every logit whose token the mask forbids to -inf (tokens past the mask too).
pub fn apply_mask(mask: &SimpleVob, logits: &mut [f32]) {
    glm_model::apply_token_mask(logits, mask.as_slice());
}

mod tool_calls;
pub use tool_calls::{tool_call_grammar, CallLayout, CallTool};

#[cfg(test)]
#[path = "constraint/tests.rs"]
mod tests;
