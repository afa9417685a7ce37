//! The Anthropic Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`), as
//! vLLM serves it: the request is converted into an OpenAI chat request and goes through
//! the same chat template, engine and parsers; the post-processed output is written back
//! as Anthropic content blocks or stream events. Enough for Claude Code
//! (`ANTHROPIC_BASE_URL=http://server`), which also sends `?beta=true` and `x-api-key`.

pub mod convert;
pub mod error;
pub mod response;
pub mod routes;
pub mod wire;

pub use self::convert::{parse_request, to_openai_chat};
pub use self::error::AnthropicError;
pub use self::response::{build_message, new_message_id, MessageStream, ResponseMeta};
pub use self::routes::routes;
