use candle_core::{Device, Tensor};

use super::*;
use crate::batch::{CacheConfig, SeqInput};
use crate::shell::Step;

/// A step of two sequences (a 5-token prefill chunk after 3 cached, and one decode at
/// position 9) over non-contiguous blocks of 4.
fn step<'a>(tables: &'a [Vec<u32>; 2]) -> Step<'a> {
    let layout = PagedLayout::new(CacheConfig {
        num_blocks: 8,
        block_size: 4,
    })
    .unwrap();
    let seqs = [
        SeqInput {
            tokens: vec![1; 5],
            num_cached: 3,
            block_table: tables[0].clone(),
            want_logits: true,
        },
        SeqInput {
            tokens: vec![1],
            num_cached: 9,
            block_table: tables[1].clone(),
            want_logits: true,
        },
    ];
    layout.check_tables(&seqs).unwrap();
    let mut rows = Vec::new();
    for (si, s) in seqs.iter().enumerate() {
        for j in 0..s.tokens.len() {
            rows.push(RowMeta {
                seq: si,
                pos: s.num_cached + j,
            });
        }
    }
    Step {
        tokens: vec![1; rows.len()],
        rows,
        tables: tables.iter().map(Vec::as_slice).collect(),
        logit_rows: vec![4, 5],
        layout,
    }
}

fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (i as f32 * 0.37 + seed).sin() * 1.3)
        .collect()
}

fn store(layout: PagedLayout, width: usize, seed: f32) -> DeviceRows {
    let slots = layout.slots().unwrap();
    DeviceRows {
        layout,
        width,
        t: Tensor::from_vec(values(slots * width, seed), (slots, width), &Device::Cpu).unwrap(),
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The generic gather path and the kernel op's Rust reference agree, for GQA (two K/V heads
/// of four query heads) and for MLA (one latent store read as K and, narrower, as V).
#[test]
fn generic_paged_attention_equals_the_kernel_reference() {
    let tables = [vec![5, 2, 7], vec![0, 6, 3]];
    let st = step(&tables);
    let meta = PagedMeta::new(&st, &Device::Cpu, false).unwrap();
    let n = st.rows.len();
    let cases = [
        (AttnShape::gqa(4, 2, 8, 0.35), 16, 16, false),
        (AttnShape::latent(3, 12, 10, 0.29), 12, 12, true),
    ];
    for (shape, kw, vw, shared) in cases {
        let k = store(st.layout, kw, 0.1);
        let v = if shared {
            store(st.layout, vw, 0.1)
        } else {
            store(st.layout, vw, 0.7)
        };
        let q = Tensor::from_vec(
            values(n * shape.heads * shape.dk, 2.0),
            (n, shape.heads, shape.dk),
            &Device::Cpu,
        )
        .unwrap();
        let generic = attend(&q, &k, &v, &meta, &shape, false).unwrap();
        let kernel_ref = attend(&q, &k, &v, &meta, &shape, true).unwrap();
        assert_eq!(generic.dims(), &[n, shape.heads, shape.dv]);
        let d = max_diff(&generic, &kernel_ref);
        assert!(d < 1e-5, "{shape:?}: generic and reference differ by {d}");
    }
}

/// A row at position p sees exactly positions 0..=p: changing a later slot's V leaves it alone.
#[test]
fn rows_do_not_see_later_positions() {
    let tables = [vec![5, 2, 7], vec![0, 6, 3]];
    let st = step(&tables);
    let meta = PagedMeta::new(&st, &Device::Cpu, false).unwrap();
    let shape = AttnShape::gqa(2, 1, 4, 0.5);
    let k = store(st.layout, 4, 0.3);
    let v = store(st.layout, 4, 0.9);
    let q = Tensor::from_vec(
        values(st.rows.len() * 8, 1.0),
        (st.rows.len(), 2, 4),
        &Device::Cpu,
    )
    .unwrap();
    let before = attend(&q, &k, &v, &meta, &shape, false).unwrap();
    // Position 7 of sequence 0 is its last row's; position 4 is row 1 (pos 4).
    let slot7 = st.layout.slot(&tables[0], 7);
    let mut vv = v.t.to_vec2::<f32>().unwrap();
    vv[slot7] = vec![100.0; 4];
    let v2 = DeviceRows {
        t: Tensor::new(vv, &Device::Cpu).unwrap(),
        ..v
    };
    let after = attend(&q, &k, &v2, &meta, &shape, false).unwrap();
    let row = |t: &Tensor, r: usize| {
        t.get(r)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(row(&before, 1), row(&after, 1), "pos 4 must not see pos 7");
    assert_ne!(row(&before, 4), row(&after, 4), "pos 7 sees itself");
}

/// Writes land in the rows' slots and nowhere else.
#[test]
fn write_fills_exactly_the_rows_slots() {
    let tables = [vec![5, 2, 7], vec![0, 6, 3]];
    let st = step(&tables);
    let meta = PagedMeta::new(&st, &Device::Cpu, false).unwrap();
    let mut s = DeviceRows::new(st.layout, 3, &Device::Cpu).unwrap();
    let n = st.rows.len();
    let src: Vec<f32> = (0..n * 3).map(|i| i as f32 + 1.0).collect();
    s.write(&meta, &Tensor::from_vec(src, (n, 3), &Device::Cpu).unwrap())
        .unwrap();
    let got = s.t.to_vec2::<f32>().unwrap();
    let slots = st.slots();
    for (slot, row) in got.iter().enumerate() {
        match slots.iter().position(|&x| x as usize == slot) {
            Some(i) => assert_eq!(
                row,
                &vec![(i * 3 + 1) as f32, (i * 3 + 2) as f32, (i * 3 + 3) as f32]
            ),
            None => assert_eq!(row, &vec![0.0; 3], "slot {slot} must stay empty"),
        }
    }
}

/// On the device named by `GLM_TEST_DEVICE` (a GPU), the hand-written kernel gives what its
/// Rust reference gives on the CPU, for GQA and for MLA (dv 512, the kernel's widest), over a
/// long context so that every warp takes several positions. Skips without a device.
#[test]
fn kernel_on_the_device_equals_the_reference() {
    let Ok(dev) = std::env::var("GLM_TEST_DEVICE") else {
        println!("GLM_TEST_DEVICE unset: no GPU to run the paged-attention kernel on; skipped");
        return;
    };
    let device = dev.parse::<crate::DeviceSpec>().unwrap().open().unwrap();
    let layout = PagedLayout::new(CacheConfig {
        num_blocks: 64,
        block_size: 16,
    })
    .unwrap();
    // Sequence 0: a 7-token chunk after 300 cached; sequence 1: one decode at 611.
    let tables = [
        (0..40u32).rev().collect::<Vec<_>>(),
        (40..64u32).chain(0..16).collect::<Vec<_>>(),
    ];
    let mut rows: Vec<RowMeta> = (300..307).map(|pos| RowMeta { seq: 0, pos }).collect();
    rows.push(RowMeta { seq: 1, pos: 611 });
    let st = Step {
        tokens: vec![1; rows.len()],
        rows,
        tables: tables.iter().map(Vec::as_slice).collect(),
        logit_rows: vec![6, 7],
        layout,
    };
    let cases = [
        (AttnShape::gqa(16, 4, 128, 0.088), 512, 512),
        (AttnShape::latent(8, 576, 512, 0.072), 576, 576),
    ];
    for (shape, kw, vw) in cases {
        let n = st.rows.len();
        let k = store(layout, kw, 0.2);
        let v = store(layout, vw, 0.5);
        let q = Tensor::from_vec(
            values(n * shape.heads * shape.dk, 3.0),
            (n, shape.heads, shape.dk),
            &Device::Cpu,
        )
        .unwrap();
        let meta = PagedMeta::new(&st, &Device::Cpu, false).unwrap();
        let want = attend(&q, &k, &v, &meta, &shape, true).unwrap();
        let on = |r: &DeviceRows| DeviceRows {
            layout: r.layout,
            width: r.width,
            t: r.t.to_device(&device).unwrap(),
        };
        let dmeta = PagedMeta::new(&st, &device, true).unwrap();
        let got = attend(
            &q.to_device(&device).unwrap(),
            &on(&k),
            &on(&v),
            &dmeta,
            &shape,
            true,
        )
        .unwrap()
        .to_device(&Device::Cpu)
        .unwrap();
        let d = max_diff(&got, &want);
        println!("{shape:?}: kernel vs reference max |diff| {d:.2e}");
        assert!(d < 1e-4, "{shape:?}: kernel and reference differ by {d}");
    }
}
