//! What the download Job reports, per docs/contract.md: the termination message of its pod
//! (`{"commit","path","bytes"}` or `{"error","message"}`) and JSON progress lines on stdout.

use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use serde::Deserialize;

/// A verified model directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadResult {
    pub commit: String,
    pub path: String,
    pub bytes: Option<i64>,
}

/// Why a download failed (`error` is the contract's kind: unauthorized, gated, not_found...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadFailure {
    pub error: String,
    pub message: String,
}

/// The last progress line.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    pub rate_bytes_per_s: Option<f64>,
    pub eta_seconds: Option<f64>,
}

/// The download Job as the status computation sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum DownloadState {
    /// No Job (not created yet, or the spec is invalid).
    Absent,
    /// Job exists (or is about to), no pod running yet.
    Pending {
        job_name: String,
        /// Why nothing runs yet (Unschedulable, a failed attempt being retried...).
        note: Option<String>,
        /// Re-runs spent on a lost result (see `download_policy`).
        reruns: i32,
    },
    /// A pod is downloading.
    Running {
        job_name: String,
        progress: Option<Progress>,
        /// Why there is no progress line (yet).
        note: Option<String>,
        reruns: i32,
    },
    /// Verified; `result` from the termination message.
    Succeeded {
        job_name: String,
        result: DownloadResult,
    },
    /// Failed for good (backoffLimit or activeDeadlineSeconds reached).
    Failed {
        job_name: String,
        failure: DownloadFailure,
    },
}

#[derive(Deserialize)]
struct TerminationMessage {
    commit: Option<String>,
    path: Option<String>,
    bytes: Option<i64>,
    error: Option<String>,
    message: Option<String>,
}

/// Parses a termination message; `Err` carries the failure it reports (or a parse problem).
pub fn parse_termination_message(msg: &str) -> Result<DownloadResult, DownloadFailure> {
    let parsed: TerminationMessage =
        serde_json::from_str(msg.trim()).map_err(|e| DownloadFailure {
            error: "invalid_termination_message".into(),
            message: format!(
                "cannot parse the download pod's termination message ({e}): {}",
                clip(msg)
            ),
        })?;
    match parsed {
        TerminationMessage {
            commit: Some(commit),
            path: Some(path),
            bytes,
            error: None,
            ..
        } if is_commit_sha(&commit) => Ok(DownloadResult {
            commit,
            path,
            bytes,
        }),
        TerminationMessage {
            error: Some(error),
            message,
            ..
        } => Err(DownloadFailure {
            message: message.unwrap_or_else(|| error.clone()),
            error,
        }),
        _ => Err(DownloadFailure {
            error: "invalid_termination_message".into(),
            message: format!(
                "termination message has neither a commit sha and path nor an error: {}",
                clip(msg)
            ),
        }),
    }
}

/// A 40 (sha1) or 64 (sha256) hex digit commit id.
pub fn is_commit_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Deserialize)]
struct ProgressLine {
    event: String,
    bytes_done: Option<i64>,
    bytes_total: Option<i64>,
    rate_bytes_per_s: Option<f64>,
    eta_seconds: Option<f64>,
    bytes: Option<i64>,
}

/// The last `progress` (or `complete`) JSON line of a download log; other lines are ignored.
pub fn parse_progress(log: &str) -> Option<Progress> {
    log.lines().rev().find_map(|line| {
        let p: ProgressLine = serde_json::from_str(line.trim()).ok()?;
        match p.event.as_str() {
            "progress" => Some(Progress {
                bytes_done: p.bytes_done?,
                bytes_total: p.bytes_total,
                rate_bytes_per_s: p.rate_bytes_per_s,
                eta_seconds: p.eta_seconds,
            }),
            "complete" => Some(Progress {
                bytes_done: p.bytes?,
                bytes_total: p.bytes,
                rate_bytes_per_s: None,
                eta_seconds: Some(0.0),
            }),
            _ => None,
        }
    })
}

/// The result in the log's `complete` line (`{"event":"complete","commit","path","bytes"}`),
/// for when the termination message is lost.
pub fn parse_complete(log: &str) -> Option<DownloadResult> {
    #[derive(Deserialize)]
    struct Complete {
        event: String,
        commit: String,
        path: String,
        bytes: Option<i64>,
    }
    log.lines().rev().find_map(|line| {
        let c: Complete = serde_json::from_str(line.trim()).ok()?;
        (c.event == "complete" && is_commit_sha(&c.commit)).then_some(DownloadResult {
            commit: c.commit,
            path: c.path,
            bytes: c.bytes,
        })
    })
}

/// The failure in the log's `error (<kind>): <message>` line (what `glm-server download`
/// prints on stderr before exiting), for when the termination message is lost.
pub fn parse_failure_line(log: &str) -> Option<DownloadFailure> {
    log.lines().rev().find_map(|line| {
        let rest = line.trim().strip_prefix("error (")?;
        let (kind, message) = rest.split_once("): ")?;
        let kind_ok = !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        kind_ok.then(|| DownloadFailure {
            error: kind.to_string(),
            message: clip(message),
        })
    })
}

/// Job phase from its status conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// Reads the phase of a Job (Complete/Failed conditions win over counters).
pub fn job_phase(job: &Job) -> JobPhase {
    let Some(status) = &job.status else {
        return JobPhase::Pending;
    };
    let cond = |t: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if cond("Complete") || status.succeeded.unwrap_or(0) > 0 {
        JobPhase::Succeeded
    } else if cond("Failed") {
        JobPhase::Failed
    } else if status.active.unwrap_or(0) > 0 {
        JobPhase::Running
    } else {
        JobPhase::Pending
    }
}

/// The Job's own failure explanation (BackoffLimitExceeded, DeadlineExceeded...).
pub fn job_failure_message(job: &Job) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find_map(|c| {
            (c.type_ == "Failed" && c.status == "True").then(|| {
                let reason = c.reason.clone().unwrap_or_default();
                let message = c.message.clone().unwrap_or_default();
                format!("{reason}: {message}")
                    .trim_matches([' ', ':'])
                    .to_string()
            })
        })
}

/// Termination messages of the download container in `pods`, newest pod first.
pub fn termination_messages(pods: &[Pod]) -> Vec<String> {
    let mut sorted: Vec<&Pod> = pods.iter().collect();
    sorted.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
    });
    sorted
        .into_iter()
        .filter_map(|p| {
            let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
            statuses.iter().find_map(|cs| {
                let terminated = cs.state.as_ref()?.terminated.as_ref()?;
                terminated.message.clone().filter(|m| !m.trim().is_empty())
            })
        })
        .collect()
}

/// The newest running pod (whose log holds the current progress).
pub fn running_pod(pods: &[Pod]) -> Option<&Pod> {
    pods.iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .max_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
        })
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn results_and_failures_are_read_from_the_log_too() {
        let log = format!(
            "{{\"event\":\"progress\",\"bytes_done\":1,\"bytes_total\":2}}\n\
             {{\"event\":\"complete\",\"commit\":\"{SHA}\",\"path\":\"/models/a--b/{SHA}\",\"bytes\":2}}\n"
        );
        assert_eq!(
            parse_complete(&log),
            Some(DownloadResult {
                commit: SHA.into(),
                path: format!("/models/a--b/{SHA}"),
                bytes: Some(2),
            })
        );
        assert_eq!(
            parse_complete("{\"event\":\"progress\",\"bytes_done\":1}"),
            None
        );
        let failed = "2026-12-07 INFO starting\nerror (not_found): repository a/b not found on https://hub\n";
        assert_eq!(
            parse_failure_line(failed),
            Some(DownloadFailure {
                error: "not_found".into(),
                message: "repository a/b not found on https://hub".into(),
            })
        );
        assert_eq!(parse_failure_line("error: something else"), None);
    }

    #[test]
    fn termination_messages_per_contract() {
        let ok = format!(
            r#"{{"commit":"{SHA}","path":"/models/zai-org--GLM-4.5-Air/{SHA}","bytes":42}}"#
        );
        assert_eq!(
            parse_termination_message(&ok),
            Ok(DownloadResult {
                commit: SHA.into(),
                path: format!("/models/zai-org--GLM-4.5-Air/{SHA}"),
                bytes: Some(42)
            })
        );
        let cases = [
            (
                r#"{"error":"unauthorized","message":"token rejected: check the Secret"}"#,
                "unauthorized",
                "token rejected: check the Secret",
            ),
            (r#"{"error":"disk_full"}"#, "disk_full", "disk_full"),
            ("not json", "invalid_termination_message", "cannot parse"),
            (
                r#"{"commit":"main","path":"/x"}"#,
                "invalid_termination_message",
                "neither",
            ),
        ];
        for (msg, kind, text) in cases {
            let err = parse_termination_message(msg).unwrap_err();
            assert_eq!(err.error, kind, "{msg}");
            assert!(err.message.contains(text), "{msg}: {}", err.message);
        }
    }

    #[test]
    fn progress_is_the_last_progress_line() {
        let log = "starting\n{\"event\":\"progress\",\"bytes_done\":10,\"bytes_total\":100,\"rate_bytes_per_s\":5.0,\"eta_seconds\":18.0}\n\
                   {\"event\":\"progress\",\"bytes_done\":50,\"bytes_total\":100,\"rate_bytes_per_s\":5.0,\"eta_seconds\":10.0}\nsome warning\n";
        let p = parse_progress(log).unwrap();
        assert_eq!((p.bytes_done, p.bytes_total), (50, Some(100)));
        assert_eq!(parse_progress("no json here\n"), None);
        let done = parse_progress(&format!(
            "{{\"event\":\"complete\",\"commit\":\"{SHA}\",\"path\":\"/m\",\"bytes\":7}}"
        ))
        .unwrap();
        assert_eq!((done.bytes_done, done.bytes_total), (7, Some(7)));
    }

    #[test]
    fn job_phase_from_status() {
        let job = |status: serde_json::Value| -> Job {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "j"}, "status": status}))
                .unwrap()
        };
        assert_eq!(job_phase(&job(serde_json::json!({}))), JobPhase::Pending);
        assert_eq!(
            job_phase(&job(serde_json::json!({"active": 1}))),
            JobPhase::Running
        );
        assert_eq!(
            job_phase(&job(serde_json::json!({"succeeded": 1}))),
            JobPhase::Succeeded
        );
        let failed = job(serde_json::json!({"failed": 4, "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}));
        assert_eq!(job_phase(&failed), JobPhase::Failed);
        assert_eq!(
            job_failure_message(&failed).unwrap(),
            "BackoffLimitExceeded: Job has reached the specified backoff limit"
        );
    }
}
