use super::*;
use crate::fixtures::{at, now};
use serde_json::json;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn job(status: serde_json::Value, generation: i64) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": "m-dl-1", "annotations": {"serving.glm.dev/generation": generation.to_string()}},
        "status": status
    }))
    .unwrap()
}

fn pod(name: &str, created: &str, status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "creationTimestamp": created},
        "status": status
    }))
    .unwrap()
}

fn terminated(phase: &str, message: &str) -> serde_json::Value {
    json!({"phase": phase, "containerStatuses": [{
        "name": "download", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 1, "message": message}}
    }]})
}

fn observe<'a>(
    job: Option<&'a Job>,
    pods: &'a [Pod],
    log: Option<&'a str>,
    previous: Option<&'a ModelStatus>,
) -> DownloadObservation<'a> {
    DownloadObservation {
        job_name: "m-dl-1",
        job,
        pods,
        log,
        generation: 3,
        previous,
        now: now(),
    }
}

fn complete_line() -> String {
    format!(r#"{{"event":"complete","commit":"{SHA}","path":"/models/a--b/{SHA}","bytes":7}}"#)
}

#[test]
fn decisions_table() {
    let succeeded = job(
        json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
        3,
    );
    let failed_now = job(
        json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": "exit 3"}]}),
        3,
    );
    let failed_before = job(
        json!({"failed": 4, "conditions": [{"type": "Failed", "status": "True"}]}),
        2,
    );
    let pending = job(json!({}), 3);
    let running = job(json!({"active": 1}), 3);
    let no_message = vec![pod(
        "p1",
        "2026-01-01T00:00:00Z",
        json!({"phase": "Succeeded"}),
    )];
    let with_message = vec![pod(
        "p1",
        "2026-01-01T00:00:00Z",
        terminated(
            "Succeeded",
            &format!(r#"{{"commit":"{SHA}","path":"/models/a--b/{SHA}","bytes":7}}"#),
        ),
    )];
    let not_found = vec![pod(
        "p1",
        "2026-01-01T00:00:00Z",
        terminated(
            "Failed",
            r#"{"error":"not_found","message":"repository a/b not found"}"#,
        ),
    )];
    let complete = complete_line();
    let reran_twice = ModelStatus {
        job_name: Some("m-dl-1".into()),
        result_reruns: Some(MAX_RESULT_RERUNS),
        ..ModelStatus::default()
    };

    struct Case<'a> {
        name: &'a str,
        obs: DownloadObservation<'a>,
        action: JobAction,
        /// What the state must say: "pending", "running", "succeeded", "failed:<kind>".
        state: &'a str,
    }
    let cases = [
        Case {
            name: "no Job: create it",
            obs: observe(None, &[], None, None),
            action: JobAction::Create,
            state: "pending",
        },
        Case {
            name: "waiting for its pod",
            obs: observe(Some(&pending), &[], None, None),
            action: JobAction::Keep,
            state: "pending",
        },
        Case {
            name: "running",
            obs: observe(
                Some(&running),
                &[],
                Some("{\"event\":\"progress\",\"bytes_done\":5}"),
                None,
            ),
            action: JobAction::Keep,
            state: "running",
        },
        Case {
            name: "result in the termination message",
            obs: observe(Some(&succeeded), &with_message, None, None),
            action: JobAction::Keep,
            state: "succeeded",
        },
        Case {
            name: "message lost, result in the log",
            obs: observe(Some(&succeeded), &no_message, Some(&complete), None),
            action: JobAction::Keep,
            state: "succeeded",
        },
        Case {
            name: "result lost: re-run",
            obs: observe(Some(&succeeded), &[], None, None),
            action: JobAction::Delete,
            state: "pending",
        },
        Case {
            name: "result lost again after the cap: give up",
            obs: observe(Some(&succeeded), &[], None, Some(&reran_twice)),
            action: JobAction::Keep,
            state: "failed:result_lost",
        },
        Case {
            name: "failed for this generation: report",
            obs: observe(Some(&failed_now), &not_found, None, None),
            action: JobAction::Keep,
            state: "failed:not_found",
        },
        Case {
            name: "failed, message lost, error in the log",
            obs: observe(
                Some(&failed_now),
                &[],
                Some("error (gated): accept the licence"),
                None,
            ),
            action: JobAction::Keep,
            state: "failed:gated",
        },
        Case {
            name: "failed, nothing to read: the Job's reason",
            obs: observe(Some(&failed_now), &[], None, None),
            action: JobAction::Keep,
            state: "failed:job_failed",
        },
        Case {
            name: "failed for an older generation: retry",
            obs: observe(Some(&failed_before), &[], None, None),
            action: JobAction::Delete,
            state: "pending",
        },
    ];
    for c in cases {
        let d = decide(&c.obs);
        assert_eq!(d.action, c.action, "{}", c.name);
        let state = match &d.state {
            DownloadState::Pending { .. } => "pending".to_string(),
            DownloadState::Running { .. } => "running".to_string(),
            DownloadState::Succeeded { result, .. } => {
                assert_eq!(result.commit, SHA, "{}", c.name);
                "succeeded".to_string()
            }
            DownloadState::Failed { failure, .. } => format!("failed:{}", failure.error),
            DownloadState::Absent => "absent".to_string(),
        };
        assert_eq!(state, c.state, "{}", c.name);
    }
}

#[test]
fn re_runs_are_counted_and_announced() {
    let succeeded = job(json!({"succeeded": 1}), 3);
    let once = ModelStatus {
        job_name: Some("m-dl-1".into()),
        result_reruns: Some(1),
        ..ModelStatus::default()
    };
    let d = decide(&observe(Some(&succeeded), &[], None, Some(&once)));
    assert_eq!(d.action, JobAction::Delete);
    assert!(
        matches!(d.state, DownloadState::Pending { reruns: 2, .. }),
        "{:?}",
        d.state
    );
    assert_eq!(d.event.map(|e| e.reason), Some("DownloadRetried"));
    // Another Job's count does not carry over.
    let other = ModelStatus {
        job_name: Some("m-dl-0".into()),
        result_reruns: Some(2),
        ..ModelStatus::default()
    };
    let d = decide(&observe(Some(&succeeded), &[], None, Some(&other)));
    assert!(
        matches!(d.state, DownloadState::Pending { reruns: 1, .. }),
        "{:?}",
        d.state
    );
}

#[test]
fn waiting_says_why_within_one_reconcile() {
    let unschedulable = vec![pod(
        "p2",
        "2026-01-01T00:01:00Z",
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient memory."}]}),
    )];
    let note = waiting_note(&unschedulable, None).unwrap();
    assert!(
        note.contains("Unschedulable: 0/1 nodes are available"),
        "{note}"
    );

    let retrying = vec![pod(
        "p1",
        "2026-01-01T00:00:00Z",
        terminated(
            "Failed",
            r#"{"error":"network","message":"cannot reach https://huggingface.co"}"#,
        ),
    )];
    let note = waiting_note(&retrying, None).unwrap();
    assert!(note.contains("network: cannot reach"), "{note}");

    let note = waiting_note(
        &[],
        Some("INFO resolving main\nWARN hub unreachable, retrying in 4s\n"),
    )
    .unwrap();
    assert!(
        note.ends_with("WARN hub unreachable, retrying in 4s"),
        "{note}"
    );
    assert_eq!(waiting_note(&[], None), None);

    let running = job(json!({"active": 1}), 3);
    let d = decide(&observe(
        Some(&running),
        &retrying,
        Some("WARN hub unreachable"),
        None,
    ));
    match d.state {
        DownloadState::Running {
            progress: None,
            note: Some(n),
            ..
        } => assert!(n.contains("network"), "{n}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_log_comes_from_the_newest_started_pod() {
    let pods = vec![
        pod("old", "2026-01-01T00:00:00Z", json!({"phase": "Failed"})),
        pod("new", "2026-01-01T00:02:00Z", json!({"phase": "Running"})),
        pod(
            "unstarted",
            "2026-01-01T00:03:00Z",
            json!({"phase": "Pending"}),
        ),
    ];
    let running = job(json!({"active": 1}), 3);
    assert_eq!(log_wanted(Some(&running), &pods).as_deref(), Some("new"));
    assert_eq!(log_wanted(Some(&running), &[]), None);
    assert_eq!(log_wanted(None, &pods), None);
    // A finished Job whose message says how it ended needs no log; one without does.
    let succeeded = job(json!({"succeeded": 1}), 3);
    let told = vec![pod(
        "p1",
        "2026-01-01T00:00:00Z",
        terminated(
            "Succeeded",
            &format!(r#"{{"commit":"{SHA}","path":"/m/{SHA}"}}"#),
        ),
    )];
    assert_eq!(log_wanted(Some(&succeeded), &told), None);
    let silent = vec![pod(
        "p1",
        "2026-01-01T00:00:00Z",
        json!({"phase": "Succeeded"}),
    )];
    assert_eq!(log_wanted(Some(&succeeded), &silent).as_deref(), Some("p1"));
}

/// A succeeded Job that completed `secs_ago` seconds before [`NOW`](crate::fixtures::NOW)
/// (`None`: no completion time recorded).
fn succeeded_at(secs_ago: Option<i64>) -> Job {
    let mut status =
        json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]});
    if let Some(s) = secs_ago {
        status["completionTime"] = json!(at(-s).to_string());
    }
    job(status, 3)
}

#[test]
fn a_lost_result_is_looked_for_during_the_grace_then_the_job_is_rerun() {
    let complete = complete_line();
    let reran_twice = ModelStatus {
        job_name: Some("m-dl-1".into()),
        result_reruns: Some(MAX_RESULT_RERUNS),
        ..ModelStatus::default()
    };
    let grace = RESULT_GRACE.as_secs() as i64;
    struct Case<'a> {
        name: &'a str,
        completed_secs_ago: Option<i64>,
        log: Option<&'a str>,
        previous: Option<&'a ModelStatus>,
        action: JobAction,
        /// "waiting" (Pending, reading the result), "rerun" (Pending, next re-run),
        /// "succeeded", "failed:<kind>".
        state: &'a str,
    }
    let cases = [
        Case {
            name: "just completed, result not readable yet: look again",
            completed_secs_ago: Some(5),
            log: None,
            previous: None,
            action: JobAction::Keep,
            state: "waiting",
        },
        Case {
            name: "one second before the grace ends: still looking",
            completed_secs_ago: Some(grace - 1),
            log: None,
            previous: None,
            action: JobAction::Keep,
            state: "waiting",
        },
        Case {
            name: "grace over: lost, run the Job again",
            completed_secs_ago: Some(grace),
            log: None,
            previous: None,
            action: JobAction::Delete,
            state: "rerun",
        },
        Case {
            name: "long ago: lost, run the Job again",
            completed_secs_ago: Some(3600),
            log: None,
            previous: None,
            action: JobAction::Delete,
            state: "rerun",
        },
        Case {
            name: "no completion time: nothing to wait for, lost at once",
            completed_secs_ago: None,
            log: None,
            previous: None,
            action: JobAction::Delete,
            state: "rerun",
        },
        Case {
            name: "completion time ahead of the clock (skew): still looking",
            completed_secs_ago: Some(-20),
            log: None,
            previous: None,
            action: JobAction::Keep,
            state: "waiting",
        },
        Case {
            name: "just completed, result in the log: succeeded, no waiting",
            completed_secs_ago: Some(1),
            log: Some(&complete),
            previous: None,
            action: JobAction::Keep,
            state: "succeeded",
        },
        Case {
            name: "re-runs spent, within the grace: still looking, not failed yet",
            completed_secs_ago: Some(10),
            log: None,
            previous: Some(&reran_twice),
            action: JobAction::Keep,
            state: "waiting",
        },
        Case {
            name: "re-runs spent, grace over: result_lost",
            completed_secs_ago: Some(grace + 1),
            log: None,
            previous: Some(&reran_twice),
            action: JobAction::Keep,
            state: "failed:result_lost",
        },
    ];
    for c in cases {
        let j = succeeded_at(c.completed_secs_ago);
        let d = decide(&observe(Some(&j), &[], c.log, c.previous));
        let state = match &d.state {
            DownloadState::Pending {
                note: Some(n),
                reruns,
                ..
            } if n.contains("reading its result") => {
                assert_eq!(
                    *reruns,
                    c.previous.and_then(|p| p.result_reruns).unwrap_or(0)
                );
                assert!(d.event.is_none(), "{}: waiting is not announced", c.name);
                "waiting".to_string()
            }
            DownloadState::Pending { reruns, .. } => {
                assert_eq!(*reruns, 1, "{}", c.name);
                "rerun".to_string()
            }
            DownloadState::Succeeded { result, .. } => {
                assert_eq!(result.commit, SHA, "{}", c.name);
                "succeeded".to_string()
            }
            DownloadState::Failed { failure, .. } => format!("failed:{}", failure.error),
            other => format!("{other:?}"),
        };
        assert_eq!(d.action, c.action, "{}", c.name);
        assert_eq!(state, c.state, "{}", c.name);
    }
}

#[test]
fn a_failed_download_is_retried_after_a_spec_change_at_any_time() {
    // The retry follows the generation, not the clock: the same observation gives the same
    // decision an hour or a week after the failure.
    let failed_before = job(
        json!({"failed": 1, "completionTime": at(-60).to_string(),
               "conditions": [{"type": "Failed", "status": "True"}]}),
        2,
    );
    let failed_now = job(
        json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "message": "exit 3"}]}),
        3,
    );
    for secs in [0, 3600, 7 * 86_400] {
        let mut o = observe(Some(&failed_before), &[], None, None);
        o.now = at(secs);
        let d = decide(&o);
        assert_eq!(d.action, JobAction::Delete, "at +{secs}s");
        assert!(
            matches!(d.state, DownloadState::Pending { reruns: 0, .. }),
            "{:?}",
            d.state
        );
        assert_eq!(d.event.map(|e| e.reason), Some(reasons::DOWNLOAD_RETRIED));
        let mut o = observe(Some(&failed_now), &[], None, None);
        o.now = at(secs);
        let d = decide(&o);
        assert_eq!(d.action, JobAction::Keep, "at +{secs}s");
        assert!(
            matches!(d.state, DownloadState::Failed { .. }),
            "{:?}",
            d.state
        );
    }
}

#[test]
fn a_recorded_result_needs_no_job() {
    let m = ModelStatus {
        phase: ModelPhase::Ready,
        job_name: Some("m-dl-1".into()),
        commit: Some(SHA.into()),
        path: Some(format!("/models/a--b/{SHA}")),
        bytes_done: Some(7),
        ..ModelStatus::default()
    };
    assert_eq!(
        recorded_result(Some(&m), "m-dl-1").map(|r| r.commit),
        Some(SHA.to_string())
    );
    assert_eq!(recorded_result(Some(&m), "m-dl-2"), None);
    assert_eq!(recorded_result(None, "m-dl-1"), None);
}

#[test]
fn old_download_jobs_are_pruned_keeping_the_newest() {
    let j = |name: &str, created: &str, status: serde_json::Value| -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "status": status
        }))
        .unwrap()
    };
    let done = json!({"succeeded": 1});
    let jobs = vec![
        j("m-dl-a", "2026-01-01T00:00:00Z", done.clone()),
        j(
            "m-dl-b",
            "2026-01-02T00:00:00Z",
            json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]}),
        ),
        j("m-dl-c", "2026-01-03T00:00:00Z", done.clone()),
        j("m-dl-d", "2026-01-04T00:00:00Z", done.clone()),
        j("m-dl-e", "2026-01-05T00:00:00Z", json!({"active": 1})),
    ];
    // Keep 2: the current (d) and the newest other one (e, still running anyway).
    assert_eq!(
        jobs_to_prune(&jobs, "m-dl-d", 2),
        ["m-dl-c", "m-dl-b", "m-dl-a"]
    );
    // A running Job is never deleted, even past the limit.
    assert_eq!(
        jobs_to_prune(&jobs, "m-dl-a", 1),
        ["m-dl-d", "m-dl-c", "m-dl-b"]
    );
    assert!(jobs_to_prune(&jobs[..1], "m-dl-a", 2).is_empty());
}
