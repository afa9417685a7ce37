use super::rotate;

#[test]
fn interleaved_rope_rotates_adjacent_pairs_and_deinterleaves() {
    let mut x = [1.0f32, 2.0, 3.0, 4.0];
    let (c, s) = ([0.6f32, 0.0], [0.8f32, 1.0]);
    rotate(&mut x, &c, &s, true);
    // pair (1, 2) by (0.6, 0.8); pair (3, 4) by a quarter turn; evens first, then odds.
    let want = [1.0 * 0.6 - 2.0 * 0.8, -4.0, 2.0 * 0.6 + 1.0 * 0.8, 3.0];
    for (g, w) in x.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{x:?}");
    }
}

#[test]
fn neox_rope_rotates_half_split_pairs() {
    let mut x = [1.0f32, 2.0, 3.0, 4.0];
    rotate(&mut x, &[0.0, 1.0], &[1.0, 0.0], false);
    assert_eq!(x, [-3.0, 2.0, 1.0, 4.0]);
}
