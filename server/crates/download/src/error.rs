//! The one error type of the crate. Every variant maps to a stable snake_case `kind()` that is
//! also the `error` field of the termination message the operator reads (docs/contract.md).

use std::path::PathBuf;

/// Why a download failed. Messages say what the user should do next.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// A flag or config value is unusable (bad repo id, unreadable token file, bad glob).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// 401/403 that is not a gated repo: missing, wrong or under-privileged token.
    #[error("{0}")]
    Unauthorized(String),

    /// The repo is gated and this token has not been granted access.
    #[error("{0}")]
    Gated(String),

    /// Unknown repo, revision or file.
    #[error("{0}")]
    NotFound(String),

    /// The target filesystem has no room left.
    #[error(
        "disk full writing under {}: {bytes_needed} more bytes are needed{}; free space or grow the volume, \
         then run again (completed bytes are kept)",
        path.display(),
        available.map(|a| format!(" ({a} available)")).unwrap_or_default()
    )]
    DiskFull {
        /// The directory or file that could not be written.
        path: PathBuf,
        /// Bytes still to be written for the download to complete.
        bytes_needed: u64,
        /// Free bytes reported by the filesystem, when known.
        available: Option<u64>,
    },

    /// The hub could not be reached or kept failing after all retries.
    #[error("{0}")]
    Network(String),

    /// Content did not match what the hub declared, even after re-fetching.
    #[error("{0}")]
    Integrity(String),

    /// A local filesystem operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl DownloadError {
    /// Stable tag used in the termination message, logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "invalid_argument",
            Self::Unauthorized(_) => "unauthorized",
            Self::Gated(_) => "gated",
            Self::NotFound(_) => "not_found",
            Self::DiskFull { .. } => "disk_full",
            Self::Network(_) => "network",
            Self::Integrity(_) => "integrity",
            Self::Io { .. } => "io",
        }
    }

    /// Process exit status of `glm-server download` (docs/contract.md): failures that a retry
    /// cannot fix have their own codes, so the operator's Job `podFailurePolicy` fails the Job
    /// at once instead of running its whole `backoffLimit`.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::InvalidArgument(_) => 2,
            Self::NotFound(_) => 3,
            Self::Unauthorized(_) => 4,
            Self::Gated(_) => 5,
            _ => 1,
        }
    }

    /// Wraps an I/O error, turning "no space left" / "quota exceeded" into [`DownloadError::DiskFull`].
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error, bytes_needed: u64) -> Self {
        let path = path.into();
        if is_disk_full(&source) {
            let available = path
                .parent()
                .filter(|p| p.exists())
                .and_then(|p| fs2::available_space(p).ok());
            Self::DiskFull {
                path,
                bytes_needed,
                available,
            }
        } else {
            Self::Io { path, source }
        }
    }
}

pub(crate) fn is_disk_full(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_becomes_disk_full_with_bytes_needed() {
        let err = DownloadError::io(
            "/nonexistent/x.part",
            std::io::Error::from(std::io::ErrorKind::StorageFull),
            1234,
        );
        assert_eq!(err.kind(), "disk_full");
        let msg = err.to_string();
        assert!(msg.contains("1234 more bytes"), "{msg}");
        assert!(msg.contains("free space"), "{msg}");
    }

    #[test]
    fn other_io_errors_stay_io() {
        let err = DownloadError::io(
            "/x",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            1,
        );
        assert_eq!(err.kind(), "io");
    }
}
