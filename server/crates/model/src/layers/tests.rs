use super::*;

#[test]
fn rope_rotates_only_the_rotary_half_neox_style() {
    let rope = Rope::new(4, 10000.0);
    let (cos, sin) = rope.cos_sin(3);
    // inv_freq = [1, 1/100]
    assert!((cos[0] - 3f32.cos()).abs() < 1e-6 && (sin[1] - 0.03f32.sin()).abs() < 1e-6);
    let mut row = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    rope.apply(&mut row, 6, &cos, &sin);
    // x1 = [1, 2], x2 = [3, 4] rotated pairwise (0,2) and (1,3); dims 4.. untouched.
    assert!((row[0] - (cos[0] - 3.0 * sin[0])).abs() < 1e-6);
    assert!((row[2] - (3.0 * cos[0] + sin[0])).abs() < 1e-6);
    assert!((row[3] - (4.0 * cos[1] + 2.0 * sin[1])).abs() < 1e-6);
    assert_eq!(&row[4..], &[5.0, 6.0]);
}

#[test]
fn position_zero_is_identity() {
    let rope = Rope::new(8, 1e6);
    let (cos, sin) = rope.cos_sin(0);
    let mut row: Vec<f32> = (0..16).map(|i| i as f32).collect();
    let orig = row.clone();
    rope.apply(&mut row, 16, &cos, &sin);
    assert_eq!(row, orig);
}
