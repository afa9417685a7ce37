//! GLM-4.7-Flash (Glm4MoeLite) is served with the glm47 tool parser and glm45 reasoning
//! parser unless the flags say otherwise; Glm4Moe assumes nothing.

use std::path::PathBuf;

use clap::Parser;
use glm_server::{config::ServeArgs, serve};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
        .display()
        .to_string()
}

fn args(model: &str, extra: &[&str]) -> ServeArgs {
    let mut v = vec!["glm-server", "--model", model, "--kv-cache-memory", "64MiB"];
    v.extend_from_slice(extra);
    Cli::parse_from(v).serve
}

#[tokio::test]
async fn glm47_flash_defaults_to_its_parsers_and_explicit_flags_win() {
    let lite = fixture("glm4moelite-tiny");
    let p = serve::prepare(&args(&lite, &["--enable-auto-tool-choice"]))
        .await
        .expect("auto tool choice works without a parser flag for GLM-4.7-Flash");
    let cfg = p.state.config();
    assert_eq!(cfg.tool_call_parser.as_deref(), Some("glm47"));
    assert_eq!(cfg.reasoning_parser.as_deref(), Some("glm45"));

    let p = serve::prepare(&args(&lite, &["--tool-call-parser", "glm45"]))
        .await
        .unwrap();
    assert_eq!(p.state.config().tool_call_parser.as_deref(), Some("glm45"));
}

#[tokio::test]
async fn glm4moe_needs_an_explicit_parser_for_auto_tool_choice() {
    let moe = fixture("glm4moe-tiny");
    let err = serve::prepare(&args(&moe, &["--enable-auto-tool-choice"]))
        .await
        .err()
        .expect("no default tool parser for Glm4Moe");
    assert!(err.to_string().contains("enable-auto-tool-choice"), "{err}");
    let p = serve::prepare(&args(&moe, &[])).await.unwrap();
    assert_eq!(p.state.config().tool_call_parser, None);
}
