//! Logging: JSON lines when stdout is not a terminal (in a pod), readable text otherwise.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::LogFormat;

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests) keeps the first subscriber; that is not an error worth reporting.
    let _ = if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()
    } else {
        // Colour codes only on a terminal: piped or collected logs stay plain text.
        registry
            .with(fmt::layer().with_ansi(std::io::stdout().is_terminal()))
            .try_init()
    };
}
