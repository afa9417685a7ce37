//! Safetensors checkpoints opened by mmap: one `model.safetensors` or shards listed in
//! `model.safetensors.index.json`. Vectors (norms, biases, embeddings) are converted once, at
//! load, to f32; the matrices of linear layers keep the checkpoint's 16-bit type unless a
//! [`WeightDtype`] says otherwise, since decode streams them from memory every token and the
//! kernels widen bf16/f16 to f32 exactly on the fly.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::tensor::{Dtype, Metadata, SafeTensors};

use crate::batch::ModelError;
use crate::kernels::WeightsRef;

const SINGLE_FILE: &str = "model.safetensors";
const INDEX_FILE: &str = "model.safetensors.index.json";

struct Shard {
    path: PathBuf,
    mmap: Mmap,
    /// Byte offset of the data section (8-byte length + JSON header).
    data_start: usize,
    metadata: Metadata,
}

/// The type linear-layer weights are kept in after loading (vLLM's `--dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightDtype {
    /// The checkpoint's own type: bf16 and f16 stay 16-bit, f32 stays f32.
    #[default]
    Auto,
    F32,
    Bf16,
    F16,
}

impl std::str::FromStr for WeightDtype {
    type Err = String;

    /// vLLM's spellings: auto, float32/float, bfloat16/bf16, float16/half/fp16.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "float32" | "float" | "f32" | "fp32" => Ok(Self::F32),
            "bfloat16" | "bf16" => Ok(Self::Bf16),
            "float16" | "half" | "f16" | "fp16" => Ok(Self::F16),
            other => Err(format!(
                "unknown dtype {other:?} (auto, float32, bfloat16, float16)"
            )),
        }
    }
}

/// A weight matrix in the type it is computed from. Values are the raw bits for 16-bit types.
#[derive(Debug, Clone, PartialEq)]
pub enum Matrix {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
    F16(Vec<u16>),
}

impl Matrix {
    pub fn len(&self) -> usize {
        self.view().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes per element.
    pub fn width(&self) -> usize {
        match self {
            Matrix::F32(_) => 4,
            Matrix::Bf16(_) | Matrix::F16(_) => 2,
        }
    }

    /// The matrix as the kernels take it.
    pub fn view(&self) -> WeightsRef<'_> {
        match self {
            Matrix::F32(v) => WeightsRef::F32(v),
            Matrix::Bf16(v) => WeightsRef::Bf16(v),
            Matrix::F16(v) => WeightsRef::F16(v),
        }
    }

    /// Values widened to f32 (exact for every type).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Matrix::F32(v) => v.clone(),
            Matrix::Bf16(v) => v
                .par_iter()
                .map(|&b| f32::from_bits(u32::from(b) << 16))
                .collect(),
            Matrix::F16(v) => v.par_iter().map(|&b| f16::from_bits(b).to_f32()).collect(),
        }
    }

    /// Appends `other`'s rows after this matrix's (fused projections). Both must share a
    /// type; mixed types are widened to f32.
    pub fn concat(self, other: Matrix) -> Matrix {
        match (self, other) {
            (Matrix::F32(mut a), Matrix::F32(b)) => {
                a.extend_from_slice(&b);
                Matrix::F32(a)
            }
            (Matrix::Bf16(mut a), Matrix::Bf16(b)) => {
                a.extend_from_slice(&b);
                Matrix::Bf16(a)
            }
            (Matrix::F16(mut a), Matrix::F16(b)) => {
                a.extend_from_slice(&b);
                Matrix::F16(a)
            }
            (a, b) => {
                let mut v = a.to_f32();
                v.extend_from_slice(&b.to_f32());
                Matrix::F32(v)
            }
        }
    }
}

/// The tensors of a checkpoint directory, by name.
pub struct Checkpoint {
    shards: Vec<Shard>,
    /// Tensor name -> index into `shards`.
    index: HashMap<String, usize>,
    /// What [`Checkpoint::matrix`] keeps weight matrices as.
    dtype: WeightDtype,
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
        Ok(Self {
            shards,
            index,
            dtype: WeightDtype::Auto,
        })
    }

    /// Sets the type [`Checkpoint::matrix`] returns weight matrices in.
    pub fn with_dtype(mut self, dtype: WeightDtype) -> Self {
        self.dtype = dtype;
        self
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

    /// Tensor `name`'s bytes and type, checked against `shape`.
    fn raw(&self, name: &str, shape: &[usize]) -> Result<(&[u8], Dtype), ModelError> {
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
        Ok((bytes, info.dtype))
    }

    /// Tensor `name` as f32, checked against `shape`.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let (bytes, dtype) = self.raw(name, shape)?;
        Ok(convert(bytes, dtype))
    }

    /// Weight matrix `name` in the checkpoint's [`WeightDtype`], checked against `shape`.
    /// Narrowing f32 to a 16-bit type rounds to nearest even.
    pub fn matrix(&self, name: &str, shape: &[usize]) -> Result<Matrix, ModelError> {
        let (bytes, dtype) = self.raw(name, shape)?;
        let bits = || -> Vec<u16> {
            bytes
                .par_chunks(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect()
        };
        Ok(match (self.dtype, dtype) {
            (WeightDtype::Auto | WeightDtype::Bf16, Dtype::BF16) => Matrix::Bf16(bits()),
            (WeightDtype::Auto | WeightDtype::F16, Dtype::F16) => Matrix::F16(bits()),
            (WeightDtype::Bf16, _) => Matrix::Bf16(
                convert(bytes, dtype)
                    .par_iter()
                    .map(|&v| bf16::from_f32(v).to_bits())
                    .collect(),
            ),
            (WeightDtype::F16, _) => Matrix::F16(
                convert(bytes, dtype)
                    .par_iter()
                    .map(|&v| f16::from_f32(v).to_bits())
                    .collect(),
            ),
            (WeightDtype::Auto | WeightDtype::F32, _) => Matrix::F32(convert(bytes, dtype)),
        })
    }

    /// Tensor `name` on `device` as `dtype`, checked against `shape`. The bytes go from the
    /// mmap straight to the device in the checkpoint's type (one tensor at a time, no host
    /// copy of the checkpoint), then convert there.
    pub fn tensor(
        &self,
        name: &str,
        shape: &[usize],
        device: &candle_core::Device,
        dtype: candle_core::DType,
    ) -> Result<candle_core::Tensor, ModelError> {
        let (bytes, st) = self.raw(name, shape)?;
        let src = match st {
            Dtype::F32 => candle_core::DType::F32,
            Dtype::BF16 => candle_core::DType::BF16,
            _ => candle_core::DType::F16,
        };
        let wrap = |e: candle_core::Error| self.err(name, e.to_string());
        candle_core::Tensor::from_raw_buffer(bytes, src, shape, device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(wrap)
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
    // (they live in a read-only cache volume); every tensor is copied into owned buffers (host or device)
    // during load, so the map is only read during `Checkpoint`'s short lifetime.
    unsafe { Mmap::map(file) }
}

#[cfg(test)]
#[path = "weights/tests.rs"]
mod tests;
