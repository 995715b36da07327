//! `dot::matmul`: several matrices sharing one input, several tokens at once, every storage type
//! and every kernel this CPU runs; each output equals the single-row `dot` of its token (quantized
//! types) or the f64 dot product of the stored floats (F32/F16/BF16); bad shapes are errors.

use proptest::prelude::*;
use slm_ggml::dot::{Activations, Kernel, Matrix, Precision, dot_with, matmul, matmul_with};
use slm_ggml::prelude::*;

/// Every type `matmul` multiplies.
fn types() -> Vec<GgmlType> {
    GgmlType::all().filter(|&t| Matrix::supports(t)).collect()
}

fn kernels() -> Vec<Kernel> {
    [Kernel::Scalar, Kernel::Avx2]
        .into_iter()
        .filter(|k| k.available())
        .collect()
}

fn is_float(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn matmul_is_dot_per_token_and_row(
        rows in 1usize..40,
        tokens in 1usize..8,
        seed in 0u32..1000,
    ) {
        let cols = 256;
        let value = |i: usize, salt: u32| {
            (((i as u32).wrapping_mul(2_654_435_761) ^ seed.wrapping_add(salt)) % 2001) as f32 / 1000.0 - 1.0
        };
        let x: Vec<f32> = (0..tokens * cols).map(|i| value(i, 7) * 3.0).collect();
        for ty in types() {
            let w0: Vec<f32> = (0..rows * cols).map(|i| value(i, 1)).collect();
            let w1: Vec<f32> = (0..(rows + 3) * cols).map(|i| value(i, 2)).collect();
            let (b0, b1) = (quantize(ty, &w0).unwrap(), quantize(ty, &w1).unwrap());
            for kernel in kernels() {
                let mut y0 = vec![f32::NAN; tokens * rows];
                let mut y1 = vec![f32::NAN; tokens * (rows + 3)];
                let mut acts = Activations::new();
                matmul_with(
                    kernel,
                    Precision::Quantized,
                    &mut [
                        (Matrix::new(ty, rows, cols, &b0).unwrap(), &mut y0[..]),
                        (Matrix::new(ty, rows + 3, cols, &b1).unwrap(), &mut y1[..]),
                    ],
                    &x,
                    &mut acts,
                )
                .unwrap();
                for (bytes, y, n) in [(&b0, &y0, rows), (&b1, &y1, rows + 3)] {
                    let m = Matrix::new(ty, n, cols, bytes).unwrap();
                    for t in 0..tokens {
                        let xt = &x[t * cols..(t + 1) * cols];
                        for r in 0..n {
                            let got = y[t * n + r];
                            let (want, scale) = if is_float(ty) {
                                let w = dequantize(ty, m.row(r), cols).unwrap();
                                let want: f64 = w.iter().zip(xt).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                                let scale: f64 = w.iter().zip(xt).map(|(a, b)| f64::from(a.abs() * b.abs())).sum();
                                (want, scale)
                            } else {
                                let want = dot_with(kernel, ty, m.row(r), &Activations::quantize(xt).unwrap()).unwrap();
                                (f64::from(want), f64::from(want.abs()).max(1.0))
                            };
                            prop_assert!(
                                (f64::from(got) - want).abs() <= 1e-5 * scale.max(1e-6),
                                "{ty} {kernel:?} token {t} row {r}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn float_rows_of_any_length() {
    // 37 values: the SIMD kernel's 32-wide steps, one 8-wide step... and a scalar tail.
    for cols in [1usize, 7, 8, 37, 64, 100] {
        let w: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.3).cos()).collect();
        let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.7).sin()).collect();
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
            let b = quantize(ty, &w).unwrap();
            let stored = dequantize(ty, &b, cols).unwrap();
            let want: f32 = stored.iter().zip(&x).map(|(a, b)| a * b).sum();
            for kernel in kernels() {
                let mut y = [0.0f32];
                let m = Matrix::new(ty, 1, cols, &b).unwrap();
                matmul_with(
                    kernel,
                    Precision::Quantized,
                    &mut [(m, &mut y[..])],
                    &x,
                    &mut Activations::new(),
                )
                .unwrap();
                assert!(
                    (y[0] - want).abs() <= 1e-5,
                    "{ty} {kernel:?} {cols}: {} vs {want}",
                    y[0]
                );
            }
        }
    }
}

#[test]
fn shapes_that_do_not_fit_are_errors() {
    assert_eq!(
        types().len(),
        11,
        "F32, F16, BF16 and the eight block types"
    );
    let b = quantize(GgmlType::Q8_0, &[0.5f32; 64]).unwrap();
    assert!(matches!(
        Matrix::new(GgmlType::Q8_0, 3, 32, &b),
        Err(Error::ByteLength { .. })
    ));
    assert!(matches!(
        Matrix::new(GgmlType::Q8_0, 1, 48, &b),
        Err(Error::LengthNotMultiple { .. })
    ));
    assert!(Matrix::new(GgmlType::Q2_K, 1, 256, &[0u8; 84]).is_err());
    let m = Matrix::new(GgmlType::Q8_0, 2, 32, &b).unwrap();
    let mut y = [0.0f32; 3];
    // 2 rows x 1 token need 2 outputs, not 3.
    assert!(matmul(&mut [(m, &mut y[..])], &[1.0; 32], &mut Activations::new()).is_err());
    let mut y = [0.0f32; 2];
    assert!(matches!(
        matmul(
            &mut [(m, &mut y[..])],
            &[f32::NAN; 32],
            &mut Activations::new()
        ),
        Err(Error::NonFinite { .. })
    ));
}

#[test]
fn exact_precision_is_the_dequantized_f32_product() {
    let (rows, cols, tokens) = (9, 512, 3);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let x: Vec<f32> = (0..tokens * cols)
        .map(|i| (i as f32 * 0.37).sin() * 4.0)
        .collect();
    for ty in types() {
        let b = quantize(ty, &w).unwrap();
        let deq = dequantize(ty, &b, w.len()).unwrap();
        for kernel in kernels() {
            let mut y = vec![0.0f32; tokens * rows];
            let m = Matrix::new(ty, rows, cols, &b).unwrap();
            matmul_with(
                kernel,
                Precision::Exact,
                &mut [(m, &mut y[..])],
                &x,
                &mut Activations::new(),
            )
            .unwrap();
            for t in 0..tokens {
                for r in 0..rows {
                    let want: f64 = deq[r * cols..(r + 1) * cols]
                        .iter()
                        .zip(&x[t * cols..(t + 1) * cols])
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum();
                    let got = y[t * rows + r];
                    assert!(
                        (f64::from(got) - want).abs() <= 1e-4,
                        "{ty} {kernel:?}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

/// The repacked kernels (AVX-512 VNNI, or AVX2 for the 4- and 5-bit formats) give the
/// stored-layout products: the same integer sums per block, only the float additions in
/// another order.
#[test]
fn packed_weights_give_the_stored_products() {
    use slm_ggml::dot::PackedMatrix;
    if !PackedMatrix::runs(GgmlType::Q4_0) {
        eprintln!("skipping: no AVX2");
        return;
    }
    let cols = 576;
    for rows in [8usize, 24, 64] {
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| (((i as u64 * 2_654_435_761) % 2001) as f32 / 1000.0 - 1.0) * 0.3)
            .collect();
        for tokens in 1..=9 {
            let x: Vec<f32> = (0..tokens * cols)
                .map(|i| (i as f32 * 0.37).sin() * 5.0)
                .collect();
            for ty in [
                GgmlType::Q8_0,
                GgmlType::Q4_0,
                GgmlType::Q4_1,
                GgmlType::Q5_0,
            ] {
                let b = quantize(ty, &w).unwrap();
                let m = Matrix::new(ty, rows, cols, &b).unwrap();
                let Some(packed) = PackedMatrix::pack(&m) else {
                    assert!(
                        !PackedMatrix::runs(ty),
                        "{ty} runs packed but was not packed"
                    );
                    continue;
                };
                let (mut want, mut got) =
                    (vec![0.0f32; tokens * rows], vec![0.0f32; tokens * rows]);
                let mut acts = Activations::new();
                matmul(&mut [(m, &mut want[..])], &x, &mut acts).unwrap();
                matmul(&mut [(m.with_packed(&packed), &mut got[..])], &x, &mut acts).unwrap();
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                        "{ty} rows {rows} tokens {tokens} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }
    // Types and shapes it does not cover stay unpacked.
    let b = quantize(GgmlType::Q5_1, &[0.5f32; 8 * 32]).unwrap();
    assert!(PackedMatrix::pack(&Matrix::new(GgmlType::Q5_1, 8, 32, &b).unwrap()).is_none());
    let b = quantize(GgmlType::Q8_0, &[0.5f32; 7 * 32]).unwrap();
    assert!(PackedMatrix::pack(&Matrix::new(GgmlType::Q8_0, 7, 32, &b).unwrap()).is_none());
}
