//! Which Events to publish: pure, from the previous and the new status, so an unchanged
//! observation publishes nothing (no Event spam on resync).

use glm_crds::{conditions, reasons, GlmDeploymentStatus, ModelPhase};
use kube::runtime::events::{Event, EventType};

/// An Event waiting to be published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

impl PendingEvent {
    pub fn normal(reason: &'static str, action: &'static str, note: String) -> Self {
        Self {
            warning: false,
            reason,
            action,
            note,
        }
    }

    pub fn warning(reason: &'static str, action: &'static str, note: String) -> Self {
        Self {
            warning: true,
            reason,
            action,
            note,
        }
    }

    /// The kube-runtime Event (notes are capped at the API's 1 kB).
    pub fn into_event(self) -> Event {
        Event {
            type_: if self.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: self.reason.to_string(),
            note: Some(self.note.chars().take(1000).collect()),
            action: self.action.to_string(),
            secondary: None,
        }
    }
}

fn static_reason(reason: &str) -> &'static str {
    [
        reasons::INVALID_SPEC,
        reasons::CACHE_CLAIM_NOT_FOUND,
        reasons::CHILD_REJECTED,
        reasons::PROGRESS_DEADLINE_EXCEEDED,
        reasons::DOWNLOAD_FAILED,
        reasons::UNSUPPORTED_BY_SERVER,
    ]
    .into_iter()
    .find(|r| *r == reason)
    .unwrap_or("Degraded")
}

/// Degraded reasons the rollout plan publishes its own Events for.
const ROLLOUT_REASONS: [&str; 3] = [
    crate::upgrade::reasons::PROGRESS_DEADLINE_EXCEEDED,
    crate::upgrade::reasons::ROLLED_BACK,
    crate::upgrade::reasons::NO_ROLLBACK_TARGET,
];

/// Events for what changed between `prev` and `new`.
pub fn transition_events(
    prev: Option<&GlmDeploymentStatus>,
    new: &GlmDeploymentStatus,
) -> Vec<PendingEvent> {
    let mut out = Vec::new();
    let prev_model = prev.and_then(|p| p.model.as_ref());
    if let Some(m) = &new.model {
        let changed = prev_model.is_none_or(|p| p.phase != m.phase || p.job_name != m.job_name);
        // Only a download Job verifies a model; the built-in demo has none.
        let downloaded = m.job_name.as_deref().is_some_and(|j| !j.is_empty());
        if changed && downloaded && m.phase == ModelPhase::Ready {
            out.push(PendingEvent::normal(
                reasons::DOWNLOAD_SUCCEEDED,
                "Download",
                format!(
                    "model verified: commit {}",
                    m.commit.as_deref().unwrap_or("?")
                ),
            ));
        }
        if changed && m.phase == ModelPhase::Failed {
            out.push(PendingEvent::warning(
                reasons::DOWNLOAD_FAILED,
                "Download",
                m.message
                    .clone()
                    .unwrap_or_else(|| "download failed".into()),
            ));
        }
    }
    let prev_cond = |t: &str| prev.and_then(|p| p.condition(t));
    if let Some(d) = new.condition(conditions::DEGRADED) {
        let was = prev_cond(conditions::DEGRADED);
        let new_problem = was
            .is_none_or(|w| w.status != d.status || w.reason != d.reason || w.message != d.message);
        // Download failures have their own Event above; rollout problems get theirs from the
        // rollout plan (`crate::upgrade`), which knows the transition.
        let own_event =
            d.reason == reasons::DOWNLOAD_FAILED || ROLLOUT_REASONS.contains(&d.reason.as_str());
        if d.status == "True" && new_problem && !own_event {
            out.push(PendingEvent::warning(
                static_reason(&d.reason),
                "Reconcile",
                d.message.clone(),
            ));
        }
    }
    if let Some(r) = new.condition(conditions::READY) {
        let was_ready = prev_cond(conditions::READY).is_some_and(|c| c.status == "True");
        if r.status == "True" && !was_ready {
            out.push(PendingEvent::normal(
                reasons::REPLICAS_READY,
                "Serve",
                r.message.clone(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use glm_crds::ModelStatus;
    use k8s_openapi::{
        apimachinery::pkg::apis::meta::v1::{Condition, Time},
        jiff::Timestamp,
    };

    fn cond(t: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: t.into(),
            status: status.into(),
            reason: reason.into(),
            message: "m".into(),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }
    }

    fn status(
        model: Option<ModelPhase>,
        degraded: (&str, &str),
        ready: &str,
        update: Option<&str>,
    ) -> GlmDeploymentStatus {
        GlmDeploymentStatus {
            model: model.map(|phase| ModelStatus {
                phase,
                job_name: Some("j".into()),
                ..Default::default()
            }),
            conditions: vec![
                cond("Degraded", degraded.0, degraded.1),
                cond("Ready", ready, "x"),
            ],
            update_revision: update.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn events_only_on_transitions() {
        let downloading = status(
            Some(ModelPhase::Downloading),
            ("False", "AsExpected"),
            "False",
            None,
        );
        let ready = status(
            Some(ModelPhase::Ready),
            ("False", "AsExpected"),
            "True",
            Some("a"),
        );
        let invalid = status(None, ("True", "InvalidSpec"), "False", None);
        let failed = status(
            Some(ModelPhase::Failed),
            ("True", "DownloadFailed"),
            "False",
            None,
        );
        let new_rev = status(
            Some(ModelPhase::Ready),
            ("False", "AsExpected"),
            "True",
            Some("b"),
        );
        let reasons_of = |p: Option<&GlmDeploymentStatus>, n: &GlmDeploymentStatus| {
            transition_events(p, n)
                .into_iter()
                .map(|e| (e.warning, e.reason))
                .collect::<Vec<_>>()
        };
        assert_eq!(reasons_of(None, &invalid), [(true, "InvalidSpec")]);
        assert_eq!(reasons_of(Some(&invalid), &invalid), []);
        assert_eq!(
            reasons_of(Some(&downloading), &ready),
            [(false, "DownloadSucceeded"), (false, "ReplicasReady")]
        );
        assert_eq!(reasons_of(Some(&ready), &ready), []);
        assert_eq!(
            reasons_of(Some(&downloading), &failed),
            [(true, "DownloadFailed")]
        );
        assert_eq!(reasons_of(Some(&failed), &failed), []);
        // Rollout Events come from the rollout plan, not from status diffs.
        assert_eq!(reasons_of(Some(&ready), &new_rev), []);
        let deadline = status(
            Some(ModelPhase::Ready),
            ("True", "ProgressDeadlineExceeded"),
            "False",
            Some("b"),
        );
        assert_eq!(reasons_of(Some(&ready), &deadline), []);
        // The built-in demo model: Ready without a download Job is no DownloadSucceeded.
        let mut demo = ready.clone();
        if let Some(m) = demo.model.as_mut() {
            m.job_name = None;
        }
        assert_eq!(reasons_of(None, &demo), [(false, "ReplicasReady")]);
    }
}
