//! Queue-depth autoscaling: the pure decision function and its recommendation history.
//!
//! `decide` turns one round of per-pod samples into a desired replica count. It never does
//! I/O; the clock is injected (`now`), so the table tests in `autoscale/tests.rs` drive it
//! through spikes, decays and stabilisation windows deterministically. The I/O around it
//! (scraping, patching the Deployment, Events) lives in [`crate::scrape`] and
//! [`runner`].
//!
//! # Semantics (precise)
//! * **Load** = sum over *ready* pods with a known sample of `waiting + running`
//!   (`glm_num_requests_waiting` + `glm_num_requests_running`, see docs/contract.md).
//! * **Recommendation** = `ceil(load / target_per_replica)` clamped to `[min, max]`.
//! * **Current** is the Deployment's `spec.replicas`, not the number of ready pods. Pods that
//!   are not ready yet (starting, loading weights, warming up) are therefore already counted
//!   as capacity that is coming: load queued on the ready pods while they start triggers a
//!   further scale-up only if `ceil(load / target)` exceeds the *total* including them.
//!   Starting pods contribute no load (they serve nothing yet). Terminating pods must be left
//!   out by the caller ([`crate::scrape::targets_from_pods`] does so).
//! * **Scale up** happens in the same round, to the *minimum* recommendation over the last
//!   `scale_up_stabilization` (HPA semantics; 0 = the current recommendation), capped per
//!   round at `max(ceil(current * max_scale_up_factor), current + max_scale_up_pods)`.
//! * **Scale down** happens only when the history covers the whole
//!   `scale_down_stabilization` window and every recommendation recorded in it is lower
//!   than current; the new count is the *maximum* over that window (HPA semantics). After an
//!   operator restart (empty history) the first scale-down therefore waits one full window.
//! * **Unknown load**: a ready pod whose scrape failed or lacks the gauges makes the known
//!   load a lower bound. Such a round may scale up (the lower bound already needs more), but
//!   never scales down, and it records `max(recommendation, current)` in the history so the
//!   scale-down window restarts once all pods answer again. Zero ready pods with a known
//!   sample is "no signal": hold, and record `current`.
//! * **Bounds** (`min`/`max` changed by the user) apply at once, bypassing the windows.
//!
//! # Integration (controller call sites)
//! * `Context` holds `autoscaler: Autoscaler` built once with
//!   `Autoscaler::new(KubeBackend::new(client, reporter), Scraper::new(ScrapeConfig::default())?)`.
//! * reconcile, autoscaling enabled: `ctx.autoscaler.ensure(key, ScaleLoopConfig::from_spec(
//!   &spec.autoscaling, deployment_name, pod_selector, uid))` (idempotent; starts or retunes
//!   the per-object loop, whose first round runs at once). The loop writes `replicas`
//!   through the scale subresource. The Deployment apply then either omits `replicas`
//!   ([`ReplicasPlan::OmitAutoscaled`]) or carries `ctx.autoscaler.desired_replicas(&key)`
//!   (the same value: the decision is published before the loop patches, so the reconcile
//!   that the patch wakes never writes a stale count). Copy
//!   `ctx.autoscaler.status(&key).map(|s| s.to_status())` into `status.autoscaling`.
//! * reconcile, autoscaling disabled: `ctx.autoscaler.stop(&key)`; use
//!   [`replicas_for_apply`] so that an HPA/KEDA owning the Deployment's replicas keeps them.
//! * object deleted: a deleted object is never reconciled again, so the controller's sweeper
//!   (`controller::sweep_autoscalers`, every 30 s) calls `ctx.autoscaler.retain(..)` against
//!   its reflector store and stops loops whose object is gone or being deleted; leadership
//!   lost: `ctx.autoscaler.stop_all()`.
//! * Each patch changes the Deployment, which the controller watches (`.owns(Deployment)`),
//!   so a reconcile follows every scale; `subscribe()` reports every round for other uses.

mod convert;
mod history;
mod ownership;
pub mod runner;

use std::time::{Duration, Instant};

pub use history::RecommendationHistory;
pub use ownership::{
    autoscaler_wanted, foreign_replicas_manager, replicas_for_apply, replicas_to_write,
    ReplicasPlan, AUTOSCALER_FIELD_MANAGER,
};
pub use runner::{Autoscaler, ObjectKey, ScaleLoopConfig, ScaleStatus};

/// The user's autoscaling knobs (GlmDeployment `spec.autoscaling`), validated by `decide`.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscalePolicy {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// `targetQueueDepthPerReplica`: waiting + running requests one replica should carry.
    pub target_per_replica: f64,
    pub scale_up_stabilization: Duration,
    pub scale_down_stabilization: Duration,
    /// Growth bound per round as a factor of current replicas (2.0 = at most double).
    pub max_scale_up_factor: f64,
    /// Pods that may always be added per round, even where the factor allows fewer
    /// (lets 0 or 1 replica grow at a useful pace).
    pub max_scale_up_pods: u32,
}

impl Default for AutoscalePolicy {
    fn default() -> Self {
        Self {
            min_replicas: 1,
            max_replicas: 4,
            target_per_replica: 8.0,
            scale_up_stabilization: Duration::ZERO,
            scale_down_stabilization: Duration::from_secs(300),
            max_scale_up_factor: 2.0,
            max_scale_up_pods: 1,
        }
    }
}

impl AutoscalePolicy {
    /// Rejects policies the arithmetic below cannot honour.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.max_replicas == 0 {
            return Err(PolicyError::ZeroMax);
        }
        if self.min_replicas > self.max_replicas {
            return Err(PolicyError::MinAboveMax {
                min: self.min_replicas,
                max: self.max_replicas,
            });
        }
        if !(self.target_per_replica.is_finite() && self.target_per_replica > 0.0) {
            return Err(PolicyError::Target(self.target_per_replica));
        }
        if !(self.max_scale_up_factor.is_finite() && self.max_scale_up_factor >= 1.0) {
            return Err(PolicyError::StepFactor(self.max_scale_up_factor));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("autoscaling.maxReplicas must be at least 1")]
    ZeroMax,
    #[error("autoscaling.minReplicas ({min}) is above maxReplicas ({max})")]
    MinAboveMax { min: u32, max: u32 },
    #[error("autoscaling.targetQueueDepthPerReplica must be a positive number, got {0}")]
    Target(f64),
    #[error("autoscaling scale-up factor must be a finite number >= 1, got {0}")]
    StepFactor(f64),
}

impl PolicyError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ZeroMax => "zero_max_replicas",
            Self::MinAboveMax { .. } => "min_above_max",
            Self::Target(_) => "invalid_target",
            Self::StepFactor(_) => "invalid_step_factor",
        }
    }
}

/// One pod's queue: the two gauges of the contract, summed over label sets.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Load {
    pub waiting: f64,
    pub running: f64,
}

impl Load {
    pub fn total(&self) -> f64 {
        self.waiting + self.running
    }
}

/// What one round knows about one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSample {
    pub name: String,
    /// The pod's Ready condition (the server's /ready passed): only ready pods are scraped.
    pub ready: bool,
    /// `None` for a ready pod = unknown load (scrape failed or gauges missing), never zero.
    /// Ignored for pods that are not ready.
    pub load: Option<Load>,
    /// Stable error kind when `load` is `None` (e.g. `timeout`, `metric_missing`).
    pub error: Option<&'static str>,
}

/// Input of one decision round.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscaleInput {
    /// The Deployment's `spec.replicas` (includes pods that are not ready yet).
    pub current_replicas: u32,
    pub pods: Vec<PodSample>,
    pub policy: AutoscalePolicy,
}

/// Why the decision is what it is; `as_str` is the stable reason for status and Events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    ScaleUp,
    /// Scale-up capped by the per-round step bound; more follows next round if needed.
    ScaleUpLimited,
    ScaleDown,
    BelowMinimum,
    AboveMaximum,
    Steady,
    /// Load asks for more, but the scale-up window still holds a lower recommendation.
    ScaleUpStabilizing,
    /// Load asks for fewer, but the scale-down window is not over yet.
    ScaleDownStabilizing,
    /// Load asks for fewer, but some ready pod's load is unknown: hold.
    MetricsUnknown,
    /// No ready pod gave a sample: hold.
    NoSignal,
}

impl Reason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ScaleUp => "ScaleUp",
            Self::ScaleUpLimited => "ScaleUpLimited",
            Self::ScaleDown => "ScaleDown",
            Self::BelowMinimum => "BelowMinimum",
            Self::AboveMaximum => "AboveMaximum",
            Self::Steady => "Steady",
            Self::ScaleUpStabilizing => "ScaleUpStabilizing",
            Self::ScaleDownStabilizing => "ScaleDownStabilizing",
            Self::MetricsUnknown => "MetricsUnknown",
            Self::NoSignal => "NoSignal",
        }
    }
}

/// The metric behind a decision, for `status.autoscaling` and the Event message.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MetricSnapshot {
    pub waiting: f64,
    pub running: f64,
    /// Ready pods whose sample is known.
    pub scraped_pods: u32,
    /// Ready pods whose load is unknown.
    pub unknown_pods: u32,
    /// Pods counted as capacity that is coming (not ready yet).
    pub starting_pods: u32,
    /// `ceil(load / target)` within bounds; `None` without a signal.
    pub recommendation: Option<u32>,
}

impl MetricSnapshot {
    pub fn load(&self) -> f64 {
        self.waiting + self.running
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub desired: u32,
    pub current: u32,
    pub reason: Reason,
    pub metric: MetricSnapshot,
}

impl Decision {
    pub fn changed(&self) -> bool {
        self.desired != self.current
    }

    /// One line for Events and logs.
    pub fn message(&self) -> String {
        let m = &self.metric;
        let rec = m
            .recommendation
            .map_or_else(|| "none".to_string(), |r| r.to_string());
        format!(
            "{}: {} -> {} replicas (load {} = {} waiting + {} running over {} pods, \
             {} unknown, {} starting; recommendation {})",
            self.reason.as_str(),
            self.current,
            self.desired,
            m.load(),
            m.waiting,
            m.running,
            m.scraped_pods,
            m.unknown_pods,
            m.starting_pods,
            rec
        )
    }
}

/// One decision round. Records this round's recommendation in `history` (see module docs).
pub fn decide(
    input: &AutoscaleInput,
    history: &mut RecommendationHistory,
    now: Instant,
) -> Result<Decision, PolicyError> {
    let policy = &input.policy;
    policy.validate()?;
    let (min, max) = (policy.min_replicas, policy.max_replicas);
    let current = input.current_replicas;

    let mut metric = MetricSnapshot::default();
    for pod in &input.pods {
        match (pod.ready, pod.load) {
            (false, _) => metric.starting_pods += 1,
            (true, Some(load)) => {
                metric.scraped_pods += 1;
                metric.waiting += finite_non_negative(load.waiting);
                metric.running += finite_non_negative(load.running);
            }
            (true, None) => metric.unknown_pods += 1,
        }
    }
    let recommendation = (metric.scraped_pods > 0).then(|| {
        let needed = (metric.load() / policy.target_per_replica).ceil();
        // `as` saturates for huge floats; the clamp then bounds it.
        (needed as u32).clamp(min, max)
    });
    metric.recommendation = recommendation;

    let bounded_current = current.clamp(min, max);
    let complete = metric.unknown_pods == 0;
    let recorded = match recommendation {
        Some(rec) if complete => rec,
        Some(rec) => rec.max(bounded_current),
        None => bounded_current,
    };
    let retention = policy
        .scale_down_stabilization
        .max(policy.scale_up_stabilization);
    history.record(now, recorded, retention);

    let decision = |desired: u32, reason: Reason| Decision {
        desired,
        current,
        reason,
        metric,
    };
    if current < min {
        return Ok(decision(min, Reason::BelowMinimum));
    }
    if current > max {
        return Ok(decision(max, Reason::AboveMaximum));
    }
    let Some(rec) = recommendation else {
        return Ok(decision(current, Reason::NoSignal));
    };

    if rec > current {
        let window_min = history.min_since(now, policy.scale_up_stabilization);
        if window_min <= current {
            return Ok(decision(current, Reason::ScaleUpStabilizing));
        }
        let cap = step_cap(current, policy).min(max);
        return Ok(if window_min > cap {
            decision(cap, Reason::ScaleUpLimited)
        } else {
            decision(window_min, Reason::ScaleUp)
        });
    }
    if rec < current {
        if !complete {
            return Ok(decision(current, Reason::MetricsUnknown));
        }
        let window = policy.scale_down_stabilization;
        if !history.covers(now, window) {
            return Ok(decision(current, Reason::ScaleDownStabilizing));
        }
        let window_max = history.max_since(now, window);
        return Ok(if window_max < current {
            decision(window_max.max(min), Reason::ScaleDown)
        } else {
            decision(current, Reason::ScaleDownStabilizing)
        });
    }
    Ok(decision(current, Reason::Steady))
}

/// The most replicas one round may reach from `current`.
fn step_cap(current: u32, policy: &AutoscalePolicy) -> u32 {
    let by_factor = (f64::from(current) * policy.max_scale_up_factor).ceil() as u32;
    by_factor.max(current.saturating_add(policy.max_scale_up_pods))
}

/// Gauges are non-negative counts; a NaN or negative value from a broken exporter adds
/// nothing rather than poisoning the sum (the scraper already drops such samples).
fn finite_non_negative(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests;
