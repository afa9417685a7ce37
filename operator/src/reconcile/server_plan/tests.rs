//! Table tests of the server decisions at fixed times (see `crate::fixtures::NOW`).

use glm_crds::{GlmDeploymentStatus, ModelPhase, ModelStatus};
use k8s_openapi::{
    api::core::v1::Pod,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use serde_json::json;

use super::*;
use crate::{
    fixtures::{
        at, glmd, model_path, now, rendered, replica_set, with_status, IMAGE, OLD_SHA, SHA,
    },
    reconcile::{
        download::{DownloadFailure, DownloadResult},
        job::job_name,
    },
};

fn succeeded(reported_path: &str) -> DownloadState {
    DownloadState::Succeeded {
        job_name: "glm45-dl-1".into(),
        result: DownloadResult {
            commit: SHA.into(),
            path: reported_path.into(),
            bytes: Some(7),
        },
    }
}

fn running() -> DownloadState {
    DownloadState::Running {
        job_name: "glm45-dl-1".into(),
        progress: None,
        note: None,
        reruns: 0,
    }
}

fn failed() -> DownloadState {
    DownloadState::Failed {
        job_name: "glm45-dl-1".into(),
        failure: DownloadFailure {
            error: "not_found".into(),
            message: "revision v9 not found".into(),
        },
    }
}

/// A Deployment the apiserver returns: rendered for `sha`, all `ready` of 2 replicas ready.
fn serving(g: &GlmDeployment, sha: &str, ready: i64) -> Deployment {
    let (d, _) = rendered(g, sha);
    serde_json::from_value(with_status(&d, 1, 2, 2, ready)).unwrap()
}

fn observe<'a>(
    download: &'a DownloadState,
    deployment: Option<&'a Deployment>,
    now: Timestamp,
) -> ServerObservation<'a> {
    ServerObservation {
        download,
        deployment,
        replica_sets: &[],
        pods: &[],
        autoscaled: None,
        default_image: IMAGE,
        now,
    }
}

fn served_path(d: Option<&Deployment>) -> Option<String> {
    d.and_then(served_model_of).map(|m| m.path)
}

#[test]
fn the_template_follows_the_verified_weights() {
    let g = glmd();
    let mut tp = glmd();
    tp.spec.resources.gpus = 2;
    tp.spec.server.tensor_parallel_size = 2;
    let old = serving(&g, OLD_SHA, 2);
    let (verified, elsewhere, downloading, broken) = (
        succeeded(&model_path(SHA)),
        succeeded("/models/somewhere-else"),
        running(),
        failed(),
    );
    struct Case<'a> {
        name: &'a str,
        glmd: &'a GlmDeployment,
        download: &'a DownloadState,
        observed: Option<&'a Deployment>,
        /// `--model` of the Deployment to apply (`None`: apply nothing).
        serves: Option<String>,
        pending_revision: bool,
        unsupported: bool,
        path_noted: bool,
    }
    let cases = [
        Case {
            name: "verified, no Deployment yet: render the spec at the contract's path",
            glmd: &g,
            download: &verified,
            observed: None,
            serves: Some(model_path(SHA)),
            pending_revision: false,
            unsupported: false,
            path_noted: false,
        },
        Case {
            name: "the Job reported another directory: the contract's wins, noted",
            glmd: &g,
            download: &elsewhere,
            observed: None,
            serves: Some(model_path(SHA)),
            pending_revision: false,
            unsupported: false,
            path_noted: true,
        },
        Case {
            name: "downloading, no Deployment: nothing to apply yet",
            glmd: &g,
            download: &downloading,
            observed: None,
            serves: None,
            pending_revision: true,
            unsupported: false,
            path_noted: false,
        },
        Case {
            name: "downloading a new revision: the old model keeps serving",
            glmd: &g,
            download: &downloading,
            observed: Some(&old),
            serves: Some(model_path(OLD_SHA)),
            pending_revision: true,
            unsupported: false,
            path_noted: false,
        },
        Case {
            name: "download failed: the old model keeps serving",
            glmd: &g,
            download: &broken,
            observed: Some(&old),
            serves: Some(model_path(OLD_SHA)),
            pending_revision: true,
            unsupported: false,
            path_noted: false,
        },
        Case {
            name: "verified, new revision over the old one: the spec's template",
            glmd: &g,
            download: &verified,
            observed: Some(&old),
            serves: Some(model_path(SHA)),
            pending_revision: false,
            unsupported: false,
            path_noted: false,
        },
        Case {
            name: "the server cannot run the spec: nothing rendered",
            glmd: &tp,
            download: &verified,
            observed: None,
            serves: None,
            pending_revision: true,
            unsupported: true,
            path_noted: false,
        },
    ];
    for c in cases {
        let plan = plan_server(c.glmd, &observe(c.download, c.observed, now())).unwrap();
        assert_eq!(
            served_path(plan.deployment.as_ref()),
            c.serves,
            "{}",
            c.name
        );
        assert_eq!(
            plan.revision == rollout::pending_revision(c.glmd),
            c.pending_revision,
            "{}: revision {}",
            c.name,
            plan.revision
        );
        assert_eq!(plan.unsupported.is_some(), c.unsupported, "{}", c.name);
        assert_eq!(
            plan.reported_path_differs,
            c.path_noted
                .then(|| ("/models/somewhere-else".to_string(), model_path(SHA))),
            "{}",
            c.name
        );
    }
}

#[test]
fn the_replica_count_to_write() {
    let fixed = glmd();
    let mut auto = glmd();
    auto.spec.autoscaling.enabled = true;
    auto.spec.autoscaling.min_replicas = 1;
    auto.spec.autoscaling.max_replicas = 4;
    let verified = succeeded(&model_path(SHA));
    let existing = serving(&fixed, SHA, 2);
    struct Case<'a> {
        name: &'a str,
        glmd: &'a GlmDeployment,
        observed: Option<&'a Deployment>,
        autoscaled: Option<i32>,
        plan: ReplicasPlan,
        replicas: Option<i32>,
    }
    let cases = [
        Case {
            name: "autoscaling off: spec.replicas",
            glmd: &fixed,
            observed: Some(&existing),
            autoscaled: Some(4),
            plan: ReplicasPlan::Set(2),
            replicas: Some(2),
        },
        Case {
            name: "autoscaling on, the loop decided: its count",
            glmd: &auto,
            observed: Some(&existing),
            autoscaled: Some(3),
            plan: ReplicasPlan::OmitAutoscaled,
            replicas: Some(3),
        },
        Case {
            name: "autoscaling on, no decision yet, Deployment exists: leave it",
            glmd: &auto,
            observed: Some(&existing),
            autoscaled: None,
            plan: ReplicasPlan::OmitAutoscaled,
            replicas: None,
        },
        Case {
            name: "autoscaling on, first apply: minReplicas",
            glmd: &auto,
            observed: None,
            autoscaled: None,
            plan: ReplicasPlan::OmitAutoscaled,
            replicas: Some(1),
        },
    ];
    for c in cases {
        let mut o = observe(&verified, c.observed, now());
        o.autoscaled = c.autoscaled;
        let plan = plan_server(c.glmd, &o).unwrap();
        assert_eq!(plan.replicas_plan, c.plan, "{}", c.name);
        assert_eq!(plan.replicas, c.replicas, "{}", c.name);
        let written = plan
            .deployment
            .as_ref()
            .and_then(|d| d.spec.as_ref())
            .and_then(|s| s.replicas);
        assert_eq!(written, c.replicas, "{}: the applied Deployment", c.name);
    }
}

/// A pod of the new ReplicaSet (`bbb`) that never became ready, created `secs_ago` before
/// the reconcile.
fn stuck_pod(secs_ago: i64) -> Pod {
    serde_json::from_value(
        json!({"metadata": {"name": "glm45-bbb-1", "namespace": "llm",
        "labels": {"pod-template-hash": "bbb"}, "creationTimestamp": at(-secs_ago).to_string()},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}}),
    )
    .unwrap()
}

#[test]
fn the_progress_deadline_is_measured_against_now() {
    let mut g = glmd();
    g.spec.rollout.progress_deadline_seconds = 600;
    let (old, old_rev) = rendered(&g, OLD_SHA);
    let (new, new_rev) = rendered(&g, SHA);
    g.status = Some(GlmDeploymentStatus {
        model: Some(ModelStatus {
            phase: ModelPhase::Ready,
            job_name: Some(job_name(&g)),
            commit: Some(SHA.into()),
            path: Some(model_path(SHA)),
            ..Default::default()
        }),
        current_revision: Some(old_rev.clone()),
        update_revision: Some(new_rev.clone()),
        last_ready_revision: Some(old_rev.clone()),
        rollout_phase: Some("Rolling".into()),
        ..Default::default()
    });
    let observed: Deployment = serde_json::from_value(with_status(&new, 2, 3, 1, 2)).unwrap();
    let sets: Vec<ReplicaSet> = [
        replica_set(&old, "glm45-old", "aaa", 1),
        replica_set(&new, "glm45-new", "bbb", 2),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).unwrap())
    .collect();
    let verified = succeeded(&model_path(SHA));
    // (pod age at the reconcile, rolled back?)
    let cases = [(30, false), (599, false), (601, true), (86_400, true)];
    for (age, rolled_back) in cases {
        let pods = [stuck_pod(age)];
        let mut o = observe(&verified, Some(&observed), now());
        o.replica_sets = &sets;
        o.pods = &pods;
        let plan = plan_server(&g, &o).unwrap();
        assert_eq!(
            plan.rollout.template == TemplateSource::ReplicaSet("glm45-old".into()),
            rolled_back,
            "pod {age} s old: {:?}",
            plan.rollout.action
        );
        let serves = served_path(plan.deployment.as_ref());
        let want = model_path(if rolled_back { OLD_SHA } else { SHA });
        assert_eq!(serves, Some(want), "pod {age} s old");
        assert_eq!(
            plan.rollout.degraded.status, rolled_back,
            "pod {age} s old: Degraded"
        );
    }
    // The same cluster, read once, judged at two instants: only `now` moved.
    let pods = [stuck_pod(0)];
    let mut o = observe(&verified, Some(&observed), now());
    o.replica_sets = &sets;
    o.pods = &pods;
    assert!(!plan_server(&g, &o).unwrap().rollout.degraded.status);
    o.now = at(601);
    assert!(plan_server(&g, &o).unwrap().rollout.degraded.status);
}

#[test]
fn when_to_look_again() {
    let plan_at = |download: &DownloadState, observed: Option<&Deployment>| {
        plan_server(&glmd(), &observe(download, observed, now()))
            .unwrap()
            .rollout
    };
    let g = glmd();
    let done = serving(&g, SHA, 2);
    let verified = succeeded(&model_path(SHA));
    let pending = DownloadState::Pending {
        job_name: "glm45-dl-1".into(),
        note: None,
        reruns: 0,
    };
    let old = serving(&g, OLD_SHA, 2);
    let cases = [
        ("download pending", &pending, None, DOWNLOAD_POLL),
        ("download running", &running(), None, DOWNLOAD_POLL),
        ("download failed", &failed(), None, RESYNC),
        ("rolled out", &verified, Some(&done), RESYNC),
        (
            "rolling out a new revision",
            &verified,
            Some(&old),
            ROLLOUT_POLL,
        ),
    ];
    for (name, download, observed, want) in cases {
        let rollout_plan = plan_at(download, observed);
        assert_eq!(next_check(download, &rollout_plan), want, "{name}");
    }
}

#[test]
fn autoscaling_status_comes_from_the_loop_then_from_status() {
    let previous = GlmDeploymentStatus {
        autoscaling: Some(AutoscalingStatus {
            desired_replicas: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    };
    let from_loop = AutoscalingStatus {
        desired_replicas: Some(3),
        ..Default::default()
    };
    let cases = [
        (true, Some(from_loop.clone()), Some(&previous), Some(3)),
        (true, None, Some(&previous), Some(2)),
        (true, None, None, None),
        (false, Some(from_loop), Some(&previous), None),
    ];
    for (enabled, looped, prev, want) in cases {
        let got = autoscaling_status(enabled, looped.clone(), prev);
        assert_eq!(
            got.map(|a| a.desired_replicas),
            want.map(Some),
            "enabled {enabled}, loop {looped:?}"
        );
    }
}

fn transition_time(s: &GlmDeploymentStatus, type_: &str) -> Timestamp {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.last_transition_time.0)
        .unwrap_or_else(|| panic!("no {type_} in {:?}", s.conditions))
}

#[test]
fn condition_times_are_the_reconcile_s_now() {
    let mut g = glmd();
    let verified = succeeded(&model_path(SHA));
    let live = serving(&g, SHA, 2);
    let settle = |g: &GlmDeployment, at: Timestamp| {
        let plan = plan_server(g, &observe(&verified, Some(&live), at)).unwrap();
        plan_status(
            g,
            &plan,
            &Applied {
                download: &verified,
                deployment: Some(&live),
                autoscaling: None,
                now: at,
            },
        )
    };
    // First status: every condition starts at the reconcile's time, and the model becoming
    // ready is announced.
    let (first, events) = settle(&g, now());
    assert!(first.is_true(glm_crds::conditions::READY), "{first:?}");
    for c in &first.conditions {
        assert_eq!(c.last_transition_time, Time(now()), "{}", c.type_);
    }
    assert!(
        events
            .iter()
            .any(|e| e.reason == glm_crds::reasons::MODEL_READY || e.reason == "DownloadSucceeded"),
        "{events:?}"
    );
    // Two minutes later, nothing changed: the same status (no write), no Events.
    g.status = Some(first.clone());
    let (again, events) = settle(&g, at(120));
    assert_eq!(again, first);
    assert!(events.is_empty(), "{events:?}");
    // Ready had been False: it flips now, the others keep their times.
    let mut was_not_ready = first.clone();
    for c in &mut was_not_ready.conditions {
        if c.type_ == glm_crds::conditions::READY {
            *c = Condition {
                status: "False".into(),
                ..c.clone()
            };
        }
    }
    g.status = Some(was_not_ready);
    let (flipped, _) = settle(&g, at(120));
    assert_eq!(
        transition_time(&flipped, glm_crds::conditions::READY),
        at(120)
    );
    assert_eq!(
        transition_time(&flipped, glm_crds::conditions::MODEL_READY),
        now()
    );
}
