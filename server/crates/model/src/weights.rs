//! Safetensors checkpoints opened by mmap: one `model.safetensors` or shards listed in
//! `model.safetensors.index.json`. Vectors (norms, biases, embeddings) are converted once, at
//! load, to f32; the matrices of linear layers keep the checkpoint's 16-bit or 8-bit type
//! unless a [`WeightDtype`] says otherwise, since decode streams them from memory every
//! token and the kernels widen bf16/f16/fp8 to f32 exactly on the fly. FP8 matrices (float8
//! e4m3) come with their scale tensor (`<name>_scale_inv` or `<name>_scale`: one per tensor,
//! per row, or per block of the config's [`Fp8Scheme`]).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::tensor::{Dtype, Metadata, SafeTensors};

use crate::batch::ModelError;
use crate::config::Fp8Scheme;
use crate::kernels::fp8;

mod matrix;
pub use matrix::Matrix;

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
    /// The checkpoint's own type: bf16 and f16 stay 16-bit, FP8 stays 8-bit with its scales,
    /// f32 stays f32. The other choices convert at load (FP8 is dequantized exactly to f32
    /// first).
    #[default]
    Auto,
    F32,
    Bf16,
    F16,
    /// float8 e4m3: FP8 checkpoints stay as they are; others are quantized at load with one
    /// scale per 128 x 128 block (the CPU kernels only; vLLM's `--quantization fp8`).
    Fp8,
}

/// The block size `--dtype fp8` quantizes with (the FP8 releases' `weight_block_size`).
pub const FP8_BLOCK: usize = 128;

impl std::str::FromStr for WeightDtype {
    type Err = String;

    /// vLLM's spellings: auto, float32/float, bfloat16/bf16, float16/half/fp16.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "float32" | "float" | "f32" | "fp32" => Ok(Self::F32),
            "bfloat16" | "bf16" => Ok(Self::Bf16),
            "float16" | "half" | "f16" | "fp16" => Ok(Self::F16),
            "fp8" | "float8" | "float8_e4m3fn" | "fp8_e4m3" => Ok(Self::Fp8),
            other => Err(format!(
                "unknown dtype {other:?} (auto, float32, bfloat16, float16, fp8)"
            )),
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
    /// How float8 weights are scaled (`None`: the config declares no FP8, so none may be).
    fp8: Option<Fp8Scheme>,
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
            fp8: None,
        })
    }

    /// Declares the checkpoint's FP8 scheme (from its `quantization_config`).
    pub fn with_fp8(mut self, fp8: Option<Fp8Scheme>) -> Self {
        self.fp8 = fp8;
        self
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
            Dtype::F8_E4M3 => 1,
            other => {
                return Err(self.err(
                    name,
                    format!("dtype {other:?} is not supported (bf16, f16, f32, f8_e4m3)"),
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

    /// Tensor `name` as f32, checked against `shape` (FP8 dequantized with its scales).
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let (bytes, dtype) = self.raw(name, shape)?;
        if dtype == Dtype::F8_E4M3 {
            return Ok(self.fp8_matrix(name, shape, bytes)?.to_f32());
        }
        Ok(convert(bytes, dtype))
    }

    /// The shape of tensor `name` as stored.
    fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        let &i = self.index.get(name)?;
        self.shards[i].metadata.info(name).map(|t| t.shape.clone())
    }

    /// FP8 matrix `name` (its e4m3 `bytes`, `[out, in]`) with its scales, checked: no NaN
    /// values, a scale tensor whose shape is one scale, one per row, or the config's blocks.
    fn fp8_matrix(&self, name: &str, shape: &[usize], bytes: &[u8]) -> Result<Matrix, ModelError> {
        let &[out, in_dim] = shape else {
            return Err(self.err(name, "float8 is supported for 2-D weights only".into()));
        };
        let scheme = self.fp8.ok_or_else(|| {
            self.err(
                name,
                "is float8 but config.json declares no fp8 quantization_config".into(),
            )
        })?;
        if let Some(i) = bytes.par_iter().position_any(|&b| fp8::is_nan(b)) {
            return Err(self.err(name, format!("holds a NaN float8 value at element {i}")));
        }
        let scale_name = [format!("{name}_scale_inv"), format!("{name}_scale")]
            .into_iter()
            .find(|n| self.contains(n))
            .ok_or_else(|| {
                self.err(
                    name,
                    format!("no scale tensor ({name}_scale_inv or {name}_scale)"),
                )
            })?;
        let sshape = self.shape_of(&scale_name).unwrap_or_default();
        let numel: usize = sshape.iter().product();
        let grid = scheme
            .block
            .map(|[br, bc]| (br, bc, [out.div_ceil(br), in_dim.div_ceil(bc)]));
        // (rows per scale, columns per scale, scales per row in the tensor)
        let (row_block, block, cols) = match grid {
            Some((br, bc, g)) if sshape == g => (br, bc.min(in_dim), g[1]),
            _ if numel == 1 => (out, in_dim, 1),
            _ if sshape == [out] || sshape == [out, 1] => (1, in_dim, 1),
            _ => {
                return Err(self.err(
                    &scale_name,
                    format!(
                        "shape {sshape:?} fits neither one scale, one per row ([{out}, 1]) nor                          the blocks of {:?} for a [{out}, {in_dim}] weight",
                        scheme.block
                    ),
                ))
            }
        };
        if cols > 1 && !block.is_multiple_of(32) {
            return Err(self.err(
                &scale_name,
                format!("blocks of {block} columns are not supported (a multiple of 32)"),
            ));
        }
        let src = self.f32(&scale_name, &sshape)?;
        let mut scales = Vec::with_capacity(out * cols);
        for o in 0..out {
            let r = o / row_block.max(1);
            for k in 0..cols {
                let v = src[r * cols + k];
                scales.push(fp8::prescale(v).ok_or_else(|| {
                    self.err(
                        &scale_name,
                        format!("scale {v} at [{r}, {k}] is not a finite value up to 256"),
                    )
                })?);
            }
        }
        Ok(Matrix::Fp8 {
            bits: bytes.to_vec(),
            scales,
            scale_cols: cols,
            block,
        })
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
        let values = match (self.dtype, dtype) {
            (WeightDtype::Auto | WeightDtype::Fp8, Dtype::F8_E4M3) => {
                return self.fp8_matrix(name, shape, bytes)
            }
            (WeightDtype::Auto | WeightDtype::Bf16, Dtype::BF16) => {
                return Ok(Matrix::Bf16(bits()))
            }
            (WeightDtype::Auto | WeightDtype::F16, Dtype::F16) => return Ok(Matrix::F16(bits())),
            // FP8 in another type: dequantized exactly first.
            (_, Dtype::F8_E4M3) => self.fp8_matrix(name, shape, bytes)?.to_f32(),
            _ => convert(bytes, dtype),
        };
        Matrix::from_f32(values, self.dtype, shape).map_err(|e| self.err(name, e))
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
        let wrap = |e: candle_core::Error| self.err(name, e.to_string());
        if st == Dtype::F8_E4M3 {
            // Dequantized on the host; the tensor stack computes in `dtype`.
            let v = self.fp8_matrix(name, shape, bytes)?.to_f32();
            return candle_core::Tensor::from_vec(v, shape, device)
                .and_then(|t| t.to_dtype(dtype))
                .map_err(wrap);
        }
        let src = match st {
            Dtype::F32 => candle_core::DType::F32,
            Dtype::BF16 => candle_core::DType::BF16,
            _ => candle_core::DType::F16,
        };
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
