//! Progress reporting: the library calls a [`ProgressSink`]; the CLI implements it as a
//! terminal bar or JSON lines (docs/contract.md).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::DownloadOutcome;

/// A revision has been resolved and the work is known.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedInfo {
    /// The commit sha being downloaded.
    pub commit: String,
    /// The directory files land in.
    pub path: std::path::PathBuf,
    /// Files selected.
    pub files: usize,
    /// Their total size (sizes the hub did not list are added as learned).
    pub bytes_total: u64,
}

/// Periodic progress figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProgressSnapshot {
    /// Bytes present on disk (kept from earlier runs included).
    pub bytes_done: u64,
    /// Bytes the finished download will hold.
    pub bytes_total: u64,
    /// Recent network throughput.
    pub rate_bytes_per_s: f64,
    /// Seconds left at the current rate; `None` while nothing is flowing.
    pub eta_seconds: Option<f64>,
}

/// Receives progress; every method has a no-op default.
pub trait ProgressSink: Send + Sync {
    /// Called once the revision is resolved and files are selected (not on an offline no-op).
    fn resolved(&self, _info: &ResolvedInfo) {}
    /// Called every `progress_interval` while transferring, and once at the end.
    fn progress(&self, _snapshot: &ProgressSnapshot) {}
    /// Called once when the directory is complete.
    fn complete(&self, _outcome: &DownloadOutcome) {}
}

/// Discards everything.
impl ProgressSink for () {}

/// Sliding-window rate: smooth enough to read, quick to show a stall.
#[derive(Debug)]
pub(crate) struct RateWindow {
    samples: VecDeque<(Instant, u64)>,
    window: Duration,
}

impl RateWindow {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            samples: VecDeque::new(),
            window,
        }
    }

    /// Records the cumulative transferred count at `now` and returns bytes/s over the window.
    pub(crate) fn sample(&mut self, now: Instant, transferred: u64) -> f64 {
        self.samples.push_back((now, transferred));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, b0)), Some((t1, b1))) if t1 > t0 => {
                b1.saturating_sub(*b0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

pub(crate) fn snapshot(done: u64, total: u64, rate: f64) -> ProgressSnapshot {
    let remaining = total.saturating_sub(done);
    let eta_seconds = if remaining == 0 {
        Some(0.0)
    } else if rate > 0.0 {
        Some(remaining as f64 / rate)
    } else {
        None
    };
    ProgressSnapshot {
        bytes_done: done,
        bytes_total: total,
        rate_bytes_per_s: rate,
        eta_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta() {
        let mut w = RateWindow::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(w.sample(t0, 0), 0.0);
        let r = w.sample(t0 + Duration::from_secs(2), 2000);
        assert!((r - 1000.0).abs() < 1e-6);
        let s = snapshot(2000, 12000, r);
        assert_eq!(s.eta_seconds, Some(10.0));
        assert_eq!(snapshot(5, 10, 0.0).eta_seconds, None);
        assert_eq!(snapshot(10, 10, 0.0).eta_seconds, Some(0.0));
    }
}
