use super::*;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// A router whose gate is the identity on a 4-dim hidden (logits = hidden).
fn router(n_group: usize, topk_group: usize, top_k: usize, bias: Vec<f32>) -> Router {
    let n = 4;
    let mut w = vec![0f32; n * n];
    for i in 0..n {
        w[i * n + i] = 1.0;
    }
    Router {
        cfg: RouterConfig {
            n_experts: n,
            top_k,
            n_group,
            topk_group,
            norm_topk_prob: true,
            routed_scaling_factor: 2.5,
        },
        gate: Linear::new(w, None, n, n).unwrap(),
        correction_bias: bias,
    }
}

#[test]
fn routing_table() {
    // (n_group, topk_group, top_k, bias, logits, expected experts)
    type Case = (usize, usize, usize, Vec<f32>, Vec<f32>, Vec<usize>);
    let cases: Vec<Case> = vec![
        (1, 1, 2, vec![0.0; 4], vec![0.1, 2.0, -1.0, 1.0], vec![1, 3]),
        // The correction bias changes the choice...
        (
            1,
            1,
            2,
            vec![0.0, 0.0, 5.0, 0.0],
            vec![0.1, 2.0, -1.0, 1.0],
            vec![2, 1],
        ),
        // ...groups {0,1} and {2,3}: best group by top-2 sum is {2,3} although expert 0 is best.
        (2, 1, 2, vec![0.0; 4], vec![3.0, -3.0, 1.0, 1.0], vec![2, 3]),
        // Masked experts score 0.0, not -inf: they can beat a negative biased score.
        (
            2,
            1,
            2,
            vec![-2.0, -2.0, 0.0, -1.0],
            vec![0.0, 0.0, 3.0, -9.0],
            vec![2, 0],
        ),
    ];
    for (ng, tg, k, bias, logits, want) in cases {
        let r = router(ng, tg, k, bias);
        let (idx, w) = r.route_one(&logits);
        assert_eq!(idx, want, "logits {logits:?}");
        // Weights are the un-biased sigmoid scores, renormalised, times the routed scale.
        let s: Vec<f32> = want.iter().map(|&i| sigmoid(logits[i])).collect();
        let sum: f32 = s.iter().sum();
        for (got, s) in w.iter().zip(&s) {
            assert!((got - 2.5 * s / sum).abs() < 1e-6);
        }
    }
}

#[test]
fn top_indices_best_first_lowest_index_on_ties() {
    assert_eq!(top_indices(&[1.0, 3.0, 3.0, 2.0], 3), vec![1, 2, 3]);
}

#[test]
fn moe_forward_equals_weighted_sum_of_chosen_experts_plus_shared() {
    let hidden = 4;
    let inter = 3;
    let mk = |seed: f32| {
        Mlp::from_parts(
            vals(hidden * inter, seed),
            vals(hidden * inter, seed + 1.0),
            lin(inter, hidden, seed + 2.0),
        )
        .unwrap()
    };
    let moe = Moe {
        router: router(1, 1, 2, vec![0.0; 4]),
        experts: (0..4).map(|e| mk(e as f32 * 3.0)).collect(),
        shared: Some(mk(50.0)),
    };
    let h = vec![0.5, -0.2, 0.9, 0.1, -1.0, 0.3, 0.2, 0.8];
    let out = moe.forward(&h, 2).unwrap();
    for r in 0..2 {
        let row = &h[r * hidden..(r + 1) * hidden];
        let (idx, w) = moe.router.route_one(row);
        let mut want = moe.shared.as_ref().unwrap().forward(row, 1).unwrap();
        for (e, wt) in idx.iter().zip(&w) {
            let y = moe.experts[*e].forward(row, 1).unwrap();
            want.iter_mut().zip(&y).for_each(|(a, b)| *a += wt * b);
        }
        for (a, b) in out[r * hidden..(r + 1) * hidden].iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}

fn vals(n: usize, seed: f32) -> Vec<f32> {
    (0..n).map(|k| ((k as f32 + seed) * 0.37).sin()).collect()
}

fn lin(i: usize, o: usize, seed: f32) -> Linear {
    Linear::new(vals(i * o, seed), None, i, o).unwrap()
}
