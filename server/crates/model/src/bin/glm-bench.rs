//! Prefill and decode throughput of a model directory against the memory-bandwidth bound.
//!
//! `cargo run --release -p glm-model --bin glm-bench -- --model DIR [--prompt-len 256]
//!  [--decode-steps 64] [--batches 1,8,32] [--batch-prompt-len 32] [--dtype auto]
//!  [--backend auto|cpu|reference|cuda] [--device cpu|cuda:N] [--hbm-gbps 3350]`
//!
//! Leaving 1 out of `--batches` skips the bandwidth measure and the batch-1 run (for
//! profiling batched decode alone).
//!
//! Decode at batch 1 reads every active weight once per token, so its ceiling is
//! `measured bandwidth / active weight bytes per token`.

use std::path::PathBuf;
use std::time::Instant;

use glm_model::{
    load_model, BackendChoice, CacheConfig, CausalLm, DeviceSpec, ForwardBatch, LoadOptions,
    ModelError, SeqInput,
};
use rayon::prelude::*;

const BLOCK: usize = 16;

struct Args {
    model: PathBuf,
    prompt_len: usize,
    decode_steps: usize,
    batches: Vec<usize>,
    /// Prompt length of each sequence in the batched decode runs.
    batch_prompt_len: usize,
    dtype: glm_model::WeightDtype,
    backend: BackendChoice,
    device: DeviceSpec,
    /// Device memory bandwidth in GB/s for the bound on a GPU (H100 SXM: 3350).
    hbm_gbps: f64,
    /// Batch-1 runs averaged (llama-bench's default is 5 too).
    repeat: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut model = None;
    let mut prompt_len = 256;
    let mut decode_steps = 64;
    let mut batches = vec![1, 8, 32];
    let mut batch_prompt_len = 32;
    let mut dtype = glm_model::WeightDtype::Auto;
    let mut backend = BackendChoice::Auto;
    let mut device = DeviceSpec::Cpu;
    let mut hbm_gbps = 3350.0;
    let mut repeat = 5;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        let num = |s: String| s.parse::<usize>().map_err(|e| format!("{s}: {e}"));
        match a.as_str() {
            "--model" => model = Some(PathBuf::from(val()?)),
            "--prompt-len" => prompt_len = num(val()?)?,
            "--batch-prompt-len" => batch_prompt_len = num(val()?)?,
            "--dtype" => dtype = val()?.parse()?,
            "--backend" => backend = val()?.parse()?,
            "--device" => device = val()?.parse()?,
            "--hbm-gbps" => {
                let v = val()?;
                hbm_gbps = v.parse().map_err(|e| format!("{v}: {e}"))?
            }
            "--decode-steps" => decode_steps = num(val()?)?,
            "--repeat" => repeat = num(val()?)?,
            "--batches" => {
                batches = val()?
                    .split(',')
                    .map(|s| num(s.to_owned()))
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => {
                return Err(
                    "usage: glm-bench --model DIR [--prompt-len N] [--decode-steps N] \
                            [--batches 1,8,32] [--batch-prompt-len N] \
                            [--dtype auto|float32|bfloat16|float16 (auto keeps FP8 8-bit)] \
                            [--backend auto|cpu|reference|cuda] [--device cpu|cuda:N] \
                            [--hbm-gbps 3350] [--repeat 5 (batch-1 runs averaged)]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        model: model.ok_or("--model DIR is required")?,
        prompt_len: prompt_len.max(1),
        decode_steps: decode_steps.max(1),
        batches,
        batch_prompt_len: batch_prompt_len.max(1),
        dtype,
        backend,
        device,
        hbm_gbps,
        repeat: repeat.max(1),
    })
}

/// Best-of-3 parallel streaming read bandwidth over a buffer much larger than the caches.
fn measure_bandwidth() -> f64 {
    let n = 256 << 20; // 1 GiB of f32
    let buf: Vec<f32> = (0..n).into_par_iter().map(|i| (i % 7) as f32).collect();
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let s: f32 = buf
            .par_chunks(1 << 16)
            .map(|c| glm_model::kernels::dot(c, c))
            .sum();
        let dt = t.elapsed().as_secs_f64();
        std::hint::black_box(s);
        // dot(c, c) reads c once (both operands are the same cache line).
        best = best.max((n * 4) as f64 / dt);
    }
    best
}

fn prompt(len: usize, seed: usize, vocab: usize) -> Vec<u32> {
    (0..len)
        .map(|i| ((i * 131 + seed * 977 + 7) % vocab.min(2000)) as u32)
        .collect()
}

fn argmax(v: &[f32]) -> u32 {
    glm_model::sampling::argmax(v)
}

/// Prefills `batch` sequences of `prompt_len` tokens, then decodes `steps` tokens for all.
/// Returns (prefill seconds, decode seconds).
fn run(
    m: &mut dyn CausalLm,
    batch: usize,
    prompt_len: usize,
    steps: usize,
) -> Result<(f64, f64), ModelError> {
    let per_seq = (prompt_len + steps).div_ceil(BLOCK);
    m.init_cache(CacheConfig {
        num_blocks: per_seq * batch,
        block_size: BLOCK,
    })?;
    let vocab = m.info().vocab_size;
    let tables: Vec<Vec<u32>> = (0..batch)
        .map(|b| ((b * per_seq) as u32..((b + 1) * per_seq) as u32).collect())
        .collect();
    let t = Instant::now();
    let out = m.forward(&ForwardBatch {
        seqs: (0..batch)
            .map(|b| SeqInput {
                tokens: prompt(prompt_len, b, vocab),
                num_cached: 0,
                block_table: tables[b].clone(),
                want_logits: true,
            })
            .collect(),
    })?;
    let prefill = t.elapsed().as_secs_f64();
    let mut next: Vec<u32> = out.iter().map(|l| l.as_deref().map_or(0, argmax)).collect();
    let t = Instant::now();
    for s in 0..steps {
        let out = m.forward(&ForwardBatch {
            seqs: (0..batch)
                .map(|b| SeqInput {
                    tokens: vec![next[b]],
                    num_cached: prompt_len + s,
                    block_table: tables[b].clone(),
                    want_logits: true,
                })
                .collect(),
        })?;
        next = out.iter().map(|l| l.as_deref().map_or(0, argmax)).collect();
    }
    Ok((prefill, t.elapsed().as_secs_f64()))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = bench(&args) {
        eprintln!("glm-bench: {e}");
        std::process::exit(1);
    }
}

fn bench(args: &Args) -> Result<(), ModelError> {
    let t = Instant::now();
    let opts = LoadOptions {
        backend: args.backend,
        device: args.device,
        dtype: args.dtype,
    };
    let mut m = load_model(&args.model, &opts)?;
    let load_s = t.elapsed().as_secs_f64();
    let info = m.info().clone();
    println!("model            {}", args.model.display());
    println!("architecture     {}", info.architecture);
    println!("device/backend   {} / {}", info.device, info.backend);
    println!("threads          {}", rayon::current_num_threads());
    if info.backend == "cpu" {
        println!(
            "cpu kernels      {} (best on this CPU: {}; GLM_CPU_ISA=avx2|scalar to pick below)",
            glm_model::kernels::isa::selected().name(),
            glm_model::kernels::Isa::best().name()
        );
    }
    println!(
        "weights          {:.1} MiB in memory ({:?} linear weights), loaded in {load_s:.2} s, \
         peak host RSS {:.0} MiB",
        info.weight_bytes as f64 / (1 << 20) as f64,
        args.dtype,
        glm_model::peak_rss_bytes().unwrap_or(0) as f64 / (1 << 20) as f64
    );
    let bytes = info.active_weight_bytes_per_token as f64;
    println!(
        "bytes/token      {:.1} MiB of weights read per decoded token (batch 1)",
        bytes / (1 << 20) as f64
    );
    let bw = if args.device != DeviceSpec::Cpu {
        println!(
            "bandwidth        {:.0} GB/s device memory (--hbm-gbps)",
            args.hbm_gbps
        );
        args.hbm_gbps * 1e9
    } else if args.batches.contains(&1) {
        let bw = measure_bandwidth();
        println!(
            "bandwidth        {:.2} GB/s measured (parallel streaming read, best of 3)",
            bw / 1e9
        );
        bw
    } else {
        f64::NAN
    };
    let bound = bw / bytes;
    println!("bound            {bound:.1} tokens/s = bandwidth / bytes per token");

    // Warm up (page in weights, grow allocator pools).
    run(m.as_mut(), 1, 16, 2)?;
    if args.batches.contains(&1) {
        batch_one(m.as_mut(), args, bound)?;
    }
    for &b in args.batches.iter().filter(|&&b| b > 1) {
        let (_, decode) = run(
            m.as_mut(),
            b,
            args.batch_prompt_len,
            args.decode_steps.min(32),
        )?;
        let steps = args.decode_steps.min(32);
        let tps = (b * steps) as f64 / decode;
        println!(
            "decode batch {b:<3} {tps:.1} tokens/s ({:.2} ms/step)",
            1000.0 * decode / steps as f64
        );
    }
    Ok(())
}

/// Prefill of one prompt, then batch-1 decode against the bandwidth bound: the mean and
/// standard deviation of `--repeat` runs, as llama-bench reports them.
fn batch_one(m: &mut dyn CausalLm, args: &Args, bound: f64) -> Result<(), ModelError> {
    let mut prefill = Vec::with_capacity(args.repeat);
    let mut decode = Vec::with_capacity(args.repeat);
    for _ in 0..args.repeat {
        let (p, d) = run(m, 1, args.prompt_len, args.decode_steps)?;
        prefill.push(args.prompt_len as f64 / p);
        decode.push(args.decode_steps as f64 / d);
    }
    let (pf, pf_sd) = mean_sd(&prefill);
    let (tps, tps_sd) = mean_sd(&decode);
    println!(
        "prefill          {pf:.1} tokens/s (± {pf_sd:.1}; {} tokens, mean of {} runs)",
        args.prompt_len, args.repeat
    );
    println!(
        "decode batch 1   {tps:.1} tokens/s ({:.2} ms/token, ± {tps_sd:.1} tokens/s) = {:.0}% of \
         the bandwidth bound",
        1000.0 / tps,
        100.0 * tps / bound
    );
    Ok(())
}

/// Mean and sample standard deviation.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}
