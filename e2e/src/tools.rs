//! Locating the optional command-line tools (helm, kubectl). Tests that need one skip with a
//! message when it is missing, unless `GLM_REQUIRE_TOOLS=1` (set by `.ci/helm-check.sh`,
//! which installs them) turns the absence into a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tool the offline checks can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Helm,
    Kubectl,
}

impl Tool {
    /// Binary name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Helm => "helm",
            Self::Kubectl => "kubectl",
        }
    }

    /// Environment variable that names the binary explicitly.
    pub fn env_var(self) -> &'static str {
        match self {
            Self::Helm => "GLM_HELM",
            Self::Kubectl => "GLM_KUBECTL",
        }
    }

    /// Does `path --version`-style probing say this binary is usable? helm must be v3 or v4
    /// (v2 has another template engine); any kubectl with kustomize built in will do.
    fn usable(self, path: &Path) -> bool {
        let out = match self {
            Self::Helm => Command::new(path).args(["version", "--short"]).output(),
            Self::Kubectl => Command::new(path).args(["version", "--client"]).output(),
        };
        let Ok(out) = out else { return false };
        let text = String::from_utf8_lossy(&out.stdout);
        out.status.success()
            && match self {
                Self::Helm => text.starts_with("v3.") || text.starts_with("v4."),
                Self::Kubectl => text.contains("Kustomize Version"),
            }
    }
}

/// Finds `tool`: `$GLM_HELM`/`$GLM_KUBECTL` first, then `<workspace>/.tools/bin` (where
/// `.ci/helm-check.sh` installs them), then `PATH`.
pub fn find(tool: Tool) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(tool.env_var()) {
        let p = PathBuf::from(p);
        return tool.usable(&p).then_some(p);
    }
    let local = crate::workspace_root()
        .join(".tools")
        .join("bin")
        .join(tool.name());
    if local.is_file() && tool.usable(&local) {
        return Some(local);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool.name()))
        .find(|p| p.is_file() && tool.usable(p))
}

/// `GLM_REQUIRE_TOOLS=1`: a missing tool fails the test instead of skipping it.
pub fn required() -> bool {
    std::env::var("GLM_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// The tool for a test, or `None` after printing why the test is skipped. Panics when the
/// tool is missing and [`required`] is set: CI installed it, so absence is a bug there.
pub fn for_test(tool: Tool, test: &str) -> Option<PathBuf> {
    match find(tool) {
        Some(p) => Some(p),
        None if required() => panic!(
            "{test}: {} not found but GLM_REQUIRE_TOOLS=1 (set {} or install it into .tools/bin with `bash .ci/helm-check.sh`)",
            tool.name(),
            tool.env_var()
        ),
        None => {
            println!(
                "SKIP {test}: {} not found (set {} or run `bash .ci/helm-check.sh`, which installs it into .tools/bin)",
                tool.name(),
                tool.env_var()
            );
            None
        }
    }
}
