//! The quantized dot products: every kernel this CPU runs (AVX2 and the scalar reference)
//! agrees with the f32 dot product of the dequantized weights and activations, the SIMD ones
//! with the scalar one, and `matvec` with row-by-row `dot`; bad shapes are typed errors.

use proptest::prelude::*;
use slm_ggml::dot::{Activations, Kernel, dot, dot_with, matvec, supports};
use slm_ggml::prelude::*;

/// Every weight type `dot` multiplies (the eight block types).
fn types() -> Vec<GgmlType> {
    GgmlType::all().filter(|&t| supports(t)).collect()
}

/// The f32 dot product (in f64) of the dequantized row and activations.
fn reference(ty: GgmlType, row: &[u8], x: &Activations, xq: &[u8]) -> f64 {
    let w = dequantize(ty, row, x.len()).unwrap();
    let a = dequantize(GgmlType::Q8_0, xq, x.len()).unwrap();
    w.iter()
        .zip(&a)
        .map(|(w, a)| f64::from(*w) * f64::from(*a))
        .sum()
}

fn values() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    (1usize..=3).prop_flat_map(|blocks| {
        let n = blocks * 256;
        (
            prop::collection::vec(-2.0f32..2.0, n),
            prop::collection::vec(-30.0f32..30.0, n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn kernels_match_the_dequantized_dot_product((w, x) in values()) {
        let act = Activations::quantize(&x).unwrap();
        let xq = quantize(GgmlType::Q8_0, &x).unwrap();
        for ty in types() {
            let row = quantize(ty, &w).unwrap();
            let want = reference(ty, &row, &act, &xq);
            // Rounding of the per-block f32 products: relative to the sum of |terms|.
            let scale: f64 = dequantize(ty, &row, w.len()).unwrap().iter()
                .zip(dequantize(GgmlType::Q8_0, &xq, x.len()).unwrap())
                .map(|(a, b)| f64::from(a.abs()) * f64::from(b.abs()))
                .sum::<f64>()
                .max(1e-30);
            let scalar = dot_with(Kernel::Scalar, ty, &row, &act).unwrap();
            prop_assert!((f64::from(scalar) - want).abs() <= 1e-5 * scale, "{ty} scalar {scalar} vs {want}");
            if Kernel::Avx2.available() {
                let simd = dot_with(Kernel::Avx2, ty, &row, &act).unwrap();
                prop_assert!((simd - scalar).abs() as f64 <= 1e-5 * scale, "{ty} avx2 {simd} vs scalar {scalar}");
            }
        }
    }
}

#[test]
fn matvec_is_dot_per_row() {
    let (rows, cols) = (37, 512);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
    let act = Activations::quantize(&x).unwrap();
    for ty in types() {
        let m = quantize(ty, &w).unwrap();
        let mut out = vec![0f32; rows];
        matvec(ty, &m, &act, &mut out).unwrap();
        let row_bytes = m.len() / rows;
        for (r, y) in out.iter().enumerate() {
            let want = dot(ty, &m[r * row_bytes..(r + 1) * row_bytes], &act).unwrap();
            assert_eq!(y.to_bits(), want.to_bits(), "{ty} row {r}");
        }
    }
}

#[test]
fn bad_shapes_and_types_are_errors() {
    let act = Activations::quantize(&[0.5f32; 256]).unwrap();
    let row = quantize(GgmlType::Q4_0, &[0.25f32; 256]).unwrap();
    assert!(matches!(
        dot(GgmlType::Q4_0, &row[..18 * 7], &act),
        Err(Error::ByteLength { .. })
    ));
    assert!(matches!(
        dot(GgmlType::Q3_K, &[0; 110], &act),
        Err(Error::Unsupported { .. })
    ));
    let mut out = vec![0f32; 3];
    assert!(matches!(
        matvec(GgmlType::Q4_0, &row, &act, &mut out),
        Err(Error::ByteLength { .. })
    ));
    assert!(supports(GgmlType::Q4_1) && !supports(GgmlType::F16));
    assert_eq!(
        types().len(),
        8,
        "Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K"
    );
    assert!(Activations::quantize(&[1.0; 33]).is_err());
    assert!(Activations::quantize(&[f32::NAN; 32]).is_err());
}
