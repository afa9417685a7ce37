//! The run: resolve, lock, skip if complete, fetch in parallel, mark complete.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::{is_commit_sha, DownloadConfig};
use crate::error::DownloadError;
use crate::hub::{self, ErrorContext, RemoteFile};
use crate::lock::DirLock;
use crate::manifest::{self, Manifest, ManifestFile};
use crate::plan::{self, PlannedFile, LOCK_FILE};
use crate::progress::{self, ProgressSink, RateWindow, ResolvedInfo};
use crate::transfer::{self, Counters, Shared};

/// A complete, verified commit directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadOutcome {
    /// The commit sha the revision resolved to.
    pub commit: String,
    /// `<dir>/<commit>`.
    pub path: PathBuf,
    /// Total size of the files in the manifest.
    pub bytes: u64,
    /// The manifest's file list.
    pub files: Vec<ManifestFile>,
    /// Bytes received over the network by this run.
    pub bytes_transferred: u64,
    /// True when the directory was already complete and nothing was fetched.
    pub already_complete: bool,
}

/// Downloads `config.repo` at `config.revision` into `<config.dir>/<commit>/` and returns
/// once every selected file is verified and the manifest is written.
pub async fn download(
    config: &DownloadConfig,
    sink: &dyn ProgressSink,
) -> Result<DownloadOutcome, DownloadError> {
    config.validate()?;
    let span = tracing::info_span!("download", repo = %config.repo, revision = %config.revision, commit = tracing::field::Empty);
    run(config, sink, span.clone()).instrument(span).await
}

async fn run(
    config: &DownloadConfig,
    sink: &dyn ProgressSink,
    span: tracing::Span,
) -> Result<DownloadOutcome, DownloadError> {
    // A pinned sha that is already complete needs no hub at all (air-gapped restarts).
    if is_commit_sha(&config.revision) {
        let commit = config.revision.to_ascii_lowercase();
        if let Some(outcome) = offline_complete(config, &commit)? {
            tracing::info!("already complete; no hub request needed");
            sink.complete(&outcome);
            return Ok(outcome);
        }
    }
    let listing = hub::resolve(config).await?;
    span.record("commit", listing.sha.as_str());
    let commit_dir = config.dir.join(&listing.sha);
    let files = plan::plan(&listing.files, &config.include, &commit_dir)?;
    if files.is_empty() {
        return Err(DownloadError::NotFound(format!(
            "no file of {}@{} (commit {}) matches --include {:?}; check the globs against the files on the model page",
            config.repo, config.revision, listing.sha, config.include
        )));
    }
    std::fs::create_dir_all(&commit_dir).map_err(|e| DownloadError::io(&commit_dir, e, 0))?;
    let lock = DirLock::acquire(&commit_dir.join(LOCK_FILE)).await?;

    let existing = manifest::read_manifest(&commit_dir)?;
    if let Some(m) = &existing {
        if let Some(outcome) = complete_for(config, &commit_dir, m, &listing.files)? {
            tracing::info!("already complete; sizes re-checked");
            sink.complete(&outcome);
            return Ok(outcome);
        }
        // Incomplete for this request (a file lost or truncated, or new --include globs):
        // unmark while repairing so nobody trusts the directory meanwhile.
        manifest::remove(&commit_dir)?;
    }

    let counters = Arc::new(Counters::default());
    counters.total.store(
        files.iter().filter_map(|f| f.remote.size).sum(),
        Ordering::Relaxed,
    );
    preflight_space(&commit_dir, &files)?;
    sink.resolved(&ResolvedInfo {
        commit: listing.sha.clone(),
        path: commit_dir.clone(),
        files: files.len(),
        bytes_total: counters.total.load(Ordering::Relaxed),
    });

    let shared = Arc::new(Shared {
        config: config.clone(),
        client: http_client(config)?,
        commit: listing.sha.clone(),
        ctx: ErrorContext::new(config),
        counters: counters.clone(),
        lock: Arc::new(lock),
    });
    let mut verified = fetch_all(&shared, files, sink).await?;
    manifest::sync_dir(&commit_dir)?;

    // Files verified by an earlier run with other globs stay listed: they are still present.
    let mut include = config.include.clone();
    if let Some(old) = existing {
        let have: std::collections::HashSet<String> =
            verified.iter().map(|f| f.path.clone()).collect();
        let old_files: Vec<&ManifestFile> = old
            .files
            .iter()
            .filter(|f| !have.contains(&f.path))
            .collect();
        if manifest::size_mismatches(&commit_dir, &old_files).is_empty() {
            verified.extend(old_files.into_iter().cloned());
            include = merge_include(&old.include, &config.include);
        }
    }
    let m = Manifest::new(
        &config.repo,
        &config.revision,
        &listing.sha,
        include,
        verified,
    );
    manifest::write_atomic(&commit_dir, &m)?;
    drop(shared);
    let outcome = DownloadOutcome {
        commit: listing.sha,
        path: commit_dir,
        bytes: m.bytes,
        files: m.files,
        bytes_transferred: counters.transferred.load(Ordering::Relaxed),
        already_complete: false,
    };
    tracing::info!(
        bytes = outcome.bytes,
        transferred = outcome.bytes_transferred,
        "download complete"
    );
    sink.complete(&outcome);
    Ok(outcome)
}

/// Globs covering both manifests' files; empty (= everything) wins.
fn merge_include(old: &[String], new: &[String]) -> Vec<String> {
    if old.is_empty() || new.is_empty() {
        return Vec::new();
    }
    let mut out = old.to_vec();
    out.extend(new.iter().filter(|g| !old.contains(g)).cloned());
    out
}

/// The directory satisfies this request when every wanted file is in the manifest with the
/// hub's size (and sha256 for LFS files) and still has that size on disk.
fn complete_for(
    config: &DownloadConfig,
    commit_dir: &Path,
    m: &Manifest,
    remote: &[RemoteFile],
) -> Result<Option<DownloadOutcome>, DownloadError> {
    let globs = plan::compile_globs(&config.include)?;
    let by_path = m.by_path();
    let mut wanted = Vec::new();
    for r in remote.iter().filter(|r| plan::matches(&globs, &r.path)) {
        match by_path.get(r.path.as_str()) {
            Some(f)
                if r.size.is_none_or(|s| s == f.size)
                    && r.sha256.as_ref().is_none_or(|s| *s == f.sha256) =>
            {
                wanted.push(*f)
            }
            _ => return Ok(None),
        }
    }
    Ok(sizes_ok(m, commit_dir, &wanted))
}

/// Offline check for a pinned sha: the manifest must cover the requested globs by itself.
fn offline_complete(
    config: &DownloadConfig,
    commit: &str,
) -> Result<Option<DownloadOutcome>, DownloadError> {
    let commit_dir = config.dir.join(commit);
    let Some(m) = manifest::read_manifest(&commit_dir)? else {
        return Ok(None);
    };
    if m.commit != commit || !(m.include.is_empty() || m.include == config.include) {
        return Ok(None);
    }
    let globs = plan::compile_globs(&config.include)?;
    let wanted: Vec<&ManifestFile> = m
        .files
        .iter()
        .filter(|f| plan::matches(&globs, &f.path))
        .collect();
    Ok(sizes_ok(&m, &commit_dir, &wanted))
}

fn sizes_ok(m: &Manifest, commit_dir: &Path, wanted: &[&ManifestFile]) -> Option<DownloadOutcome> {
    let bad = manifest::size_mismatches(commit_dir, wanted);
    if !bad.is_empty() {
        tracing::warn!(files = ?bad, "files of a complete directory are missing or changed size; repairing");
        return None;
    }
    Some(DownloadOutcome {
        commit: m.commit.clone(),
        path: commit_dir.to_path_buf(),
        bytes: m.bytes,
        files: m.files.clone(),
        bytes_transferred: 0,
        already_complete: true,
    })
}

/// Fails fast with the byte count when the volume cannot hold what is left to fetch.
fn preflight_space(commit_dir: &Path, files: &[PlannedFile]) -> Result<(), DownloadError> {
    let present = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let needed: u64 = files
        .iter()
        .filter_map(|f| {
            let size = f.remote.size?;
            Some(size.saturating_sub(present(&f.final_path).max(present(&f.part_path))))
        })
        .sum();
    match fs2::available_space(commit_dir) {
        Ok(available) if available < needed => Err(DownloadError::DiskFull {
            path: commit_dir.to_path_buf(),
            bytes_needed: needed,
            available: Some(available),
        }),
        _ => Ok(()),
    }
}

fn http_client(config: &DownloadConfig) -> Result<reqwest::Client, DownloadError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.stall_timeout)
        .tcp_nodelay(true)
        .user_agent(concat!(
            "glm-download/",
            env!("CARGO_PKG_VERSION"),
            "; hf-hub-compatible"
        ))
        .build()
        .map_err(|e| DownloadError::InvalidArgument(format!("cannot build the HTTP client: {e}")))
}

/// Runs up to `parallel` transfers at once while reporting progress. The first fatal error
/// aborts the others (their part files stay for the next run to resume).
async fn fetch_all(
    shared: &Arc<Shared>,
    files: Vec<PlannedFile>,
    sink: &dyn ProgressSink,
) -> Result<Vec<ManifestFile>, DownloadError> {
    let counters = shared.counters.clone();
    let mut pending = files.into_iter();
    let mut running = JoinSet::new();
    let mut verified = Vec::new();
    let mut rate = RateWindow::new(Duration::from_secs(10));
    let mut ticker = tokio::time::interval(shared.config.progress_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let report = |rate: &mut RateWindow| {
        let r = rate.sample(Instant::now(), counters.transferred.load(Ordering::Relaxed));
        sink.progress(&progress::snapshot(
            counters.done.load(Ordering::Relaxed),
            counters.total.load(Ordering::Relaxed),
            r,
        ));
    };
    loop {
        while running.len() < shared.config.parallel {
            let Some(file) = pending.next() else { break };
            running.spawn(transfer::fetch_file(shared.clone(), file));
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next() => match joined {
                Some(Ok(Ok(done))) => verified.push(done),
                Some(Ok(Err(e))) => {
                    running.abort_all();
                    report(&mut rate);
                    return Err(e);
                }
                Some(Err(join)) => {
                    running.abort_all();
                    return Err(DownloadError::Io {
                        path: PathBuf::from("<transfer task>"),
                        source: std::io::Error::other(join.to_string()),
                    });
                }
                None => {}
            },
            _ = ticker.tick() => report(&mut rate),
        }
    }
    report(&mut rate);
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_merge() {
        let a = vec!["*.json".to_string()];
        let b = vec!["*.safetensors".to_string()];
        assert_eq!(merge_include(&a, &b), ["*.json", "*.safetensors"]);
        assert!(merge_include(&a, &[]).is_empty());
    }
}
