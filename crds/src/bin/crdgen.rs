//! Prints the GlmDeployment CRD as YAML: `cargo run -p glm-crds --bin crdgen > crds/glmdeployment.yaml`.

fn main() -> std::process::ExitCode {
    match glm_crds::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crdgen: cannot render the CRD: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
