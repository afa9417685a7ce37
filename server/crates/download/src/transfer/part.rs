//! The `.part` file of one transfer: appends with running digests, so the content is hashed
//! once as it streams in; a resumed file re-hashes its prefix from disk (local reads are far
//! cheaper than re-downloading).

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use super::Counters;

use bytes::Bytes;

/// What the hub says a file must be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Expected {
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub blob_sha1: Option<String>,
}

/// What the bytes on disk turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Digests {
    pub size: u64,
    pub sha256: String,
    pub blob_sha1: Option<String>,
}

impl Expected {
    /// Ok when every declared property matches; otherwise says which one differs.
    pub(crate) fn check(&self, got: &Digests) -> Result<(), String> {
        if let Some(size) = self.size {
            if size != got.size {
                return Err(format!(
                    "size is {} bytes, the hub declares {size}",
                    got.size
                ));
            }
        }
        if let Some(sha) = &self.sha256 {
            if *sha != got.sha256 {
                return Err(format!("sha256 is {}, the hub declares {sha}", got.sha256));
            }
        }
        if let (Some(want), Some(have)) = (&self.blob_sha1, &got.blob_sha1) {
            if want != have {
                return Err(format!("git blob id is {have}, the hub declares {want}"));
            }
        }
        Ok(())
    }
}

/// Running digests over a byte stream. Detached from the part file during a transfer so
/// hashing runs on its own thread, in parallel with the disk writes.
pub(crate) struct Hashers {
    sha256: Sha256,
    /// git blob sha1 = sha1("blob <size>\0" + content); needs the size up front.
    blob: Option<Sha1>,
}

impl Hashers {
    fn new(expected: &Expected) -> Self {
        let blob = match (&expected.blob_sha1, expected.size) {
            (Some(_), Some(size)) => {
                let mut h = Sha1::new();
                h.update(format!("blob {size}\0").as_bytes());
                Some(h)
            }
            _ => None,
        };
        Self {
            sha256: Sha256::new(),
            blob,
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        if let Some(b) = &mut self.blob {
            b.update(data);
        }
    }

    fn finish(self, size: u64) -> Digests {
        Digests {
            size,
            sha256: hex::encode(self.sha256.finalize()),
            blob_sha1: self.blob.map(|b| hex::encode(b.finalize())),
        }
    }
}

/// Hashes an existing file (a verified file left by a run that died before its manifest).
pub(crate) fn hash_file(path: &Path, expected: &Expected) -> std::io::Result<Digests> {
    let mut file = File::open(path)?;
    let mut hashers = Hashers::new(expected);
    let size = feed(&mut file, &mut hashers, u64::MAX)?;
    Ok(hashers.finish(size))
}

fn feed(file: &mut File, hashers: &mut Hashers, limit: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    while total < limit {
        let want = usize::try_from((limit - total).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        hashers.update(&buf[..n]);
        total += n as u64;
    }
    Ok(total)
}

/// An in-progress file. Every byte appended is counted in `counters.done`, and uncounted
/// again when discarded, so progress never double-counts a retried range.
pub(crate) struct PartFile {
    path: PathBuf,
    file: File,
    len: u64,
    hashers: Hashers,
    expected: Expected,
    counters: Arc<Counters>,
}

impl PartFile {
    /// Opens or creates the part file and hashes what an earlier run left in it.
    pub(crate) fn open(
        path: &Path,
        expected: &Expected,
        counters: Arc<Counters>,
    ) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut len = file.metadata()?.len();
        if expected.size.is_some_and(|size| len > size) {
            // Longer than the real file: it cannot be a prefix of it.
            file.set_len(0)?;
            len = 0;
        }
        let mut hashers = Hashers::new(expected);
        let hashed = feed(&mut file, &mut hashers, len)?;
        if hashed != len {
            // Shrunk under us (another writer would hold the dir lock, so this is external
            // tampering): start clean rather than trust a half-read prefix.
            file.set_len(0)?;
            hashers = Hashers::new(expected);
            len = 0;
        }
        file.seek(SeekFrom::Start(len))?;
        counters.done.fetch_add(len, Ordering::Relaxed);
        Ok(Self {
            path: path.to_path_buf(),
            file,
            len,
            hashers,
            expected: expected.clone(),
            counters,
        })
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Digest expectations may be learned from response headers after opening; the blob
    /// hasher needs them before the first byte, so this is only valid while empty.
    pub(crate) fn set_expected(&mut self, expected: &Expected) {
        if self.len == 0 && *expected != self.expected {
            self.expected = expected.clone();
            self.hashers = Hashers::new(expected);
        }
    }

    #[cfg(test)]
    pub(crate) fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.write_batch(&[Bytes::copy_from_slice(data)])?;
        self.hashers.update(data);
        Ok(())
    }

    /// Writes a batch with as few syscalls as possible (one `writev` for ~1 MiB of network
    /// chunks, no copy into a buffer). Hashing is the caller's job: see [`Self::take_hashers`].
    pub(crate) fn write_batch(&mut self, batch: &[Bytes]) -> std::io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        let mut written = 0u64;
        while !rest.is_empty() {
            match self.file.write_vectored(rest) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n as u64;
                    self.len += n as u64;
                    self.counters.done.fetch_add(n as u64, Ordering::Relaxed);
                    IoSlice::advance_slices(&mut rest, n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        debug_assert_eq!(written, batch.iter().map(|b| b.len() as u64).sum::<u64>());
        Ok(())
    }

    /// Moves the running digests out, for a hashing thread to feed the same bytes.
    pub(crate) fn take_hashers(&mut self) -> Hashers {
        std::mem::replace(&mut self.hashers, Hashers::new(&self.expected))
    }

    /// Puts the digests back once the hashing thread has seen exactly the written bytes.
    pub(crate) fn restore_hashers(&mut self, hashers: Hashers) {
        self.hashers = hashers;
    }

    /// Drops the content (server ignored our range, or answered a different one).
    pub(crate) fn reset(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.counters.done.fetch_sub(self.len, Ordering::Relaxed);
        self.len = 0;
        self.hashers = Hashers::new(&self.expected);
        Ok(())
    }

    /// Fsyncs, returning the digests of the whole content.
    pub(crate) fn finish(self) -> std::io::Result<Digests> {
        self.file.sync_all()?;
        Ok(self.hashers.finish(self.len))
    }

    /// Deletes the file after a failed verification.
    pub(crate) fn discard(path: &Path, counted: u64, counters: &Counters) -> std::io::Result<()> {
        counters.done.fetch_sub(counted, Ordering::Relaxed);
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_blob_sha1(data: &[u8]) -> String {
        let mut h = Sha1::new();
        h.update(format!("blob {}\0", data.len()).as_bytes());
        h.update(data);
        hex::encode(h.finalize())
    }

    #[test]
    fn resumed_part_hashes_like_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.part");
        let data = b"hello, resumable world".repeat(1000);
        let expected = Expected {
            size: Some(data.len() as u64),
            sha256: Some(hex::encode(Sha256::digest(&data))),
            blob_sha1: Some(git_blob_sha1(&data)),
        };
        let counters = Arc::new(Counters::default());
        let mut p = PartFile::open(&path, &expected, counters.clone()).unwrap();
        p.append(&data[..5000]).unwrap();
        drop(p);
        let mut p = PartFile::open(&path, &expected, counters.clone()).unwrap();
        assert_eq!(p.len(), 5000);
        p.append(&data[5000..]).unwrap();
        let d = p.finish().unwrap();
        assert_eq!(expected.check(&d), Ok(()));
        assert_eq!(
            counters.done.load(Ordering::Relaxed),
            5000 + data.len() as u64
        );
        assert_eq!(hash_file(&path, &expected).unwrap(), d);
    }

    #[test]
    fn check_reports_the_mismatch() {
        let e = Expected {
            size: Some(3),
            sha256: Some("00".into()),
            blob_sha1: None,
        };
        let got = Digests {
            size: 3,
            sha256: "11".into(),
            blob_sha1: None,
        };
        assert!(e.check(&got).unwrap_err().contains("sha256"));
        let got = Digests { size: 4, ..got };
        assert!(e.check(&got).unwrap_err().contains("size"));
    }

    #[test]
    fn oversized_part_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.part");
        std::fs::write(&path, b"too long").unwrap();
        let e = Expected {
            size: Some(3),
            ..Expected::default()
        };
        let p = PartFile::open(&path, &e, Arc::new(Counters::default())).unwrap();
        assert_eq!(p.len(), 0);
    }
}
