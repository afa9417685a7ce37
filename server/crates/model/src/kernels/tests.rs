use super::*;

fn naive(x: &[f32], rows: usize, w: &[f32], i: usize, o: usize, b: Option<&[f32]>) -> Vec<f32> {
    let mut y = vec![0f32; rows * o];
    for r in 0..rows {
        for k in 0..o {
            let mut s = 0f64;
            for j in 0..i {
                s += f64::from(x[r * i + j]) * f64::from(w[k * i + j]);
            }
            y[r * o + k] = s as f32 + b.map_or(0.0, |b| b[k]);
        }
    }
    y
}

fn pseudo(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|k| {
            let h = (k as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed.wrapping_mul(97));
            (h % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

#[test]
fn matmul_matches_naive_for_many_shapes() {
    for &(rows, i, o) in &[
        (1, 37, 5),
        (1, 128, 300),
        (3, 64, 17),
        (4, 33, 9),
        (9, 130, 70),
        (32, 256, 40),
        // More rows than one tile, a row count and an out count that leave remainders.
        (37, 70, 33),
        (70, 16, 3),
    ] {
        let x = pseudo(rows * i, 1);
        let w = pseudo(o * i, 2);
        let b = pseudo(o, 3);
        for bias in [None, Some(b.as_slice())] {
            let mut y = vec![0f32; rows * o];
            matmul_t(&x, rows, &w, i, o, bias, &mut y);
            let want = naive(&x, rows, &w, i, o, bias);
            for (a, e) in y.iter().zip(&want) {
                assert!(
                    (a - e).abs() < 1e-4,
                    "rows {rows} in {i} out {o}: {a} vs {e}"
                );
            }
        }
    }
}

#[test]
fn rms_norm_softmax_silu() {
    let mut x = vec![3.0f32, 4.0, 0.0, 0.0];
    rms_norm_rows(&mut x, 2, &[1.0, 2.0], 1e-5);
    let inv = 1.0 / (12.5f32 + 1e-5).sqrt();
    assert!((x[0] - 3.0 * inv).abs() < 1e-6 && (x[1] - 8.0 * inv).abs() < 1e-6);
    assert_eq!(&x[2..], &[0.0, 0.0]);
    let mut s = vec![0.0f32, (2.0f32).ln()];
    softmax_in_place(&mut s);
    assert!((s[0] - 1.0 / 3.0).abs() < 1e-6 && (s[1] - 2.0 / 3.0).abs() < 1e-6);
    assert!((silu(1.0) - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-7);
}

/// The dispatchers this CPU has: scalar always, AVX2 and AVX-512 where present.
fn paths() -> Vec<(Isa, pulp::Arch)> {
    let v: Vec<_> = Isa::ALL
        .into_iter()
        .filter_map(|i| i.arch().map(|a| (i, a)))
        .collect();
    println!(
        "kernel paths on this CPU: {:?}",
        v.iter().map(|p| p.0.name()).collect::<Vec<_>>()
    );
    v
}

/// Shapes that reach every path: in-register (rows <= 4), buffered, odd sizes and tails.
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 37, 5),
    (1, 1024, 33),
    (2, 130, 9),
    (4, 64, 17),
    (4, 300, 6),
    (5, 70, 3),
    (33, 48, 11),
    (9, 272, 40),
];

/// `matmul_on(arch)` of narrow weights must equal, bit for bit, `matmul_on(arch)` of the
/// same weights widened to f32: widening is exact and both accumulate in the same order.
fn assert_equals_widening(
    arch: pulp::Arch,
    isa: Isa,
    narrow: WeightsRef<'_>,
    wide: &[f32],
    s: (usize, usize, usize),
    seed: u32,
) {
    let (rows, i, o) = s;
    let x = pseudo(rows * i, seed);
    let b = pseudo(o, seed + 1);
    let mut got = vec![0f32; rows * o];
    matmul::matmul_on(arch, &x, rows, narrow, i, o, Some(&b), &mut got);
    let mut want = vec![0f32; rows * o];
    matmul::matmul_on(
        arch,
        &x,
        rows,
        WeightsRef::F32(wide),
        i,
        o,
        Some(&b),
        &mut want,
    );
    let same = got
        .iter()
        .zip(&want)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same, "{} rows {rows} in {i} out {o} {narrow:?}", isa.name());
    // And the f32 path itself is right.
    let naive = naive(&x, rows, wide, i, o, Some(&b));
    for (a, e) in want.iter().zip(&naive) {
        assert!(
            (a - e).abs() < 1e-3 * (1.0 + e.abs()),
            "{}: {a} vs {e}",
            isa.name()
        );
    }
}

#[test]
fn bf16_and_f16_weights_equal_their_f32_widening_on_every_path() {
    for (isa, arch) in paths() {
        for &(rows, i, o) in SHAPES {
            let w = pseudo(o * i, 5);
            let bf: Vec<u16> = w
                .iter()
                .map(|&v| half::bf16::from_f32(v).to_bits())
                .collect();
            let hf: Vec<u16> = w
                .iter()
                .map(|&v| half::f16::from_f32(v).to_bits())
                .collect();
            let bf_wide: Vec<f32> = bf
                .iter()
                .map(|&v| half::bf16::from_bits(v).to_f32())
                .collect();
            let hf_wide: Vec<f32> = hf
                .iter()
                .map(|&v| half::f16::from_bits(v).to_f32())
                .collect();
            assert_equals_widening(arch, isa, WeightsRef::Bf16(&bf), &bf_wide, (rows, i, o), 4);
            assert_equals_widening(arch, isa, WeightsRef::F16(&hf), &hf_wide, (rows, i, o), 4);
        }
    }
}

/// e4m3fn by its definition: sign, 4 exponent bits (bias 7), 3 mantissa bits.
fn e4m3_by_definition(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let e = i32::from((b >> 3) & 0xf);
    let m = f64::from(b & 7);
    let v = if e == 0 {
        m / 8.0 * 2f64.powi(-6)
    } else {
        (1.0 + m / 8.0) * 2f64.powi(e - 7)
    };
    (sign * v) as f32
}

#[test]
fn fp8_widening_is_exact_for_every_byte() {
    let mut finite = 0;
    for b in 0..=255u8 {
        if fp8::is_nan(b) {
            assert!(b == 0x7f || b == 0xff);
            continue;
        }
        finite += 1;
        let want = e4m3_by_definition(b);
        assert_eq!(fp8::to_f32(b).to_bits(), want.to_bits(), "byte {b:#04x}");
        // Prescaled scale: one rounding of value * scale, as `fp8.float() * scale`.
        for scale in [1.0f32, 0.0123, 3.0e-5, 200.0] {
            let s = fp8::prescale(scale).unwrap();
            assert_eq!(
                (fp8::bits_as_f32(b) * s).to_bits(),
                (want * scale).to_bits(),
                "byte {b:#04x} scale {scale}"
            );
        }
    }
    assert_eq!(finite, 254);
    assert_eq!(fp8::to_f32(0x7e), 448.0);
    assert_eq!(fp8::to_f32(0x01), 2f32.powi(-9));
    assert!(fp8::prescale(1e30).is_none() && fp8::prescale(f32::NAN).is_none());
}

/// An fp8 matrix of `o x i` random finite bytes with `block`-column scales per row.
fn fp8_matrix(o: usize, i: usize, block: usize, seed: u32) -> (Vec<u8>, Vec<f32>, usize) {
    let cols = i.div_ceil(block);
    let bits: Vec<u8> = (0..o * i)
        .map(|k| {
            let h = (k as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 7;
            let b = (h % 256) as u8;
            if fp8::is_nan(b) {
                b & 0xf0
            } else {
                b
            }
        })
        .collect();
    let scales: Vec<f32> = pseudo(o * cols, seed + 9)
        .iter()
        .map(|v| fp8::prescale(v.abs() * 0.01 + 1e-4).unwrap())
        .collect();
    (bits, scales, cols)
}

#[test]
fn fp8_weights_equal_their_f32_widening_on_every_path() {
    for (isa, arch) in paths() {
        for &(rows, i, o) in SHAPES {
            // One scale per row (channel, per tensor), and 32- and 128-column blocks.
            for block in [i, 32, 128] {
                let (bits, scales, cols) = fp8_matrix(o, i, block, 7);
                let f = Fp8Ref {
                    bits: &bits,
                    scales: &scales,
                    scale_cols: cols,
                    block: block.min(i),
                };
                let wide = crate::weights::Matrix::Fp8 {
                    bits: bits.clone(),
                    scales: scales.clone(),
                    scale_cols: cols,
                    block: block.min(i),
                }
                .to_f32();
                // The widening is the definition times the (unprescaled) scale.
                let k = (o - 1) * i + i / 2;
                let s = scales[(o - 1) * cols + (i / 2) / block.min(i)] / fp8::EXP_SHIFT;
                assert_eq!(
                    wide[k].to_bits(),
                    (e4m3_by_definition(bits[k]) * s).to_bits()
                );
                assert_equals_widening(arch, isa, WeightsRef::Fp8(f), &wide, (rows, i, o), 11);
            }
        }
    }
}

#[test]
fn isa_names_parse_and_unknown_ones_are_refused() {
    assert_eq!(Isa::parse("scalar"), Ok(Isa::Scalar));
    for isa in Isa::ALL {
        // Either the CPU has it and its name parses to it, or the error says it lacks it.
        match isa.arch() {
            Some(_) => assert_eq!(Isa::parse(&isa.name().to_uppercase()), Ok(isa)),
            None => assert!(Isa::parse(isa.name()).unwrap_err().contains("lacks")),
        }
    }
    let e = Isa::parse("sse9").unwrap_err();
    assert!(e.contains("GLM_CPU_ISA") && e.contains("sse9"), "{e}");
    assert!(Isa::best().arch().is_some());
}

#[test]
fn fp8_rounding_is_nearest_even_and_saturates() {
    // Every finite byte round-trips.
    for b in (0..=255u8).filter(|&b| !fp8::is_nan(b)) {
        let v = fp8::to_f32(b);
        let back = fp8::from_f32(v);
        // +0 and -0 are distinct bytes with equal values.
        assert_eq!(back, b, "byte {b:#04x} value {v}");
    }
    // Halfway between adjacent values goes to the even mantissa; a hair above goes up.
    for b in (0..0x7du8).filter(|b| b & 1 == 0) {
        let (lo, hi) = (fp8::to_f32(b), fp8::to_f32(b + 1));
        assert_eq!(fp8::from_f32((lo + hi) / 2.0), b, "tie above {b:#04x}");
        let (lo2, hi2) = (hi, fp8::to_f32(b + 2));
        assert_eq!(
            fp8::from_f32((lo2 + hi2) / 2.0),
            b + 2,
            "tie above {:#04x}",
            b + 1
        );
        assert_eq!(fp8::from_f32(lo + (hi - lo) * 0.51), b + 1);
    }
    assert_eq!(fp8::from_f32(1e6), 0x7e);
    assert_eq!(fp8::from_f32(-460.0), 0xfe);
    assert_eq!(fp8::from_f32(1e-9), 0);
    assert!(fp8::is_nan(fp8::from_f32(f32::NAN)));
}

#[test]
fn block_quantization_is_within_half_a_step_of_each_weight() {
    let (o, i) = (130, 300);
    let w: Vec<f32> = pseudo(o * i, 3).iter().map(|v| v * 0.05).collect();
    let (bits, scales) = fp8::quantize_blocks(&w, o, i, 128);
    let cols = i.div_ceil(128);
    assert_eq!((bits.len(), scales.len()), (o * i, o * cols));
    let back = crate::weights::Matrix::Fp8 {
        bits,
        scales,
        scale_cols: cols,
        block: 128,
    }
    .to_f32();
    for (k, (a, b)) in w.iter().zip(&back).enumerate() {
        // e4m3 has 3 mantissa bits: relative error <= 2^-4, plus the subnormal step.
        let (r, c) = (k / i, k % i);
        let amax = (r / 128 * 128..((r / 128 + 1) * 128).min(o))
            .flat_map(|rr| (c / 128 * 128..((c / 128 + 1) * 128).min(i)).map(move |cc| (rr, cc)))
            .map(|(rr, cc)| w[rr * i + cc].abs())
            .fold(0f32, f32::max);
        let tol = a.abs() / 16.0 + amax / 448.0 * 2f32.powi(-10);
        assert!((a - b).abs() <= tol * 1.0001, "[{r}, {c}]: {a} vs {b}");
    }
}

/// `vector::dot(a, b)` and `vector::axpy(y, alpha, a)` in one SIMD context.
struct DotAxpy<'a> {
    a: &'a [f32],
    b: &'a [f32],
    y: &'a mut [f32],
    alpha: f32,
}

impl pulp::WithSimd for DotAxpy<'_> {
    type Output = f32;

    fn with_simd<S: pulp::Simd>(self, simd: S) -> f32 {
        vector::axpy(simd, self.y, self.alpha, self.a);
        vector::dot(simd, self.a, self.b)
    }
}

#[test]
fn vector_dot_and_axpy_match_f64_on_every_path() {
    for (isa, arch) in paths() {
        // Empty, shorter than a vector, exact vectors, unrolled quads plus tails.
        for n in [0usize, 1, 7, 16, 17, 63, 64, 65, 128, 130, 1000] {
            let a = pseudo(n, 1);
            let b = pseudo(n, 2);
            let y0 = pseudo(n, 3);
            let mut y = y0.clone();
            let alpha = -0.375f32;
            let got = arch.dispatch(DotAxpy {
                a: &a,
                b: &b,
                y: &mut y,
                alpha,
            });
            let exact: f64 = a
                .iter()
                .zip(&b)
                .map(|(p, q)| f64::from(*p) * f64::from(*q))
                .sum();
            let mag: f64 = a
                .iter()
                .zip(&b)
                .map(|(p, q)| f64::from((p * q).abs()))
                .sum();
            assert!(
                (f64::from(got) - exact).abs() <= 1e-6 * mag + 1e-30,
                "{} dot n={n}: {got} vs {exact}",
                isa.name()
            );
            for (k, ((g, y0), x)) in y.iter().zip(&y0).zip(&a).enumerate() {
                let want = f64::from(*y0) + f64::from(alpha) * f64::from(*x);
                assert!(
                    (f64::from(*g) - want).abs() <= 1e-6 * want.abs().max(1e-3),
                    "{} axpy n={n} [{k}]: {g} vs {want}",
                    isa.name()
                );
            }
        }
    }
}
