//! Download throughput of glm-download against a raw loopback copy with curl, both from the
//! same mock hub (crate glm-test-hub) serving generated files from memory.
//!
//! `cargo run --release -p glm-download --example download_bench -- [--total-mb 1024]
//!  [--files 4] [--parallel 8] [--rounds 3] [--dir /tmp]`
//!
//! Ours includes everything a real run does: revision resolution, redirects, sha256 of every
//! byte, fsync of every file, and the manifest. curl only copies bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use glm_download::{download, DownloadConfig};
use glm_test_hub::{HubFile, MockHub};

const REPO: &str = "bench/model";

#[derive(Parser)]
struct Args {
    /// Total size of the generated files, MiB.
    #[arg(long, default_value_t = 1024)]
    total_mb: usize,
    /// Number of files the total is split into.
    #[arg(long, default_value_t = 4)]
    files: usize,
    /// glm-download --parallel, and curl --parallel-max for the parallel curl run.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// Runs per tool; the best of each is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where downloads are written (a directory on the disk being measured).
    #[arg(long, default_value = "/tmp")]
    dir: PathBuf,
    /// Skip the curl runs (for profiling glm-download alone).
    #[arg(long)]
    no_curl: bool,
}

fn generate(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    out
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

/// Runs curl over all files; returns (copy time, copy + fsync time).
fn curl(urls: &[(String, PathBuf)], parallel: Option<usize>) -> Option<(Duration, Duration)> {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-f", "-L"]);
    if let Some(p) = parallel {
        cmd.args(["--parallel", "--parallel-max", &p.to_string()]);
    }
    for (url, out) in urls {
        cmd.arg(url).arg("-o").arg(out);
    }
    let start = Instant::now();
    let status = cmd.status().ok()?;
    let took = start.elapsed();
    if !status.success() {
        return None;
    }
    // Same durability as ours (every file fsynced before it counts as downloaded).
    let synced = Command::new("sync")
        .args(urls.iter().map(|(_, p)| p))
        .status()
        .ok()?;
    synced.success().then(|| (took, start.elapsed()))
}

fn clean(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
}

fn main() {
    let args = Args::parse();
    let hub_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let hub = hub_rt.block_on(MockHub::start()).unwrap();

    let each = args.total_mb * (1 << 20) / args.files.max(1);
    let started = Instant::now();
    let names: Vec<String> = (0..args.files)
        .map(|i| format!("model-{:05}-of-{:05}.safetensors", i + 1, args.files))
        .collect();
    let files: Vec<(&str, HubFile)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), HubFile::new(generate(i as u64 + 1, each), true)))
        .collect();
    let total: u64 = files.iter().map(|(_, f)| f.content.len() as u64).sum();
    let sha = hub.commit(REPO, "main", &files);
    println!(
        "generated {} files, {:.2} GB, in {:.1}s; cpus: {}",
        files.len(),
        total as f64 / 1e9,
        started.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let work = args
        .dir
        .join(format!("glm-download-bench-{}", std::process::id()));
    let curl_dir = work.join("curl");
    let ours_dir = work.join("ours");
    let urls: Vec<(String, PathBuf)> = names
        .iter()
        .map(|n| (hub.resolve_url(REPO, &sha, n), curl_dir.join(n)))
        .collect();

    let (mut best_seq, mut best_par, mut best_ours) =
        (None::<Duration>, None::<Duration>, None::<Duration>);
    let mut best_synced = None::<Duration>;
    let min = |a: Option<Duration>, b: Duration| Some(a.map_or(b, |a| a.min(b)));
    for round in 1..=args.rounds {
        clean(&curl_dir);
        match (!args.no_curl).then(|| curl(&urls, None)).flatten() {
            Some((d, synced)) => {
                best_seq = min(best_seq, d);
                best_synced = min(best_synced, synced);
            }
            None => println!("curl (sequential) failed or is not installed"),
        }
        clean(&curl_dir);
        if let Some((d, synced)) = (!args.no_curl)
            .then(|| curl(&urls, Some(args.parallel)))
            .flatten()
        {
            best_par = min(best_par, d);
            best_synced = min(best_synced, synced);
        }
        clean(&curl_dir);

        clean(&ours_dir);
        let mut cfg = DownloadConfig::new(REPO, &ours_dir);
        cfg.endpoint = hub.url.clone();
        cfg.parallel = args.parallel;
        cfg.progress_interval = Duration::from_secs(3600);
        let start = Instant::now();
        let out = client_rt
            .block_on(download(&cfg, &()))
            .expect("download failed");
        let took = start.elapsed();
        assert_eq!(out.bytes, total);
        best_ours = min(best_ours, took);
        println!(
            "round {round}: curl seq {}, curl parallel {}, glm-download {:.2} GB/s",
            best_seq.map_or("-".into(), |d| format!("{:.2} GB/s", gbps(total, d))),
            best_par.map_or("-".into(), |d| format!("{:.2} GB/s", gbps(total, d))),
            gbps(total, took)
        );
        clean(&ours_dir);
    }
    let _ = std::fs::remove_dir_all(&work);

    let ours = gbps(total, best_ours.expect("at least one round"));
    println!(
        "glm-download (parallel {}, sha256 + fsync + manifest): {ours:.2} GB/s",
        args.parallel
    );
    let mut curls = Vec::new();
    if let Some(d) = best_seq {
        println!(
            "curl -s -L -o, sequential:                      {:.2} GB/s",
            gbps(total, d)
        );
        curls.push(gbps(total, d));
    }
    if let Some(d) = best_par {
        println!(
            "curl -s -L -o --parallel-max {}:                 {:.2} GB/s",
            args.parallel,
            gbps(total, d)
        );
        curls.push(gbps(total, d));
    }
    match curls
        .iter()
        .cloned()
        .fold(None::<f64>, |a, b| Some(a.map_or(b, |a| a.max(b))))
    {
        Some(best) => println!(
            "ratio vs the faster raw curl copy: {:.0}% (target >= 90%)",
            100.0 * ours / best
        ),
        None => println!("curl unavailable: no ratio"),
    }
    if let Some(d) = best_synced {
        let synced = gbps(total, d);
        println!("curl, then sync of its files (same durability): {synced:.2} GB/s");
        println!("ratio vs curl + sync: {:.0}%", 100.0 * ours / synced);
    }
}
