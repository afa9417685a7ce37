//! glm-server: an OpenAI-compatible inference server for the GLM-4.5 family.
//!
//! Layers, outermost first: [`api`] (axum routes, wire types, the one error-to-status map),
//! [`validation`] (raw request to engine parameters), [`engine`] (the model thread),
//! [`scheduler`] (pure continuous batching) and [`kv_cache`] (pure paged block accounting).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod anthropic;
pub mod api;
pub mod arch;
pub mod config;
pub mod constraint;
pub mod engine;
pub mod http;
pub mod kv_cache;
pub mod metrics;
pub mod postprocess;
pub mod scheduler;
pub mod serve;
pub mod telemetry;
pub mod validation;
