//! Table tests of `decide` with a controllable clock: every round names its time, the
//! pods it saw and the decision it must produce.

use super::*;
use std::time::{Duration, Instant};

/// How one pod looks in a round.
#[derive(Clone, Copy)]
enum P {
    /// Ready, with (waiting, running).
    Up(f64, f64),
    /// Ready, but the scrape failed.
    Dark,
    /// Not ready yet (starting).
    Starting,
}

struct Round {
    at_s: u64,
    current: u32,
    pods: Vec<P>,
    want: u32,
    reason: Reason,
}

fn r(at_s: u64, current: u32, pods: &[P], want: u32, reason: Reason) -> Round {
    Round {
        at_s,
        current,
        pods: pods.to_vec(),
        want,
        reason,
    }
}

fn samples(pods: &[P]) -> Vec<PodSample> {
    pods.iter()
        .enumerate()
        .map(|(i, p)| {
            let (ready, load, error) = match *p {
                P::Up(waiting, running) => (true, Some(Load { waiting, running }), None),
                P::Dark => (true, None, Some("timeout")),
                P::Starting => (false, None, None),
            };
            PodSample {
                name: format!("pod-{i}"),
                ready,
                load,
                error,
            }
        })
        .collect()
}

fn policy(min: u32, max: u32, target: f64, up_s: u64, down_s: u64) -> AutoscalePolicy {
    AutoscalePolicy {
        min_replicas: min,
        max_replicas: max,
        target_per_replica: target,
        scale_up_stabilization: Duration::from_secs(up_s),
        scale_down_stabilization: Duration::from_secs(down_s),
        max_scale_up_factor: 2.0,
        max_scale_up_pods: 1,
    }
}

/// Runs the rounds against one history; `t0` is far from the clock origin so windows can
/// reach back before the first round.
fn run(name: &str, policy: &AutoscalePolicy, rounds: &[Round]) {
    let t0 = Instant::now() + Duration::from_secs(100_000);
    let mut history = RecommendationHistory::new();
    for (i, round) in rounds.iter().enumerate() {
        let input = AutoscaleInput {
            current_replicas: round.current,
            pods: samples(&round.pods),
            policy: policy.clone(),
        };
        let got = decide(&input, &mut history, t0 + Duration::from_secs(round.at_s)).unwrap();
        assert_eq!(
            (got.desired, got.reason),
            (round.want, round.reason),
            "{name}: round {i} at t={}s: {}",
            round.at_s,
            got.message()
        );
    }
}

use Reason::*;
use P::{Dark, Starting, Up};

#[test]
fn spike_scales_up_at_once_but_at_most_double_per_round() {
    let p = policy(1, 10, 4.0, 0, 300);
    run(
        "spike",
        &p,
        &[
            r(0, 1, &[Up(0.0, 2.0)], 1, Steady),
            // 40 queued on one pod: needs 10, may only double.
            r(5, 1, &[Up(38.0, 2.0)], 2, ScaleUpLimited),
            // The new pod is starting: it is capacity coming, but 40 still needs 10.
            r(10, 2, &[Up(38.0, 2.0), Starting], 4, ScaleUpLimited),
            r(
                15,
                4,
                &[Up(20.0, 2.0), Up(16.0, 2.0), Starting, Starting],
                8,
                ScaleUpLimited,
            ),
            r(20, 8, &[Up(40.0, 0.0)], 10, ScaleUp),
            // Capped by max.
            r(25, 10, &[Up(400.0, 0.0)], 10, Steady),
        ],
    );
}

#[test]
fn starting_pods_count_as_capacity_coming() {
    // 3 replicas (1 ready, 2 starting), 12 requests need exactly 3: no further scale-up
    // although the one ready pod carries all of it.
    let p = policy(1, 10, 4.0, 0, 300);
    run(
        "starting",
        &p,
        &[
            r(0, 3, &[Up(8.0, 4.0), Starting, Starting], 3, Steady),
            r(5, 3, &[Up(9.0, 4.0), Starting, Starting], 4, ScaleUp),
        ],
    );
}

#[test]
fn slow_decay_scales_down_only_after_the_whole_window_was_lower() {
    let p = policy(1, 10, 4.0, 0, 60);
    run(
        "decay",
        &p,
        &[
            r(0, 4, &[Up(3.0, 1.0); 4], 4, Steady),
            // Load halves at t=20: recommendation 2.
            r(20, 4, &[Up(1.0, 1.0); 4], 4, ScaleDownStabilizing),
            r(40, 4, &[Up(1.0, 1.0); 4], 4, ScaleDownStabilizing),
            // Window [0, 60] still holds t=0's 4.
            r(60, 4, &[Up(1.0, 1.0); 4], 4, ScaleDownStabilizing),
            // Window [20, 80]: 2, 2, 2, 2 -> the window's max.
            r(80, 4, &[Up(1.0, 1.0); 4], 2, ScaleDown),
            // Recommendation 1, but window [40, 100] holds 2s.
            r(100, 2, &[Up(0.0, 1.0); 2], 2, ScaleDownStabilizing),
            // Window [81, 141]: 1, 1.
            r(141, 2, &[Up(0.0, 1.0); 2], 1, ScaleDown),
            // Never below min.
            r(300, 1, &[Up(0.0, 0.0)], 1, Steady),
        ],
    );
}

#[test]
fn oscillating_load_does_not_flap() {
    let p = policy(1, 10, 4.0, 0, 60);
    let hi = [Up(3.0, 1.0); 4];
    let lo = [Up(0.0, 1.0); 4];
    let mut rounds = vec![r(0, 4, &hi, 4, Steady)];
    for k in 1..20u64 {
        let (pods, reason) = if k % 2 == 1 {
            (&lo[..], ScaleDownStabilizing)
        } else {
            (&hi[..], Steady)
        };
        rounds.push(r(k * 10, 4, pods, 4, reason));
    }
    run("oscillate", &p, &rounds);
}

#[test]
fn a_pod_that_stops_answering_never_causes_scale_down() {
    let p = policy(1, 10, 4.0, 0, 30);
    run(
        "dark pod",
        &p,
        &[
            r(0, 3, &[Up(4.0, 4.0), Up(2.0, 2.0), Up(0.0, 0.0)], 3, Steady),
            // The third pod stops answering; known load 4 would say 1 replica: hold.
            r(
                10,
                3,
                &[Up(0.0, 2.0), Up(0.0, 2.0), Dark],
                3,
                MetricsUnknown,
            ),
            r(
                40,
                3,
                &[Up(0.0, 2.0), Up(0.0, 2.0), Dark],
                3,
                MetricsUnknown,
            ),
            r(
                80,
                3,
                &[Up(0.0, 2.0), Up(0.0, 2.0), Dark],
                3,
                MetricsUnknown,
            ),
            // Known load alone already needs more: scale up from it.
            r(85, 3, &[Up(12.0, 4.0), Up(0.0, 4.0), Dark], 5, ScaleUp),
            // Everyone answers again; the window still holds the 5 of t=85.
            r(90, 5, &[Up(0.0, 1.0); 5], 5, ScaleDownStabilizing),
            r(110, 5, &[Up(0.0, 1.0); 5], 5, ScaleDownStabilizing),
            r(120, 5, &[Up(0.0, 1.0); 5], 2, ScaleDown),
        ],
    );
}

#[test]
fn no_ready_pods_is_no_signal_and_holds() {
    let p = policy(1, 10, 4.0, 0, 0);
    run(
        "zero ready",
        &p,
        &[
            r(0, 3, &[Starting, Starting, Starting], 3, NoSignal),
            r(5, 3, &[], 3, NoSignal),
            r(10, 3, &[Dark, Dark, Starting], 3, NoSignal),
            // ...even with no scale-down window at all, the first real sample decides.
            r(15, 3, &[Up(0.0, 1.0), Starting, Starting], 1, ScaleDown),
        ],
    );
}

#[test]
fn bounds_apply_at_once() {
    let p = policy(2, 5, 4.0, 60, 600);
    run(
        "bounds",
        &p,
        &[
            r(0, 0, &[], 2, BelowMinimum),
            r(5, 1, &[Up(100.0, 0.0)], 2, BelowMinimum),
            r(10, 9, &[Up(100.0, 0.0); 9], 5, AboveMaximum),
            r(15, 7, &[Starting; 7], 5, AboveMaximum),
        ],
    );
}

#[test]
fn scale_up_window_takes_the_minimum_recommendation() {
    let p = policy(1, 20, 1.0, 30, 300);
    run(
        "up window",
        &p,
        &[
            r(0, 2, &[Up(0.0, 1.0); 2], 2, Steady),
            // A burst to 8 must hold 30 s before counting.
            r(10, 2, &[Up(4.0, 0.0); 2], 2, ScaleUpStabilizing),
            r(20, 2, &[Up(3.0, 0.0); 2], 2, ScaleUpStabilizing),
            // Window [10, 40]: 8, 6, 6 -> min 6, step cap 4.
            r(40, 2, &[Up(3.0, 0.0); 2], 4, ScaleUpLimited),
            // Window [20, 50]: 6, 6, 6 -> 6.
            r(
                50,
                4,
                &[Up(3.0, 0.0), Up(3.0, 0.0), Starting, Starting],
                6,
                ScaleUp,
            ),
        ],
    );
}

#[test]
fn restart_with_empty_history_waits_a_full_window_before_scale_down() {
    let p = policy(1, 10, 4.0, 0, 120);
    run(
        "restart",
        &p,
        &[
            r(0, 6, &[Up(0.0, 0.0); 6], 6, ScaleDownStabilizing),
            r(119, 6, &[Up(0.0, 0.0); 6], 6, ScaleDownStabilizing),
            r(120, 6, &[Up(0.0, 0.0); 6], 1, ScaleDown),
        ],
    );
}

#[test]
fn a_gap_longer_than_the_window_restarts_observation() {
    let p = policy(1, 10, 4.0, 0, 60);
    run(
        "gap",
        &p,
        &[
            r(0, 4, &[Up(0.0, 0.0); 4], 4, ScaleDownStabilizing),
            // The loop was stopped for 10 minutes: nothing proves those were calm.
            r(600, 4, &[Up(0.0, 0.0); 4], 4, ScaleDownStabilizing),
            r(660, 4, &[Up(0.0, 0.0); 4], 1, ScaleDown),
        ],
    );
}

#[test]
fn scale_up_step_adds_pods_from_one_replica_and_zero() {
    let mut p = policy(0, 10, 1.0, 0, 60);
    p.max_scale_up_pods = 3;
    run("step", &p, &[r(0, 1, &[Up(10.0, 0.0)], 4, ScaleUpLimited)]);
    let input = AutoscaleInput {
        current_replicas: 0,
        pods: vec![],
        policy: p.clone(),
    };
    let got = decide(&input, &mut RecommendationHistory::new(), Instant::now()).unwrap();
    assert_eq!((got.desired, got.reason), (0, NoSignal));
}

#[test]
fn nan_and_negative_gauges_add_nothing() {
    let p = policy(1, 10, 4.0, 0, 0);
    run(
        "nan",
        &p,
        &[r(0, 2, &[Up(f64::NAN, 4.0), Up(-3.0, 4.0)], 2, Steady)],
    );
}

#[test]
fn invalid_policies_are_rejected_with_stable_kinds() {
    let cases = [
        (policy(1, 0, 4.0, 0, 0), "zero_max_replicas"),
        (policy(5, 4, 4.0, 0, 0), "min_above_max"),
        (policy(1, 4, 0.0, 0, 0), "invalid_target"),
        (policy(1, 4, f64::NAN, 0, 0), "invalid_target"),
        (
            AutoscalePolicy {
                max_scale_up_factor: 0.5,
                ..policy(1, 4, 1.0, 0, 0)
            },
            "invalid_step_factor",
        ),
    ];
    for (p, kind) in cases {
        let input = AutoscaleInput {
            current_replicas: 1,
            pods: vec![],
            policy: p,
        };
        let err = decide(&input, &mut RecommendationHistory::new(), Instant::now()).unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
    }
}

#[test]
fn decision_message_names_reason_and_metric() {
    let input = AutoscaleInput {
        current_replicas: 1,
        pods: samples(&[Up(7.0, 1.0), Starting, Dark]),
        policy: policy(1, 4, 4.0, 0, 0),
    };
    let d = decide(&input, &mut RecommendationHistory::new(), Instant::now()).unwrap();
    assert_eq!(d.desired, 2);
    assert_eq!(
        d.message(),
        "ScaleUp: 1 -> 2 replicas (load 8 = 7 waiting + 1 running over 1 pods, 1 unknown, \
         1 starting; recommendation 2)"
    );
    assert!(d.changed());
}
