//! Retry policy shared by the model-info request and file transfers: exponential backoff with
//! jitter, `Retry-After` honoured (capped), and the transient/fatal split of failures.

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::error::DownloadError;

/// Outcome of one failed attempt.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Retrying cannot help (auth, not found, integrity, local I/O).
    Fatal(DownloadError),
    /// 429, 5xx, connection errors and stalls: back off and try again.
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
}

/// Error bodies are read up to this many bytes: enough for any message worth showing.
pub(crate) const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// Reads at most `limit` bytes of a body, so a hostile or broken server cannot fill memory;
/// the flag says whether more followed (the rest is not read).
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit - out.len();
        if chunk.len() > room {
            out.extend_from_slice(&chunk[..room]);
            return Ok((out, true));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, false))
}

impl Failure {
    pub(crate) fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<DownloadError> for Failure {
    fn from(e: DownloadError) -> Self {
        Self::Fatal(e)
    }
}

/// Backoff parameters taken from the config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Delay before retry number `attempt` (1-based). Exponential with "equal jitter" so that
    /// many pods retrying after one hub hiccup spread out, while the delay never collapses
    /// to zero. A server-sent `Retry-After` wins when longer, capped at `max` so a bogus value
    /// cannot park the Job forever.
    pub(crate) fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max);
        let half = exp / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let jitter = if jitter_ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
        };
        let backoff = half + jitter;
        match retry_after {
            Some(ra) => ra.min(self.max).max(backoff.min(ra)),
            None => backoff,
        }
    }
}

/// Parses `Retry-After` as delta-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Whether an HTTP status is worth retrying.
pub(crate) fn is_retryable_status(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// Classifies a reqwest error: everything but a malformed request is a network problem
/// that a retry may fix.
pub(crate) fn classify_reqwest(err: &reqwest::Error, what: &str) -> Failure {
    if err.is_builder() {
        Failure::Fatal(DownloadError::InvalidArgument(format!("{what}: {err}")))
    } else {
        Failure::transient(format!("{what}: {}", error_chain(err)))
    }
}

/// The error with its causes, since reqwest's Display hides the useful part ("connection refused").
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let d1 = b.delay(1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = b.delay(3, None);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d30 = b.delay(30, None);
            assert!(d30 <= Duration::from_secs(1) && d30 >= Duration::from_millis(500));
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let b = Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_secs(5),
        };
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}
