//! Table-like tests of the rollout state machine over observed Deployment / ReplicaSet / Pod
//! states, each reconcile feeding the next the memory the previous one returned.

use super::*;
use std::time::Duration;

const T0: i64 = 1_700_000_000;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(T0 + s).unwrap()
}

fn policy() -> RolloutPolicy {
    RolloutPolicy {
        max_surge: Budget::Count(1),
        max_unavailable: Budget::Count(0),
        progress_deadline: Duration::from_secs(600),
        surge_fallback_after: Duration::from_secs(60),
    }
}

/// A Deployment of `replicas` on template `rev` with the given status counts.
fn deploy(rev: &str, replicas: u32, total: u32, updated: u32, ready: u32) -> ObservedDeployment {
    ObservedDeployment {
        template_revision: Some(rev.into()),
        generation: 2,
        observed_generation: 2,
        replicas,
        status_replicas: total,
        updated_replicas: updated,
        ready_replicas: ready,
        available_replicas: ready,
        deadline_exceeded: false,
    }
}

fn rs(rev: &str, k8s_revision: u64, created_s: i64) -> ObservedReplicaSet {
    ObservedReplicaSet {
        name: format!("glm-{rev}"),
        revision: Some(rev.into()),
        pod_template_hash: format!("h-{rev}"),
        k8s_revision,
        replicas: 1,
        ready_replicas: 0,
        created: at(created_s),
    }
}

fn pod(name: &str, rev: &str, ready: bool, created_s: i64) -> ObservedPod {
    ObservedPod {
        name: name.into(),
        pod_template_hash: Some(format!("h-{rev}")),
        phase: if ready { "Running" } else { "Pending" }.into(),
        ready,
        unschedulable: None,
        created: at(created_s),
        terminating: false,
    }
}

fn unschedulable(mut p: ObservedPod, since_s: i64) -> ObservedPod {
    p.unschedulable = Some((at(since_s), "0/2 nodes: Insufficient nvidia.com/gpu".into()));
    p
}

struct World {
    desired: &'static str,
    weights: WeightsState,
    deployment: Option<ObservedDeployment>,
    sets: Vec<ObservedReplicaSet>,
    pods: Vec<ObservedPod>,
    now_s: i64,
}

fn step(world: &World, memory: &RolloutMemory) -> RolloutPlan {
    plan(&RolloutInput {
        desired_revision: world.desired,
        weights: world.weights.clone(),
        deployment: world.deployment.as_ref(),
        replica_sets: &world.sets,
        pods: &world.pods,
        policy: &policy(),
        memory,
        now: at(world.now_s),
    })
}

fn serving_r1() -> (World, RolloutMemory) {
    let memory = RolloutMemory {
        current_revision: Some("r1".into()),
        update_revision: Some("r1".into()),
        last_ready_revision: Some("r1".into()),
        failed_revision: None,
        phase: Some(Phase::Complete),
    };
    let world = World {
        desired: "r2",
        weights: WeightsState::Pending,
        deployment: Some(deploy("r1", 2, 2, 2, 2)),
        sets: vec![rs("r1", 1, 0)],
        pods: vec![pod("old-a", "r1", true, 0), pod("old-b", "r1", true, 0)],
        now_s: 1000,
    };
    (world, memory)
}

#[test]
fn first_deployment_waits_for_weights_then_applies() {
    let mut world = World {
        desired: "r1",
        weights: WeightsState::Pending,
        deployment: None,
        sets: vec![],
        pods: vec![],
        now_s: 0,
    };
    let p = step(&world, &RolloutMemory::default());
    assert_eq!(
        p.action,
        Action::WaitForWeights {
            revision: "r1".into()
        }
    );
    assert_eq!(
        (p.template, p.phase),
        (TemplateSource::Current, Phase::WaitingForWeights)
    );
    assert_eq!(p.progressing.reason, reasons::WAITING_FOR_MODEL);
    world.weights = WeightsState::Ready;
    let p = step(&world, &p.memory);
    assert_eq!(
        p.action,
        Action::ApplyTemplate {
            revision: "r1".into()
        }
    );
    assert_eq!(p.template, TemplateSource::Spec);
    assert_eq!(p.memory.update_revision.as_deref(), Some("r1"));
    assert_eq!(p.memory.current_revision, None);
    assert_eq!(p.event.unwrap().reason, reasons::ROLLOUT_STARTED);
}

#[test]
fn new_revision_downloads_while_old_pods_serve_then_rolls_and_completes() {
    let (mut world, memory) = serving_r1();
    let p = step(&world, &memory);
    assert!(matches!(p.action, Action::WaitForWeights { .. }));
    assert_eq!(p.template, TemplateSource::Current, "old template stays");
    assert!(p.progressing.status && !p.degraded.status);
    assert!(
        p.progressing.message.contains("r1 keeps serving"),
        "{}",
        p.progressing.message
    );

    world.weights = WeightsState::Ready;
    let p = step(&world, &p.memory);
    assert_eq!(
        p.action,
        Action::ApplyTemplate {
            revision: "r2".into()
        }
    );
    assert_eq!(
        p.event.as_ref().map(|e| e.reason),
        Some(reasons::ROLLOUT_STARTED)
    );
    assert_eq!(
        (
            p.memory.current_revision.as_deref(),
            p.memory.update_revision.as_deref()
        ),
        (Some("r1"), Some("r2"))
    );

    // The surge pod is starting.
    world.deployment = Some(deploy("r2", 2, 3, 1, 2));
    world.sets.push(rs("r2", 2, 1000));
    world.pods.push(pod("new-a", "r2", false, 1000));
    world.now_s = 1100;
    let p = step(&world, &p.memory);
    assert_eq!((p.action.clone(), p.phase), (Action::Wait, Phase::Rolling));
    assert_eq!(p.event, None, "no Event while nothing changes");
    assert_eq!(p.progressing.reason, reasons::ROLLING_OUT);

    world.deployment = Some(deploy("r2", 2, 2, 2, 2));
    world.pods = vec![
        pod("new-a", "r2", true, 1000),
        pod("new-b", "r2", true, 1150),
    ];
    world.now_s = 1200;
    let p = step(&world, &p.memory);
    assert_eq!((p.action.clone(), p.phase), (Action::Done, Phase::Complete));
    assert_eq!(p.memory.current_revision.as_deref(), Some("r2"));
    assert_eq!(p.memory.last_ready_revision.as_deref(), Some("r2"));
    assert!(!p.progressing.status && !p.degraded.status);
    assert_eq!(p.event.map(|e| e.reason), Some(reasons::ROLLOUT_COMPLETE));
    assert_eq!(p.strategy.max_surge, Budget::Count(1));
}

#[test]
fn pending_unschedulable_surge_pod_falls_back_to_one_at_a_time() {
    let (mut world, mut memory) = serving_r1();
    memory.update_revision = Some("r2".into());
    memory.phase = Some(Phase::Rolling);
    world.weights = WeightsState::Ready;
    world.deployment = Some(deploy("r2", 2, 3, 1, 2));
    world.sets.push(rs("r2", 2, 1000));
    world
        .pods
        .push(unschedulable(pod("new-a", "r2", false, 1000), 1001));

    // 30 s Unschedulable: give a cluster autoscaler its chance.
    world.now_s = 1031;
    let p = step(&world, &memory);
    assert_eq!((p.action.clone(), p.phase), (Action::Wait, Phase::Rolling));
    assert_eq!(p.strategy.max_surge, Budget::Count(1));

    world.now_s = 1061;
    let p = step(&world, &memory);
    let Action::FallbackNoSurge { reason } = &p.action else {
        panic!("want fallback, got {:?}", p.action);
    };
    assert!(reason.contains("new-a") && reason.contains("Insufficient nvidia.com/gpu"));
    assert_eq!(
        p.strategy,
        Strategy {
            max_surge: Budget::Count(0),
            max_unavailable: Budget::Count(1)
        }
    );
    assert_eq!(p.progressing.reason, reasons::SURGE_UNSCHEDULABLE);
    let event = p.event.clone().unwrap();
    assert!(event.warning && event.reason == reasons::SURGE_UNSCHEDULABLE);

    // Next reconcile: an old pod is gone, the new one scheduled; still one at a time.
    world.deployment = Some(deploy("r2", 2, 2, 1, 1));
    world.pods = vec![pod("old-b", "r1", true, 0), pod("new-a", "r2", false, 1000)];
    world.now_s = 1100;
    let p = step(&world, &p.memory);
    assert_eq!(
        (p.action.clone(), p.phase),
        (Action::Wait, Phase::OneAtATime)
    );
    assert_eq!(p.strategy.max_surge, Budget::Count(0));
    assert_eq!(p.event, None);

    world.deployment = Some(deploy("r2", 2, 2, 2, 2));
    world.pods = vec![
        pod("new-a", "r2", true, 1000),
        pod("new-b", "r2", true, 1100),
    ];
    let p = step(&world, &p.memory);
    assert_eq!(p.action, Action::Done);
    assert_eq!(
        p.strategy.max_surge,
        Budget::Count(1),
        "fallback ends with the rollout"
    );
}

#[test]
fn unschedulable_pod_without_old_pods_is_not_a_surge_deadlock() {
    let mut world = World {
        desired: "r1",
        weights: WeightsState::Ready,
        deployment: Some(deploy("r1", 2, 2, 2, 1)),
        sets: vec![rs("r1", 1, 0)],
        pods: vec![
            pod("a", "r1", true, 0),
            unschedulable(pod("b", "r1", false, 0), 0),
        ],
        now_s: 300,
    };
    let memory = RolloutMemory {
        update_revision: Some("r1".into()),
        phase: Some(Phase::Rolling),
        ..Default::default()
    };
    let p = step(&world, &memory);
    assert_eq!((p.action, p.phase), (Action::Wait, Phase::Rolling));
    // ...and with no earlier revision, the deadline leads to Failed, not a rollback.
    world.now_s = 601;
    let p = step(&world, &memory);
    assert_eq!((p.action.clone(), p.phase), (Action::Wait, Phase::Failed));
    assert!(p.degraded.status);
    assert_eq!(p.degraded.reason, reasons::NO_ROLLBACK_TARGET);
    assert!(p.event.unwrap().warning);
}

#[test]
fn deadline_rolls_back_to_last_ready_and_holds_until_the_spec_changes() {
    let (mut world, mut memory) = serving_r1();
    memory.update_revision = Some("r2".into());
    memory.phase = Some(Phase::Rolling);
    world.weights = WeightsState::Ready;
    world.deployment = Some(deploy("r2", 2, 3, 1, 2));
    world.sets.push(rs("r2", 2, 1000));
    world.pods.push(pod("new-a", "r2", false, 1000));

    world.now_s = 1600; // exactly the deadline: not yet
    assert_eq!(step(&world, &memory).action, Action::Wait);
    world.now_s = 1601;
    let p = step(&world, &memory);
    assert_eq!(
        p.action,
        Action::Rollback {
            to_revision: "r1".into(),
            replica_set: "glm-r1".into()
        }
    );
    assert_eq!(p.template, TemplateSource::ReplicaSet("glm-r1".into()));
    assert_eq!(p.phase, Phase::RollingBack);
    assert_eq!(p.memory.failed_revision.as_deref(), Some("r2"));
    assert_eq!(p.memory.update_revision.as_deref(), Some("r1"));
    assert!(p.degraded.status);
    assert_eq!(p.degraded.reason, reasons::PROGRESS_DEADLINE_EXCEEDED);
    let event = p.event.clone().unwrap();
    assert!(
        event.warning && event.message.contains("new-a"),
        "{event:?}"
    );

    // The controller restored r1's template; the spec still says r2: no retry.
    world.deployment = Some(deploy("r1", 2, 3, 2, 2));
    world.now_s = 1620;
    let p = step(&world, &p.memory);
    assert_eq!(
        (p.action.clone(), p.phase),
        (Action::Wait, Phase::RollingBack)
    );
    assert_eq!(p.template, TemplateSource::Current);
    assert_eq!(p.degraded.reason, reasons::ROLLED_BACK);
    assert_eq!(p.event, None);

    world.deployment = Some(deploy("r1", 2, 2, 2, 2));
    world.pods.pop();
    let p = step(&world, &p.memory);
    assert_eq!((p.action.clone(), p.phase), (Action::Done, Phase::Complete));
    assert_eq!(p.template, TemplateSource::Current);
    assert!(
        p.degraded.status,
        "still Degraded: the spec asks for a failed revision"
    );
    assert_eq!(p.memory.current_revision.as_deref(), Some("r1"));
    // Further reconciles stay put.
    let p = step(&world, &p.memory);
    assert_eq!((p.action.clone(), p.event.clone()), (Action::Done, None));

    // Were the Deployment deleted now, the spec is all that can be rendered: start afresh.
    let mut gone = World {
        deployment: None,
        sets: vec![],
        pods: vec![],
        ..world
    };
    let fresh = step(&gone, &p.memory);
    assert_eq!(
        fresh.action,
        Action::ApplyTemplate {
            revision: "r2".into()
        }
    );
    assert_eq!(fresh.memory.failed_revision, None);
    gone.deployment = Some(deploy("r1", 2, 2, 2, 2));
    let mut world = World {
        sets: vec![rs("r1", 1, 0), rs("r2", 2, 1000)],
        ..gone
    };

    // The user fixes the spec: a new revision rolls out and Degraded clears.
    world.desired = "r3";
    let p = step(&world, &p.memory);
    assert_eq!(
        p.action,
        Action::ApplyTemplate {
            revision: "r3".into()
        }
    );
    assert_eq!(p.memory.failed_revision, None);
    assert!(!p.degraded.status);
}

#[test]
fn deployment_progress_deadline_condition_also_triggers_rollback() {
    let (mut world, mut memory) = serving_r1();
    memory.update_revision = Some("r2".into());
    memory.phase = Some(Phase::Rolling);
    world.weights = WeightsState::Ready;
    let mut d = deploy("r2", 2, 3, 1, 2);
    d.deadline_exceeded = true;
    world.deployment = Some(d);
    world.sets.push(rs("r2", 2, 1000));
    world.now_s = 1010;
    let p = step(&world, &memory);
    assert!(
        matches!(p.action, Action::Rollback { .. }),
        "{:?}",
        p.action
    );
    assert!(p.degraded.message.contains("ProgressDeadlineExceeded"));
}

#[test]
fn failed_download_keeps_old_pods_and_degrades() {
    let (mut world, memory) = serving_r1();
    world.weights = WeightsState::Failed {
        message: "integrity: sha256 mismatch".into(),
    };
    let p = step(&world, &memory);
    assert_eq!(
        (p.action.clone(), p.template.clone()),
        (Action::Wait, TemplateSource::Current)
    );
    assert!(p.degraded.status);
    assert_eq!(p.degraded.reason, reasons::DOWNLOAD_FAILED);
    assert!(p.degraded.message.contains("sha256 mismatch"));
    world.weights = WeightsState::Ready;
    let p = step(&world, &p.memory);
    assert!(!p.degraded.status);
}

#[test]
fn budgets_parse_like_kubernetes_and_reject_both_zero() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString as I;
    assert_eq!(Budget::from_int_or_string(&I::Int(2)), Ok(Budget::Count(2)));
    assert_eq!(
        Budget::from_int_or_string(&I::String("25%".into())),
        Ok(Budget::Percent(25))
    );
    assert_eq!(
        Budget::from_int_or_string(&I::String("3".into())),
        Ok(Budget::Count(3))
    );
    assert_eq!(
        Budget::from_int_or_string(&I::Int(-1)).unwrap_err().kind(),
        "invalid_budget"
    );
    assert_eq!(
        Budget::Percent(10).to_int_or_string(),
        I::String("10%".into())
    );
    let spec = glm_crds::RolloutSpec {
        max_surge: I::String("0%".into()),
        max_unavailable: I::Int(0),
        ..Default::default()
    };
    assert_eq!(
        RolloutPolicy::try_from(&spec).unwrap_err().kind(),
        "both_budgets_zero"
    );
    let policy = RolloutPolicy::try_from(&glm_crds::RolloutSpec::default()).unwrap();
    assert_eq!(policy.progress_deadline, Duration::from_secs(3600));
    assert_eq!(policy.max_surge, Budget::Count(1));
}

#[test]
fn a_scale_of_the_current_revision_is_not_a_rollout() {
    let memory = RolloutMemory {
        current_revision: Some("r1".into()),
        update_revision: Some("r1".into()),
        last_ready_revision: Some("r1".into()),
        failed_revision: None,
        phase: Some(Phase::Complete),
    };
    // 1 -> 2: the new pod is starting.
    let mut world = World {
        desired: "r1",
        weights: WeightsState::Ready,
        deployment: Some(deploy("r1", 2, 2, 2, 1)),
        sets: vec![rs("r1", 1, 0)],
        pods: vec![pod("a", "r1", true, 0), pod("b", "r1", false, 1000)],
        now_s: 1001,
    };
    let p = step(&world, &memory);
    assert_eq!((p.action.clone(), p.phase), (Action::Wait, Phase::Scaling));
    assert_eq!(p.progressing.reason, reasons::SCALING);
    assert!(!p.degraded.status);
    assert_eq!(p.event, None, "a scale publishes no rollout Event");

    // The new pod cannot be placed: the scheduler's message, and no deadline or rollback
    // however long it waits (the first pod keeps serving).
    world.pods[1] = unschedulable(pod("b", "r1", false, 1000), 1000);
    world.now_s = 1000 + 3600;
    let p = step(&world, &memory);
    assert_eq!((p.action.clone(), p.phase), (Action::Wait, Phase::Scaling));
    assert_eq!(p.progressing.reason, reasons::UNSCHEDULABLE);
    assert!(p
        .progressing
        .message
        .contains("Insufficient nvidia.com/gpu"));
    assert!(!p.degraded.status);

    // Done: Complete again.
    world.deployment = Some(deploy("r1", 2, 2, 2, 2));
    world.pods = vec![pod("a", "r1", true, 0), pod("b", "r1", true, 1000)];
    let p = step(&world, &memory);
    assert_eq!((p.action, p.phase), (Action::Done, Phase::Complete));
}

#[test]
fn an_unschedulable_new_pod_is_reported_at_once_in_a_rollout() {
    let (mut world, mut memory) = serving_r1();
    memory.update_revision = Some("r2".into());
    memory.phase = Some(Phase::Rolling);
    world.weights = WeightsState::Ready;
    world.deployment = Some(deploy("r2", 2, 3, 1, 2));
    world.sets.push(rs("r2", 2, 1000));
    world
        .pods
        .push(unschedulable(pod("new-a", "r2", false, 1000), 1001));
    world.now_s = 1002;
    let p = step(&world, &memory);
    assert_eq!((p.action.clone(), p.phase), (Action::Wait, Phase::Rolling));
    assert_eq!(p.progressing.reason, reasons::UNSCHEDULABLE);
    assert!(
        p.progressing
            .message
            .contains("new-a is Unschedulable: 0/2 nodes"),
        "{}",
        p.progressing.message
    );
}
