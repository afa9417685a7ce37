//! A mock Hugging Face Hub on 127.0.0.1 speaking the subset of the HTTP API that hf-hub and
//! the hf CLI use: model info (`/api/models/{repo}/revision/{rev}`, `?blobs=true` adds sizes,
//! blob ids and LFS sha256), `/{repo}/resolve/{rev}/{path}` (non-LFS files served directly,
//! LFS files 302-redirected to a CDN-like path), Range requests (206 + Content-Range, 416),
//! `ETag` / `X-Linked-Etag` / `X-Linked-Size` / `X-Repo-Commit` headers, 401 for a bad token,
//! 403 for gated repos, 404 with `X-Error-Code`, and one-shot fault injection per file.
//!
//! One implementation for every test that needs a hub: the download crate's tests and bench
//! serve generated files from memory, the end-to-end tests serve a fixture checkpoint from a
//! folder ([`MockHub::commit_dir`]) to download Jobs running on the local cluster.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Bytes per body chunk the server yields.
const CHUNK: usize = 256 << 10;

/// A file of a commit.
#[derive(Clone)]
pub struct HubFile {
    pub content: Bytes,
    pub lfs: bool,
    pub sha256: String,
    pub blob_sha1: String,
}

impl HubFile {
    pub fn new(content: impl Into<Bytes>, lfs: bool) -> Self {
        let content = content.into();
        let mut blob = Sha1::new();
        blob.update(format!("blob {}\0", content.len()).as_bytes());
        blob.update(&content);
        Self {
            sha256: hex::encode(Sha256::digest(&content)),
            blob_sha1: hex::encode(blob.finalize()),
            content,
            lfs,
        }
    }
}

/// A one-shot misbehaviour for the next body request of a file.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (e.g. 500, 503).
    Status(u16),
    /// 429 with `Retry-After: secs`.
    RateLimit(u64),
    /// Send this many body bytes, then drop the connection.
    CutAfter(u64),
    /// Send the body with one byte flipped (same length).
    Corrupt,
    /// Send this many body bytes, then send nothing more, forever.
    StallAfter(u64),
    /// Send the file, then zeros forever (no Content-Length).
    Endless,
    /// Answer with this status and an endless body of zeros.
    EndlessStatus(u16),
}

/// An endless body of zero bytes; `counter` counts what was sent.
fn endless(counter: Arc<AtomicU64>, first: Bytes) -> Body {
    let zeros = Bytes::from(vec![0u8; CHUNK]);
    let stream = futures::stream::unfold(first, move |first| {
        let counter = counter.clone();
        let zeros = zeros.clone();
        async move {
            let chunk = if first.is_empty() { zeros } else { first };
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            // Yield so a client that stops reading is noticed (the send fails).
            tokio::task::yield_now().await;
            Some((Ok::<_, std::io::Error>(chunk), Bytes::new()))
        }
    });
    Body::from_stream(stream)
}

/// One file request as the server saw it.
#[derive(Debug, Clone)]
pub struct FileRequest {
    pub path: String,
    pub range_start: Option<u64>,
    pub status: u16,
    pub authorized: bool,
}

#[derive(Default)]
struct RepoState {
    refs: HashMap<String, String>,
    commits: HashMap<String, BTreeMap<String, HubFile>>,
    gated: bool,
}

#[derive(Default)]
struct Inner {
    repos: HashMap<String, RepoState>,
    faults: HashMap<String, VecDeque<Fault>>,
    served: HashMap<String, Arc<AtomicU64>>,
    requests: Vec<FileRequest>,
    info_requests: u64,
    token: Option<String>,
    commits_made: u64,
}

type Shared = Arc<Mutex<Inner>>;

/// The hub's state; a handler that panicked leaves it usable (tests read it afterwards).
fn lock(inner: &Shared) -> MutexGuard<'_, Inner> {
    inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A header value from text the hub built itself (hex digests, numbers, repo paths); text a
/// header cannot carry becomes an empty value rather than a panic.
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Files in the LFS store of a real hub repository (served by redirect to the CDN path).
fn is_lfs(path: &str) -> bool {
    [".safetensors", ".bin", ".gguf", ".pt", ".pth"]
        .iter()
        .any(|ext| path.ends_with(ext))
}

/// Handle to a running mock hub.
pub struct MockHub {
    pub url: String,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockHub {
    /// Serves on `127.0.0.1`, on a free port, until dropped.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0").await
    }

    /// Serves on `addr` (e.g. `127.0.0.1:0`) until dropped.
    pub async fn start_on(addr: &str) -> std::io::Result<Self> {
        let inner: Shared = Arc::default();
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "mock hub stopped");
            }
        });
        Ok(Self { url, inner, task })
    }

    /// Adds a commit with every file under `dir` (recursively, paths relative to it;
    /// weights such as `*.safetensors` in LFS, as on the real hub) and points `branch` at it;
    /// returns the commit sha.
    pub fn commit_dir(&self, repo: &str, branch: &str, dir: &Path) -> std::io::Result<String> {
        let mut files = Vec::new();
        read_tree(dir, dir, &mut files)?;
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let refs: Vec<(&str, HubFile)> =
            files.iter().map(|(p, f)| (p.as_str(), f.clone())).collect();
        Ok(self.commit(repo, branch, &refs))
    }

    /// Adds a commit with these files and points `branch` at it; returns the commit sha.
    pub fn commit(&self, repo: &str, branch: &str, files: &[(&str, HubFile)]) -> String {
        let mut inner = lock(&self.inner);
        inner.commits_made += 1;
        let mut h = Sha1::new();
        h.update(format!("{repo}\n{}\n", inner.commits_made));
        for (p, f) in files {
            h.update(format!("{p} {}\n", f.sha256));
        }
        let sha = hex::encode(h.finalize());
        let state = inner.repos.entry(repo.to_string()).or_default();
        state.commits.insert(
            sha.clone(),
            files
                .iter()
                .map(|(p, f)| (p.to_string(), f.clone()))
                .collect(),
        );
        state.refs.insert(branch.to_string(), sha.clone());
        sha
    }

    /// Points `tag` of `repo` at `sha` (creating the repo when unknown).
    pub fn tag(&self, repo: &str, tag: &str, sha: &str) {
        lock(&self.inner)
            .repos
            .entry(repo.to_string())
            .or_default()
            .refs
            .insert(tag.into(), sha.into());
    }

    pub fn require_token(&self, token: &str) {
        lock(&self.inner).token = Some(token.to_string());
    }

    /// Makes `repo` gated (403 `GatedRepo`), creating it when unknown.
    pub fn set_gated(&self, repo: &str) {
        lock(&self.inner)
            .repos
            .entry(repo.to_string())
            .or_default()
            .gated = true;
    }

    pub fn inject(&self, path: &str, fault: Fault) {
        let mut inner = lock(&self.inner);
        inner
            .faults
            .entry(path.to_string())
            .or_default()
            .push_back(fault);
    }

    /// Body bytes handed to the network for `path` so far (all requests).
    pub fn served(&self, path: &str) -> u64 {
        let inner = lock(&self.inner);
        inner
            .served
            .get(path)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn total_served(&self) -> u64 {
        let inner = lock(&self.inner);
        inner
            .served
            .values()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn requests(&self, path: &str) -> Vec<FileRequest> {
        let inner = lock(&self.inner);
        inner
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn info_requests(&self) -> u64 {
        lock(&self.inner).info_requests
    }

    /// `url` of the CDN copy of an LFS file, for raw copies (curl) in the bench.
    pub fn resolve_url(&self, repo: &str, rev: &str, path: &str) -> String {
        format!("{}/{repo}/resolve/{rev}/{path}", self.url)
    }
}

fn error(status: StatusCode, code: &str, msg: &str) -> Response {
    let mut r = (status, axum::Json(serde_json::json!({"error": msg}))).into_response();
    if !code.is_empty() {
        r.headers_mut().insert("x-error-code", header_value(code));
    }
    r
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

async fn handle(State(inner): State<Shared>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", "models", owner, name, "revision", rev @ ..] if !rev.is_empty() => info(
            &inner,
            &format!("{owner}/{name}"),
            &decode(&rev.join("/")),
            query.contains("blobs=true"),
            &headers,
        ),
        [owner, name, "resolve", rev, file @ ..] if !file.is_empty() => resolve(
            &inner,
            &format!("{owner}/{name}"),
            &decode(rev),
            &decode(&file.join("/")),
            &headers,
        ),
        ["cdn", owner, name, commit, file @ ..] if !file.is_empty() => {
            let repo = format!("{owner}/{name}");
            let file = decode(&file.join("/"));
            let found = {
                let g = lock(&inner);
                g.repos
                    .get(&repo)
                    .and_then(|r| r.commits.get(*commit))
                    .and_then(|c| c.get(&file))
                    .cloned()
            };
            match found {
                Some(f) => serve_body(&inner, &file, &f, &headers, HeaderMap::new()),
                None => error(StatusCode::NOT_FOUND, "", "no such object"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "", "unknown route"),
    }
}

/// Auth and repo check of [`commit`]; the error is the answer.
#[allow(clippy::result_large_err)] // a Response, returned once per refused request
fn check_access(inner: &Shared, repo: &str, headers: &HeaderMap) -> Result<(), Response> {
    let g = lock(inner);
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(want) = &g.token {
        if sent != Some(want.as_str()) {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "",
                "Invalid credentials in Authorization header",
            ));
        }
    }
    let Some(r) = g.repos.get(repo) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "RepoNotFound",
            "Repository not found",
        ));
    };
    if r.gated {
        return Err(error(
            StatusCode::FORBIDDEN,
            "GatedRepo",
            &format!("Access to model {repo} is restricted. You must have access to it and be authenticated to access it."),
        ));
    }
    Ok(())
}

/// The commit `rev` (a ref or a sha) of `repo` and its files, as the caller may see it: the
/// access error, or `RevisionNotFound`, as the hub answers them. Shared by the info and
/// resolve routes.
#[allow(clippy::result_large_err)] // a Response, returned once per refused request
fn commit(
    inner: &Shared,
    repo: &str,
    rev: &str,
    headers: &HeaderMap,
) -> Result<(String, BTreeMap<String, HubFile>), Response> {
    check_access(inner, repo, headers)?;
    let found = {
        let g = lock(inner);
        g.repos.get(repo).and_then(|r| {
            let sha = r.refs.get(rev).cloned().unwrap_or_else(|| rev.to_string());
            r.commits.get(&sha).map(|c| (sha, c.clone()))
        })
    };
    found.ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "RevisionNotFound",
            &format!("Invalid rev id: {rev}"),
        )
    })
}

fn info(inner: &Shared, repo: &str, rev: &str, blobs: bool, headers: &HeaderMap) -> Response {
    lock(inner).info_requests += 1;
    let (sha, files) = match commit(inner, repo, rev, headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let siblings: Vec<_> = files
        .iter()
        .map(|(p, f)| {
            if !blobs {
                return serde_json::json!({"rfilename": p});
            }
            let mut s = serde_json::json!({"rfilename": p, "size": f.content.len()});
            if f.lfs {
                s["blobId"] = "0".repeat(40).into(); // the pointer's id, not the content's
                s["lfs"] = serde_json::json!({"sha256": f.sha256, "size": f.content.len(), "pointerSize": 134});
            } else {
                s["blobId"] = f.blob_sha1.clone().into();
            }
            s
        })
        .collect();
    axum::Json(serde_json::json!({"id": repo, "modelId": repo, "sha": sha, "private": false, "siblings": siblings}))
        .into_response()
}

fn resolve(inner: &Shared, repo: &str, rev: &str, file: &str, headers: &HeaderMap) -> Response {
    let (sha, files) = match commit(inner, repo, rev, headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(f) = files.get(file) else {
        return error(
            StatusCode::NOT_FOUND,
            "EntryNotFound",
            &format!("{file} does not exist on {rev}"),
        );
    };
    let mut hub = HeaderMap::new();
    hub.insert("x-repo-commit", header_value(&sha));
    if f.lfs {
        let quoted = header_value(&format!("\"{}\"", f.sha256));
        hub.insert(header::ETAG, quoted.clone());
        hub.insert("x-linked-etag", quoted);
        hub.insert("x-linked-size", HeaderValue::from(f.content.len()));
        hub.insert(
            header::LOCATION,
            header_value(&format!("/cdn/{repo}/{sha}/{file}")),
        );
        return (StatusCode::FOUND, hub).into_response();
    }
    hub.insert(header::ETAG, header_value(&format!("\"{}\"", f.blob_sha1)));
    serve_body(inner, file, f, headers, hub)
}

fn parse_range(headers: &HeaderMap, len: u64) -> Option<(u64, u64)> {
    let v = headers
        .get(header::RANGE)?
        .to_str()
        .ok()?
        .strip_prefix("bytes=")?;
    let (s, e) = v.split_once('-')?;
    let start: u64 = s.parse().ok()?;
    let end = if e.is_empty() {
        len.saturating_sub(1)
    } else {
        e.parse::<u64>().ok()?.min(len.saturating_sub(1))
    };
    Some((start, end))
}

fn serve_body(
    inner: &Shared,
    path: &str,
    f: &HubFile,
    headers: &HeaderMap,
    mut out: HeaderMap,
) -> Response {
    let len = f.content.len() as u64;
    let range = parse_range(headers, len);
    let (fault, counter) = {
        let mut g = lock(inner);
        let fault = g.faults.get_mut(path).and_then(VecDeque::pop_front);
        let counter = g.served.entry(path.to_string()).or_default().clone();
        (fault, counter)
    };
    let log = |status: StatusCode| {
        lock(inner).requests.push(FileRequest {
            path: path.to_string(),
            range_start: range.map(|r| r.0),
            status: status.as_u16(),
            authorized: headers.contains_key(header::AUTHORIZATION),
        });
    };
    match fault {
        Some(Fault::Status(s)) => {
            let s = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            log(s);
            return error(s, "", "injected failure");
        }
        Some(Fault::EndlessStatus(s)) => {
            let s = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            log(s);
            return (s, endless(counter, Bytes::new())).into_response();
        }
        Some(Fault::RateLimit(secs)) => {
            log(StatusCode::TOO_MANY_REQUESTS);
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "", "slow down");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return r;
        }
        _ => {}
    }
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let (status, start, end) = match range {
        Some((s, _)) if s >= len => {
            log(StatusCode::RANGE_NOT_SATISFIABLE);
            out.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{len}")),
            );
            return (StatusCode::RANGE_NOT_SATISFIABLE, out).into_response();
        }
        Some((s, e)) => {
            out.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {s}-{e}/{len}")),
            );
            (StatusCode::PARTIAL_CONTENT, s, e + 1)
        }
        None => (StatusCode::OK, 0, len),
    };
    log(status);
    let mut body = f.content.slice(start as usize..end as usize);
    if let Some(Fault::Endless) = fault {
        return (status, out, endless(counter, body)).into_response();
    }
    let mut limit = None;
    let mut stall = false;
    match fault {
        Some(Fault::Corrupt) => {
            let mut v = body.to_vec();
            let mid = v.len() / 2;
            if let Some(b) = v.get_mut(mid) {
                *b ^= 0xff;
            }
            body = Bytes::from(v);
        }
        Some(Fault::CutAfter(n)) => limit = Some(n),
        Some(Fault::StallAfter(n)) => {
            limit = Some(n);
            stall = true;
        }
        _ => {}
    }
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let stream = futures::stream::unfold((body, 0u64), move |(rest, sent)| {
        let counter = counter.clone();
        async move {
            if let Some(n) = limit {
                if sent >= n {
                    if stall {
                        futures::future::pending::<()>().await;
                    }
                    // Let the bytes already sent reach the client before the cut.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return Some((
                        Err(std::io::Error::other("injected cut")),
                        (Bytes::new(), sent),
                    ));
                }
            }
            if rest.is_empty() {
                return None;
            }
            let mut take = rest.len().min(CHUNK);
            if let Some(n) = limit {
                take = take.min((n - sent) as usize);
            }
            let chunk = rest.slice(..take);
            counter.fetch_add(take as u64, Ordering::Relaxed);
            Some((
                Ok::<_, std::io::Error>(chunk),
                (rest.slice(take..), sent + take as u64),
            ))
        }
    });
    (status, out, Body::from_stream(stream)).into_response()
}

/// Every regular file under `dir`, keyed by its `/`-separated path relative to `root`.
fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(String, HubFile)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            read_tree(root, &path, out)?;
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .map_err(std::io::Error::other)?
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        let content = std::fs::read(&path)?;
        let lfs = is_lfs(&rel);
        out.push((rel, HubFile::new(content, lfs)));
    }
    Ok(())
}
