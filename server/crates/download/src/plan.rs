//! Which files of a commit to fetch, and where they go on disk. Repo paths come from the
//! network, so each is checked before it is joined to the target directory.

use std::path::{Path, PathBuf};

use glob::{MatchOptions, Pattern};

use crate::error::DownloadError;
use crate::hub::RemoteFile;
use crate::manifest::MANIFEST_FILE;

/// Suffix of in-progress files; a file only gets its real name once verified.
pub(crate) const PART_SUFFIX: &str = ".part";
/// Advisory lock file inside the commit directory.
pub(crate) const LOCK_FILE: &str = ".lock";

/// One file to make present and verified.
#[derive(Debug, Clone)]
pub(crate) struct PlannedFile {
    pub remote: RemoteFile,
    pub final_path: PathBuf,
    pub part_path: PathBuf,
}

/// fnmatch semantics like the hf CLI: `*` also matches `/`.
const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: false,
    require_literal_leading_dot: false,
};

pub(crate) fn compile_globs(include: &[String]) -> Result<Vec<Pattern>, DownloadError> {
    include
        .iter()
        .map(|g| {
            Pattern::new(g).map_err(|e| {
                DownloadError::InvalidArgument(format!("--include {g:?} is not a valid glob: {e}"))
            })
        })
        .collect()
}

pub(crate) fn matches(globs: &[Pattern], path: &str) -> bool {
    globs.is_empty() || globs.iter().any(|g| g.matches_with(path, MATCH))
}

/// Selects the files matching `include` and maps them under `commit_dir`, biggest first so
/// the longest transfers start early and the parallel tail is short.
pub(crate) fn plan(
    files: &[RemoteFile],
    include: &[String],
    commit_dir: &Path,
) -> Result<Vec<PlannedFile>, DownloadError> {
    let globs = compile_globs(include)?;
    let mut planned = Vec::new();
    for remote in files.iter().filter(|f| matches(&globs, &f.path)) {
        let rel = safe_relative_path(&remote.path)?;
        let final_path = commit_dir.join(&rel);
        let mut part = final_path.clone().into_os_string();
        part.push(PART_SUFFIX);
        planned.push(PlannedFile {
            remote: remote.clone(),
            final_path,
            part_path: PathBuf::from(part),
        });
    }
    planned.sort_by(|a, b| {
        b.remote
            .size
            .unwrap_or(0)
            .cmp(&a.remote.size.unwrap_or(0))
            .then_with(|| a.remote.path.cmp(&b.remote.path))
    });
    Ok(planned)
}

/// Rejects paths that would escape the commit directory or collide with our own files.
pub(crate) fn safe_relative_path(path: &str) -> Result<PathBuf, DownloadError> {
    let unsafe_path = |why: &str| {
        Err(DownloadError::Integrity(format!(
            "the hub listed a file named {path:?}, which {why}; refusing to write it"
        )))
    };
    if path.is_empty() || path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return unsafe_path("is not a relative path");
    }
    let mut out = PathBuf::new();
    for seg in path.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return unsafe_path("has an empty, '.' or '..' segment");
        }
        out.push(seg);
    }
    if path == MANIFEST_FILE || path == LOCK_FILE || path.ends_with(PART_SUFFIX) {
        return unsafe_path("collides with the downloader's own bookkeeping files");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rf(path: &str, size: u64) -> RemoteFile {
        RemoteFile {
            path: path.into(),
            size: Some(size),
            sha256: None,
            blob_sha1: None,
        }
    }

    #[test]
    fn globs_filter_like_fnmatch_and_order_by_size() {
        let files = [
            rf("config.json", 10),
            rf("a/model.safetensors", 100),
            rf("b.safetensors", 200),
            rf("README.md", 1),
        ];
        let p = plan(
            &files,
            &["*.safetensors".into(), "config.json".into()],
            Path::new("/d"),
        )
        .unwrap();
        let names: Vec<_> = p.iter().map(|f| f.remote.path.as_str()).collect();
        assert_eq!(
            names,
            ["b.safetensors", "a/model.safetensors", "config.json"]
        );
        assert_eq!(p[1].final_path, Path::new("/d/a/model.safetensors"));
        assert_eq!(p[1].part_path, Path::new("/d/a/model.safetensors.part"));
        assert_eq!(plan(&files, &[], Path::new("/d")).unwrap().len(), 4);
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            "../x",
            "/etc/passwd",
            "a//b",
            "a/./b",
            ".glm-download.json",
            "x.part",
            "",
        ] {
            let e = safe_relative_path(bad).unwrap_err();
            assert_eq!(e.kind(), "integrity", "{bad}");
        }
        assert!(safe_relative_path("a/b.json").is_ok());
    }
}
