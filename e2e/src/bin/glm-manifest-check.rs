//! Type-checks rendered Kubernetes manifests offline: every object in the given YAML files
//! (or stdin with `-`) must parse as the Kubernetes type its apiVersion/kind names, with no
//! unknown field; GlmDeployments must also pass the CRD schema and its CEL rules.
//!
//! `helm template charts/glm-operator | cargo run -p glm-e2e --bin glm-manifest-check -- -`
//! Exit status: 0 all objects valid, 1 any invalid, 2 usage or I/O error.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use glm_e2e::manifest;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("usage: glm-manifest-check FILE.yaml... (or - for stdin)");
        return ExitCode::from(2);
    }
    let mut failed = 0usize;
    let mut checked = 0usize;
    for arg in &args {
        let label = if arg == "-" { "stdin" } else { arg.as_str() };
        let docs = if arg == "-" {
            let mut text = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                eprintln!("stdin: {e}");
                return ExitCode::from(2);
            }
            manifest::parse_documents("stdin", &text)
        } else {
            manifest::read_documents(Path::new(arg))
        };
        let docs = match docs {
            Ok(d) => d,
            Err(e) => {
                eprintln!("FAIL {label}: [{}] {e}", e.kind());
                failed += 1;
                continue;
            }
        };
        let (ok, errors) = manifest::check_all(&docs);
        for id in &ok {
            println!("ok   {label}: {id}");
        }
        for e in &errors {
            println!("FAIL {label}: [{}] {e}", e.kind());
        }
        checked += ok.len() + errors.len();
        failed += errors.len();
    }
    println!("checked {checked} objects, {failed} invalid");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
