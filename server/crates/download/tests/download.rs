//! End-to-end behaviour against the mock hub on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use glm_download::{
    download, read_manifest, DownloadConfig, ProgressSink, ProgressSnapshot, MANIFEST_FILE,
};
use glm_test_hub::{Fault, HubFile, MockHub};

const REPO: &str = "zai-org/GLM-Test";
const BIG: &str = "model-00001-of-00002.safetensors";
const SMALL_LFS: &str = "model-00002-of-00002.safetensors";

/// Deterministic pseudo-random bytes (xorshift), distinct per seed.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn files(seed: u64) -> Vec<(&'static str, HubFile)> {
    vec![
        (
            "config.json",
            HubFile::new(format!("{{\"seed\": {seed}}}").into_bytes(), false),
        ),
        (
            "tokenizer.json",
            HubFile::new(bytes(seed + 1, 70_000), false),
        ),
        (
            "sub/README.md",
            HubFile::new(b"# test model\n".to_vec(), false),
        ),
        (BIG, HubFile::new(bytes(seed + 2, 3_000_000), true)),
        (SMALL_LFS, HubFile::new(bytes(seed + 3, 1_200_000), true)),
    ]
}

fn total(files: &[(&str, HubFile)]) -> u64 {
    files.iter().map(|(_, f)| f.content.len() as u64).sum()
}

fn config(hub: &MockHub, dir: &Path) -> DownloadConfig {
    let mut c = DownloadConfig::new(REPO, dir);
    c.endpoint = hub.url.clone();
    c.stall_timeout = Duration::from_secs(5);
    c.retry_base_delay = Duration::from_millis(10);
    c.retry_max_delay = Duration::from_millis(200);
    c.progress_interval = Duration::from_millis(20);
    c
}

fn assert_tree(commit_dir: &Path, files: &[(&str, HubFile)]) {
    for (p, f) in files {
        let got = std::fs::read(commit_dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(got == f.content, "{p} differs from the served file");
        assert!(
            !commit_dir.join(format!("{p}.part")).exists(),
            "{p}.part left behind"
        );
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<ProgressSnapshot>>);

impl ProgressSink for Recorder {
    fn progress(&self, s: &ProgressSnapshot) {
        self.0.lock().unwrap().push(*s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_download_matches_served_files_and_writes_manifest() {
    let hub = MockHub::start().await.unwrap();
    let fs = files(1);
    let sha = hub.commit(REPO, "main", &fs);
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let out = download(&config(&hub, dir.path()), &rec).await.unwrap();

    assert_eq!(out.commit, sha);
    assert_eq!(out.path, dir.path().join(&sha));
    assert_eq!(out.bytes, total(&fs));
    assert_eq!(out.bytes_transferred, total(&fs));
    assert!(!out.already_complete);
    assert_tree(&out.path, &fs);

    let m = read_manifest(&out.path).unwrap().expect("manifest written");
    assert_eq!(
        (m.commit.as_str(), m.repo.as_str(), m.revision.as_str()),
        (sha.as_str(), REPO, "main")
    );
    assert_eq!(m.files.len(), fs.len());
    for (p, f) in &fs {
        let e = m.files.iter().find(|e| e.path == *p).unwrap();
        assert_eq!(
            (e.size, e.sha256.as_str()),
            (f.content.len() as u64, f.sha256.as_str()),
            "{p}"
        );
    }
    assert!(
        m.completed_at.ends_with('Z') && m.completed_at.len() == 20,
        "{}",
        m.completed_at
    );
    // LFS files came through the CDN redirect without our token; all files were asked for by commit sha.
    assert!(hub
        .requests(BIG)
        .iter()
        .all(|r| r.status == 200 && r.range_start.is_none()));
    let last = *rec.0.lock().unwrap().last().expect("progress reported");
    assert_eq!(
        (last.bytes_done, last.bytes_total),
        (total(&fs), total(&fs))
    );
    assert_eq!(last.eta_seconds, Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_resumes_with_a_range_and_no_byte_twice() {
    let hub = MockHub::start().await.unwrap();
    let fs = files(2);
    let size = fs.iter().find(|(p, _)| *p == BIG).unwrap().1.content.len() as u64;
    hub.commit(REPO, "main", &fs);
    const CUT: u64 = 1_000_000;
    hub.inject(BIG, Fault::CutAfter(CUT));
    let dir = tempfile::tempdir().unwrap();
    let out = download(&config(&hub, dir.path()), &()).await.unwrap();
    assert_tree(&out.path, &fs);

    let reqs = hub.requests(BIG);
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].range_start, None);
    let resumed_at = reqs[1]
        .range_start
        .expect("second request must be a range request");
    assert_eq!(
        resumed_at, CUT,
        "resume starts right after the bytes received"
    );
    assert_eq!(reqs[1].status, 206);
    assert_eq!(hub.served(BIG), size, "no byte of {BIG} was served twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_run_leaves_a_part_file_that_the_next_run_resumes() {
    let hub = MockHub::start().await.unwrap();
    let fs = files(3);
    hub.commit(REPO, "main", &fs);
    const STALL: u64 = 1_500_000;
    hub.inject(BIG, Fault::StallAfter(STALL));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&hub, dir.path());
    cfg.stall_timeout = Duration::from_secs(60);
    let first = tokio::spawn({
        let cfg = cfg.clone();
        async move { download(&cfg, &()).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while hub.served(BIG) < STALL || hub.served(SMALL_LFS) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "transfer never reached the stall point"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.abort(); // the process "dies" with BIG half done
    assert!(first.await.unwrap_err().is_cancelled());

    let out = download(&cfg, &()).await.unwrap();
    assert_tree(&out.path, &fs);
    let reqs = hub.requests(BIG);
    assert_eq!(reqs.last().unwrap().range_start, Some(STALL), "{reqs:?}");
    assert_eq!(
        hub.total_served(),
        total(&fs),
        "every byte was served exactly once across both runs"
    );
    assert!(
        out.bytes_transferred < total(&fs),
        "the second run fetched only what was missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_files_are_detected_deleted_and_fetched_again() {
    let hub = MockHub::start().await.unwrap();
    let fs = files(4);
    hub.commit(REPO, "main", &fs);
    hub.inject(BIG, Fault::Corrupt); // LFS: caught by sha256
    hub.inject("tokenizer.json", Fault::Corrupt); // plain git file: caught by the git blob id
    let dir = tempfile::tempdir().unwrap();
    let out = download(&config(&hub, dir.path()), &()).await.unwrap();
    assert_tree(&out.path, &fs);
    for (p, f) in fs
        .iter()
        .filter(|(p, _)| *p == BIG || *p == "tokenizer.json")
    {
        assert_eq!(
            hub.requests(p).len(),
            2,
            "{p} fetched again after the mismatch"
        );
        assert_eq!(hub.served(p), 2 * f.content.len() as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_that_persists_fails_with_integrity_and_no_manifest() {
    let hub = MockHub::start().await.unwrap();
    let sha = hub.commit(REPO, "main", &files(5));
    for _ in 0..3 {
        hub.inject(SMALL_LFS, Fault::Corrupt);
    }
    let dir = tempfile::tempdir().unwrap();
    let err = download(&config(&hub, dir.path()), &()).await.unwrap_err();
    assert_eq!(err.kind(), "integrity", "{err}");
    assert!(err.to_string().contains(SMALL_LFS), "{err}");
    assert!(!dir.path().join(&sha).join(MANIFEST_FILE).exists());
    assert!(
        !dir.path().join(&sha).join(SMALL_LFS).exists(),
        "an unverified file never gets its real name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_branch_downloads_the_new_commit_beside_the_old_one() {
    let hub = MockHub::start().await.unwrap();
    let old_files = files(6);
    let old = hub.commit(REPO, "main", &old_files);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&hub, dir.path());
    let first = download(&cfg, &()).await.unwrap();
    let old_manifest = read_manifest(&first.path).unwrap().unwrap();

    let new_files = files(60);
    let new = hub.commit(REPO, "main", &new_files);
    assert_ne!(old, new);
    let second = download(&cfg, &()).await.unwrap();
    assert_eq!(second.commit, new);
    assert_eq!(second.path, dir.path().join(&new));
    assert_tree(&second.path, &new_files);
    assert_tree(&first.path, &old_files);
    assert_eq!(
        read_manifest(&first.path).unwrap().unwrap(),
        old_manifest,
        "old commit untouched"
    );

    // A tag still pointing at the old commit resolves there and is already complete.
    hub.tag(REPO, "v1", &old);
    let mut tagged = cfg.clone();
    tagged.revision = "v1".into();
    let again = download(&tagged, &()).await.unwrap();
    assert_eq!(again.commit, old);
    assert!(again.already_complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_missing_token_is_unauthorized_and_says_so() {
    let hub = MockHub::start().await.unwrap();
    hub.commit(REPO, "main", &files(7));
    hub.require_token("hf_good");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&hub, dir.path());
    cfg.token = Some("hf_bad".into());
    let err = download(&cfg, &()).await.unwrap_err();
    assert_eq!(err.kind(), "unauthorized");
    assert!(err.to_string().contains("rejected the token"), "{err}");
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");

    cfg.token = None;
    let err = download(&cfg, &()).await.unwrap_err();
    assert_eq!(err.kind(), "unauthorized");
    assert!(err.to_string().contains("needs a token"), "{err}");

    cfg.token = Some("hf_good".into());
    let out = download(&cfg, &()).await.unwrap();
    assert!(hub.requests("config.json").iter().all(|r| r.authorized));
    assert_eq!(out.files.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_repo_or_revision_is_not_found_and_names_it() {
    let hub = MockHub::start().await.unwrap();
    hub.commit(REPO, "main", &files(8));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&hub, dir.path());
    cfg.repo = "nobody/nothing".into();
    let err = download(&cfg, &()).await.unwrap_err();
    assert_eq!(err.kind(), "not_found");
    assert!(
        err.to_string().contains("nobody/nothing") && err.to_string().contains("--repo"),
        "{err}"
    );

    let mut cfg = config(&hub, dir.path());
    cfg.revision = "v9-missing".into();
    let err = download(&cfg, &()).await.unwrap_err();
    assert_eq!(err.kind(), "not_found");
    assert!(
        err.to_string().contains("v9-missing") && err.to_string().contains("--revision"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written on failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gated_repo_says_to_accept_the_license() {
    let hub = MockHub::start().await.unwrap();
    hub.commit(REPO, "main", &files(9));
    hub.set_gated(REPO);
    let dir = tempfile::tempdir().unwrap();
    let err = download(&config(&hub, dir.path()), &()).await.unwrap_err();
    assert_eq!(err.kind(), "gated");
    assert!(err.to_string().contains("accept the license"), "{err}");
    assert!(
        err.to_string().contains(&format!("{}/{REPO}", hub.url)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_runs_on_one_dir_download_once() {
    let hub = MockHub::start().await.unwrap();
    let fs = files(10);
    hub.commit(REPO, "main", &fs);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&hub, dir.path());
    let (a, b) = tokio::join!(download(&cfg, &()), download(&cfg, &()));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.commit, b.commit);
    assert_tree(&a.path, &fs);
    assert_eq!(
        hub.total_served(),
        total(&fs),
        "the second run waited and reused the first's work"
    );
    assert!(
        a.already_complete ^ b.already_complete,
        "exactly one run did the work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_is_a_noop_that_rechecks_sizes_and_repairs() {
    let hub = MockHub::start().await.unwrap();
    let fs = files(11);
    let sha = hub.commit(REPO, "main", &fs);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&hub, dir.path());
    let first = download(&cfg, &()).await.unwrap();
    let served = hub.total_served();

    let again = download(&cfg, &()).await.unwrap();
    assert!(again.already_complete);
    assert_eq!(again.bytes_transferred, 0);
    assert_eq!(hub.total_served(), served);
    assert_eq!(again.files, first.files);

    // A truncated file is noticed by the size re-check and only that file is fetched again.
    let victim = first.path.join(SMALL_LFS);
    let size = std::fs::metadata(&victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(10)
        .unwrap();
    let repaired = download(&cfg, &()).await.unwrap();
    assert!(!repaired.already_complete);
    assert_tree(&repaired.path, &fs);
    assert_eq!(hub.total_served(), served + size);

    // A pinned sha that is complete needs no hub at all.
    let mut offline = cfg.clone();
    offline.revision = sha.clone();
    offline.endpoint = "http://127.0.0.1:9".into();
    let info_before = hub.info_requests();
    let out = download(&offline, &()).await.unwrap();
    assert!(out.already_complete);
    assert_eq!(out.commit, sha);
    assert_eq!(hub.info_requests(), info_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_globs_select_files_and_a_wider_run_completes_the_rest() {
    let hub = MockHub::start().await.unwrap();
    let fs = files(12);
    hub.commit(REPO, "main", &fs);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&hub, dir.path());
    cfg.include = vec!["*.json".into()];
    let out = download(&cfg, &()).await.unwrap();
    let mut names: Vec<_> = out.files.iter().map(|f| f.path.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["config.json", "tokenizer.json"]);
    assert!(!out.path.join(BIG).exists());
    assert_eq!(hub.served(BIG), 0);

    cfg.include = vec!["*.safetensors".into(), "sub/*".into()];
    let out = download(&cfg, &()).await.unwrap();
    assert_eq!(
        out.files.len(),
        5,
        "manifest keeps the earlier verified files"
    );
    assert_tree(&out.path, &fs);
    assert_eq!(hub.total_served(), total(&fs));

    cfg.include = vec!["*.gguf".into()];
    let err = download(&cfg, &()).await.unwrap_err();
    assert_eq!(err.kind(), "not_found");
    assert!(err.to_string().contains("--include"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_are_retried() {
    let hub = MockHub::start().await.unwrap();
    let fs = files(13);
    hub.commit(REPO, "main", &fs);
    hub.inject(BIG, Fault::Status(500));
    hub.inject(BIG, Fault::RateLimit(1));
    hub.inject(BIG, Fault::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = download(&config(&hub, dir.path()), &()).await.unwrap();
    assert_tree(&out.path, &fs);
    let statuses: Vec<u16> = hub.requests(BIG).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 429, 503, 200]);
    // Retry-After: 1 was honoured over the 10 ms backoff.
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connection_is_dropped_and_resumed() {
    let hub = MockHub::start().await.unwrap();
    let fs = files(14);
    hub.commit(REPO, "main", &fs);
    hub.inject(BIG, Fault::StallAfter(500_000));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&hub, dir.path());
    cfg.stall_timeout = Duration::from_millis(300);
    let out = download(&cfg, &()).await.unwrap();
    assert_tree(&out.path, &fs);
    let reqs = hub.requests(BIG);
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].range_start, Some(500_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_keeps_failing_gives_up_with_network() {
    let hub = MockHub::start().await.unwrap();
    hub.commit(REPO, "main", &files(15));
    for _ in 0..3 {
        hub.inject(BIG, Fault::Status(502));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&hub, dir.path());
    cfg.max_retries = 2;
    let err = download(&cfg, &()).await.unwrap_err();
    assert_eq!(err.kind(), "network");
    assert!(err.to_string().contains("running again resumes"), "{err}");

    let mut cfg = config(&hub, dir.path());
    cfg.endpoint = "http://127.0.0.1:9".into(); // nothing listens on the discard port
    cfg.max_retries = 1;
    let err = download(&cfg, &()).await.unwrap_err();
    assert_eq!(err.kind(), "network");
    assert!(err.to_string().contains("HF_ENDPOINT"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_bounded_by_the_size_they_should_have() {
    // An endless file body stops at the file's size: nothing is written past it.
    let hub = MockHub::start().await.unwrap();
    let fs = files(16);
    hub.commit(REPO, "main", &fs);
    hub.inject(BIG, Fault::Endless);
    let dir = tempfile::tempdir().unwrap();
    let err = download(&config(&hub, dir.path()), &()).await.unwrap_err();
    assert_eq!(err.kind(), "integrity", "{err}");
    assert!(err.to_string().contains("more than the"), "{err}");
    let big_len = fs.iter().find(|(p, _)| *p == BIG).unwrap().1.content.len() as u64;
    let written: u64 = walk_sizes(dir.path());
    assert!(
        written <= total(&fs),
        "{written} bytes on disk, files hold {}",
        total(&fs)
    );
    assert!(
        hub.served(BIG) < big_len + (64 << 20),
        "the client kept reading"
    );

    // An endless 5xx body is read only up to the error-body cap, then retried.
    let hub = MockHub::start().await.unwrap();
    let fs = files(17);
    hub.commit(REPO, "main", &fs);
    hub.inject(BIG, Fault::EndlessStatus(500));
    let dir = tempfile::tempdir().unwrap();
    let out = download(&config(&hub, dir.path()), &()).await.unwrap();
    assert_tree(&out.path, &fs);
    let statuses: Vec<u16> = hub.requests(BIG).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 200]);
}

fn walk_sizes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            walk_sizes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

#[test]
fn dir_paths_are_per_commit() {
    // Guard the contract's layout: <dir>/<sha>/ and the manifest name.
    assert_eq!(MANIFEST_FILE, ".glm-download.json");
    let _: PathBuf = PathBuf::from("/models/OWNER--NAME")
        .join("0".repeat(40))
        .join(MANIFEST_FILE);
}
