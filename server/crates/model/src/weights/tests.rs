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
