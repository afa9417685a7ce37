//! `glm-server download`: flags, environment, progress output and the termination message,
//! exactly as docs/contract.md describes them.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::config::{DownloadConfig, DEFAULT_ENDPOINT};
use crate::error::DownloadError;
use crate::progress::{ProgressSink, ProgressSnapshot, ResolvedInfo};
use crate::{download, DownloadOutcome};

/// Kubernetes keeps at most 4096 bytes of a termination message.
const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// Flags of `glm-server download`.
#[derive(Debug, Clone, clap::Args)]
pub struct DownloadArgs {
    /// Model repo, OWNER/NAME.
    #[arg(long)]
    pub repo: String,
    /// Branch, tag or commit sha; resolved to a commit sha before downloading.
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Parent directory; files land in DIR/<commit-sha>/.
    #[arg(long)]
    pub dir: PathBuf,
    /// Only files matching this glob (fnmatch, `*` matches `/`); repeatable.
    #[arg(long = "include", value_name = "GLOB")]
    pub include: Vec<String>,
    /// Hub base URL.
    #[arg(long, env = "HF_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub hub_endpoint: String,
    /// File holding the hub token (wins over HF_TOKEN and the hf CLI's stored token).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Where to write the JSON result for Kubernetes (e.g. /dev/termination-log).
    #[arg(long)]
    pub termination_message_path: Option<PathBuf>,
    /// Files downloaded at once.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// Drop and retry a connection that delivers no byte for this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// Consecutive attempts without progress before a request is given up.
    #[arg(long, default_value_t = 10)]
    pub max_retries: u32,
    /// Milliseconds between progress reports.
    #[arg(long, default_value_t = 1000)]
    pub progress_interval_ms: u64,
}

impl DownloadArgs {
    /// Builds the library config. Token precedence: `--token-file`, then `HF_TOKEN`, then the
    /// token the hf CLI stored (`$HF_HOME/token`).
    pub fn to_config(&self) -> Result<DownloadConfig, DownloadError> {
        let token = match &self.token_file {
            Some(path) => read_token_file(path)?,
            None => std::env::var("HF_TOKEN")
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .or_else(crate::hub::cached_token),
        };
        let mut config = DownloadConfig::new(self.repo.clone(), self.dir.clone());
        config.revision = self.revision.clone();
        config.include = self.include.clone();
        config.endpoint = self.hub_endpoint.clone();
        config.token = token;
        config.parallel = self.parallel;
        config.stall_timeout = Duration::from_secs(self.timeout_secs);
        config.max_retries = self.max_retries;
        config.progress_interval = Duration::from_millis(self.progress_interval_ms.max(1));
        config.validate()?;
        Ok(config)
    }
}

fn read_token_file(path: &Path) -> Result<Option<String>, DownloadError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        DownloadError::InvalidArgument(format!(
            "--token-file {}: {e}; mount the token Secret there or drop the flag",
            path.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(DownloadError::InvalidArgument(format!(
            "--token-file {} is empty; put the hub token in it",
            path.display()
        )));
    }
    Ok(Some(token.to_string()))
}

/// Entry point of `glm-server download`: a progress bar on a terminal, JSON lines otherwise.
pub async fn run(args: DownloadArgs) -> ExitCode {
    let terminal = std::io::stdout().is_terminal();
    init_tracing(terminal);
    if terminal {
        execute(&args, &TerminalSink::new()).await
    } else {
        run_json(args, Box::new(std::io::stdout())).await
    }
}

/// Like [`run`], always writing JSON lines to `out` (for embedding and tests).
pub async fn run_json(args: DownloadArgs, out: Box<dyn Write + Send>) -> ExitCode {
    execute(&args, &JsonLines(Mutex::new(out))).await
}

async fn execute(args: &DownloadArgs, sink: &dyn ProgressSink) -> ExitCode {
    let result = match args.to_config() {
        Ok(config) => download(&config, sink).await,
        Err(e) => Err(e),
    };
    let (message, code) = match &result {
        Ok(o) => (
            json!({"commit": o.commit, "path": o.path.display().to_string(), "bytes": o.bytes}),
            ExitCode::SUCCESS,
        ),
        Err(e) => {
            tracing::error!(kind = e.kind(), "{e}");
            eprintln!("error ({}): {e}", e.kind());
            (error_message(e), ExitCode::from(e.exit_code()))
        }
    };
    if let Some(path) = &args.termination_message_path {
        if let Err(e) = std::fs::write(path, message.to_string()) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the termination message");
        }
    }
    code
}

/// `{"error": kind, "message": ...}`, the message cut to fit the Kubernetes limit.
fn error_message(e: &DownloadError) -> serde_json::Value {
    let mut text = e.to_string();
    // Leave room for the JSON envelope and escapes.
    let budget = TERMINATION_MESSAGE_LIMIT - 256;
    if text.len() > budget {
        let mut cut = budget;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    json!({"error": e.kind(), "message": text})
}

fn init_tracing(terminal: bool) {
    let default = if terminal { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // The server binary may have installed a subscriber already; that one wins.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// One JSON object per line, as the operator parses them.
struct JsonLines(Mutex<Box<dyn Write + Send>>);

impl JsonLines {
    fn line(&self, value: serde_json::Value) {
        if let Ok(mut out) = self.0.lock() {
            // A closed stdout must not fail the download; the termination message still reports.
            let _ = writeln!(out, "{value}").and_then(|()| out.flush());
        }
    }
}

impl ProgressSink for JsonLines {
    fn progress(&self, s: &ProgressSnapshot) {
        self.line(json!({
            "event": "progress",
            "bytes_done": s.bytes_done,
            "bytes_total": s.bytes_total,
            "rate_bytes_per_s": s.rate_bytes_per_s,
            "eta_seconds": s.eta_seconds,
        }));
    }

    fn complete(&self, o: &DownloadOutcome) {
        self.line(json!({
            "event": "complete",
            "commit": o.commit,
            "path": o.path.display().to_string(),
            "bytes": o.bytes,
        }));
    }
}

/// An indicatif bar on stderr, and a summary line on stdout.
struct TerminalSink {
    bar: ProgressBar,
}

impl TerminalSink {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self { bar }
    }
}

impl ProgressSink for TerminalSink {
    fn resolved(&self, info: &ResolvedInfo) {
        self.bar.set_length(info.bytes_total);
        self.bar.set_message(format!(
            "{} files of {}",
            info.files,
            &info.commit[..info.commit.len().min(12)]
        ));
    }

    fn progress(&self, s: &ProgressSnapshot) {
        self.bar.set_length(s.bytes_total);
        self.bar.set_position(s.bytes_done);
    }

    fn complete(&self, o: &DownloadOutcome) {
        self.bar.finish_and_clear();
        println!(
            "{} {} ({} bytes, {} files) in {}",
            if o.already_complete {
                "already complete:"
            } else {
                "downloaded"
            },
            o.commit,
            o.bytes,
            o.files.len(),
            o.path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DownloadArgs,
    }

    #[test]
    fn flags_parse_with_defaults() {
        let cli = Cli::try_parse_from([
            "x",
            "--repo",
            "zai-org/GLM-4.5-Air",
            "--dir",
            "/models/zai-org--GLM-4.5-Air",
            "--include",
            "*.json",
            "--include",
            "*.safetensors",
            "--hub-endpoint",
            "http://127.0.0.1:1",
        ])
        .unwrap();
        assert_eq!(cli.args.revision, "main");
        assert_eq!(cli.args.include, ["*.json", "*.safetensors"]);
        assert_eq!(cli.args.parallel, 8);
        let config = cli.args.to_config().unwrap();
        assert_eq!(config.endpoint, "http://127.0.0.1:1");
        assert_eq!(config.stall_timeout, Duration::from_secs(60));
    }

    #[test]
    fn token_file_wins_and_must_be_readable() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "hf_abc\n").unwrap();
        let mut cli = Cli::try_parse_from(
            ["x", "--repo", "o/m", "--dir", "/d", "--token-file"]
                .into_iter()
                .chain([token.to_str().unwrap()]),
        )
        .unwrap();
        assert_eq!(
            cli.args.to_config().unwrap().token.as_deref(),
            Some("hf_abc")
        );
        cli.args.token_file = Some(dir.path().join("missing"));
        let e = cli.args.to_config().unwrap_err();
        assert_eq!(e.kind(), "invalid_argument");
        assert!(e.to_string().contains("--token-file"));
    }

    #[test]
    fn error_message_fits_the_kubernetes_limit() {
        let e = DownloadError::Network("x".repeat(10_000));
        let v = error_message(&e);
        assert_eq!(v["error"], "network");
        assert!(v.to_string().len() <= TERMINATION_MESSAGE_LIMIT);
    }
}
