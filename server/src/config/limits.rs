//! Flags that bound what clients can make the server do: API keys and per-key rate limits,
//! connection limits and timeouts.

use std::{path::PathBuf, time::Duration};

use clap::Args;

use super::ConfigError;
use crate::{
    api::{
        auth::{parse_key_file, ApiKeys},
        RateLimits,
    },
    http::HttpLimits,
};

/// Descriptors kept free of client connections (listener, model files, logs, the runtime).
const FD_HEADROOM: u64 = 128;

/// The soft limit on open files (Linux `/proc/self/limits`), if known.
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Largest key file read (a file of keys, not a data set).
const MAX_KEY_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// File of API keys, one per line: `KEY` or `NAME KEY` (NAME is the key id in logs and
    /// metrics); `#` comments and blank lines are skipped.
    #[arg(long, env = "GLM_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Requests per minute per API key (token bucket); unset = unlimited.
    #[arg(long)]
    pub rate_limit_requests_per_minute: Option<u32>,
    /// Prompt + generated tokens per minute per API key (token bucket); unset = unlimited.
    #[arg(long)]
    pub rate_limit_tokens_per_minute: Option<u64>,
    /// Open client connections at most; more are closed at accept (probes keep a reserve).
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers.
    #[arg(long, default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Seconds a connection may sit without any bytes in either direction before it is
    /// closed (requests in flight finish first).
    #[arg(long, default_value_t = 60)]
    pub keep_alive_timeout: u64,
    /// Seconds a client has to send a request's body.
    #[arg(long, default_value_t = 60)]
    pub body_read_timeout: u64,
}

impl LimitArgs {
    /// The key set from `--api-key`/`GLM_API_KEY` and `--api-key-file`. An empty or
    /// whitespace-only key, set by flag or environment, is an error: it would otherwise
    /// leave the API open or lock every client out.
    pub fn api_keys(&self, api_key: Option<&str>) -> Result<ApiKeys, ConfigError> {
        let env_key = std::env::var("GLM_API_KEY").ok();
        let single = api_key.or(env_key.as_deref());
        let file = match &self.api_key_file {
            None => Vec::new(),
            Some(path) => {
                let bad = |m: String| ConfigError::invalid("api-key-file", m);
                let meta =
                    std::fs::metadata(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
                if meta.len() > MAX_KEY_FILE_BYTES {
                    return Err(bad(format!(
                        "{} is {} bytes; at most {MAX_KEY_FILE_BYTES}",
                        path.display(),
                        meta.len()
                    )));
                }
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad(format!("{}: {e}", path.display())))?;
                let keys =
                    parse_key_file(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
                if keys.is_empty() {
                    return Err(bad(format!("{} holds no key", path.display())));
                }
                keys
            }
        };
        ApiKeys::new(single, file).map_err(|e| ConfigError::invalid("api-key", e.to_string()))
    }

    pub fn rate_limits(&self) -> Result<RateLimits, ConfigError> {
        if self.rate_limit_requests_per_minute == Some(0) {
            return Err(ConfigError::invalid(
                "rate-limit-requests-per-minute",
                "must be at least 1 (leave it unset for no limit)",
            ));
        }
        if self.rate_limit_tokens_per_minute == Some(0) {
            return Err(ConfigError::invalid(
                "rate-limit-tokens-per-minute",
                "must be at least 1 (leave it unset for no limit)",
            ));
        }
        Ok(RateLimits {
            requests_per_minute: self.rate_limit_requests_per_minute,
            tokens_per_minute: self.rate_limit_tokens_per_minute,
        })
    }

    pub fn http_limits(&self) -> Result<HttpLimits, ConfigError> {
        for (flag, v) in [
            ("header-read-timeout", self.header_read_timeout),
            ("keep-alive-timeout", self.keep_alive_timeout),
            ("body-read-timeout", self.body_read_timeout),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(flag, "must be at least 1 second"));
            }
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                "max-connections",
                "must be at least 1",
            ));
        }
        let defaults = HttpLimits::default();
        let mut max_connections = self.max_connections;
        // Connections over the descriptor limit would fail at accept, probes included:
        // keep the cap (plus the probe reserve) under it, with room for everything else.
        if let Some(nofile) = open_files_limit() {
            let room = nofile.saturating_sub(FD_HEADROOM + defaults.probe_reserve as u64);
            let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
            if max_connections > room {
                tracing::warn!(
                    max_connections,
                    open_files_limit = nofile,
                    using = room,
                    "--max-connections is above what the open-files limit allows; lowering it"
                );
                max_connections = room;
            }
        }
        Ok(HttpLimits {
            max_connections,
            header_read_timeout: Duration::from_secs(self.header_read_timeout),
            keep_alive_timeout: Duration::from_secs(self.keep_alive_timeout),
            ..HttpLimits::default()
        })
    }
}
