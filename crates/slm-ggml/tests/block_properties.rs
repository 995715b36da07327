//! Properties of every block format: the per-block error bound, idempotent round trips, and
//! no panics on arbitrary input (errors instead).

use half::f16;
use proptest::prelude::*;
use slm_ggml::prelude::*;

/// The legacy block formats (32 values per block) gguf-py quantizes.
const LEGACY: [GgmlType; 5] = [
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
];

/// Blocks of `offset + scale·u`, `u` uniform in [-1, 1], with scales from 2^-30 (f16 scales
/// underflow) to 2^12 (Q8_0's scale stays under f16's 65504); sometimes a constant block.
fn blocks() -> impl Strategy<Value = Vec<f32>> {
    let block = (-30i32..=12, -4.0f32..4.0, any::<bool>()).prop_flat_map(|(e, off, constant)| {
        let scale = 2f32.powi(e);
        let n = if constant { 1 } else { 32 };
        prop::collection::vec(-1.0f32..=1.0, n).prop_map(move |u| {
            let vals: Vec<f32> = u.iter().map(|v| off * scale + v * scale).collect();
            if vals.len() == 1 {
                vec![vals[0]; 32]
            } else {
                vals
            }
        })
    });
    prop::collection::vec(block, 1..=4).prop_map(|bs| bs.concat())
}

fn f16_at(b: &[u8], at: usize) -> f64 {
    f64::from(f16::from_le_bytes([b[at], b[at + 1]]).to_f32())
}

/// The largest |x - deq(q(x))| one block may show, derived from the format's arithmetic:
/// rounding to the nearest level costs half a step `d` (a whole step for the `_0` formats,
/// whose opposite extreme `x·(1/d) = +8` (or +16) is clipped to level 15 (31)); storing `d` as
/// f16 moves level `q` by `q·|d - d16|`, and storing `m` by `|m - m16|`. `slop` covers the f32
/// roundings of `1/d`, `x·id`, `x - min` and `d·q + m`.
fn bound(format: GgmlType, x: &[f32], b: &[u8]) -> f64 {
    let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let amax = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let min = x.iter().copied().fold(f64::INFINITY, f64::min);
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let d16 = f16_at(b, 0);
    let (step_share, d, levels, m_err) = match format {
        GgmlType::Q8_0 => (0.5, amax / 127.0, 127.0, 0.0),
        GgmlType::Q4_0 => (1.0, amax / 8.0, 8.0, 0.0),
        GgmlType::Q5_0 => (1.0, amax / 16.0, 16.0, 0.0),
        GgmlType::Q4_1 => (0.5, (max - min) / 15.0, 15.0, (min - f16_at(b, 2)).abs()),
        GgmlType::Q5_1 => (0.5, (max - min) / 31.0, 31.0, (min - f16_at(b, 2)).abs()),
        _ => unreachable!("a format this test does not know"),
    };
    let slop = 1e-5 * d + 4.0 * f64::from(f32::EPSILON) * (amax + min.abs());
    step_share * d + levels * (d - d16.abs()).abs() + m_err + slop
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn per_block_error_is_bounded(x in blocks()) {
        for format in LEGACY {
            let bytes = quantize(format, &x).unwrap();
            let y = dequantize(format, &bytes, x.len()).unwrap();
            for (k, ((xb, yb), bb)) in x.chunks(32).zip(y.chunks(32)).zip(bytes.chunks(format.type_size())).enumerate() {
                let limit = bound(format, xb, bb);
                for (i, (a, b)) in xb.iter().zip(yb).enumerate() {
                    let err = (f64::from(*a) - f64::from(*b)).abs();
                    prop_assert!(err <= limit, "{format} block {k} value {i}: |{a} - {b}| = {err} > {limit}");
                }
            }
        }
    }

    #[test]
    fn dequantize_quantize_is_idempotent(x in blocks()) {
        for format in LEGACY {
            let once = dequantize(format, &quantize(format, &x).unwrap(), x.len()).unwrap();
            let twice = dequantize(format, &quantize(format, &once).unwrap(), x.len()).unwrap();
            // `==` on f32: a zero block may come back as -0.0 once its scale's sign flips.
            prop_assert_eq!(&once, &twice, "{}", format);
        }
    }

    #[test]
    fn arbitrary_values_error_instead_of_panicking(
        bits in prop::collection::vec(any::<u32>(), 0..=520),
    ) {
        let x: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
        for format in GgmlType::all().filter(|t| t.can_quantize()) {
            let bs = format.block_size();
            match quantize(format, &x) {
                Ok(bytes) => {
                    prop_assert!(x.len().is_multiple_of(bs) && x.iter().all(|v| v.is_finite()));
                    prop_assert_eq!(dequantize(format, &bytes, x.len()).unwrap().len(), x.len());
                }
                Err(Error::LengthNotMultiple { len, .. }) => prop_assert!(!len.is_multiple_of(bs)),
                Err(Error::NonFinite { index, .. }) => prop_assert!(!x[index].is_finite()),
                Err(Error::ScaleOverflow { .. }) => {}
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }

    #[test]
    fn arbitrary_bytes_error_instead_of_panicking(
        bytes in prop::collection::vec(any::<u8>(), 0..=600),
        n in 0usize..=600,
    ) {
        for format in GgmlType::all().filter(|t| t.can_dequantize()) {
            match dequantize(format, &bytes, n) {
                Ok(y) => prop_assert_eq!(y.len(), n),
                Err(Error::LengthNotMultiple { .. } | Error::ByteLength { .. }) => {}
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }
}

#[test]
fn whole_blocks_of_arbitrary_bytes_decode() {
    // Every byte pattern is a valid block: 3 blocks of each format from a counter.
    for format in GgmlType::all().filter(|t| t.can_dequantize()) {
        let bytes: Vec<u8> = (0..3 * format.type_size())
            .map(|i| (i * 37 % 251) as u8)
            .collect();
        let n = 3 * format.block_size();
        assert_eq!(dequantize(format, &bytes, n).unwrap().len(), n);
    }
}

/// The 6-bit scale and min of sub-block `j` (ggml's `get_scale_min_k4`, written out again here
/// so the bound below reads the bytes independently of the crate's decoder).
fn scale_min(j: usize, q: &[u8]) -> (f64, f64) {
    let (sc, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (f64::from(sc), f64::from(m))
}

/// How far `x` lies outside `[lo, hi]`.
fn outside(x: f64, lo: f64, hi: f64) -> f64 {
    (lo - x).max(x - hi).max(0.0)
}

/// Super-blocks of 256 values: eight sub-blocks of 32 at independent scales and offsets (so
/// the 6-bit sub-block scales matter), sometimes a constant or all-zero sub-block.
fn super_blocks() -> impl Strategy<Value = Vec<f32>> {
    let sub = (-12i32..=6, -2.0f32..2.0, 0u8..8).prop_flat_map(|(e, off, kind)| {
        let scale = 2f32.powi(e);
        prop::collection::vec(-1.0f32..=1.0, 32).prop_map(move |u| match kind {
            0 => vec![0.0; 32],
            1 => vec![off * scale; 32],
            _ => u.iter().map(|v| off * scale + v * scale).collect(),
        })
    });
    prop::collection::vec(sub, 8..=16)
        .prop_filter("whole super-blocks", |s| s.len() % 8 == 0)
        .prop_map(|s| s.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Q4_K/Q5_K: every value decodes to the nearest level of its sub-block's stored scale and
    /// minimum (`d*sc*q - dmin*m`, q in 0..=nmax): at most half a step away, plus how far the
    /// value lies outside the levels' range. Q6_K likewise with `d*sc*(q - 32)`, q - 32 in
    /// -32..=31. And in absolute terms: within an eighth of the super-block's range (Q4_K,
    /// Q5_K) or a sixteenth of its largest magnitude (Q6_K).
    #[test]
    fn k_quant_error_is_bounded(x in super_blocks()) {
        for (ty, nmax) in [(GgmlType::Q4_K, 15.0), (GgmlType::Q5_K, 31.0), (GgmlType::Q6_K, 0.0)] {
            let bytes = quantize(ty, &x).unwrap();
            let y = dequantize(ty, &bytes, x.len()).unwrap();
            for (s, ((xs, ys), b)) in x.chunks(256).zip(y.chunks(256)).zip(bytes.chunks(ty.type_size())).enumerate() {
                let amax = xs.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
                let lo = xs.iter().copied().fold(f32::INFINITY, f32::min).min(0.0) as f64;
                let hi = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max).max(0.0) as f64;
                for (i, (a, r)) in xs.iter().zip(ys).enumerate() {
                    let (a, r) = (f64::from(*a), f64::from(*r));
                    let limit = if ty == GgmlType::Q6_K {
                        let d = f16_at(b, 208) * f64::from(b[192 + i / 16] as i8);
                        let (l, h) = if d >= 0.0 { (-32.0 * d, 31.0 * d) } else { (31.0 * d, -32.0 * d) };
                        d.abs() / 2.0 + outside(a, l, h)
                    } else {
                        let (sc, m) = scale_min(i / 32, &b[4..16]);
                        let (d, dm) = (f16_at(b, 0) * sc, f16_at(b, 2) * m);
                        d / 2.0 + outside(a, -dm, nmax * d - dm)
                    };
                    let slop = 1e-5 * limit + 8.0 * f64::from(f32::EPSILON) * amax;
                    let err = (a - r).abs();
                    prop_assert!(err <= limit + slop, "{ty} super-block {s} value {i}: |{a} - {r}| = {err} > {limit}");
                    let coarse = if ty == GgmlType::Q6_K { amax / 16.0 } else { (hi - lo) / 8.0 };
                    prop_assert!(err <= coarse + 1e-6, "{ty} super-block {s} value {i}: {err} > {coarse}");
                }
            }
        }
    }
}
