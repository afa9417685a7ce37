//! The body of one response, streamed through three parallel stages: this task reads the
//! socket, one blocking thread writes to the part file, one hashes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use super::{Attempt, PartFile, Shared, BATCH_BYTES};
use crate::error::DownloadError;
use crate::retry::{self, Failure};

/// Received bytes not yet handed to the writer. If the run is cancelled (SIGTERM, a
/// timeout around `download`), `Drop` still hands them over so they reach the part file and
/// are never fetched again.
struct PendingBatch {
    /// To the writer and to the hasher.
    tx: Option<(BatchSender, BatchSender)>,
    batch: Vec<Bytes>,
    len: usize,
}

type BatchSender = tokio::sync::mpsc::Sender<Arc<Vec<Bytes>>>;

impl PendingBatch {
    /// False when the writer is gone.
    async fn send(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        self.len = 0;
        let batch = Arc::new(std::mem::take(&mut self.batch));
        match &self.tx {
            // The hasher must see exactly what the writer wrote, so a batch goes to both or,
            // when the writer is gone, the attempt ends (its write error is reported).
            Some((w, h)) => w.send(batch.clone()).await.is_ok() && h.send(batch).await.is_ok(),
            None => false,
        }
    }
}

impl Drop for PendingBatch {
    fn drop(&mut self) {
        if let Some((w, h)) = self.tx.take() {
            if !self.batch.is_empty() {
                // Only reached on cancellation; with a full queue the bytes are simply
                // refetched. Reserve both slots first so writer and hasher stay in step.
                if let (Ok(wp), Ok(hp)) = (w.try_reserve(), h.try_reserve()) {
                    let batch = Arc::new(std::mem::take(&mut self.batch));
                    wp.send(batch.clone());
                    hp.send(batch);
                }
            }
        }
    }
}

/// Streams the body to a blocking writer thread (write + hash), dropping the connection when
/// no byte arrives for the stall timeout.
pub(super) async fn stream_body(
    shared: &Arc<Shared>,
    resp: reqwest::Response,
    part: PartFile,
    size: Option<u64>,
) -> Result<Attempt, DownloadError> {
    // Three stages run in parallel: this task reads the socket, one thread writes to disk,
    // one hashes. Batches are shared `Bytes`, so the fan-out copies nothing.
    let mut part = part;
    let start = part.len();
    let mut received: u64 = 0;
    let mut hashers = part.take_hashers();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Arc<Vec<Bytes>>>(8);
    let (htx, mut hrx) = tokio::sync::mpsc::channel::<Arc<Vec<Bytes>>>(8);
    let hasher = tokio::task::spawn_blocking(move || {
        while let Some(batch) = hrx.blocking_recv() {
            for chunk in batch.iter() {
                hashers.update(chunk);
            }
        }
        hashers
    });
    let lock = shared.lock.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let _lock = lock;
        let mut err = None;
        while let Some(batch) = rx.blocking_recv() {
            if let Err(e) = part.write_batch(&batch) {
                err = Some(e);
                break;
            }
        }
        (part, err)
    });
    let stall = shared.config.stall_timeout;
    let mut stream = resp.bytes_stream();
    let mut pending = PendingBatch {
        tx: Some((tx, htx)),
        batch: Vec::new(),
        len: 0,
    };
    let net = loop {
        match tokio::time::timeout(stall, stream.next()).await {
            Err(_) => {
                break Err(Failure::transient(format!(
                    "connection stalled: no data for {stall:?}"
                )))
            }
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => break Err(retry::classify_reqwest(&e, "connection dropped")),
            Ok(Some(Ok(mut chunk))) => {
                // Never write past the size the file should have: a server that sends
                // more is broken or hostile, and an endless body would fill the disk.
                let over = size.and_then(|size| {
                    let room = size.saturating_sub(start + received);
                    (chunk.len() as u64 > room).then_some((size, room))
                });
                if let Some((_, room)) = over {
                    chunk.truncate(room as usize);
                }
                received += chunk.len() as u64;
                shared
                    .counters
                    .transferred
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                pending.len += chunk.len();
                pending.batch.push(chunk);
                if let Some((size, _)) = over {
                    break Err(Failure::Fatal(DownloadError::Integrity(format!(
                        "the server sent more than the {size} bytes this file has; stopped at {size}"
                    ))));
                }
                if pending.len >= BATCH_BYTES && !pending.send().await {
                    break Ok(()); // the writer failed; its error is reported below
                }
            }
        }
    };
    // Bytes received before a failure are kept: the next attempt resumes after them.
    pending.send().await;
    drop(pending);
    drop(stream);
    let worker_failed = |e: tokio::task::JoinError| DownloadError::Io {
        path: "<file worker>".into(),
        source: std::io::Error::other(e.to_string()),
    };
    let (mut part, write_err) = writer.await.map_err(worker_failed)?;
    part.restore_hashers(hasher.await.map_err(worker_failed)?);
    if let Some(e) = write_err {
        let c = &shared.counters;
        let needed = c
            .total
            .load(Ordering::Relaxed)
            .saturating_sub(c.done.load(Ordering::Relaxed));
        return Err(DownloadError::io(part.path(), e, needed));
    }
    let result = match (net, size) {
        (Err(f), _) => Err(f),
        (Ok(()), Some(size)) if part.len() < size => Err(Failure::transient(format!(
            "connection closed after {} of {size} bytes",
            part.len()
        ))),
        (Ok(()), _) => Ok(()),
    };
    Ok((part, result))
}
