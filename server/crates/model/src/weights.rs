//! Safetensors checkpoints opened by mmap: one `model.safetensors` or shards listed in
//! `model.safetensors.index.json`. Tensors are converted once, at load, to f32 on the CPU.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::tensor::{Dtype, Metadata, SafeTensors};

use crate::batch::ModelError;

const SINGLE_FILE: &str = "model.safetensors";
const INDEX_FILE: &str = "model.safetensors.index.json";

struct Shard {
    path: PathBuf,
    mmap: Mmap,
    /// Byte offset of the data section (8-byte length + JSON header).
    data_start: usize,
    metadata: Metadata,
}

/// The tensors of a checkpoint directory, by name.
pub struct Checkpoint {
    shards: Vec<Shard>,
    /// Tensor name -> index into `shards`.
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field(
                "shards",
                &self.shards.iter().map(|s| &s.path).collect::<Vec<_>>(),
            )
            .field("tensors", &self.index.len())
            .finish()
    }
}

impl Checkpoint {
    /// Opens `dir/model.safetensors.index.json` (shards) or `dir/model.safetensors`.
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let index_path = dir.join(INDEX_FILE);
        let files: Vec<PathBuf> = if index_path.exists() {
            shard_files(&index_path)?
                .into_iter()
                .map(|f| dir.join(f))
                .collect()
        } else {
            vec![dir.join(SINGLE_FILE)]
        };
        let mut shards = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        for (i, path) in files.into_iter().enumerate() {
            let shard = open_shard(path)?;
            for name in shard.metadata.tensors().keys() {
                index.insert(name.clone(), i);
            }
            shards.push(shard);
        }
        Ok(Self { shards, index })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// File that holds `name`, for error messages.
    fn file_of(&self, name: &str) -> String {
        match self.index.get(name) {
            Some(&i) => self.shards[i].path.display().to_string(),
            None => match self.shards.as_slice() {
                [one] => one.path.display().to_string(),
                _ => "the checkpoint's shards".to_owned(),
            },
        }
    }

    fn err(&self, name: &str, message: String) -> ModelError {
        ModelError::Tensor {
            tensor: name.to_owned(),
            file: self.file_of(name),
            message,
        }
    }

    /// Tensor `name` as f32, checked against `shape`.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let &i = self
            .index
            .get(name)
            .ok_or_else(|| self.err(name, "missing from the checkpoint".into()))?;
        let shard = &self.shards[i];
        let info = shard
            .metadata
            .info(name)
            .ok_or_else(|| self.err(name, "missing from the header".into()))?;
        if info.shape != shape {
            return Err(self.err(
                name,
                format!("shape {:?}, expected {:?}", info.shape, shape),
            ));
        }
        let (a, b) = info.data_offsets;
        let bytes = shard
            .mmap
            .get(shard.data_start + a..shard.data_start + b)
            .ok_or_else(|| self.err(name, "data offsets outside the file".into()))?;
        let n: usize = shape.iter().product();
        let width = match info.dtype {
            Dtype::F32 => 4,
            Dtype::BF16 | Dtype::F16 => 2,
            other => {
                return Err(self.err(
                    name,
                    format!("dtype {other:?} is not supported (bf16, f16, f32)"),
                ))
            }
        };
        if bytes.len() != n * width {
            return Err(self.err(
                name,
                format!("{} bytes of data for {n} elements", bytes.len()),
            ));
        }
        Ok(convert(bytes, info.dtype))
    }

    /// Like [`Checkpoint::f32`] for an optional tensor (e.g. a bias that may be absent).
    pub fn f32_opt(&self, name: &str, shape: &[usize]) -> Result<Option<Vec<f32>>, ModelError> {
        if self.contains(name) {
            self.f32(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Converts little-endian bf16/f16/f32 bytes to f32, in parallel for large tensors.
fn convert(bytes: &[u8], dtype: Dtype) -> Vec<f32> {
    const CHUNK: usize = 1 << 16;
    let width = if dtype == Dtype::F32 { 4 } else { 2 };
    let n = bytes.len() / width;
    let mut out = vec![0f32; n];
    out.par_chunks_mut(CHUNK)
        .zip(bytes.par_chunks(CHUNK * width))
        .for_each(|(o, b)| match dtype {
            Dtype::F32 => {
                for (d, s) in o.iter_mut().zip(b.chunks_exact(4)) {
                    *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                }
            }
            Dtype::BF16 => {
                for (d, s) in o.iter_mut().zip(b.chunks_exact(2)) {
                    *d = bf16::from_le_bytes([s[0], s[1]]).to_f32();
                }
            }
            _ => {
                for (d, s) in o.iter_mut().zip(b.chunks_exact(2)) {
                    *d = f16::from_le_bytes([s[0], s[1]]).to_f32();
                }
            }
        });
    out
}

/// Distinct shard file names of an index, in first-seen order of sorted tensor names.
fn shard_files(index_path: &Path) -> Result<Vec<String>, ModelError> {
    let v = crate::config::read_json(index_path)?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| {
            ModelError::Config(format!("{}: missing weight_map", index_path.display()))
        })?;
    let mut files: Vec<String> = Vec::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            ModelError::Config(format!(
                "{}: weight_map entry {tensor} is not a file name",
                index_path.display()
            ))
        })?;
        // Shard names come from the checkpoint: refuse anything that would leave the dir.
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(ModelError::Config(format!(
                "{}: shard name {file:?} is not a plain file name",
                index_path.display()
            )));
        }
        if !files.iter().any(|f| f == file) {
            files.push(file.to_owned());
        }
    }
    Ok(files)
}

fn open_shard(path: PathBuf) -> Result<Shard, ModelError> {
    let file = File::open(&path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mmap = map_file(&file).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let (header_len, metadata) =
        SafeTensors::read_metadata(&mmap).map_err(|e| ModelError::Tensor {
            tensor: "(header)".into(),
            file: path.display().to_string(),
            message: format!("invalid safetensors header: {e}"),
        })?;
    Ok(Shard {
        path,
        mmap,
        data_start: 8 + header_len,
        metadata,
    })
}

#[allow(unsafe_code)]
fn map_file(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: the map is read-only and model files are not modified while the server runs
    // (they live in a read-only cache volume); every tensor is copied into owned f32 buffers
    // during load, so the map is only read during `Checkpoint`'s short lifetime.
    unsafe { Mmap::map(file) }
}

#[cfg(test)]
#[path = "weights/tests.rs"]
mod tests;
