//! Recommendations recorded per round, for the HPA-style stabilisation windows.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Recommendations of past rounds of one GlmDeployment, oldest first.
///
/// Keeps what the longest window needs plus one older entry that proves the window is
/// covered. A gap longer than the longest window (loop stopped, leader changed) resets
/// it: nothing was observed in that gap, so it must not count as a calm period.
#[derive(Debug, Clone, Default)]
pub struct RecommendationHistory {
    entries: VecDeque<(Instant, u32)>,
    /// Start of the current uninterrupted observation.
    observed_since: Option<Instant>,
}

impl RecommendationHistory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.observed_since = None;
    }

    /// Records `recommendation` at `now` and drops entries no window can use any more.
    /// `retention` is the longest window in use (usually the scale-down window).
    pub fn record(&mut self, now: Instant, recommendation: u32, retention: Duration) {
        if let Some(&(last, _)) = self.entries.back() {
            // A clock that went backwards (tests, or a caller mixing clocks) also resets:
            // windows over out-of-order entries mean nothing.
            let gap_too_long = now
                .checked_duration_since(last)
                .is_none_or(|gap| gap > retention && !retention.is_zero());
            if gap_too_long {
                self.clear();
            }
        }
        self.entries.push_back((now, recommendation));
        self.observed_since.get_or_insert(now);
        if let Some(boundary) = now.checked_sub(retention) {
            // Keep the newest entry at or before the boundary: it shows coverage.
            while self.entries.len() > 1 && self.entries[1].0 <= boundary {
                self.entries.pop_front();
            }
        }
    }

    /// Whether observation has run without a gap for at least `window` up to `now`.
    pub fn covers(&self, now: Instant, window: Duration) -> bool {
        match (self.observed_since, now.checked_sub(window)) {
            (Some(since), Some(boundary)) => since <= boundary,
            // `now - window` before the clock's origin: the window cannot be covered.
            _ => false,
        }
    }

    /// Minimum over entries in `[now - window, now]`; `u32::MAX` when none.
    pub fn min_since(&self, now: Instant, window: Duration) -> u32 {
        self.in_window(now, window).min().unwrap_or(u32::MAX)
    }

    /// Maximum over entries in `[now - window, now]`; 0 when none.
    pub fn max_since(&self, now: Instant, window: Duration) -> u32 {
        self.in_window(now, window).max().unwrap_or(0)
    }

    fn in_window(&self, now: Instant, window: Duration) -> impl Iterator<Item = u32> + '_ {
        let boundary = now.checked_sub(window);
        self.entries
            .iter()
            .filter(move |(t, _)| boundary.is_none_or(|b| *t >= b) && *t <= now)
            .map(|&(_, r)| r)
    }
}
