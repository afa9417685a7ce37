//! Throughput of `kernels::matmul_w` at the shapes a decode step of the GLM MoE models runs,
//! with weights streamed from memory (more copies than the last-level cache holds):
//! `cargo run --release -p glm-model --example kernel_bench [f32|bf16|f16|fp8]...`
//! (`GLM_CPU_ISA=avx2|scalar` to measure a narrower path; `KERNEL_BENCH_HOT=1` keeps one
//! copy of each matrix, so that it stays in cache and the kernel's arithmetic is measured;
//! `KERNEL_BENCH_ROWS=1,4` picks the input row counts).
use std::time::Instant;

use glm_model::kernels::matmul_w;
use glm_model::weights::Matrix;

fn main() {
    let mut dtypes: Vec<String> = std::env::args().skip(1).collect();
    if dtypes.is_empty() {
        dtypes = vec!["f32".into(), "bf16".into()];
    }
    let shapes: &[(&str, usize, usize)] = &[
        ("qkv 2048x1024", 2048, 1024),
        ("expert gate_up 1024x1024", 1024, 1024),
        ("expert down 1024x512", 1024, 512),
        ("dense gate_up 5632x1024", 5632, 1024),
    ];
    let hot = std::env::var("KERNEL_BENCH_HOT").is_ok_and(|v| v == "1");
    let row_counts: Vec<usize> = std::env::var("KERNEL_BENCH_ROWS")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4, 8, 16, 32]);
    println!(
        "kernels: {}{}",
        glm_model::kernels::isa::selected().name(),
        if hot { " (weights in cache)" } else { "" }
    );
    for dtype in &dtypes {
        let width = match dtype.as_str() {
            "f32" => 4,
            "fp8" => 1,
            _ => 2,
        };
        for &(name, out, inp) in shapes {
            let copies = if hot {
                1
            } else {
                ((256usize << 20) / (width * out * inp)).max(2)
            };
            let ws: Vec<Matrix> = (0..copies)
                .map(|c| {
                    let v = (0..out * inp).map(|i| (((i + c) % 13) as f32 - 6.0) * 0.01);
                    match dtype.as_str() {
                        "bf16" => {
                            Matrix::Bf16(v.map(|f| half::bf16::from_f32(f).to_bits()).collect())
                        }
                        "f16" => Matrix::F16(v.map(|f| half::f16::from_f32(f).to_bits()).collect()),
                        "fp8" => {
                            let (bits, scales) = glm_model::kernels::fp8::quantize_blocks(
                                &v.collect::<Vec<_>>(),
                                out,
                                inp,
                                128,
                            );
                            Matrix::Fp8 {
                                bits,
                                scales,
                                scale_cols: inp.div_ceil(128),
                                block: 128,
                            }
                        }
                        _ => Matrix::F32(v.collect()),
                    }
                })
                .collect();
            for &rows in &row_counts {
                let x: Vec<f32> = (0..rows * inp).map(|i| ((i % 7) as f32) * 0.1).collect();
                let mut y = vec![0f32; rows * out];
                let iters = 400;
                matmul_w(&x, rows, ws[0].view(), inp, out, None, &mut y);
                let t = Instant::now();
                for it in 0..iters {
                    let w = ws[it % copies].view();
                    matmul_w(&x, rows, w, inp, out, None, &mut y);
                }
                let dt = t.elapsed().as_secs_f64() / iters as f64;
                println!(
                    "{dtype:<4} {name:<26} rows {rows:>2}: {:>7.1} us {:>6.1} GFLOP/s {:>5.1} GB/s",
                    dt * 1e6,
                    2.0 * (rows * out * inp) as f64 / dt / 1e9,
                    (width * out * inp) as f64 / dt / 1e9
                );
            }
        }
    }
}
