//! The completion marker `<dir>/<sha>/.glm-download.json`: written last, by rename, so a
//! reader that sees it can trust every listed file is present and verified.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::DownloadError;

/// Name of the manifest inside the commit directory.
pub const MANIFEST_FILE: &str = ".glm-download.json";

/// Proof that a commit directory is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of this file.
    pub format: u32,
    /// `owner/name`.
    pub repo: String,
    /// The revision as asked for (branch, tag or sha) when the manifest was last written.
    pub revision: String,
    /// The commit sha the files belong to.
    pub commit: String,
    /// The `--include` globs the listed files were selected with; empty means all files.
    pub include: Vec<String>,
    /// Every verified file, sorted by path.
    pub files: Vec<ManifestFile>,
    /// Sum of the file sizes.
    pub bytes: u64,
    /// RFC 3339 UTC time the directory was marked complete.
    pub completed_at: String,
}

/// One verified file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the commit directory, `/`-separated as on the hub.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the content, lowercase hex.
    pub sha256: String,
}

impl Manifest {
    pub(crate) const FORMAT: u32 = 1;

    pub(crate) fn new(
        repo: &str,
        revision: &str,
        commit: &str,
        include: Vec<String>,
        mut files: Vec<ManifestFile>,
    ) -> Self {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files.dedup_by(|a, b| a.path == b.path);
        Self {
            format: Self::FORMAT,
            repo: repo.to_string(),
            revision: revision.to_string(),
            commit: commit.to_string(),
            include,
            bytes: files.iter().map(|f| f.size).sum(),
            files,
            completed_at: rfc3339_utc(SystemTime::now()),
        }
    }

    /// Files by path.
    pub(crate) fn by_path(&self) -> BTreeMap<&str, &ManifestFile> {
        self.files.iter().map(|f| (f.path.as_str(), f)).collect()
    }
}

/// Reads the manifest of a commit directory; `Ok(None)` when the directory is not complete.
pub fn read_manifest(commit_dir: &Path) -> Result<Option<Manifest>, DownloadError> {
    let path = commit_dir.join(MANIFEST_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DownloadError::Io { path, source: e }),
    };
    match serde_json::from_slice::<Manifest>(&bytes) {
        Ok(m) if m.format == Manifest::FORMAT => Ok(Some(m)),
        // A manifest we cannot read proves nothing: treat the directory as incomplete so the
        // files get re-verified and the manifest rewritten.
        Ok(m) => {
            tracing::warn!(path = %path.display(), format = m.format, "unknown manifest format; re-verifying");
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable manifest; re-verifying");
            Ok(None)
        }
    }
}

/// Checks that every listed file exists with its recorded size. Returns the paths that do
/// not (missing, truncated, replaced).
pub(crate) fn size_mismatches(commit_dir: &Path, files: &[&ManifestFile]) -> Vec<String> {
    files
        .iter()
        .filter(|f| {
            let path = commit_dir.join(&f.path);
            !matches!(std::fs::metadata(&path), Ok(m) if m.is_file() && m.len() == f.size)
        })
        .map(|f| f.path.clone())
        .collect()
}

/// Removes the manifest so the directory reads as incomplete while it is repaired.
pub(crate) fn remove(commit_dir: &Path) -> Result<(), DownloadError> {
    let path = commit_dir.join(MANIFEST_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(commit_dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DownloadError::Io { path, source: e }),
    }
}

/// Writes the manifest durably: temp file, fsync, rename over the final name, fsync the dir.
pub(crate) fn write_atomic(
    commit_dir: &Path,
    manifest: &Manifest,
) -> Result<PathBuf, DownloadError> {
    let path = commit_dir.join(MANIFEST_FILE);
    let tmp = commit_dir.join(format!("{MANIFEST_FILE}.tmp"));
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| DownloadError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| DownloadError::io(&tmp, e, json.len() as u64))?;
    sync_dir(commit_dir)?;
    Ok(path)
}

/// fsync a directory so renames inside it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), DownloadError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| DownloadError::Io {
            path: dir.to_path_buf(),
            source: e,
        })
}

/// RFC 3339 in UTC with second precision, without pulling in a date crate.
pub(crate) fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56 UTC
        assert_eq!(rfc3339_utc(t), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn manifest_roundtrip_and_size_check() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.bin"), b"abc").unwrap();
        let files = vec![ManifestFile {
            path: "a.bin".into(),
            size: 3,
            sha256: "x".into(),
        }];
        let m = Manifest::new("o/m", "main", &"a".repeat(40), vec![], files);
        write_atomic(dir.path(), &m).unwrap();
        let back = read_manifest(dir.path()).unwrap().unwrap();
        assert_eq!(back, m);
        assert_eq!(back.bytes, 3);
        assert!(size_mismatches(dir.path(), &back.files.iter().collect::<Vec<_>>()).is_empty());
        std::fs::write(dir.path().join("a.bin"), b"ab").unwrap();
        assert_eq!(
            size_mismatches(dir.path(), &back.files.iter().collect::<Vec<_>>()),
            ["a.bin"]
        );
        std::fs::write(dir.path().join(MANIFEST_FILE), b"{not json").unwrap();
        assert!(read_manifest(dir.path()).unwrap().is_none());
    }
}
