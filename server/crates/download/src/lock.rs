//! Advisory lock on `<dir>/<sha>/.lock` so two runs on the same directory (a retried Job pod
//! racing the old one, two deployments of one model) never write the same part files.
//! The second run waits, then finds the directory complete and does nothing.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::Duration;

use crate::error::DownloadError;

/// How often a waiting run re-tries the lock (flock has no async wait).
const POLL: Duration = Duration::from_millis(100);

/// Held for the whole run; released when dropped (the kernel also releases it if the
/// process dies, so a crashed run never blocks the next one).
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(crate) async fn acquire(path: &Path) -> Result<Self, DownloadError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| DownloadError::io(path, e, 0))?;
        let mut waiting_since = None;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    if let Some(since) = waiting_since {
                        tracing::info!(waited = ?std::time::Instant::now().duration_since(since), "lock acquired");
                    }
                    return Ok(Self { _file: file });
                }
                Err(TryLockError::WouldBlock) => {
                    if waiting_since.is_none() {
                        tracing::info!(lock = %path.display(), "another download of this commit is running; waiting for it");
                        waiting_since = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(POLL).await;
                }
                Err(TryLockError::Error(e)) => return Err(DownloadError::io(path, e, 0)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let first = DirLock::acquire(&path).await.unwrap();
        let p2 = path.clone();
        let second = tokio::spawn(async move { DirLock::acquire(&p2).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!second.is_finished(), "lock must exclude a second holder");
        drop(first);
        let got = tokio::time::timeout(Duration::from_secs(5), second).await;
        assert!(got.unwrap().unwrap().is_ok());
    }
}
