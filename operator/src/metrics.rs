//! Operator metrics (prometheus-client): reconcile runs, failures by error kind, duration.

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use std::time::Instant;

/// Label set of the failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

/// All operator metrics plus their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub reconcile_runs: Counter,
    pub reconcile_failures: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("glm_operator");
        let reconcile_runs = Counter::default();
        let reconcile_failures = Family::<ErrorLabels, Counter>::default();
        // 1 ms .. ~16 s: reconciles are a handful of API calls.
        let reconcile_duration = Histogram::new([
            0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 16.0,
        ]);
        let leader = Gauge::default();
        registry.register(
            "reconcile_runs",
            "Reconciles started",
            reconcile_runs.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciles failed, by error kind",
            reconcile_failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            reconcile_duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader",
            leader.clone(),
        );
        Self {
            registry,
            reconcile_runs,
            reconcile_failures,
            reconcile_duration,
            leader,
        }
    }
}

impl Metrics {
    /// Counts a run and returns a timer that observes the duration when dropped.
    pub fn start_reconcile(&self) -> ReconcileTimer<'_> {
        self.reconcile_runs.inc();
        ReconcileTimer {
            histogram: &self.reconcile_duration,
            start: Instant::now(),
        }
    }

    /// Counts a failure by its stable kind.
    pub fn failure(&self, kind: &str) {
        self.reconcile_failures
            .get_or_create(&ErrorLabels {
                error: kind.to_string(),
            })
            .inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Observes the elapsed time on drop (also when the reconcile returns early with an error).
pub struct ReconcileTimer<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_runs_failures_and_histogram() {
        let m = Metrics::default();
        drop(m.start_reconcile());
        m.failure("kube_conflict");
        let text = m.encode().unwrap();
        assert!(
            text.contains("glm_operator_reconcile_runs_total 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"glm_operator_reconcile_failures_total{error="kube_conflict"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("glm_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }
}
