//! Throughput of `kernels::matmul_t` at the shapes a decode step of the GLM MoE models runs:
//! `cargo run --release -p glm-model --example kernel_bench`.
use std::time::Instant;

fn main() {
    let shapes: &[(&str, usize, usize, usize)] = &[
        ("qkv/o 1024x1024", 1024, 1024, 0),
        ("expert gate 512x1024", 512, 1024, 0),
        ("expert down 1024x512", 1024, 512, 0),
        ("dense 2816x1024", 2816, 1024, 0),
    ];
    for &(name, out, inp, _) in shapes {
        // Enough copies to exceed the last-level cache, as the model's weights do.
        let copies = (256usize << 20) / (4 * out * inp);
        let ws: Vec<Vec<f32>> = (0..copies)
            .map(|c| {
                (0..out * inp)
                    .map(|i| (((i + c) % 13) as f32 - 6.0) * 0.01)
                    .collect()
            })
            .collect();
        for rows in [1usize, 2, 4, 8, 16, 32] {
            let x: Vec<f32> = (0..rows * inp).map(|i| ((i % 7) as f32) * 0.1).collect();
            let mut y = vec![0f32; rows * out];
            let iters = 400;
            glm_model::kernels::matmul_t(&x, rows, &ws[0], inp, out, None, &mut y);
            let t = Instant::now();
            for it in 0..iters {
                let w = &ws[it % copies];
                glm_model::kernels::matmul_t(&x, rows, w, inp, out, None, &mut y);
            }
            let dt = t.elapsed().as_secs_f64() / iters as f64;
            println!(
                "{name:<22} rows {rows:>2}: {:>7.1} us  {:>6.1} GFLOP/s  {:>5.1} GB/s weights",
                dt * 1e6,
                2.0 * (rows * out * inp) as f64 / dt / 1e9,
                (4 * out * inp) as f64 / dt / 1e9
            );
        }
    }
}
