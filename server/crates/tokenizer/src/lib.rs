//! GLM tokenizer support for glm-server: loading `tokenizer.json` with the model's special
//! tokens, streaming detokenization that never splits a character, and rendering the model's
//! own Jinja chat template byte-for-byte as transformers does.
//!
//! ```no_run
//! # fn main() -> Result<(), glm_tokenizer::TokenizerError> {
//! use glm_tokenizer::{GlmTokenizer, IncrementalDecoder};
//! let tok = GlmTokenizer::from_dir(std::path::Path::new("model"))?;
//! let template = tok.chat_template()?;
//! let prompt = template.render(
//!     &serde_json::json!([{"role": "user", "content": "hi"}]),
//!     None,
//!     true,
//!     &serde_json::Map::new(),
//! )?;
//! let ids = tok.encode(&prompt, false)?;
//! let mut decoder = IncrementalDecoder::with_prompt(tok.clone(), &ids, true);
//! let text = decoder.push(ids[0])?; // per generated id
//! let rest = decoder.flush()?;      // at the end
//! # let _ = (text, rest); Ok(()) }
//! ```

mod config;
mod decoder;
mod error;
mod template;
mod tokenizer;

pub use config::SpecialTokens;
pub use decoder::IncrementalDecoder;
pub use error::TokenizerError;
pub use template::{
    python_float_repr, python_json_dumps, ChatTemplate, CivilTime, DumpOptions,
    DEFAULT_TEMPLATE_NAME, TOOL_USE_TEMPLATE_NAME,
};
pub use tokenizer::GlmTokenizer;
