//! Pure decisions about the download Job: what its state is and what to do with it, from what
//! was read (the Job, its pods, the newest pod's log tail). `converge` only reads, calls
//! [`decide`] and carries the action out.
//!
//! - no Job: create it;
//! - running or waiting: progress from the log, else why there is none yet (the scheduler's
//!   message, the last failed attempt, the last log line), so status says it in one reconcile;
//! - succeeded: the result from the termination message, else from the log's `complete` line;
//!   when both are gone for longer than [`RESULT_GRACE`] after the Job completed (the log is
//!   read best effort: one failed read must not throw a good download away), run the Job
//!   again, at most [`MAX_RESULT_RERUNS`] times, then fail with `result_lost` (Degraded)
//!   instead of re-running forever;
//! - failed: after a spec change (generation bump) run it again once, else report the failure.

use std::time::Duration;

use glm_crds::{annotations, reasons, ModelPhase, ModelStatus};
use k8s_openapi::{
    api::{batch::v1::Job, core::v1::Pod},
    jiff::{SignedDuration, Timestamp},
};
use kube::ResourceExt;

use super::download::{
    job_failure_message, job_phase, parse_complete, parse_failure_line, parse_progress,
    parse_termination_message, termination_messages, DownloadFailure, DownloadResult,
    DownloadState, JobPhase,
};
use super::events::PendingEvent;

/// Times a succeeded Job whose result was lost is run again before giving up.
pub const MAX_RESULT_RERUNS: i32 = 2;

/// How long after a Job completed its result is looked for before it counts as lost.
pub const RESULT_GRACE: Duration = Duration::from_secs(30);

/// What was read about the download of one GlmDeployment.
#[derive(Clone, Debug)]
pub struct DownloadObservation<'a> {
    /// The Job the spec asks for (deterministic name).
    pub job_name: &'a str,
    pub job: Option<&'a Job>,
    /// The Job's pods (label `job-name`).
    pub pods: &'a [Pod],
    /// Tail of the log of [`log_pod`]'s pod, when it could be read.
    pub log: Option<&'a str>,
    /// `metadata.generation` of the GlmDeployment.
    pub generation: i64,
    /// `status.model` as last written.
    pub previous: Option<&'a ModelStatus>,
    /// The reconcile's time (see `crate::clock`).
    pub now: Timestamp,
}

/// What to do with the Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobAction {
    Keep,
    Create,
    /// Delete it (background propagation); the next reconcile creates it again.
    Delete,
}

/// The decision: the state for the status, the action, and an Event to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct DownloadDecision {
    pub state: DownloadState,
    pub action: JobAction,
    pub event: Option<PendingEvent>,
}

/// The pod whose log [`decide`] needs, if any: the running one for progress, or the last
/// attempt of a finished Job whose termination messages do not say how it ended.
pub fn log_wanted(job: Option<&Job>, pods: &[Pod]) -> Option<String> {
    let told = |ok: bool| {
        termination_messages(pods)
            .iter()
            .any(|m| parse_termination_message(m).is_ok() == ok)
    };
    match job_phase(job?) {
        JobPhase::Pending => None,
        JobPhase::Running => newest_started(pods),
        JobPhase::Succeeded if told(true) => None,
        JobPhase::Failed if told(false) => None,
        JobPhase::Succeeded | JobPhase::Failed => newest_started(pods),
    }
}

/// The newest pod that started (a pod still Pending has no log).
fn newest_started(pods: &[Pod]) -> Option<String> {
    pods.iter()
        .filter(|p| {
            // A pod that never started has no log.
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|ph| ph != "Pending")
        })
        .max_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
        })
        .map(ResourceExt::name_any)
}

/// The verified result recorded in `status.model` for this Job: the cache keeps it, so the
/// Job need not exist any more (nor its pods and their messages).
pub fn recorded_result(previous: Option<&ModelStatus>, job_name: &str) -> Option<DownloadResult> {
    let m = previous?;
    if m.phase != ModelPhase::Ready || m.job_name.as_deref() != Some(job_name) {
        return None;
    }
    Some(DownloadResult {
        commit: m.commit.clone()?,
        path: m.path.clone()?,
        bytes: m.bytes_done,
    })
}

/// Re-runs already spent on this Job's lost result (kept in `status.model.resultReruns`).
fn reruns_so_far(o: &DownloadObservation<'_>) -> i32 {
    o.previous
        .filter(|m| m.job_name.as_deref() == Some(o.job_name))
        .and_then(|m| m.result_reruns)
        .unwrap_or(0)
}

/// Why a download shows no progress yet, from its pods and log.
pub fn waiting_note(pods: &[Pod], log: Option<&str>) -> Option<String> {
    for p in pods {
        let Some(status) = &p.status else { continue };
        if status.phase.as_deref() != Some("Pending") {
            continue;
        }
        let unschedulable = status.conditions.iter().flatten().find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        });
        if let Some(c) = unschedulable {
            return Some(format!(
                "pod {} is Unschedulable: {}",
                p.name_any(),
                c.message
                    .as_deref()
                    .unwrap_or("no message from the scheduler")
            ));
        }
    }
    let failed: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
        .collect();
    let last_failure = termination_messages(&failed.into_iter().cloned().collect::<Vec<_>>())
        .first()
        .and_then(|m| parse_termination_message(m).err());
    if let Some(f) = last_failure {
        return Some(format!(
            "attempt failed ({}: {}); retrying",
            f.error, f.message
        ));
    }
    let last_line = log?.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(format!(
        "no progress yet; last log line: {}",
        last_line.chars().take(300).collect::<String>()
    ))
}

/// Whether `job` completed less than [`RESULT_GRACE`] before `now` (a completion time in the
/// future, clock skew, counts as recent). No completion time: not recent.
fn completed_recently(job: &Job, now: Timestamp) -> bool {
    let Some(done) = job.status.as_ref().and_then(|s| s.completion_time.as_ref()) else {
        return false;
    };
    let grace = SignedDuration::try_from(RESULT_GRACE).unwrap_or(SignedDuration::MAX);
    now.duration_since(done.0) < grace
}

fn created_for_generation(job: &Job) -> i64 {
    job.annotations()
        .get(annotations::GENERATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// The decision for one reconcile.
pub fn decide(o: &DownloadObservation<'_>) -> DownloadDecision {
    let job_name = o.job_name.to_string();
    let reruns = reruns_so_far(o);
    let keep = |state| DownloadDecision {
        state,
        action: JobAction::Keep,
        event: None,
    };
    let Some(job) = o.job else {
        return DownloadDecision {
            state: DownloadState::Pending {
                job_name,
                note: None,
                reruns,
            },
            action: JobAction::Create,
            event: None,
        };
    };
    match job_phase(job) {
        JobPhase::Pending => keep(DownloadState::Pending {
            job_name,
            note: waiting_note(o.pods, o.log),
            reruns,
        }),
        JobPhase::Running => {
            let progress = o.log.and_then(parse_progress);
            let note = progress
                .is_none()
                .then(|| waiting_note(o.pods, o.log))
                .flatten();
            keep(DownloadState::Running {
                job_name,
                progress,
                note,
                reruns,
            })
        }
        JobPhase::Succeeded => {
            let from_message = termination_messages(o.pods)
                .iter()
                .find_map(|m| parse_termination_message(m).ok());
            // The same result is the log's last line when the message was lost.
            match from_message.or_else(|| o.log.and_then(parse_complete)) {
                Some(result) => keep(DownloadState::Succeeded { job_name, result }),
                // Maybe only this read failed: look again before throwing the download away.
                None if completed_recently(job, o.now) => keep(DownloadState::Pending {
                    note: Some(format!(
                        "Job {job_name} succeeded; reading its result (termination message or log)"
                    )),
                    job_name,
                    reruns,
                }),
                None if reruns < MAX_RESULT_RERUNS => DownloadDecision {
                    state: DownloadState::Pending {
                        job_name: job_name.clone(),
                        note: Some(format!(
                            "Job {job_name} succeeded but its result was lost; re-running it ({} of {MAX_RESULT_RERUNS})",
                            reruns + 1
                        )),
                        reruns: reruns + 1,
                    },
                    action: JobAction::Delete,
                    event: Some(PendingEvent::normal(
                        reasons::DOWNLOAD_RETRIED,
                        "Download",
                        format!(
                            "Job {job_name} succeeded but its result is neither in the termination \
                             message nor in the log; re-running it ({} of {MAX_RESULT_RERUNS})",
                            reruns + 1
                        ),
                    )),
                },
                None => keep(DownloadState::Failed {
                    job_name: job_name.clone(),
                    failure: DownloadFailure {
                        error: "result_lost".into(),
                        message: format!(
                            "Job {job_name} succeeded {} times but its result (commit and \
                             directory) was in neither the termination message nor the log; \
                             check the download image against docs/contract.md",
                            reruns + 1
                        ),
                    },
                }),
            }
        }
        JobPhase::Failed if o.generation > created_for_generation(job) => DownloadDecision {
            // The spec changed since this attempt (maybe the fix): try again, once per change.
            state: DownloadState::Pending {
                job_name: job_name.clone(),
                note: None,
                reruns: 0,
            },
            action: JobAction::Delete,
            event: Some(PendingEvent::normal(
                reasons::DOWNLOAD_RETRIED,
                "Download",
                format!("spec changed; retrying the failed download Job {job_name}"),
            )),
        },
        JobPhase::Failed => {
            let failure = termination_messages(o.pods)
                .iter()
                .find_map(|m| parse_termination_message(m).err())
                .or_else(|| o.log.and_then(parse_failure_line))
                .unwrap_or_else(|| DownloadFailure {
                    error: "job_failed".into(),
                    message: job_failure_message(job)
                        .unwrap_or_else(|| "the download Job failed".into()),
                });
            keep(DownloadState::Failed { job_name, failure })
        }
    }
}

/// Download Jobs kept per GlmDeployment (the current one included): older ones are deleted
/// once the current download succeeded, so upgrades do not pile Jobs (and their pods) up.
pub const KEEP_DOWNLOAD_JOBS: usize = 2;

/// Names of the finished download Jobs to delete: all but the newest `keep` (the current Job
/// always counts as kept, and a Job still running is never deleted).
pub fn jobs_to_prune(jobs: &[Job], current: &str, keep: usize) -> Vec<String> {
    let mut others: Vec<&Job> = jobs.iter().filter(|j| j.name_any() != current).collect();
    others.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
    });
    others
        .into_iter()
        .skip(keep.saturating_sub(1))
        .filter(|j| matches!(job_phase(j), JobPhase::Succeeded | JobPhase::Failed))
        .map(ResourceExt::name_any)
        .collect()
}

#[cfg(test)]
#[path = "download_policy/tests.rs"]
mod tests;
