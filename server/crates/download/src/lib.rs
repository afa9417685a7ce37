//! Pinned, verified, resumable model download from a Hugging Face Hub compatible server.
//!
//! A revision is resolved to its commit sha first; that commit's files land in
//! `<dir>/<sha>/` through `.part` files that are resumed with HTTP ranges, verified against the
//! hub's sha256 (LFS) or git blob id and size (other files), and renamed only when verified.
//! The directory is complete only once `<dir>/<sha>/.glm-download.json` exists, written last by
//! atomic rename. See docs/contract.md for the command line and output the operator relies on.

pub mod cli;
mod config;
mod download;
mod error;
mod hub;
mod lock;
mod manifest;
mod plan;
mod progress;
mod retry;
mod transfer;

pub use config::{DownloadConfig, DEFAULT_ENDPOINT};
pub use download::{download, DownloadOutcome};
pub use error::DownloadError;
pub use hub::cached_token;
pub use manifest::{read_manifest, Manifest, ManifestFile, MANIFEST_FILE};
pub use progress::{ProgressSink, ProgressSnapshot, ResolvedInfo};
