//! Making one file present and verified: resume from its `.part`, fetch the rest with HTTP
//! ranges, retry transient failures with backoff, drop stalled connections, verify, and only
//! then give it its real name.

mod part;
mod stream;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_RANGE, ETAG, LOCATION, RANGE};
use reqwest::{StatusCode, Url};
use tracing::Instrument;

use crate::config::DownloadConfig;
use crate::error::DownloadError;
use crate::hub::{is_hex, status_failure, ErrorContext};
use crate::lock::DirLock;
use crate::manifest::ManifestFile;
use crate::plan::PlannedFile;
use crate::retry::{self, Backoff, Failure};

pub(crate) use part::{Expected, PartFile};

/// Redirect hops followed per request (the hf CLI's limit too).
const MAX_REDIRECTS: usize = 10;
/// Network chunks are handed to the writer thread in batches of about this size, so the
/// thread hand-off costs nothing next to the copy and hash.
const BATCH_BYTES: usize = 1 << 20;

/// Byte counters shared by all transfers of one run, read by the progress ticker.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Verified-or-in-progress bytes present on disk for planned files.
    pub done: AtomicU64,
    /// Sum of planned file sizes (grows when a size is only learned from a response).
    pub total: AtomicU64,
    /// Bytes received over the network in this run (the rate's numerator).
    pub transferred: AtomicU64,
}

/// What every transfer of one run shares.
pub(crate) struct Shared {
    pub config: DownloadConfig,
    pub client: reqwest::Client,
    pub commit: String,
    pub ctx: ErrorContext,
    pub counters: Arc<Counters>,
    /// Held by writer threads too, so a cancelled run keeps the directory locked until its
    /// buffered bytes are on disk.
    pub lock: Arc<DirLock>,
}

/// Headers the hub puts on resolve responses (before the CDN redirect).
#[derive(Debug, Default)]
struct HubHeaders {
    commit: Option<String>,
    hub_etag: Option<String>,
    linked_size: Option<u64>,
}

impl HubHeaders {
    fn absorb(&mut self, h: &HeaderMap) {
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        if self.commit.is_none() {
            self.commit = get("x-repo-commit").map(str::to_ascii_lowercase);
        }
        if self.hub_etag.is_none() {
            // x-linked-etag is the LFS sha256; a plain etag on the hub's own answer is the git blob id.
            self.hub_etag = get("x-linked-etag")
                .or_else(|| get(ETAG.as_str()))
                .map(|e| {
                    e.trim_start_matches("W/")
                        .trim_matches('"')
                        .to_ascii_lowercase()
                });
        }
        if self.linked_size.is_none() {
            self.linked_size = get("x-linked-size").and_then(|s| s.parse().ok());
        }
    }
}

/// Everything but unreserved characters and '/' is escaped in file paths.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

fn resolve_url(shared: &Shared, path: &str) -> Result<Url, DownloadError> {
    let raw = format!(
        "{}/{}/resolve/{}/{}",
        shared.config.endpoint_base(),
        shared.config.repo,
        shared.commit,
        utf8_percent_encode(path, PATH)
    );
    Url::parse(&raw).map_err(|e| {
        DownloadError::InvalidArgument(format!("cannot build the file URL {raw:?}: {e}"))
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(format!("file worker failed: {e}"))))
}

/// Makes `file` present, verified and under its final name.
pub(crate) async fn fetch_file(
    shared: Arc<Shared>,
    file: PlannedFile,
) -> Result<ManifestFile, DownloadError> {
    let span = tracing::info_span!("file", path = %file.remote.path, size = ?file.remote.size);
    async move {
        let mut expected = Expected {
            size: file.remote.size,
            sha256: file.remote.sha256.clone(),
            blob_sha1: file.remote.blob_sha1.clone(),
        };
        if let Some(done) = existing_final(&shared, &file, &expected).await? {
            return Ok(done);
        }
        let needed = |s: &Shared| {
            let c = &s.counters;
            c.total.load(Ordering::Relaxed).saturating_sub(c.done.load(Ordering::Relaxed))
        };
        let mut refetches = 0u32;
        loop {
            let (path, exp, counters) = (file.part_path.clone(), expected.clone(), shared.counters.clone());
            let part = blocking(move || PartFile::open(&path, &exp, counters))
                .await
                .map_err(|e| DownloadError::io(&file.part_path, e, needed(&shared)))?;
            if part.len() > 0 {
                tracing::info!(bytes = part.len(), "resuming partial file");
            }
            let part = until_complete(&shared, &file, &mut expected, part).await?;
            let counted = part.len();
            let digests = blocking(move || part.finish())
                .await
                .map_err(|e| DownloadError::io(&file.part_path, e, needed(&shared)))?;
            match expected.check(&digests) {
                Ok(()) => {
                    std::fs::rename(&file.part_path, &file.final_path)
                        .map_err(|e| DownloadError::io(&file.final_path, e, 0))?;
                    tracing::debug!(sha256 = %digests.sha256, "verified");
                    return Ok(ManifestFile {
                        path: file.remote.path.clone(),
                        size: digests.size,
                        sha256: digests.sha256,
                    });
                }
                Err(why) => {
                    PartFile::discard(&file.part_path, counted, &shared.counters)
                        .map_err(|e| DownloadError::io(&file.part_path, e, 0))?;
                    refetches += 1;
                    if refetches > shared.config.max_integrity_refetches {
                        return Err(DownloadError::Integrity(format!(
                            "{} of {}@{} failed verification {refetches} times ({why}); the hub, \
                             a proxy or the disk is corrupting data; nothing was marked complete",
                            file.remote.path, shared.config.repo, shared.commit
                        )));
                    }
                    tracing::warn!(%why, refetches, "verification failed; deleted and fetching again");
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// A file already under its final name (from a run that died before writing the manifest, or
/// a repair run) is re-hashed and kept when it verifies; otherwise it is removed.
async fn existing_final(
    shared: &Arc<Shared>,
    file: &PlannedFile,
    expected: &Expected,
) -> Result<Option<ManifestFile>, DownloadError> {
    let Ok(meta) = std::fs::metadata(&file.final_path) else {
        return Ok(None);
    };
    if meta.is_file() && expected.size.is_none_or(|s| s == meta.len()) {
        let (path, exp) = (file.final_path.clone(), expected.clone());
        let digests = blocking(move || part::hash_file(&path, &exp))
            .await
            .map_err(|e| DownloadError::io(&file.final_path, e, 0))?;
        if expected.check(&digests).is_ok()
            && (expected.sha256.is_some() || expected.blob_sha1.is_some())
        {
            shared
                .counters
                .done
                .fetch_add(digests.size, Ordering::Relaxed);
            return Ok(Some(ManifestFile {
                path: file.remote.path.clone(),
                size: digests.size,
                sha256: digests.sha256,
            }));
        }
    }
    tracing::warn!(path = %file.final_path.display(), "existing file does not verify; fetching it again");
    std::fs::remove_file(&file.final_path)
        .map_err(|e| DownloadError::io(&file.final_path, e, 0))?;
    Ok(None)
}

/// Attempts until the part holds the whole file, retrying transient failures. The retry
/// budget counts consecutive attempts without progress, so a link that drops every few GB
/// still finishes while a dead one gives up.
async fn until_complete(
    shared: &Arc<Shared>,
    file: &PlannedFile,
    expected: &mut Expected,
    mut part: PartFile,
) -> Result<PartFile, DownloadError> {
    let backoff = Backoff {
        base: shared.config.retry_base_delay,
        max: shared.config.retry_max_delay,
    };
    let mut attempt = 0u32;
    loop {
        if expected.size == Some(part.len()) {
            return Ok(part);
        }
        let before = part.len();
        let (p, result) = attempt_once(shared, file, expected, part).await?;
        part = p;
        match result {
            Ok(()) => return Ok(part),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient {
                message,
                retry_after,
            }) => {
                if part.len() > before {
                    attempt = 0;
                }
                attempt += 1;
                if attempt > shared.config.max_retries {
                    return Err(DownloadError::Network(format!(
                        "{} of {}: {attempt} attempts in a row made no progress ({message}); check \
                         network access to {}; running again resumes ({} bytes of this file kept)",
                        file.remote.path,
                        shared.config.repo,
                        shared.ctx.endpoint,
                        part.len()
                    )));
                }
                let delay = backoff.delay(attempt, retry_after);
                tracing::warn!(%message, attempt, ?delay, kept = part.len(), "transfer interrupted; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// GET with our own redirect handling: the hub's headers (commit, etags, size) sit on the
/// redirect itself, and the token must not follow a redirect to another origin (the CDN).
async fn send(
    shared: &Shared,
    path: &str,
    start: u64,
) -> Result<(reqwest::Response, HubHeaders), Failure> {
    let mut url = resolve_url(shared, path)?;
    let hub_origin = url.origin();
    let stall = shared.config.stall_timeout;
    let mut headers = HubHeaders::default();
    for _ in 0..=MAX_REDIRECTS {
        let mut req = shared.client.get(url.clone());
        if start > 0 {
            req = req.header(RANGE, format!("bytes={start}-"));
        }
        if let Some(token) = shared
            .config
            .token
            .as_deref()
            .filter(|_| url.origin() == hub_origin)
        {
            req = req.bearer_auth(token);
        }
        let resp = tokio::time::timeout(stall, req.send())
            .await
            .map_err(|_| {
                Failure::transient(format!(
                    "no response from {} in {stall:?}",
                    url.origin().ascii_serialization()
                ))
            })?
            .map_err(|e| retry::classify_reqwest(&e, "request failed"))?;
        headers.absorb(resp.headers());
        if !resp.status().is_redirection() {
            return Ok((resp, headers));
        }
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| {
                Failure::transient(format!("HTTP {} without a Location header", resp.status()))
            })?;
        url = url
            .join(location)
            .map_err(|e| Failure::transient(format!("bad redirect Location {location:?}: {e}")))?;
    }
    Err(Failure::Fatal(DownloadError::Network(format!(
        "more than {MAX_REDIRECTS} redirects fetching {path}; check --hub-endpoint"
    ))))
}

/// `bytes START-END/TOTAL` or `bytes */TOTAL`.
fn parse_content_range(h: &HeaderMap) -> Option<(Option<u64>, Option<u64>)> {
    let v = h
        .get(CONTENT_RANGE)?
        .to_str()
        .ok()?
        .trim()
        .strip_prefix("bytes ")?;
    let (range, total) = v.split_once('/')?;
    let start = range
        .split_once('-')
        .and_then(|(s, _)| s.trim().parse().ok());
    Some((start, total.trim().parse().ok()))
}

pub(crate) type Attempt = (PartFile, Result<(), Failure>);

/// One request: status handling, then the body streamed into the part file.
async fn attempt_once(
    shared: &Arc<Shared>,
    file: &PlannedFile,
    expected: &mut Expected,
    mut part: PartFile,
) -> Result<Attempt, DownloadError> {
    let io_err = |part: &PartFile, e| DownloadError::io(part.path(), e, 0);
    let start = part.len();
    let (resp, hub) = match send(shared, &file.remote.path, start).await {
        Ok(r) => r,
        Err(f) => return Ok((part, Err(f))),
    };
    if let Some(commit) = hub.commit.as_deref().filter(|c| *c != shared.commit) {
        return Err(DownloadError::Integrity(format!(
            "asked for {} at commit {} but the hub answered with commit {commit}; a proxy or \
             mirror is serving another revision",
            file.remote.path, shared.commit
        )));
    }
    learn_from_headers(expected, &hub, &mut part);
    let status = resp.status();
    let range = parse_content_range(resp.headers());
    let total = match status {
        StatusCode::PARTIAL_CONTENT => {
            if range.and_then(|r| r.0) != Some(start) {
                part.reset().map_err(|e| io_err(&part, e))?;
                return Ok((
                    part,
                    Err(Failure::transient("server answered a different byte range")),
                ));
            }
            range.and_then(|r| r.1)
        }
        StatusCode::OK => {
            if start > 0 {
                tracing::info!("server ignored the range request; fetching from the start");
                part.reset().map_err(|e| io_err(&part, e))?;
            }
            resp.headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let total = range.and_then(|r| r.1).or(expected.size);
            if total == Some(start) {
                return Ok((part, Ok(())));
            }
            part.reset().map_err(|e| io_err(&part, e))?;
            return Ok((
                part,
                Err(Failure::transient(
                    "range not satisfiable; restarting the file",
                )),
            ));
        }
        _ => {
            let headers = resp.headers().clone();
            let body = tokio::time::timeout(
                shared.config.stall_timeout,
                retry::read_capped(resp, retry::MAX_ERROR_BODY_BYTES),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .map(|(b, _)| b)
            .unwrap_or_default();
            let failure = status_failure(
                status,
                &headers,
                &body,
                &shared.ctx,
                Some(&file.remote.path),
            );
            return Ok((part, Err(failure)));
        }
    };
    if expected.size.is_none() {
        if let Some(t) = total {
            expected.size = Some(t);
            shared.counters.total.fetch_add(t, Ordering::Relaxed);
        }
    }
    stream::stream_body(shared, resp, part, expected.size).await
}

/// Fills digest expectations the model-info listing lacked from the hub's headers.
fn learn_from_headers(expected: &mut Expected, hub: &HubHeaders, part: &mut PartFile) {
    let before = expected.clone();
    if expected.size.is_none() {
        expected.size = hub.linked_size;
    }
    if expected.sha256.is_none() && expected.blob_sha1.is_none() {
        match hub.hub_etag.as_deref() {
            Some(e) if is_hex(e, 64) => expected.sha256 = Some(e.to_string()),
            Some(e) if is_hex(e, 40) && hub.linked_size.is_none() => {
                expected.blob_sha1 = Some(e.to_string())
            }
            _ => {}
        }
    }
    if *expected != before {
        part.set_expected(expected);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn content_range_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/1000"),
        );
        assert_eq!(parse_content_range(&h), Some((Some(100), Some(1000))));
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes */1000"));
        assert_eq!(parse_content_range(&h), Some((None, Some(1000))));
    }

    #[test]
    fn hub_headers_keep_the_first_hop() {
        let mut first = HeaderMap::new();
        first.insert("x-repo-commit", HeaderValue::from_static("ABC"));
        first.insert("x-linked-etag", HeaderValue::from_static("\"deadbeef\""));
        first.insert("x-linked-size", HeaderValue::from_static("42"));
        let mut cdn = HeaderMap::new();
        cdn.insert(ETAG, HeaderValue::from_static("\"cdn-etag\""));
        let mut h = HubHeaders::default();
        h.absorb(&first);
        h.absorb(&cdn);
        assert_eq!(h.commit.as_deref(), Some("abc"));
        assert_eq!(h.hub_etag.as_deref(), Some("deadbeef"));
        assert_eq!(h.linked_size, Some(42));
    }
}
