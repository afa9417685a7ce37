//! API keys and per-key rate limits.
//!
//! Keys come from `--api-key` and/or `--api-key-file` (one key per line, optionally named;
//! see [`parse_key_file`]). Each key has an id (its name) used in logs and as the
//! `key_id` metric label; the key itself is never logged or exported. Each key id gets its
//! own token buckets for requests per minute and tokens per minute.

use std::{collections::HashMap, sync::Mutex, time::Instant};

use axum::http::{header, HeaderMap};

use super::ApiError;

/// The id of the caller's key; `anonymous` when the server has no keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyId(pub std::sync::Arc<str>);

impl KeyId {
    pub fn anonymous() -> Self {
        KeyId("anonymous".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A configured key set; empty means the API is open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeys {
    /// (id, key), ids and keys unique.
    entries: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Key file format: one key per line; blank lines and lines starting with `#` are skipped;
/// a line is `KEY` or `NAME KEY` (whitespace between). NAME is 1-64 of `[A-Za-z0-9._-]` and
/// becomes the key id; an unnamed key's id is `key-N` (N = its line number). Leading and
/// trailing whitespace (a Secret's trailing newline) is ignored.
pub fn parse_key_file(text: &str) -> Result<Vec<(String, String)>, KeyError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = l.split_whitespace().collect();
        let (name, key) = match fields.as_slice() {
            [key] => (format!("key-{line}"), *key),
            [name, key] => {
                if !valid_name(name) {
                    return Err(KeyError::Line {
                        line,
                        message: format!(
                            "key name {name:?} must be 1-64 characters of A-Z a-z 0-9 . _ -"
                        ),
                    });
                }
                (name.to_string(), *key)
            }
            _ => {
                return Err(KeyError::Line {
                    line,
                    message: format!(
                        "expected `KEY` or `NAME KEY`, found {} fields",
                        fields.len()
                    ),
                })
            }
        };
        out.push((name, key.to_string()));
    }
    Ok(out)
}

impl ApiKeys {
    /// Builds the key set from `--api-key` (id `default`) and the key file's entries.
    /// Refuses an empty or whitespace-only key, and duplicate ids or keys.
    pub fn new(single: Option<&str>, file: Vec<(String, String)>) -> Result<Self, KeyError> {
        let mut entries = Vec::new();
        if let Some(k) = single {
            let k = k.trim();
            if k.is_empty() {
                return Err(KeyError::Invalid(
                    "--api-key / GLM_API_KEY is empty or whitespace; give a key or leave it unset"
                        .into(),
                ));
            }
            entries.push(("default".to_string(), k.to_string()));
        }
        for (id, key) in file {
            if entries.iter().any(|(i, _)| *i == id) {
                return Err(KeyError::Invalid(format!("key id {id:?} appears twice")));
            }
            if entries.iter().any(|(_, k)| *k == key) {
                return Err(KeyError::Invalid(format!(
                    "the key of {id:?} is also configured under another id"
                )));
            }
            entries.push((id, key));
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The id of the key the request presents, if it presents a configured one.
    /// `Authorization: <scheme> KEY` with the scheme `Bearer` in any case (RFC 7235), or
    /// `x-api-key: KEY`; compared in constant time per key.
    pub fn identify(&self, headers: &HeaderMap) -> Option<KeyId> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let v = v.trim();
                let (scheme, rest) = v.split_once(char::is_whitespace)?;
                scheme.eq_ignore_ascii_case("bearer").then_some(rest)
            });
        let x_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        let given: Vec<&str> = [bearer, x_api_key]
            .into_iter()
            .flatten()
            .map(str::trim)
            .collect();
        let mut found = None;
        // Every key is compared, so the time taken does not reveal which one matched.
        for (id, key) in &self.entries {
            let hit = given.iter().fold(false, |acc, g| {
                acc | constant_time_eq(g.as_bytes(), key.as_bytes())
            });
            if hit && found.is_none() {
                found = Some(KeyId(id.as_str().into()));
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Per-key limits; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
}

/// A token bucket of `capacity` that refills `capacity` per minute. Its level may go
/// below zero (tokens generated after admission are charged then), which delays later
/// requests of the same key.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, capacity: f64, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + secs * capacity / 60.0).min(capacity);
        self.at = now;
    }

    /// Takes `amount` if the bucket holds it; else the seconds until it will.
    fn take(&mut self, capacity: f64, amount: f64, now: Instant) -> Result<(), u64> {
        self.refill(capacity, now);
        if self.level >= amount {
            self.level -= amount;
            Ok(())
        } else {
            let wait = (amount - self.level) * 60.0 / capacity;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

#[derive(Debug, Default)]
struct KeyBuckets {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

/// The per-key buckets. One short lock per request; no await while held.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<String, KeyBuckets>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    fn with<T>(&self, key: &KeyId, f: impl FnOnce(&mut KeyBuckets) -> T) -> T {
        // A panic elsewhere while holding the lock leaves plain numbers behind: keep going.
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(key.as_str().to_string()).or_default())
    }

    /// Counts one request against the key's requests-per-minute bucket.
    pub fn admit_request(&self, key: &KeyId, now: Instant) -> Result<(), ApiError> {
        let Some(rpm) = self.limits.requests_per_minute else {
            return Ok(());
        };
        let cap = f64::from(rpm);
        self.with(key, |b| {
            let bucket = b.requests.get_or_insert(Bucket {
                level: cap,
                at: now,
            });
            bucket.take(cap, 1.0, now)
        })
        .map_err(|wait| ApiError::RateLimited {
            key_id: key.as_str().to_string(),
            limit: "requests_per_minute",
            message: format!("{rpm} requests per minute"),
            retry_after_secs: wait,
        })
    }

    /// Charges a request's prompt tokens before it runs. More tokens than a whole minute's
    /// budget can never pass: that is a 400 naming the limit, not a 429.
    pub fn admit_tokens(
        &self,
        key: &KeyId,
        param: &str,
        tokens: usize,
        now: Instant,
    ) -> Result<(), ApiError> {
        let Some(tpm) = self.limits.tokens_per_minute else {
            return Ok(());
        };
        if tokens as u64 > tpm {
            return Err(ApiError::invalid(
                param,
                format!(
                    "the prompt has {tokens} tokens; this API key may use at most {tpm} tokens per minute"
                ),
            ));
        }
        let cap = tpm as f64;
        self.with(key, |b| {
            let bucket = b.tokens.get_or_insert(Bucket {
                level: cap,
                at: now,
            });
            bucket.take(cap, tokens as f64, now)
        })
        .map_err(|wait| ApiError::RateLimited {
            key_id: key.as_str().to_string(),
            limit: "tokens_per_minute",
            message: format!("{tpm} tokens per minute"),
            retry_after_secs: wait,
        })
    }

    /// Charges generated tokens after the fact (the bucket may go below zero).
    pub fn charge_tokens(&self, key: &KeyId, tokens: usize, now: Instant) {
        let Some(tpm) = self.limits.tokens_per_minute else {
            return;
        };
        let cap = tpm as f64;
        self.with(key, |b| {
            let bucket = b.tokens.get_or_insert(Bucket {
                level: cap,
                at: now,
            });
            bucket.refill(cap, now);
            bucket.level -= tokens as f64;
        });
    }
}

#[cfg(test)]
#[path = "auth/tests.rs"]
mod tests;
