use super::*;

#[test]
fn converts_bf16_f16_f32_little_endian() {
    let vals = [1.5f32, -2.0, 0.0, 1e-3];
    let f32_bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(convert(&f32_bytes, Dtype::F32), vals);
    let bf: Vec<u8> = vals
        .iter()
        .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
        .collect();
    let back = convert(&bf, Dtype::BF16);
    for (a, b) in back.iter().zip(vals) {
        assert_eq!(*a, bf16::from_f32(b).to_f32());
    }
    let h: Vec<u8> = vals
        .iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect();
    let back = convert(&h, Dtype::F16);
    for (a, b) in back.iter().zip(vals) {
        assert_eq!(*a, f16::from_f32(b).to_f32());
    }
}

#[test]
fn index_with_path_escape_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(INDEX_FILE),
        r#"{"weight_map": {"a": "../evil.safetensors"}}"#,
    )
    .unwrap();
    let e = Checkpoint::open(dir.path()).unwrap_err();
    assert_eq!(e.kind(), "config");
    assert!(e.to_string().contains("evil"));
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = Checkpoint::open(dir.path()).unwrap_err();
    assert_eq!(e.kind(), "io");
    assert!(e.to_string().contains("model.safetensors"));
}

/// A one-file checkpoint in `dir` from `(name, dtype, shape, bytes)`.
fn write_checkpoint(dir: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    use safetensors::tensor::TensorView;
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| ((*n).to_owned(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let bytes = safetensors::tensor::serialize(views, None).unwrap();
    std::fs::write(dir.join(SINGLE_FILE), bytes).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// 20 x 40 fp8 weights: byte k is `k % 120` (finite, both signs via the top bit on odd rows).
fn fp8_bytes() -> Vec<u8> {
    (0..800u32)
        .map(|k| (k % 120) as u8 | if (k / 40) % 2 == 1 { 0x80 } else { 0 })
        .collect()
}

fn fp8_ck(
    scale_name: &str,
    scale_shape: Vec<usize>,
    scales: &[f32],
    block: Option<[usize; 2]>,
) -> (tempfile::TempDir, Checkpoint) {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(
        dir.path(),
        &[
            ("w.weight", Dtype::F8_E4M3, vec![20, 40], fp8_bytes()),
            (scale_name, Dtype::F32, scale_shape, f32_bytes(scales)),
        ],
    );
    let ck = Checkpoint::open(dir.path())
        .unwrap()
        .with_fp8(Some(Fp8Scheme { block }));
    (dir, ck)
}

/// (scale tensor name, its shape, its values, the config's block, the scale index of
/// element `[row, col]`).
type ScaleCase = (
    &'static str,
    Vec<usize>,
    Vec<f32>,
    Option<[usize; 2]>,
    fn(usize, usize) -> usize,
);

#[test]
fn fp8_weights_load_with_block_channel_and_tensor_scales() {
    let bits = fp8_bytes();
    // 16 x 32 blocks over 20 x 40: a 2 x 2 grid with partial blocks at the edges.
    let grid: Vec<f32> = (0..4).map(|k| 0.5 + k as f32 * 0.25).collect();
    let per_row: Vec<f32> = (0..20).map(|k| 0.01 * (k + 1) as f32).collect();
    let cases: [ScaleCase; 3] = [
        (
            "w.weight_scale_inv",
            vec![2, 2],
            grid,
            Some([16, 32]),
            |r, c| (r / 16) * 2 + c / 32,
        ),
        ("w.weight_scale", vec![20, 1], per_row, None, |r, _| r),
        ("w.weight_scale", vec![1], vec![0.125], None, |_, _| 0),
    ];
    for (name, shape, scales, block, at) in cases {
        let (_d, ck) = fp8_ck(name, shape.clone(), &scales, block);
        let m = ck.matrix("w.weight", &[20, 40]).unwrap();
        assert!(matches!(m, Matrix::Fp8 { .. }), "{name} {shape:?}");
        assert_eq!(
            m.bytes(),
            800 + 4 * 20 * if shape == [2, 2] { 2 } else { 1 }
        );
        let want: Vec<f32> = (0..800)
            .map(|k| crate::kernels::fp8::to_f32(bits[k]) * scales[at(k / 40, k % 40)])
            .collect();
        assert_eq!(m.to_f32(), want, "{name} {shape:?}");
        assert_eq!(ck.f32("w.weight", &[20, 40]).unwrap(), want);
        // --dtype float32 dequantizes at load to the same values.
        let ck = ck.with_dtype(WeightDtype::F32);
        assert_eq!(ck.matrix("w.weight", &[20, 40]).unwrap(), Matrix::F32(want));
    }
}

#[test]
fn bad_fp8_tensors_are_refused_naming_the_tensor() {
    let msg = |ck: &Checkpoint| ck.matrix("w.weight", &[20, 40]).unwrap_err().to_string();
    // Scales whose shape fits neither layout.
    let (_d, ck) = fp8_ck("w.weight_scale_inv", vec![3, 3], &[1.0; 9], Some([16, 32]));
    let m = msg(&ck);
    assert!(
        m.contains("w.weight_scale_inv") && m.contains("[3, 3]"),
        "{m}"
    );
    // Blocks the kernels cannot step through (not a multiple of 32 columns).
    let (_d, ck) = fp8_ck("w.weight_scale_inv", vec![2, 3], &[1.0; 6], Some([16, 16]));
    let m = msg(&ck);
    assert!(m.contains("multiple of 32"), "{m}");
    // A scale that is not finite.
    let (_d, ck) = fp8_ck("w.weight_scale", vec![1], &[f32::INFINITY], None);
    assert!(msg(&ck).contains("not a finite"), "{}", msg(&ck));
    // No fp8 scheme declared in config.json.
    let (_d, ck) = fp8_ck("w.weight_scale", vec![1], &[1.0], None);
    let m = msg(&ck.with_fp8(None));
    assert!(
        m.contains("w.weight") && m.contains("quantization_config"),
        "{m}"
    );
    // No scale tensor at all, and a NaN byte.
    let dir = tempfile::tempdir().unwrap();
    let mut bits = fp8_bytes();
    write_checkpoint(
        dir.path(),
        &[("w.weight", Dtype::F8_E4M3, vec![20, 40], bits.clone())],
    );
    let ck = Checkpoint::open(dir.path())
        .unwrap()
        .with_fp8(Some(Fp8Scheme::default()));
    assert!(msg(&ck).contains("no scale tensor"), "{}", msg(&ck));
    bits[77] = 0x7f;
    write_checkpoint(
        dir.path(),
        &[
            ("w.weight", Dtype::F8_E4M3, vec![20, 40], bits),
            ("w.weight_scale", Dtype::F32, vec![1], f32_bytes(&[1.0])),
        ],
    );
    let ck = Checkpoint::open(dir.path())
        .unwrap()
        .with_fp8(Some(Fp8Scheme::default()));
    let m = msg(&ck);
    assert!(m.contains("NaN") && m.contains("77"), "{m}");
}
