//! Talking to the hub about a repo: resolve a revision to its commit and list that commit's
//! files (model-info API via hf-hub, so endpoint/token/user-agent conventions match the hf
//! tooling), and turn HTTP failures into errors that tell the user what to do.

use std::time::Duration;

use hf_hub::api::tokio::{Api, ApiBuilder};
use hf_hub::{Cache, Repo, RepoType};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::Deserialize;

use crate::config::DownloadConfig;
use crate::error::DownloadError;
use crate::retry::{self, Backoff, Failure};

/// One file of the resolved commit, as the hub describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteFile {
    pub path: String,
    pub size: Option<u64>,
    /// LFS object sha256 (lowercase hex), only for LFS files.
    pub sha256: Option<String>,
    /// Git blob sha1 for non-LFS files (for LFS files the hub's blob id is the pointer's).
    pub blob_sha1: Option<String>,
}

/// A revision pinned to its commit.
#[derive(Debug, Clone)]
pub(crate) struct CommitListing {
    pub sha: String,
    pub files: Vec<RemoteFile>,
}

#[derive(Deserialize)]
struct ModelInfo {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    sha256: Option<String>,
    size: Option<u64>,
}

/// What the messages need to know about the request being made.
#[derive(Debug, Clone)]
pub(crate) struct ErrorContext {
    pub repo: String,
    pub revision: String,
    pub endpoint: String,
    pub has_token: bool,
}

impl ErrorContext {
    pub(crate) fn new(config: &DownloadConfig) -> Self {
        Self {
            repo: config.repo.clone(),
            revision: config.revision.clone(),
            endpoint: config.endpoint_base().to_string(),
            has_token: config.token.is_some(),
        }
    }
}

/// The hf tooling's token file (`$HF_HOME/token`, default `~/.cache/huggingface/token`),
/// used when neither `--token-file` nor `HF_TOKEN` gives one.
pub fn cached_token() -> Option<String> {
    hf_cache().and_then(|c| c.token())
}

/// hf-hub's `Cache::default()` panics without a home directory (common for non-root
/// container users), so build it only from what the environment really provides.
fn hf_cache() -> Option<Cache> {
    if std::env::var_os("HF_HOME").is_some() {
        return Some(Cache::from_env());
    }
    let home = std::env::var_os("HOME")?;
    let mut path = std::path::PathBuf::from(home);
    path.extend([".cache", "huggingface", "hub"]);
    Some(Cache::new(path))
}

/// Resolves `config.revision` to a commit sha and lists that commit's files.
#[tracing::instrument(skip_all, fields(repo = %config.repo, revision = %config.revision))]
pub(crate) async fn resolve(config: &DownloadConfig) -> Result<CommitListing, DownloadError> {
    let api = build_api(config)?;
    let repo = Repo::with_revision(
        config.repo.clone(),
        RepoType::Model,
        config.revision.clone(),
    );
    let ctx = ErrorContext::new(config);
    let backoff = Backoff {
        base: config.retry_base_delay,
        max: config.retry_max_delay,
    };
    let mut attempt = 0u32;
    loop {
        match info_once(&api, &repo, config.stall_timeout, &ctx).await {
            Ok(listing) => {
                tracing::info!(commit = %listing.sha, files = listing.files.len(), "revision resolved");
                return Ok(listing);
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient {
                message,
                retry_after,
            }) => {
                attempt += 1;
                if attempt > config.max_retries {
                    return Err(DownloadError::Network(format!(
                        "could not resolve revision {:?} of {} at {} after {attempt} attempts: \
                         {message}; check network access to the hub (or HF_ENDPOINT / --hub-endpoint)",
                        config.revision, config.repo, ctx.endpoint
                    )));
                }
                let delay = backoff.delay(attempt, retry_after);
                tracing::warn!(%message, attempt, ?delay, "model info request failed; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

fn build_api(config: &DownloadConfig) -> Result<Api, DownloadError> {
    // hf-hub's own file cache is never used (files go to --dir); it only needs a path.
    let cache = hf_cache().unwrap_or_else(|| Cache::new(config.dir.clone()));
    ApiBuilder::from_cache(cache)
        .with_endpoint(config.endpoint_base().to_string())
        .with_token(config.token.clone())
        .with_progress(false)
        .with_user_agent("glm-download", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| {
            DownloadError::InvalidArgument(format!(
                "cannot build a hub client (is the token a single line of printable text?): {e}"
            ))
        })
}

/// The model info answer (the file listing) is read up to this size; real repositories
/// list thousands of files in well under a megabyte.
const MAX_INFO_BYTES: usize = 32 << 20;

async fn info_once(
    api: &Api,
    repo: &Repo,
    timeout: Duration,
    ctx: &ErrorContext,
) -> Result<CommitListing, Failure> {
    let request = api
        .repo(repo.clone())
        .info_request()
        .query(&[("blobs", "true")]);
    let fetch = async {
        let response = request
            .send()
            .await
            .map_err(|e| retry::classify_reqwest(&e, "model info request"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let limit = if status.is_success() {
            MAX_INFO_BYTES
        } else {
            retry::MAX_ERROR_BODY_BYTES
        };
        let (body, more) = retry::read_capped(response, limit)
            .await
            .map_err(|e| retry::classify_reqwest(&e, "reading model info"))?;
        if more && status.is_success() {
            return Err(Failure::Fatal(DownloadError::Network(format!(
                "{} answered the model info request for {} with more than {MAX_INFO_BYTES} bytes; \
                 is --hub-endpoint a Hugging Face Hub compatible server?",
                ctx.endpoint, ctx.repo
            ))));
        }
        Ok::<_, Failure>((status, headers, body))
    };
    let (status, headers, body) = tokio::time::timeout(timeout, fetch).await.map_err(|_| {
        Failure::transient(format!("model info request got no answer in {timeout:?}"))
    })??;
    if !status.is_success() {
        return Err(status_failure(status, &headers, &body, ctx, None));
    }
    let info: ModelInfo = serde_json::from_slice(&body).map_err(|e| {
        Failure::Fatal(DownloadError::Network(format!(
            "{} answered the model info request for {} with unexpected JSON ({e}); \
             is --hub-endpoint a Hugging Face Hub compatible server?",
            ctx.endpoint, ctx.repo
        )))
    })?;
    if !crate::config::is_commit_sha(&info.sha) {
        return Err(Failure::Fatal(DownloadError::Integrity(format!(
            "the hub resolved {}@{} to {:?}, which is not a commit sha",
            ctx.repo, ctx.revision, info.sha
        ))));
    }
    let files = info
        .siblings
        .into_iter()
        .map(|s| {
            let is_lfs = s.lfs.is_some();
            let lfs_size = s.lfs.as_ref().and_then(|l| l.size);
            RemoteFile {
                path: s.rfilename,
                size: s.size.or(lfs_size),
                sha256: s.lfs.and_then(|l| l.sha256).map(|h| h.to_ascii_lowercase()),
                blob_sha1: if is_lfs {
                    None
                } else {
                    s.blob_id
                        .filter(|b| is_hex(b, 40))
                        .map(|h| h.to_ascii_lowercase())
                },
            }
        })
        .collect();
    Ok(CommitListing {
        sha: info.sha.to_ascii_lowercase(),
        files,
    })
}

pub(crate) fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Maps a non-success status to a fatal error with advice, or a transient failure.
/// `file` is set for file transfers (so a 404 names the file, not the repo).
pub(crate) fn status_failure(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    ctx: &ErrorContext,
    file: Option<&str>,
) -> Failure {
    if retry::is_retryable_status(status) {
        return Failure::Transient {
            message: format!("HTTP {status}"),
            retry_after: retry::retry_after(headers),
        };
    }
    let code = headers
        .get("x-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]).to_string();
    let repo = &ctx.repo;
    let page = format!("{}/{repo}", ctx.endpoint);
    let err = match status {
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED
            if code == "GatedRepo" || text.to_ascii_lowercase().contains("gated") =>
        {
            DownloadError::Gated(format!(
                "{repo} is a gated model and this token has no access (HTTP {status}): open {page}, \
                 accept the license while logged in, then use a token of that account \
                 (--token-file or HF_TOKEN){}",
                if ctx.has_token { "" } else { "; no token was given" }
            ))
        }
        StatusCode::UNAUTHORIZED if ctx.has_token => DownloadError::Unauthorized(format!(
            "the hub rejected the token for {repo} (HTTP 401): check that the token in \
             --token-file / HF_TOKEN is current and has read access to {page}"
        )),
        StatusCode::UNAUTHORIZED => DownloadError::Unauthorized(format!(
            "{repo} needs a token (HTTP 401): it is private, gated, or does not exist; check --repo, \
             and pass a token with read access via --token-file or HF_TOKEN"
        )),
        StatusCode::FORBIDDEN => DownloadError::Unauthorized(format!(
            "the token may not read {repo} (HTTP 403): use a token with read access to the repo \
             (fine-grained tokens need it granted explicitly)"
        )),
        StatusCode::NOT_FOUND => DownloadError::NotFound(match (code, file) {
            ("RevisionNotFound", _) => format!(
                "revision {:?} not found in {repo}: check --revision (a branch, tag or full commit sha)",
                ctx.revision
            ),
            ("EntryNotFound", Some(f)) | ("", Some(f)) => format!(
                "file {f:?} of {repo}@{} not found on the hub (HTTP 404); the commit listing and the \
                 file store disagree: run again later or report it to the mirror's operator",
                ctx.revision
            ),
            ("RepoNotFound", _) => format!(
                "repository {repo} not found at {}: check --repo (OWNER/NAME as on the model page)",
                ctx.endpoint
            ),
            _ => format!(
                "repository {repo} or revision {:?} not found at {} (HTTP 404): check --repo and --revision",
                ctx.revision, ctx.endpoint
            ),
        }),
        _ => DownloadError::Network(format!(
            "unexpected HTTP {status} from {} for {repo}{}: {}",
            ctx.endpoint,
            file.map(|f| format!(" file {f:?}")).unwrap_or_default(),
            text.trim()
        )),
    };
    Failure::Fatal(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn ctx(token: bool) -> ErrorContext {
        ErrorContext {
            repo: "o/m".into(),
            revision: "v1".into(),
            endpoint: "http://hub".into(),
            has_token: token,
        }
    }

    fn fatal(f: Failure) -> DownloadError {
        match f {
            Failure::Fatal(e) => e,
            Failure::Transient { message, .. } => panic!("expected fatal, got transient {message}"),
        }
    }

    #[test]
    fn statuses_map_to_kinds_with_advice() {
        let h = HeaderMap::new();
        let e = fatal(status_failure(
            StatusCode::UNAUTHORIZED,
            &h,
            b"",
            &ctx(true),
            None,
        ));
        assert_eq!(e.kind(), "unauthorized");
        assert!(e.to_string().contains("token"));

        let mut gated = HeaderMap::new();
        gated.insert("x-error-code", HeaderValue::from_static("GatedRepo"));
        let e = fatal(status_failure(
            StatusCode::FORBIDDEN,
            &gated,
            b"",
            &ctx(true),
            None,
        ));
        assert_eq!(e.kind(), "gated");
        assert!(e.to_string().contains("http://hub/o/m"));

        let mut rev = HeaderMap::new();
        rev.insert("x-error-code", HeaderValue::from_static("RevisionNotFound"));
        let e = fatal(status_failure(
            StatusCode::NOT_FOUND,
            &rev,
            b"",
            &ctx(false),
            None,
        ));
        assert_eq!(e.kind(), "not_found");
        assert!(e.to_string().contains("\"v1\""));

        let e = fatal(status_failure(
            StatusCode::NOT_FOUND,
            &h,
            b"",
            &ctx(false),
            Some("a.bin"),
        ));
        assert!(e.to_string().contains("a.bin"));
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        match status_failure(StatusCode::TOO_MANY_REQUESTS, &h, b"", &ctx(false), None) {
            Failure::Transient { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)))
            }
            Failure::Fatal(e) => panic!("{e}"),
        }
        assert!(matches!(
            status_failure(StatusCode::BAD_GATEWAY, &h, b"", &ctx(false), None),
            Failure::Transient { .. }
        ));
    }
}
