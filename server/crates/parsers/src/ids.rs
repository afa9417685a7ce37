//! Tool-call ids: `call_` + 24 random alphanumerics, or a deterministic sequence for tests.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const RANDOM_LEN: usize = 24;

/// Produces tool-call ids. Cheap to clone; shared generators keep counting across clones.
#[derive(Clone)]
pub struct ToolCallIdGenerator {
    inner: Arc<dyn Fn() -> String + Send + Sync>,
}

impl fmt::Debug for ToolCallIdGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ToolCallIdGenerator")
    }
}

impl Default for ToolCallIdGenerator {
    fn default() -> Self {
        Self::random()
    }
}

impl ToolCallIdGenerator {
    /// `call_` + 24 random characters from `[A-Za-z0-9]`. The ids only need to be unique
    /// within a conversation, not secret, so the standard library's per-process random hash
    /// keys (seeded from the OS) mixed with a counter and the clock are enough.
    pub fn random() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = RandomState::new();
        ToolCallIdGenerator {
            inner: Arc::new(move || {
                let n = COUNTER.fetch_add(1, Ordering::Relaxed);
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                let mut id = String::with_capacity(5 + RANDOM_LEN);
                id.push_str("call_");
                let mut block = 0u64;
                let mut remaining_bits = 0;
                let mut round = 0u64;
                while id.len() < 5 + RANDOM_LEN {
                    if remaining_bits < 6 {
                        let mut h = seed.build_hasher();
                        h.write_u64(n);
                        h.write_u64(nanos);
                        h.write_u64(round);
                        block = h.finish();
                        remaining_bits = 64;
                        round += 1;
                    }
                    // 62 symbols: rejection-sample 6-bit chunks to stay uniform.
                    let v = (block & 63) as usize;
                    block >>= 6;
                    remaining_bits -= 6;
                    if v < ALPHABET.len() {
                        id.push(ALPHABET[v] as char);
                    }
                }
                id
            }),
        }
    }

    /// `{prefix}0`, `{prefix}1`, ... — deterministic ids for tests.
    pub fn sequential(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        let counter = Arc::new(AtomicU64::new(0));
        ToolCallIdGenerator {
            inner: Arc::new(move || format!("{prefix}{}", counter.fetch_add(1, Ordering::Relaxed))),
        }
    }

    /// Any id function.
    pub fn from_fn(f: impl Fn() -> String + Send + Sync + 'static) -> Self {
        ToolCallIdGenerator { inner: Arc::new(f) }
    }

    /// The next id.
    pub fn next_id(&self) -> String {
        (self.inner)()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_have_the_openai_shape_and_differ() {
        let gen = ToolCallIdGenerator::random();
        let ids: Vec<String> = (0..200).map(|_| gen.next_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 29, "{id}");
            assert!(id.starts_with("call_"));
            assert!(id[5..].bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        }
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn sequential_ids() {
        let gen = ToolCallIdGenerator::sequential("call_");
        let clone = gen.clone();
        assert_eq!(gen.next_id(), "call_0");
        assert_eq!(clone.next_id(), "call_1");
    }
}
