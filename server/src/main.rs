//! `glm-server`: serve a GLM model over an OpenAI-compatible API, or download one.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use glm_server::{config::ServeArgs, serve, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "glm-server",
    version,
    about = "Inference server for the GLM-4.5 model family"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a model over HTTP (OpenAI-compatible).
    Serve(Box<ServeArgs>),
    /// Download a pinned model revision from a Hugging Face compatible hub.
    Download(glm_download::cli::DownloadArgs),
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("glm-server {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Serve(args) => {
            telemetry::init(args.log_format);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the async runtime");
                    return ExitCode::FAILURE;
                }
            };
            if let Some(scope) = args.check {
                // --check: one line on stdout, the reason on stderr, 0 or 2.
                return match runtime.block_on(serve::check(&args, scope)) {
                    Ok(line) => {
                        println!("{line}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("glm-server: {} ({})", e, e.kind());
                        ExitCode::from(2)
                    }
                };
            }
            let result = runtime.block_on(serve::run(*args));
            // A tokenization still running on the blocking pool is not waited for: the
            // drain budget is over.
            runtime.shutdown_timeout(std::time::Duration::from_millis(200));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(kind = e.kind(), error = %e, "glm-server serve failed");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Download(args) => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(glm_download::cli::run(args)),
            Err(e) => {
                eprintln!("cannot start the async runtime: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
