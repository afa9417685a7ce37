use super::*;
use crate::fixtures::{glmd, SHA};
use crate::reconcile::download::{DownloadFailure, DownloadResult};
use k8s_openapi::api::apps::v1::DeploymentStatus;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn served() -> ServedModel {
    ServedModel {
        commit: SHA.into(),
        path: format!("/models/zai-org--GLM-4.5-Air/{SHA}"),
    }
}

fn deployment(replicas: i32, updated: i32, ready: i32, available: i32) -> Deployment {
    Deployment {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            generation: Some(2),
            ..Default::default()
        },
        status: Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn cond<'a>(s: &'a GlmDeploymentStatus, t: &str) -> (&'a str, &'a str) {
    let c = s.condition(t).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

struct Case {
    name: &'static str,
    download: DownloadState,
    served: bool,
    deployment: Option<Deployment>,
    problem: Option<Problem>,
    /// The rollout plan's phase is Scaling.
    scaling: bool,
    /// Ready, Progressing, Degraded, ModelReady as (status, reason).
    want: [(&'static str, &'static str); 4],
}

#[test]
fn conditions_table() {
    let job = || "glm45-dl-x".to_string();
    let ok = DownloadState::Succeeded {
        job_name: job(),
        result: DownloadResult {
            commit: SHA.into(),
            path: served().path,
            bytes: Some(10),
        },
    };
    let cases = vec![
        Case {
            name: "fresh: download pending",
            download: DownloadState::Pending {
                job_name: job(),
                note: None,
                reruns: 0,
            },
            served: false,
            deployment: None,
            problem: None,
            scaling: false,
            want: [
                ("False", "WaitingForModel"),
                ("True", "Downloading"),
                ("False", "AsExpected"),
                ("False", "DownloadPending"),
            ],
        },
        Case {
            name: "downloading",
            download: DownloadState::Running {
                job_name: job(),
                progress: None,
                note: None,
                reruns: 0,
            },
            served: false,
            deployment: None,
            problem: None,
            scaling: false,
            want: [
                ("False", "WaitingForModel"),
                ("True", "Downloading"),
                ("False", "AsExpected"),
                ("False", "Downloading"),
            ],
        },
        Case {
            name: "download failed",
            download: DownloadState::Failed {
                job_name: job(),
                failure: DownloadFailure {
                    error: "unauthorized".into(),
                    message: "bad token".into(),
                },
            },
            served: false,
            deployment: None,
            problem: None,
            scaling: false,
            want: [
                ("False", "WaitingForModel"),
                ("False", "Reconciled"),
                ("True", "DownloadFailed"),
                ("False", "DownloadFailed"),
            ],
        },
        Case {
            name: "pods starting",
            download: ok.clone(),
            served: true,
            deployment: Some(deployment(2, 2, 0, 0)),
            problem: None,
            scaling: false,
            want: [
                ("False", "ReplicasNotReady"),
                ("True", "RollingOut"),
                ("False", "AsExpected"),
                ("True", "ModelReady"),
            ],
        },
        Case {
            name: "all ready",
            download: ok.clone(),
            served: true,
            deployment: Some(deployment(2, 2, 2, 2)),
            problem: None,
            scaling: false,
            want: [
                ("True", "ReplicasReady"),
                ("False", "Reconciled"),
                ("False", "AsExpected"),
                ("True", "ModelReady"),
            ],
        },
        Case {
            name: "surge pod during rollout keeps Ready",
            download: ok.clone(),
            served: true,
            deployment: Some(deployment(3, 1, 2, 2)),
            problem: None,
            scaling: false,
            want: [
                ("True", "ReplicasReady"),
                ("True", "RollingOut"),
                ("False", "AsExpected"),
                ("True", "ModelReady"),
            ],
        },
        Case {
            name: "scale 1 -> 2 of the current revision: Ready stays True",
            download: ok.clone(),
            served: true,
            deployment: Some(deployment(2, 2, 1, 1)),
            problem: None,
            scaling: true,
            want: [
                ("True", "ReplicasReady"),
                ("True", "RollingOut"),
                ("False", "AsExpected"),
                ("True", "ModelReady"),
            ],
        },
        Case {
            name: "same counts in a rollout (not a scale): not Ready",
            download: ok.clone(),
            served: true,
            deployment: Some(deployment(2, 2, 1, 1)),
            problem: None,
            scaling: false,
            want: [
                ("False", "ReplicasNotReady"),
                ("True", "RollingOut"),
                ("False", "AsExpected"),
                ("True", "ModelReady"),
            ],
        },
        Case {
            name: "a scale with no pod ready is not Ready",
            download: ok.clone(),
            served: true,
            deployment: Some(deployment(2, 2, 0, 0)),
            problem: None,
            scaling: true,
            want: [
                ("False", "ReplicasNotReady"),
                ("True", "RollingOut"),
                ("False", "AsExpected"),
                ("True", "ModelReady"),
            ],
        },
        Case {
            name: "new revision downloading while old serves",
            download: DownloadState::Running {
                job_name: "glm45-dl-y".into(),
                progress: None,
                note: None,
                reruns: 0,
            },
            served: true,
            deployment: Some(deployment(2, 2, 2, 2)),
            problem: None,
            scaling: false,
            want: [
                ("True", "ReplicasReady"),
                ("True", "Downloading"),
                ("False", "AsExpected"),
                ("False", "Downloading"),
            ],
        },
        Case {
            name: "invalid spec",
            download: DownloadState::Absent,
            served: false,
            deployment: None,
            problem: Some(Problem {
                reason: "InvalidSpec",
                message: "spec.server.tensorParallelSize ...".into(),
                scope: ProblemScope::Spec,
            }),
            scaling: false,
            want: [
                ("False", "InvalidSpec"),
                ("False", "InvalidSpec"),
                ("True", "InvalidSpec"),
                ("False", "InvalidSpec"),
            ],
        },
    ];
    for c in &cases {
        let g = glmd();
        let served = served();
        let s = compute_status(&StatusInputs {
            glmd: &g,
            download: &c.download,
            served: c.served.then_some(&served),
            deployment: c.deployment.as_ref(),
            desired_replicas: 2,
            autoscaling: None,
            problem: c.problem.as_ref(),
            scaling: c.scaling,
            now: t(0),
        });
        let got = [
            cond(&s, conditions::READY),
            cond(&s, conditions::PROGRESSING),
            cond(&s, conditions::DEGRADED),
            cond(&s, conditions::MODEL_READY),
        ];
        assert_eq!(got, c.want, "case {}", c.name);
        assert_eq!(s.observed_generation, Some(3), "case {}", c.name);
        assert!(s
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(3)));
    }
}

#[test]
fn succeeded_download_fills_revisions_and_endpoint() {
    let g = glmd();
    let served = served();
    let dl = DownloadState::Succeeded {
        job_name: "j".into(),
        result: DownloadResult {
            commit: SHA.into(),
            path: served.path.clone(),
            bytes: Some(1 << 30),
        },
    };
    let d = deployment(2, 2, 2, 2);
    let s = compute_status(&StatusInputs {
        glmd: &g,
        download: &dl,
        served: Some(&served),
        deployment: Some(&d),
        desired_replicas: 2,
        autoscaling: None,
        problem: None,
        scaling: false,
        now: t(0),
    });
    assert_eq!(s.resolved_revision.as_deref(), Some(SHA));
    assert_eq!(s.current_revision.as_deref(), Some(SHA));
    assert_eq!(s.update_revision.as_deref(), Some(SHA));
    assert_eq!(s.last_ready_revision.as_deref(), Some(SHA));
    assert_eq!(s.endpoint.as_deref(), Some("http://glm45.llm.svc:8000"));
    assert_eq!(
        (s.replicas, s.ready_replicas, s.updated_replicas),
        (2, 2, 2)
    );
    let m = s.model.unwrap();
    assert_eq!(
        (m.phase, m.commit.as_deref(), m.bytes_done),
        (ModelPhase::Ready, Some(SHA), Some(1 << 30))
    );
}

#[test]
fn transition_time_moves_only_on_flips() {
    let mut g = glmd();
    let dl = DownloadState::Running {
        job_name: "j".into(),
        progress: None,
        note: None,
        reruns: 0,
    };
    let inputs = |g: &GlmDeployment, now| {
        compute_status(&StatusInputs {
            glmd: g,
            download: &dl,
            served: None,
            deployment: None,
            desired_replicas: 1,
            autoscaling: None,
            problem: None,
            scaling: false,
            now,
        })
    };
    let first = inputs(&g, t(0));
    g.status = Some(first.clone());
    let second = inputs(&g, t(100));
    assert_eq!(first, second, "same observation, same status");
    let problem = Problem {
        reason: "InvalidSpec",
        message: "x".into(),
        scope: ProblemScope::Spec,
    };
    let third = compute_status(&StatusInputs {
        glmd: &g,
        download: &DownloadState::Absent,
        served: None,
        deployment: None,
        desired_replicas: 1,
        autoscaling: None,
        problem: Some(&problem),
        scaling: false,
        now: t(200),
    });
    let degraded = third.condition(conditions::DEGRADED).unwrap();
    assert_eq!(degraded.last_transition_time, Time(t(200)));
    let ready = third.condition(conditions::READY).unwrap();
    assert_eq!(ready.last_transition_time, Time(t(0)), "Ready stayed False");
}

#[test]
fn progress_reaches_status_model() {
    let g = glmd();
    let dl = DownloadState::Running {
        job_name: "j".into(),
        progress: Some(Progress {
            bytes_done: 5 << 30,
            bytes_total: Some(10 << 30),
            rate_bytes_per_s: Some(100e6),
            eta_seconds: Some(61.0),
        }),
        note: None,
        reruns: 0,
    };
    let s = compute_status(&StatusInputs {
        glmd: &g,
        download: &dl,
        served: None,
        deployment: None,
        desired_replicas: 1,
        autoscaling: None,
        problem: None,
        scaling: false,
        now: t(0),
    });
    let m = s.model.unwrap();
    assert_eq!(
        (m.phase, m.bytes_done, m.bytes_total),
        (ModelPhase::Downloading, Some(5 << 30), Some(10 << 30))
    );
    assert_eq!(
        m.message.as_deref(),
        Some("5.0 GiB of 10.0 GiB (50%), 100 MB/s, ETA 2m")
    );
}

#[test]
fn rollout_deadline_is_degraded() {
    let mut d = deployment(3, 1, 2, 2);
    d.status.as_mut().unwrap().conditions =
        Some(vec![k8s_openapi::api::apps::v1::DeploymentCondition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: Some("ProgressDeadlineExceeded".into()),
            message: Some("ReplicaSet glm45-abc has timed out progressing.".into()),
            ..Default::default()
        }]);
    assert!(matches!(
        rollout_state(Some(&d), 2),
        Rollout::DeadlineExceeded(_)
    ));
}

#[test]
fn a_rejected_child_keeps_ready_and_model_ready() {
    let mut g = glmd();
    let ok = DownloadState::Succeeded {
        job_name: "glm45-dl-x".into(),
        result: DownloadResult {
            commit: SHA.into(),
            path: served().path,
            bytes: Some(10),
        },
    };
    let served = served();
    let healthy = compute_status(&StatusInputs {
        glmd: &g,
        download: &ok,
        served: Some(&served),
        deployment: Some(&deployment(2, 2, 2, 2)),
        desired_replicas: 2,
        autoscaling: None,
        problem: None,
        scaling: false,
        now: t(0),
    });
    assert_eq!(cond(&healthy, "Ready"), ("True", "ReplicasReady"));
    g.status = Some(healthy);
    let problem = Problem {
        reason: "ChildRejected",
        message: "Service glm45 rejected by the apiserver: spec.ports[1].name: Duplicate value"
            .into(),
        scope: ProblemScope::Child,
    };
    let s = compute_status(&StatusInputs {
        glmd: &g,
        download: &DownloadState::Absent,
        served: None,
        deployment: None,
        desired_replicas: 2,
        autoscaling: None,
        problem: Some(&problem),
        scaling: false,
        now: t(10),
    });
    assert_eq!(cond(&s, "Ready"), ("True", "ReplicasReady"));
    assert_eq!(cond(&s, "ModelReady"), ("True", "ModelReady"));
    assert_eq!(cond(&s, "Degraded"), ("True", "ChildRejected"));
    let degraded = s.condition("Degraded").unwrap();
    assert!(degraded.message.contains("Duplicate value"), "{degraded:?}");
}

#[test]
fn small_models_read_in_mib_not_zero_gib() {
    assert_eq!(human_bytes(40 << 20), "40.0 MiB");
    assert_eq!(human_bytes(512 << 10), "512.0 KiB");
    assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    let p = Progress {
        bytes_done: 33 << 20,
        bytes_total: Some(40 << 20),
        rate_bytes_per_s: None,
        eta_seconds: None,
    };
    assert_eq!(progress_message(&p), "33.0 MiB of 40.0 MiB (82%)");
}
