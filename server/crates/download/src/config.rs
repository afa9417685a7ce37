//! What to download and how hard to try. Built by the CLI from flags and environment, or
//! directly by library users and tests.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::DownloadError;

/// The public Hugging Face Hub, used when neither `--hub-endpoint` nor `HF_ENDPOINT` is set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Everything [`crate::download`] needs. Construct with [`DownloadConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct DownloadConfig {
    /// `owner/name` of a model repo.
    pub repo: String,
    /// Branch, tag or commit sha; resolved to a commit sha before any file is fetched.
    pub revision: String,
    /// Parent directory; files land in `<dir>/<commit-sha>/`.
    pub dir: PathBuf,
    /// fnmatch-style globs (as the hf CLI's `--include`); empty means every file.
    pub include: Vec<String>,
    /// Hub base URL, without a trailing slash.
    pub endpoint: String,
    /// Bearer token sent to the hub (never to redirect targets on another origin).
    pub token: Option<String>,
    /// Files transferred at once.
    pub parallel: usize,
    /// A connection that delivers no byte for this long is dropped and retried.
    pub stall_timeout: Duration,
    /// Consecutive failed attempts (without progress) per request before giving up.
    pub max_retries: u32,
    /// First backoff delay; doubles per attempt up to `retry_max_delay`, with jitter.
    pub retry_base_delay: Duration,
    /// Cap on one backoff delay (and on an honoured `Retry-After`).
    pub retry_max_delay: Duration,
    /// Times a file whose digest mismatched is deleted and fetched again before failing.
    pub max_integrity_refetches: u32,
    /// How often progress snapshots are reported.
    pub progress_interval: Duration,
}

impl DownloadConfig {
    /// Defaults matching the CLI's: revision `main`, the public hub, 8 parallel files,
    /// 60 s stall timeout, 10 retries, 2 integrity re-fetches.
    pub fn new(repo: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            repo: repo.into(),
            revision: "main".to_string(),
            dir: dir.into(),
            include: Vec::new(),
            endpoint: DEFAULT_ENDPOINT.to_string(),
            token: None,
            parallel: 8,
            stall_timeout: Duration::from_secs(60),
            max_retries: 10,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(60),
            max_integrity_refetches: 2,
            progress_interval: Duration::from_secs(1),
        }
    }

    /// Rejects values that would make the download meaningless or unsafe, naming the field.
    pub fn validate(&self) -> Result<(), DownloadError> {
        validate_repo(&self.repo)?;
        if self.revision.trim().is_empty() || self.revision.contains("..") {
            return Err(DownloadError::InvalidArgument(format!(
                "--revision {:?} is not a branch, tag or commit sha",
                self.revision
            )));
        }
        if self.dir.as_os_str().is_empty() {
            return Err(DownloadError::InvalidArgument(
                "--dir must not be empty".into(),
            ));
        }
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(DownloadError::InvalidArgument(format!(
                "--hub-endpoint / HF_ENDPOINT {:?} must start with http:// or https://",
                self.endpoint
            )));
        }
        if self.parallel == 0 {
            return Err(DownloadError::InvalidArgument(
                "--parallel must be at least 1".into(),
            ));
        }
        if self.stall_timeout.is_zero() {
            return Err(DownloadError::InvalidArgument(
                "--timeout-secs must be at least 1".into(),
            ));
        }
        for glob in &self.include {
            glob::Pattern::new(glob).map_err(|e| {
                DownloadError::InvalidArgument(format!(
                    "--include {glob:?} is not a valid glob: {e}"
                ))
            })?;
        }
        Ok(())
    }

    /// The endpoint without trailing slashes, so URLs join cleanly.
    pub(crate) fn endpoint_base(&self) -> &str {
        self.endpoint.trim_end_matches('/')
    }
}

fn validate_repo(repo: &str) -> Result<(), DownloadError> {
    let bad = |why: &str| {
        Err(DownloadError::InvalidArgument(format!(
            "--repo {repo:?} {why}; expected OWNER/NAME as on the model page, e.g. zai-org/GLM-4.5-Air"
        )))
    };
    let parts: Vec<&str> = repo.split('/').collect();
    if repo.is_empty() || parts.len() > 2 {
        return bad("is not a repo id");
    }
    for part in parts {
        if part.is_empty() || part == "." || part == ".." {
            return bad("has an empty or relative path segment");
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return bad("contains characters other than letters, digits, '-', '_' and '.'");
        }
    }
    Ok(())
}

/// True for a full 40-hex git commit sha, which needs no resolution when already complete.
pub(crate) fn is_commit_sha(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let mut c = DownloadConfig::new("zai-org/GLM-4.5-Air", "/models");
        assert!(c.validate().is_ok());
        c.repo = "../etc".into();
        let e = c.validate().unwrap_err();
        assert_eq!(e.kind(), "invalid_argument");
        assert!(e.to_string().contains("--repo"));
        c.repo = "a/b".into();
        c.include = vec!["[".into()];
        assert!(c.validate().unwrap_err().to_string().contains("--include"));
        c.include.clear();
        c.endpoint = "ftp://x".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--hub-endpoint"));
        c.endpoint = DEFAULT_ENDPOINT.into();
        c.parallel = 0;
        assert!(c.validate().unwrap_err().to_string().contains("--parallel"));
    }

    #[test]
    fn commit_sha_detection() {
        assert!(is_commit_sha("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit_sha("main"));
        assert!(!is_commit_sha("0123456789abcdef0123456789abcdef0123456"));
    }
}
