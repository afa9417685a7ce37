//! The CUDA paged-attention kernel (feature `cuda`): one thread block per (row, query head),
//! warps take positions in turn with an online softmax each, then merge through shared
//! memory. Its Rust reference is [`crate::attention::paged_attention`] (the op's CPU path).
//! Compiled at first use with NVRTC (no nvcc needed at run time).

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaDevice, CudaStorage, Layout};

use super::PagedAttention;

const MODULE: &str = "glm_paged_attention";
const FUNC: &str = "glm_paged_attention_f32";
const THREADS: u32 = 128;
/// Values of a V head one lane accumulates: `dv <= 32 * DVL`.
const DVL: usize = 16;

const SOURCE: &str = r#"
#define DVL 16
extern "C" __global__ void glm_paged_attention_f32(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    float* __restrict__ out, const unsigned int* __restrict__ row_pos,
    const unsigned int* __restrict__ row_table, const unsigned int* __restrict__ tables,
    int heads, int group, int dk, int dv, int k_width, int v_width,
    int k_head_stride, int v_head_stride, int block_size, float scale)
{
    const float NEG_INF = __int_as_float(0xff800000);
    int i = blockIdx.x;
    int r = i / heads, h = i % heads, g = h / group;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    const float* qv = q + (size_t)i * dk;
    const unsigned int* table = tables + row_table[r];
    int n = (int)row_pos[r] + 1;
    float m = NEG_INF, l = 0.f;
    float acc[DVL];
    for (int j = 0; j < DVL; ++j) acc[j] = 0.f;
    for (int p = warp; p < n; p += nwarps) {
        size_t slot = (size_t)table[p / block_size] * block_size + p % block_size;
        const float* kr = k + slot * k_width + g * k_head_stride;
        float s = 0.f;
        for (int d = lane; d < dk; d += 32) s += qv[d] * kr[d];
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
        s *= scale;
        float m_new = fmaxf(m, s);
        float corr = __expf(m - m_new);
        float e = __expf(s - m_new);
        l = l * corr + e;
        const float* vr = v + slot * v_width + g * v_head_stride;
        for (int j = 0, d = lane; d < dv; ++j, d += 32) acc[j] = acc[j] * corr + e * vr[d];
        m = m_new;
    }
    extern __shared__ float sm[];
    float* sm_m = sm;
    float* sm_l = sm + nwarps;
    float* sm_acc = sm + 2 * nwarps;
    if (lane == 0) { sm_m[warp] = m; sm_l[warp] = l; }
    for (int j = 0, d = lane; d < dv; ++j, d += 32) sm_acc[warp * dv + d] = acc[j];
    __syncthreads();
    float M = NEG_INF;
    for (int w = 0; w < nwarps; ++w) M = fmaxf(M, sm_m[w]);
    float L = 0.f;
    for (int w = 0; w < nwarps; ++w) if (sm_m[w] != NEG_INF) L += sm_l[w] * __expf(sm_m[w] - M);
    for (int d = threadIdx.x; d < dv; d += blockDim.x) {
        float o = 0.f;
        for (int w = 0; w < nwarps; ++w)
            if (sm_m[w] != NEG_INF) o += sm_acc[w * dv + d] * __expf(sm_m[w] - M);
        out[(size_t)i * dv + d] = o / L;
    }
}
"#;

fn ptx() -> Result<&'static str, candle_core::Error> {
    static PTX: OnceLock<Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        candle_core::cuda_backend::cudarc::nvrtc::compile_ptx(SOURCE)
            .map(|p| p.to_src())
            .map_err(|e| format!("NVRTC cannot compile the paged-attention kernel: {e:?}"))
    })
    .as_deref()
    .map_err(|e| candle_core::Error::Msg(e.clone()))
}

/// The part of a contiguous f32 storage that `l` covers.
fn view<'a>(st: &'a CudaStorage, l: &Layout) -> candle_core::Result<CudaView<'a, f32>> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("paged attention: not contiguous".into()))?;
    Ok(st.as_cuda_slice::<f32>()?.slice(a..b))
}

/// The u32 device slice of a metadata tensor's storage.
fn u32s(st: &candle_core::Storage) -> candle_core::Result<&CudaSlice<u32>> {
    match st {
        candle_core::Storage::Cuda(c) => c.as_cuda_slice::<u32>(),
        _ => candle_core::bail!("paged attention: kernel metadata is not on the GPU"),
    }
}

pub fn total_memory(d: &CudaDevice) -> Option<u64> {
    d.cuda_stream()
        .context()
        .mem_get_info()
        .ok()
        .map(|(_, total)| total as u64)
}

fn u32_of(v: usize, what: &str) -> candle_core::Result<u32> {
    u32::try_from(v)
        .map_err(|_| candle_core::Error::Msg(format!("paged attention: {what} {v} too large")))
}

fn i32_of(v: usize, what: &str) -> candle_core::Result<i32> {
    i32::try_from(v)
        .map_err(|_| candle_core::Error::Msg(format!("paged attention: {what} {v} too large")))
}

pub fn paged_attention(
    op: &PagedAttention<'_>,
    (q, ql): (&CudaStorage, &Layout),
    (k, kl, kw): (&CudaStorage, &Layout, usize),
    (v, vl, vw): (&CudaStorage, &Layout, usize),
) -> candle_core::Result<CudaStorage> {
    let s = &op.shape;
    if s.dv > 32 * DVL {
        candle_core::bail!("paged attention kernel: dv {} > {}", s.dv, 32 * DVL);
    }
    let dev = q.device().clone();
    let func = dev.get_or_load_custom_func(FUNC, MODULE, ptx()?)?;
    let (qs, ks, vs) = (view(q, ql)?, view(k, kl)?, view(v, vl)?);
    let rows = op.meta.rows.len();
    let mut out = dev.alloc_zeros::<f32>(rows * s.heads * s.dv)?;
    let km = op
        .meta
        .kernel
        .as_ref()
        .ok_or_else(|| candle_core::Error::Msg("paged attention: no kernel metadata".into()))?;
    let (row_pos, _) = km.row_pos.storage_and_layout();
    let (row_table, _) = km.row_table.storage_and_layout();
    let (tables, _) = km.tables.storage_and_layout();
    let (row_pos, row_table, tables) = (u32s(&row_pos)?, u32s(&row_table)?, u32s(&tables)?);
    let nwarps = (THREADS / 32) as usize;
    let cfg = LaunchConfig {
        grid_dim: (u32_of(rows * s.heads, "rows x heads")?, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: u32_of(4 * (2 * nwarps + nwarps * s.dv), "shared memory")?,
    };
    let (heads, group) = (
        i32_of(s.heads, "heads")?,
        i32_of(s.heads / s.kv_heads, "group")?,
    );
    let (dk, dv) = (i32_of(s.dk, "dk")?, i32_of(s.dv, "dv")?);
    let (kw, vw) = (i32_of(kw, "k width")?, i32_of(vw, "v width")?);
    let (ks_stride, vs_stride) = (
        i32_of(s.k_head_stride, "k stride")?,
        i32_of(s.v_head_stride, "v stride")?,
    );
    let bs = i32_of(op.meta.block_size, "block size")?;
    let mut b = func.builder();
    b.arg(&qs)
        .arg(&ks)
        .arg(&vs)
        .arg(&mut out)
        .arg(row_pos)
        .arg(row_table)
        .arg(tables)
        .arg(&heads)
        .arg(&group)
        .arg(&dk)
        .arg(&dv)
        .arg(&kw)
        .arg(&vw)
        .arg(&ks_stride)
        .arg(&vs_stride)
        .arg(&bs)
        .arg(&s.scale);
    // SAFETY: the argument list matches the kernel's signature in order and type; every
    // index the kernel reads is bounded by the checked shapes: rows and heads by the grid,
    // slots by the block tables `PagedLayout::check_tables` validated, dk/dv by the strides.
    #[allow(unsafe_code)]
    let launched = unsafe { b.launch(cfg) };
    launched.w()?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev))
}
