//! [`quantize`] and [`dequantize`]: whole tensors (rows laid end to end) to and from the block
//! stream a GGUF file stores. Large tensors are split across rayon tasks by whole blocks.

use rayon::prelude::*;

use crate::blocks::{Overflow, QK, QK_K, float, q4, q4_k, q5, q5_k, q6_k, q8};
use crate::error::{Error, Result};
use crate::types::GgmlType;

/// Output elements per rayon task, and the size below which one thread does it all.
pub(crate) const PAR_CHUNK: usize = 1 << 14;

/// Quantizes `values` (a whole number of blocks, e.g. the rows of a weight matrix laid end to
/// end) into `ty`'s block stream.
///
/// The bytes are ggml's `quantize_row_*_ref` (what `llama-quantize` writes without an
/// importance matrix), which for Q8_0, Q4_1 and Q5_1 are also gguf-py's
/// `gguf.quants.quantize(values, type)` (what llama.cpp's converter writes) and for Q4_0 and
/// Q5_0 are on all but values within a rounding of a level boundary; F16 is numpy's
/// round-to-nearest-even `astype(np.float16)`, BF16 gguf-py's rounding.
///
/// # Errors
/// - [`Error::Unsupported`] for types without a quantizer (see [`GgmlType::can_quantize`]);
/// - [`Error::LengthNotMultiple`] when `values.len()` is not a whole number of blocks;
/// - [`Error::NonFinite`] for a NaN or infinite value (checked before any work);
/// - [`Error::ScaleOverflow`] when a block's scale or minimum (or an F16 value) exceeds f16's
///   range; the lowest such block is named.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Result<Vec<u8>> {
    let len = ty.bytes_for(values.len()).ok_or(Error::LengthNotMultiple {
        ty,
        len: values.len(),
    })?;
    if !ty.can_quantize() {
        return Err(Error::Unsupported {
            ty,
            op: "quantization",
        });
    }
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFinite { index, value });
    }
    let mut out = vec![0u8; len];
    let result = match ty {
        GgmlType::F32 => encode::<1>(values, &mut out, 4, float::quantize_f32),
        GgmlType::F16 => encode::<1>(values, &mut out, 2, float::quantize_f16),
        GgmlType::BF16 => encode::<1>(values, &mut out, 2, float::quantize_bf16),
        GgmlType::Q8_0 => encode::<QK>(values, &mut out, ty.type_size(), q8::quantize_q8_0),
        GgmlType::Q4_0 => encode::<QK>(values, &mut out, ty.type_size(), q4::quantize_q4_0),
        GgmlType::Q4_1 => encode::<QK>(values, &mut out, ty.type_size(), q4::quantize_q4_1),
        GgmlType::Q5_0 => encode::<QK>(values, &mut out, ty.type_size(), q5::quantize_q5_0),
        GgmlType::Q5_1 => encode::<QK>(values, &mut out, ty.type_size(), q5::quantize_q5_1),
        GgmlType::Q4_K => encode::<QK_K>(values, &mut out, ty.type_size(), q4_k::quantize_q4_k),
        GgmlType::Q5_K => encode::<QK_K>(values, &mut out, ty.type_size(), q5_k::quantize_q5_k),
        GgmlType::Q6_K => encode::<QK_K>(values, &mut out, ty.type_size(), q6_k::quantize_q6_k),
        _ => unreachable!("can_quantize lists exactly the types above"),
    };
    result.map_err(|failure| overflow(ty, failure))?;
    Ok(out)
}

/// The error of a block whose scale did not fit an f16.
fn overflow(ty: GgmlType, (block, Overflow { field, value }): (usize, Overflow)) -> Error {
    Error::ScaleOverflow {
        ty,
        block,
        field,
        value,
    }
}

/// One importance-weighted block quantizer: the block, its columns' importance, the mean square
/// of its row, the output bytes.
type WeightedBlock<const BS: usize> =
    fn(&[f32; BS], &[f32; BS], f32, &mut [u8]) -> Result<(), Overflow>;

/// Quantizes `values`, rows of `row_len` laid end to end, weighting each value's rounding error
/// by `importance[column]`: llama.cpp's importance matrix (the mean squared activation of each
/// input channel over calibration text, what `llama-imatrix` collects and `llama-quantize
/// --imatrix` uses). The bytes are identical to ggml's `quantize_row_*_impl` (what
/// `llama-quantize --imatrix` writes) for Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K; the other
/// types have no weighted form and are quantized as [`quantize`] does (Q8_0 ignores the
/// matrix in llama.cpp too).
///
/// # Errors
/// [`Error::InvalidImportance`] when `importance` is not one finite, non-negative weight per
/// column or `values` is not whole rows; otherwise as [`quantize`].
pub fn quantize_weighted(
    ty: GgmlType,
    values: &[f32],
    row_len: usize,
    importance: &[f32],
) -> Result<Vec<u8>> {
    if importance.len() != row_len || row_len == 0 || !values.len().is_multiple_of(row_len) {
        return Err(Error::InvalidImportance(format!(
            "{} weights for rows of {row_len} ({} values)",
            importance.len(),
            values.len()
        )));
    }
    if let Some((i, w)) = importance
        .iter()
        .enumerate()
        .find(|(_, w)| !w.is_finite() || **w < 0.0)
    {
        return Err(Error::InvalidImportance(format!(
            "weight {i} is {w}: weights must be finite and non-negative"
        )));
    }
    if !row_len.is_multiple_of(ty.block_size()) {
        return Err(Error::LengthNotMultiple { ty, len: row_len });
    }
    use GgmlType::*;
    if !ty.has_weighted_quantizer() {
        return quantize(ty, values);
    }
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFinite { index, value });
    }
    let len = ty.bytes_for(values.len()).ok_or(Error::LengthNotMultiple {
        ty,
        len: values.len(),
    })?;
    let mut out = vec![0u8; len];
    let (x, w, o, r, ts) = (values, importance, &mut out[..], row_len, ty.type_size());
    let result = match ty {
        Q4_0 => rows::<QK>(x, w, o, r, ts, q4::quantize_q4_0_weighted),
        Q4_1 => rows::<QK>(x, w, o, r, ts, q4::quantize_q4_1_weighted),
        Q5_0 => rows::<QK>(x, w, o, r, ts, q5::quantize_q5_0_weighted),
        Q5_1 => rows::<QK>(x, w, o, r, ts, q5::quantize_q5_1_weighted),
        Q4_K => rows::<QK_K>(x, w, o, r, ts, q4_k::quantize_q4_k_weighted),
        Q5_K => rows::<QK_K>(x, w, o, r, ts, q5_k::quantize_q5_k_weighted),
        _ => rows::<QK_K>(x, w, o, r, ts, q6_k::quantize_q6_k_weighted),
    };
    result.map_err(|failure| overflow(ty, failure))?;
    Ok(out)
}

/// Runs a weighted block quantizer over whole rows (in parallel), each row with its mean
/// square (`sum(x²) / row_len` in f32, as ggml sums); on overflow the lowest failing block.
fn rows<const BS: usize>(
    values: &[f32],
    importance: &[f32],
    out: &mut [u8],
    row_len: usize,
    ts: usize,
    f: WeightedBlock<BS>,
) -> Result<(), (usize, Overflow)> {
    let row_bytes = row_len / BS * ts;
    let blocks_per_row = row_len / BS;
    let failures: Vec<(usize, Overflow)> = values
        .par_chunks(row_len)
        .zip(out.par_chunks_mut(row_bytes))
        .enumerate()
        .filter_map(|(r, (x, o))| {
            let mut sum_x2 = 0.0f32;
            for &v in x {
                sum_x2 += v * v;
            }
            let sigma2 = sum_x2 / row_len as f32;
            for (b, ((xb, wb), ob)) in x
                .chunks_exact(BS)
                .zip(importance.chunks_exact(BS))
                .zip(o.chunks_exact_mut(ts))
                .enumerate()
            {
                let xb: &[f32; BS] = xb.try_into().expect("whole blocks");
                let wb: &[f32; BS] = wb.try_into().expect("whole blocks");
                if let Err(e) = f(xb, wb, sigma2, ob) {
                    return Some((r * blocks_per_row + b, e));
                }
            }
            None
        })
        .collect();
    match failures.into_iter().min_by_key(|(block, _)| *block) {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

/// Dequantizes `n` values of type `ty` from its block stream `bytes`.
///
/// The values are bit-identical to gguf-py's `gguf.quants.dequantize(bytes, type)` and to
/// ggml's `dequantize_row_*`: a stored scale that is infinite or NaN decodes as such.
///
/// # Errors
/// - [`Error::LengthNotMultiple`] when `n` is not a whole number of blocks;
/// - [`Error::ByteLength`] when `bytes` is not exactly the size of `n` values;
/// - [`Error::Unsupported`] for types without a dequantizer (see [`GgmlType::can_dequantize`]).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    check(ty, bytes, n)?;
    let mut out = vec![0f32; n];
    dequantize_into(ty, bytes, &mut out)?;
    Ok(out)
}

/// Like [`dequantize`], writing `out.len()` values into `out`.
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    check(ty, bytes, out.len())?;
    let ts = ty.type_size();
    match ty {
        GgmlType::F32 => decode::<1>(bytes, ts, out, float::dequantize_f32),
        GgmlType::F16 => decode::<1>(bytes, ts, out, float::dequantize_f16),
        GgmlType::BF16 => decode::<1>(bytes, ts, out, float::dequantize_bf16),
        GgmlType::Q8_0 => decode::<QK>(bytes, ts, out, q8::dequantize_q8_0),
        GgmlType::Q4_0 => decode::<QK>(bytes, ts, out, q4::dequantize_q4_0),
        GgmlType::Q4_1 => decode::<QK>(bytes, ts, out, q4::dequantize_q4_1),
        GgmlType::Q5_0 => decode::<QK>(bytes, ts, out, q5::dequantize_q5_0),
        GgmlType::Q5_1 => decode::<QK>(bytes, ts, out, q5::dequantize_q5_1),
        GgmlType::Q4_K => decode::<QK_K>(bytes, ts, out, q4_k::dequantize_q4_k),
        GgmlType::Q5_K => decode::<QK_K>(bytes, ts, out, q5_k::dequantize_q5_k),
        GgmlType::Q6_K => decode::<QK_K>(bytes, ts, out, q6_k::dequantize_q6_k),
        _ => {
            return Err(Error::Unsupported {
                ty,
                op: "dequantization",
            });
        }
    }
    Ok(())
}

/// Checks that `bytes` holds exactly the blocks of `n` values of `ty`.
fn check(ty: GgmlType, bytes: &[u8], n: usize) -> Result<()> {
    let expected = ty
        .bytes_for(n)
        .ok_or(Error::LengthNotMultiple { ty, len: n })?;
    if bytes.len() != expected {
        return Err(Error::ByteLength {
            ty,
            elements: n,
            expected,
            got: bytes.len(),
        });
    }
    Ok(())
}

/// Runs `f` on every block (`BS` values in, `ts` bytes out), in parallel for large inputs; on
/// overflow, the lowest failing block's index and field.
fn encode<const BS: usize>(
    values: &[f32],
    out: &mut [u8],
    ts: usize,
    f: fn(&[f32; BS], &mut [u8]) -> Result<(), Overflow>,
) -> Result<(), (usize, Overflow)> {
    let run = |first: usize, x: &[f32], o: &mut [u8]| {
        for (i, (xb, ob)) in x.chunks_exact(BS).zip(o.chunks_exact_mut(ts)).enumerate() {
            let xb: &[f32; BS] = xb.try_into().expect("chunks_exact yields whole blocks");
            f(xb, ob).map_err(|e| (first + i, e))?;
        }
        Ok(())
    };
    if values.len() <= PAR_CHUNK {
        return run(0, values, out);
    }
    let per_task = PAR_CHUNK / BS;
    let failures: Vec<(usize, Overflow)> = values
        .par_chunks(per_task * BS)
        .zip(out.par_chunks_mut(per_task * ts))
        .enumerate()
        .filter_map(|(task, (x, o))| run(task * per_task, x, o).err())
        .collect();
    match failures.into_iter().min_by_key(|(block, _)| *block) {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

/// Runs `f` on every block (`ts` bytes in, `BS` values out), in parallel for large inputs.
/// The caller has checked that `bytes` holds exactly `out.len() / BS` blocks.
fn decode<const BS: usize>(bytes: &[u8], ts: usize, out: &mut [f32], f: fn(&[u8], &mut [f32; BS])) {
    let run = |b: &[u8], o: &mut [f32]| {
        for (bb, ob) in b.chunks_exact(ts).zip(o.chunks_exact_mut(BS)) {
            if let Ok(ob) = <&mut [f32; BS]>::try_from(ob) {
                f(bb, ob);
            }
        }
    };
    if out.len() <= PAR_CHUNK {
        run(bytes, out);
    } else {
        let per_task = PAR_CHUNK / BS;
        bytes
            .par_chunks(per_task * ts)
            .zip(out.par_chunks_mut(per_task * BS))
            .for_each(|(b, o)| run(b, o));
    }
}

#[cfg(test)]
// The expected values are exact f32s printed as gguf-py printed them.
#[allow(clippy::excessive_precision)]
mod tests {
    use half::{bf16, f16};

    use super::*;

    const LEGACY: [GgmlType; 5] = [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
    ];

    /// Asserts bit equality (so -0.0 != 0.0 and NaN payloads count).
    fn assert_bits_eq(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{what}[{i}]: got {g}, want {w}");
        }
    }

    /// Deterministic test bytes (a 64-bit LCG, top byte), as in the generator of the
    /// k-quant reference hashes below.
    fn lcg_bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 56) as u8
            })
            .collect()
    }

    fn fnv1a(values: &[f32]) -> u64 {
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .fold(0xcbf29ce484222325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
            })
    }

    /// Three pseudo-random blocks with sane f16 scales; expected values from gguf-py 0.19.0
    /// `gguf.quants.dequantize` (FNV-1a 64 of the f32 bytes, plus a few values).
    fn k_quant_case(ty: GgmlType, scale_at: &[usize], hash: u64, probes: [f32; 9]) {
        let ts = ty.type_size();
        let mut raw = Vec::new();
        for blk in 0..3u64 {
            let mut b = lcg_bytes(ts, 1000 + blk);
            for (&at, base) in scale_at.iter().zip([0.0123f32, -0.0047]) {
                let s = f16::from_f32(base * (blk + 1) as f32);
                b[at..at + 2].copy_from_slice(&s.to_le_bytes());
            }
            raw.extend(b);
        }
        let got = dequantize(ty, &raw, 3 * QK_K).unwrap();
        let at = [0, 1, 31, 32, 100, 255, 256, 511, 767];
        let got_probes: Vec<f32> = at.iter().map(|&i| got[i]).collect();
        assert_bits_eq(&got_probes, &probes, ty.name());
        assert_eq!(fnv1a(&got), hash, "{}", ty.name());
    }

    #[test]
    fn q4_k_matches_gguf_py() {
        let probes = [
            2.115966796875,
            6.5926513671875,
            0.1973876953125,
            8.7041015625,
            0.4820556640625,
            2.39373779296875,
            8.9019775390625,
            0.1409912109375,
            2.5521240234375,
        ];
        k_quant_case(GgmlType::Q4_K, &[0, 2], 0xc59c7b01b63192a8, probes);
    }

    #[test]
    fn q6_k_matches_gguf_py() {
        let probes = [
            1.57421875,
            12.2001953125,
            32.24688720703125,
            -0.36895751953125,
            -4.3291015625,
            -35.05096435546875,
            43.291015625,
            -24.7939453125,
            3.9847412109375,
        ];
        k_quant_case(GgmlType::Q6_K, &[208], 0xd07b3321b6154ce5, probes);
    }

    #[test]
    fn float_types() {
        let xs = [
            0.0f32,
            -0.0,
            1.5,
            -2.25,
            65504.0,
            f32::INFINITY,
            1e-7,
            std::f32::consts::PI,
        ];
        let f32_bytes: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_bits_eq(
            &dequantize(GgmlType::F32, &f32_bytes, 8).unwrap(),
            &xs,
            "F32",
        );
        let h: Vec<u8> = xs
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect();
        let want: Vec<f32> = xs.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
        assert_bits_eq(&dequantize(GgmlType::F16, &h, 8).unwrap(), &want, "F16");
        let b: Vec<u8> = xs
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
            .collect();
        let want: Vec<f32> = xs.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
        assert_bits_eq(&dequantize(GgmlType::BF16, &b, 8).unwrap(), &want, "BF16");
    }

    /// The parallel path (many blocks) gives the same values as block-by-block decoding.
    #[test]
    fn parallel_matches_sequential() {
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_1,
            GgmlType::Q6_K,
            GgmlType::F16,
        ] {
            let n = 8 * PAR_CHUNK + 4 * ty.block_size();
            let mut raw = lcg_bytes(ty.bytes_for(n).unwrap(), 7);
            if ty == GgmlType::F16 {
                // keep the values finite so the comparison is by value
                raw.iter_mut().skip(1).step_by(2).for_each(|b| *b &= 0x3b);
            }
            let all = dequantize(ty, &raw, n).unwrap();
            let ts = ty.type_size();
            let bs = ty.block_size();
            for (i, blk) in raw.chunks_exact(ts).enumerate().step_by(97) {
                let one = dequantize(ty, blk, bs).unwrap();
                assert_bits_eq(&all[i * bs..(i + 1) * bs], &one, ty.name());
            }
        }
    }

    #[test]
    fn dequantize_errors_are_typed() {
        assert_eq!(
            dequantize(GgmlType::Q8_0, &[0; 33], 32),
            Err(Error::ByteLength {
                ty: GgmlType::Q8_0,
                elements: 32,
                expected: 34,
                got: 33
            })
        );
        assert_eq!(
            dequantize(GgmlType::Q8_0, &[0; 34], 31),
            Err(Error::LengthNotMultiple {
                ty: GgmlType::Q8_0,
                len: 31
            })
        );
        assert_eq!(
            dequantize(GgmlType::Q3_K, &[0; 110], 256),
            Err(Error::Unsupported {
                ty: GgmlType::Q3_K,
                op: "dequantization"
            })
        );
        assert_eq!(
            quantize(GgmlType::Q3_K, &[0.0; 256]),
            Err(Error::Unsupported {
                ty: GgmlType::Q3_K,
                op: "quantization"
            })
        );
        assert!(dequantize(GgmlType::Q8_0, &[], 0).unwrap().is_empty());
    }

    #[test]
    fn float_types_round_trip() {
        let xs: Vec<f32> = (0..PAR_CHUNK + 3)
            .map(|i| (i as f32 * 0.731).sin() * 300.0)
            .collect();
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
            let b = quantize(ty, &xs).unwrap();
            let want: Vec<f32> = match ty {
                GgmlType::F32 => xs.clone(),
                GgmlType::F16 => xs.iter().map(|&x| f16::from_f32(x).to_f32()).collect(),
                _ => xs.iter().map(|&x| bf16::from_f32(x).to_f32()).collect(),
            };
            assert_bits_eq(&dequantize(ty, &b, xs.len()).unwrap(), &want, ty.name());
        }
        let mut big = xs.clone();
        big[PAR_CHUNK + 1] = 7e4;
        assert_eq!(
            quantize(GgmlType::F16, &big),
            Err(Error::ScaleOverflow {
                ty: GgmlType::F16,
                block: PAR_CHUNK + 1,
                field: "value",
                value: 7e4
            })
        );
    }

    /// The parallel quantizer names the lowest failing block, whichever task finds it first.
    #[test]
    fn parallel_overflow_names_the_first_block() {
        let mut x = vec![0.5f32; 8 * PAR_CHUNK];
        x[5 * PAR_CHUNK + 40] = 1e7;
        x[2 * PAR_CHUNK + 64] = -2e7;
        let err = quantize(GgmlType::Q8_0, &x).unwrap_err();
        assert!(
            matches!(err, Error::ScaleOverflow { block, .. } if block == (2 * PAR_CHUNK + 64) / 32),
            "{err}"
        );
    }

    fn ramp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0)
            .collect()
    }

    #[test]
    fn every_format_round_trips_close() {
        let x = ramp(96);
        for format in LEGACY {
            let bytes = quantize(format, &x).unwrap();
            assert_eq!(bytes.len(), 3 * format.type_size());
            let y = dequantize(format, &bytes, x.len()).unwrap();
            let worst = x
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            // 10 units of range over 15 (Q4) to 254 (Q8) levels.
            assert!(worst < 0.7, "{format}: max error {worst}");
        }
    }

    #[test]
    fn partial_blocks_are_refused() {
        let err = quantize(GgmlType::Q8_0, &ramp(40)).unwrap_err();
        assert!(matches!(
            err,
            Error::LengthNotMultiple {
                ty: GgmlType::Q8_0,
                len: 40
            }
        ));
        assert!(matches!(
            dequantize(GgmlType::Q4_0, &[0; 18], 31),
            Err(Error::LengthNotMultiple { len: 31, .. })
        ));
    }

    #[test]
    fn non_finite_values_are_refused_with_their_index() {
        let mut x = ramp(64);
        x[45] = f32::NAN;
        x[50] = f32::INFINITY;
        let err = quantize(GgmlType::Q4_1, &x).unwrap_err();
        assert!(matches!(err, Error::NonFinite { index: 45, value } if value.is_nan()));
        x[45] = 0.0;
        let err = quantize(GgmlType::Q4_1, &x).unwrap_err();
        assert_eq!(
            err.to_string(),
            "value 50 is inf: only finite values can be quantized"
        );
    }

    #[test]
    fn scale_overflow_names_the_block() {
        let mut x = vec![0.0f32; 64];
        x[40] = 1e7; // d = 1e7 / 127 > 65504
        let err = quantize(GgmlType::Q8_0, &x).unwrap_err();
        assert!(
            matches!(
                err,
                Error::ScaleOverflow {
                    block: 1,
                    field: "d",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn wrong_byte_count_is_refused() {
        let err = dequantize(GgmlType::Q5_1, &[0; 47], 64).unwrap_err();
        assert!(matches!(
            err,
            Error::ByteLength {
                expected: 48,
                got: 47,
                ..
            }
        ));
        assert_eq!(err.to_string(), "Q5_1: 64 values take 48 bytes, got 47");
    }

    #[test]
    fn empty_input_is_empty_output() {
        for format in LEGACY {
            assert!(quantize(format, &[]).unwrap().is_empty());
            assert!(dequantize(format, &[], 0).unwrap().is_empty());
        }
    }
}
