//! The paged store on a device and attention over it. [`DeviceRows`] is [`crate::store`]'s
//! layout in a `[slots, width]` f32 tensor. [`attend`] is the generic path (gather each
//! sequence's rows, masked matmul-softmax-matmul), which any candle device runs;
//! [`PagedAttention`] is the hand-written kernel as a candle op: on the CPU it runs the Rust
//! reference ([`crate::attention::paged_attention`]), on CUDA the kernel in `cuda.rs`, with the
//! same arguments, so the two are compared on the device.

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Shape, Tensor, D};

use crate::attention::{paged_attention, AttnShape};
use crate::batch::ModelError;
use crate::shell::Step;
use crate::store::{PagedLayout, RowMeta, RowsRef};

#[cfg(feature = "cuda")]
mod cuda;

/// Total memory of `device` in bytes (GPUs).
pub fn device_memory(device: &Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        return cuda::total_memory(d);
    }
    let _ = device;
    None
}

/// One paged store (K, V or the MLA latent of a layer) on a device.
#[derive(Debug)]
pub struct DeviceRows {
    pub layout: PagedLayout,
    pub width: usize,
    /// `[slots, width]` f32.
    pub t: Tensor,
}

impl DeviceRows {
    pub fn new(layout: PagedLayout, width: usize, device: &Device) -> Result<Self, ModelError> {
        let slots = layout.slots()?;
        let t = Tensor::zeros((slots, width), DType::F32, device).map_err(|e| {
            ModelError::Cache(format!(
                "cannot allocate {} MiB for a cache store: {e}",
                (slots * width * 4) >> 20
            ))
        })?;
        Ok(Self { layout, width, t })
    }

    /// Writes row `i` of `src` (`[rows, width]`) into slot `meta.write_slots[i]`.
    pub fn write(&mut self, meta: &PagedMeta, src: &Tensor) -> Result<(), ModelError> {
        let n = meta.rows.len();
        let idx = meta
            .write_slots
            .reshape((n, 1))?
            .broadcast_as((n, self.width))?
            .contiguous()?;
        self.t.scatter_set(&idx, &src.contiguous()?, 0)?;
        Ok(())
    }
}

/// One sequence of a step as attention needs it.
#[derive(Debug)]
pub struct SeqSpan {
    /// Its rows in the step: `start..start + len`.
    pub start: usize,
    pub len: usize,
    /// Slots of positions `0..ctx`, where `ctx` is its last row's position + 1.
    pub slots: Tensor,
    /// `[len, ctx]`: 0 where row `i` may attend position `j`, -inf after its own position.
    pub mask: Tensor,
}

/// The kernel's per-row metadata on the device: `row_pos`, `row_table`, `tables` as u32
/// tensors, uploaded once per step (not once per layer).
#[derive(Debug)]
pub struct KernelMeta {
    pub row_pos: Tensor,
    pub row_table: Tensor,
    pub tables: Tensor,
}

/// A step's paging metadata, uploaded once and shared by all layers. Built for one path:
/// the generic ops' per-sequence spans, or (for the kernel) the per-row arrays.
#[derive(Debug)]
pub struct PagedMeta {
    pub rows: Vec<RowMeta>,
    /// Slot of each row, `[rows]` u32.
    pub write_slots: Tensor,
    /// Per-sequence gather slots and masks of the generic path (empty for the kernel).
    pub seqs: Vec<SeqSpan>,
    /// The kernel's arrays on a GPU (`None` on the CPU, where the Rust reference reads the
    /// host copies below).
    pub kernel: Option<KernelMeta>,
    /// For the kernel: each row's position and where its sequence's block table starts in
    /// `tables` (all tables concatenated).
    pub row_pos: Vec<u32>,
    pub row_table: Vec<u32>,
    pub tables: Vec<u32>,
    pub block_size: usize,
}

impl PagedMeta {
    /// `kernel`: metadata for [`PagedAttention`] rather than for the generic ops.
    pub fn new(step: &Step<'_>, device: &Device, kernel: bool) -> Result<Self, ModelError> {
        let n = step.rows.len();
        let write_slots = Tensor::from_vec(step.slots(), n, device)?;
        let mut seqs: Vec<SeqSpan> = Vec::new();
        let mut start = 0;
        while !kernel && start < n {
            let seq = step.rows[start].seq;
            let len = step.rows[start..]
                .iter()
                .take_while(|r| r.seq == seq)
                .count();
            let rows = &step.rows[start..start + len];
            let ctx = rows[len - 1].pos + 1;
            let table = step.tables[seq];
            let slots: Vec<u32> = (0..ctx)
                .map(|p| step.layout.slot(table, p) as u32)
                .collect();
            let mut mask = vec![0f32; len * ctx];
            for (i, r) in rows.iter().enumerate() {
                mask[i * ctx + r.pos + 1..(i + 1) * ctx].fill(f32::NEG_INFINITY);
            }
            seqs.push(SeqSpan {
                start,
                len,
                slots: Tensor::from_vec(slots, ctx, device)?,
                mask: Tensor::from_vec(mask, (len, ctx), device)?,
            });
            start += len;
        }
        let mut offsets = Vec::with_capacity(step.tables.len());
        let mut tables = Vec::new();
        for t in &step.tables {
            offsets.push(tables.len() as u32);
            tables.extend_from_slice(t);
        }
        let row_pos: Vec<u32> = step.rows.iter().map(|r| r.pos as u32).collect();
        let row_table: Vec<u32> = step.rows.iter().map(|r| offsets[r.seq]).collect();
        let kernel = if kernel && !device.is_cpu() {
            Some(KernelMeta {
                row_pos: Tensor::from_slice(&row_pos, n, device)?,
                row_table: Tensor::from_slice(&row_table, n, device)?,
                tables: Tensor::from_slice(&tables, tables.len(), device)?,
            })
        } else {
            None
        };
        Ok(Self {
            rows: step.rows.clone(),
            write_slots,
            seqs,
            kernel,
            row_pos,
            row_table,
            tables,
            block_size: step.layout.cfg.block_size,
        })
    }
}

/// Paged attention of `q` (`[rows, heads, dk]` f32) over stores `k` and `v`; returns
/// `[rows, heads, dv]`. With `kernel`, the hand-written op; otherwise generic ops.
pub fn attend(
    q: &Tensor,
    k: &DeviceRows,
    v: &DeviceRows,
    meta: &PagedMeta,
    s: &AttnShape,
    kernel: bool,
) -> Result<Tensor, ModelError> {
    if kernel {
        let op = PagedAttention {
            shape: *s,
            meta,
            layout: k.layout,
        };
        return Ok(q.contiguous()?.apply_op3_no_bwd(&k.t, &v.t, &op)?);
    }
    if meta.seqs.is_empty() && !meta.rows.is_empty() {
        return Err(ModelError::Compute(
            "paged attention: metadata was built for the kernel, not the generic ops".into(),
        ));
    }
    let group = s.heads / s.kv_heads;
    let mut outs = Vec::with_capacity(meta.seqs.len());
    for span in &meta.seqs {
        let ctx = span.slots.dim(0)?;
        // [ctx, kv_heads, d]: GQA heads side by side, or the latent's leading dims.
        let heads_of =
            |store: &DeviceRows, d: usize, stride: usize| -> Result<Tensor, ModelError> {
                let rows = store.t.index_select(&span.slots, 0)?;
                Ok(if stride == 0 {
                    rows.narrow(1, 0, d)?.reshape((ctx, 1, d))?
                } else {
                    rows.reshape((ctx, s.kv_heads, d))?
                })
            };
        let kt = heads_of(k, s.dk, s.k_head_stride)?
            .transpose(0, 1)?
            .contiguous()?;
        let vt = heads_of(v, s.dv, s.v_head_stride)?
            .transpose(0, 1)?
            .contiguous()?;
        let m = span.len;
        // [m, heads, dk] -> [kv_heads, m * group, dk] (query heads of a group side by side).
        let qs = q
            .narrow(0, span.start, m)?
            .reshape((m, s.kv_heads, group, s.dk))?
            .transpose(0, 1)?
            .reshape((s.kv_heads, m * group, s.dk))?
            .contiguous()?;
        let scores = (qs.matmul(&kt.t()?)? * f64::from(s.scale))?
            .reshape((s.kv_heads, m, group, ctx))?
            .broadcast_add(&span.mask.reshape((1, m, 1, ctx))?)?;
        let max = scores.max_keepdim(D::Minus1)?;
        let e = scores.broadcast_sub(&max)?.exp()?;
        let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
        let o = p
            .reshape((s.kv_heads, m * group, ctx))?
            .matmul(&vt)?
            .reshape((s.kv_heads, m, group, s.dv))?
            .transpose(0, 1)?
            .reshape((m, s.heads, s.dv))?;
        outs.push(o);
    }
    Ok(Tensor::cat(&outs, 0)?)
}

fn cpu_slice<'s>(st: &'s CpuStorage, l: &Layout) -> candle_core::Result<&'s [f32]> {
    let all = st.as_slice::<f32>()?;
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("paged attention: input not contiguous".into()))?;
    Ok(&all[a..b])
}

/// The paged-attention kernel as a candle op on `(q, k store, v store)`.
pub struct PagedAttention<'a> {
    pub shape: AttnShape,
    pub meta: &'a PagedMeta,
    pub layout: PagedLayout,
}

impl PagedAttention<'_> {
    fn check(
        &self,
        q: &Layout,
        k: &Layout,
        v: &Layout,
    ) -> candle_core::Result<(usize, usize, usize)> {
        let s = &self.shape;
        let (rows, heads, dk) = q.shape().dims3()?;
        let (_, kw) = k.shape().dims2()?;
        let (_, vw) = v.shape().dims2()?;
        if heads != s.heads || dk != s.dk || rows != self.meta.rows.len() {
            candle_core::bail!("paged attention: q {:?} does not match {s:?}", q.shape());
        }
        if !q.is_contiguous() || !k.is_contiguous() || !v.is_contiguous() {
            candle_core::bail!("paged attention: inputs must be contiguous");
        }
        Ok((rows, kw, vw))
    }
}

impl CustomOp3 for PagedAttention<'_> {
    fn name(&self) -> &'static str {
        "glm-paged-attention"
    }

    /// The Rust reference.
    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        ql: &Layout,
        k: &CpuStorage,
        kl: &Layout,
        v: &CpuStorage,
        vl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, kw, vw) = self.check(ql, kl, vl)?;
        let (qd, kd, vd) = (cpu_slice(q, ql)?, cpu_slice(k, kl)?, cpu_slice(v, vl)?);
        let tables: Vec<&[u32]> = self
            .meta
            .row_table
            .iter()
            .zip(&self.meta.rows)
            .map(|(&off, _)| &self.meta.tables[off as usize..])
            .collect();
        // One table per row: index rows by their own position in `tables`.
        let rows_meta: Vec<RowMeta> = self
            .meta
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| RowMeta { seq: i, pos: r.pos })
            .collect();
        let kr = RowsRef {
            layout: self.layout,
            width: kw,
            data: kd,
        };
        let vr = RowsRef {
            layout: self.layout,
            width: vw,
            data: vd,
        };
        let out = paged_attention(qd, kr, vr, &rows_meta, &tables, &self.shape);
        Ok((
            CpuStorage::F32(out),
            Shape::from((rows, self.shape.heads, self.shape.dv)),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        q: &candle_core::CudaStorage,
        ql: &Layout,
        k: &candle_core::CudaStorage,
        kl: &Layout,
        v: &candle_core::CudaStorage,
        vl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (rows, kw, vw) = self.check(ql, kl, vl)?;
        let out = cuda::paged_attention(self, (q, ql), (k, kl, kw), (v, vl, vw))?;
        Ok((out, Shape::from((rows, self.shape.heads, self.shape.dv))))
    }
}

#[cfg(test)]
#[path = "paged/tests.rs"]
mod tests;
