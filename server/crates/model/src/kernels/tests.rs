use super::*;

fn naive(x: &[f32], rows: usize, w: &[f32], i: usize, o: usize, b: Option<&[f32]>) -> Vec<f32> {
    let mut y = vec![0f32; rows * o];
    for r in 0..rows {
        for k in 0..o {
            let mut s = 0f64;
            for j in 0..i {
                s += f64::from(x[r * i + j]) * f64::from(w[k * i + j]);
            }
            y[r * o + k] = s as f32 + b.map_or(0.0, |b| b[k]);
        }
    }
    y
}

fn pseudo(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|k| {
            let h = (k as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed.wrapping_mul(97));
            (h % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

#[test]
fn matmul_matches_naive_for_many_shapes() {
    for &(rows, i, o) in &[
        (1, 37, 5),
        (1, 128, 300),
        (3, 64, 17),
        (4, 33, 9),
        (9, 130, 70),
        (32, 256, 40),
        // More rows than one tile, a row count and an out count that leave remainders.
        (37, 70, 33),
        (70, 16, 3),
    ] {
        let x = pseudo(rows * i, 1);
        let w = pseudo(o * i, 2);
        let b = pseudo(o, 3);
        for bias in [None, Some(b.as_slice())] {
            let mut y = vec![0f32; rows * o];
            matmul_t(&x, rows, &w, i, o, bias, &mut y);
            let want = naive(&x, rows, &w, i, o, bias);
            for (a, e) in y.iter().zip(&want) {
                assert!(
                    (a - e).abs() < 1e-4,
                    "rows {rows} in {i} out {o}: {a} vs {e}"
                );
            }
        }
    }
}

#[test]
fn rms_norm_softmax_silu() {
    let mut x = vec![3.0f32, 4.0, 0.0, 0.0];
    rms_norm_rows(&mut x, 2, &[1.0, 2.0], 1e-5);
    let inv = 1.0 / (12.5f32 + 1e-5).sqrt();
    assert!((x[0] - 3.0 * inv).abs() < 1e-6 && (x[1] - 8.0 * inv).abs() < 1e-6);
    assert_eq!(&x[2..], &[0.0, 0.0]);
    let mut s = vec![0.0f32, (2.0f32).ln()];
    softmax_in_place(&mut s);
    assert!((s[0] - 1.0 / 3.0).abs() < 1e-6 && (s[1] - 2.0 / 3.0).abs() < 1e-6);
    assert!((silu(1.0) - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-7);
}

#[test]
fn bf16_and_f16_weights_equal_their_f32_widening() {
    // Widening is exact, and every path accumulates in the same order, so the results must
    // be identical to the f32 kernel on the widened weights, for the in-register path
    // (rows <= 4), the buffered path and odd sizes.
    for &(rows, i, o) in &[
        (1, 37, 5),
        (1, 1024, 33),
        (2, 130, 9),
        (4, 64, 17),
        (5, 70, 3),
        (33, 48, 11),
    ] {
        let x = pseudo(rows * i, 4);
        let w = pseudo(o * i, 5);
        let b = pseudo(o, 6);
        let bf: Vec<u16> = w
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_bits())
            .collect();
        let hf: Vec<u16> = w
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        let bf_wide: Vec<f32> = bf
            .iter()
            .map(|&v| half::bf16::from_bits(v).to_f32())
            .collect();
        let hf_wide: Vec<f32> = hf
            .iter()
            .map(|&v| half::f16::from_bits(v).to_f32())
            .collect();
        for (narrow, wide) in [
            (WeightsRef::Bf16(&bf), &bf_wide),
            (WeightsRef::F16(&hf), &hf_wide),
        ] {
            let mut got = vec![0f32; rows * o];
            matmul_w(&x, rows, narrow, i, o, Some(&b), &mut got);
            let mut want = vec![0f32; rows * o];
            matmul_t(&x, rows, wide, i, o, Some(&b), &mut want);
            assert_eq!(got, want, "rows {rows} in {i} out {o} {narrow:?}");
        }
    }
}
