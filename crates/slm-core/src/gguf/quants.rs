//! GGML storage types and their dequantization to `f32`.
//!
//! Block layouts follow `ggml/src/ggml-common.h`; the arithmetic follows `ggml-quants.c`
//! (`dequantize_row_*`) and gguf-py's `gguf/quants.py` operation for operation (no fused
//! multiply-add), so results are bit-exact with both. Large tensors are split across rayon
//! tasks by whole blocks.

use half::{bf16, f16};
use rayon::prelude::*;

use crate::error::{Error, Result};

macro_rules! ggml_types {
    ($($(#[$doc:meta])* $variant:ident = $id:literal, $name:literal, $block:expr, $size:expr;)*) => {
        /// A GGML tensor storage type (`enum ggml_type` of `ggml.h`), with its GGUF type id.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[allow(non_camel_case_types)]
        #[non_exhaustive]
        pub enum GgmlType {
            $($(#[$doc])* $variant = $id,)*
        }

        impl GgmlType {
            /// The type for a GGUF type id, or `None` for ids this crate does not know.
            pub fn from_u32(id: u32) -> Option<Self> {
                match id {
                    $($id => Some(GgmlType::$variant),)*
                    _ => None,
                }
            }

            /// GGML's name (`Q4_K`, `F16`, ...), as gguf-py prints it.
            pub fn name(self) -> &'static str {
                match self {
                    $(GgmlType::$variant => $name,)*
                }
            }

            /// Elements per block (1 for plain float and integer types).
            pub fn block_size(self) -> usize {
                match self {
                    $(GgmlType::$variant => $block,)*
                }
            }

            /// Bytes per block.
            pub fn type_size(self) -> usize {
                match self {
                    $(GgmlType::$variant => $size,)*
                }
            }
        }
    };
}

/// Elements per super-block of the k-quants.
const QK_K: usize = 256;

ggml_types! {
    /// IEEE float32.
    F32 = 0, "F32", 1, 4;
    /// IEEE float16.
    F16 = 1, "F16", 1, 2;
    /// 4-bit, one f16 scale per 32.
    Q4_0 = 2, "Q4_0", 32, 2 + 16;
    /// 4-bit, f16 scale and min per 32.
    Q4_1 = 3, "Q4_1", 32, 2 + 2 + 16;
    /// 5-bit, one f16 scale per 32.
    Q5_0 = 6, "Q5_0", 32, 2 + 4 + 16;
    /// 5-bit, f16 scale and min per 32.
    Q5_1 = 7, "Q5_1", 32, 2 + 2 + 4 + 16;
    /// 8-bit, one f16 scale per 32.
    Q8_0 = 8, "Q8_0", 32, 2 + 32;
    /// 8-bit with f32 scale and sum (an activation type).
    Q8_1 = 9, "Q8_1", 32, 4 + 4 + 32;
    /// 2-bit k-quant.
    Q2_K = 10, "Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4;
    /// 3-bit k-quant.
    Q3_K = 11, "Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12;
    /// 4-bit k-quant: f16 d and dmin, 8 sub-blocks of 32 with 6-bit scales and mins.
    Q4_K = 12, "Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12;
    /// 5-bit k-quant.
    Q5_K = 13, "Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12;
    /// 6-bit k-quant: 16 sub-blocks of 16 with int8 scales, one f16 d.
    Q6_K = 14, "Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16;
    /// 8-bit k-quant (an activation type).
    Q8_K = 15, "Q8_K", QK_K, 4 + QK_K + QK_K / 8;
    /// i-quant.
    IQ2_XXS = 16, "IQ2_XXS", QK_K, 2 + QK_K / 4;
    /// i-quant.
    IQ2_XS = 17, "IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32;
    /// i-quant.
    IQ3_XXS = 18, "IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8;
    /// i-quant.
    IQ1_S = 19, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16;
    /// i-quant, non-linear 4-bit.
    IQ4_NL = 20, "IQ4_NL", 32, 2 + 16;
    /// i-quant.
    IQ3_S = 21, "IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4;
    /// i-quant.
    IQ2_S = 22, "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16;
    /// i-quant.
    IQ4_XS = 23, "IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64;
    /// int8.
    I8 = 24, "I8", 1, 1;
    /// int16.
    I16 = 25, "I16", 1, 2;
    /// int32.
    I32 = 26, "I32", 1, 4;
    /// int64.
    I64 = 27, "I64", 1, 8;
    /// IEEE float64.
    F64 = 28, "F64", 1, 8;
    /// i-quant.
    IQ1_M = 29, "IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32;
    /// bfloat16.
    BF16 = 30, "BF16", 1, 2;
    /// ternary.
    TQ1_0 = 34, "TQ1_0", QK_K, 2 + 4 * 13;
    /// ternary.
    TQ2_0 = 35, "TQ2_0", QK_K, 2 + 64;
    /// microscaling FP4.
    MXFP4 = 39, "MXFP4", 32, 1 + 16;
    /// NVIDIA FP4.
    NVFP4 = 40, "NVFP4", 64, 4 + 32;
    /// 1-bit.
    Q1_0 = 41, "Q1_0", 128, 2 + 16;
}

impl GgmlType {
    /// The GGUF type id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Whether [`dequantize`] supports this type.
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q4_K | Q6_K
        )
    }

    /// Bytes that `n_elements` take, or `None` if `n_elements` is not a whole number of blocks.
    pub fn bytes_for(self, n_elements: usize) -> Option<usize> {
        if !n_elements.is_multiple_of(self.block_size()) {
            return None;
        }
        (n_elements / self.block_size()).checked_mul(self.type_size())
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Dequantizes `n_elements` values of type `ty` stored in `bytes` (a whole number of blocks).
///
/// Fails with [`Error::Unsupported`] for types without a dequantizer here (see
/// [`GgmlType::can_dequantize`]) and [`Error::InvalidInput`] when `bytes` is not exactly the
/// size of `n_elements` values.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>> {
    check(ty, bytes, n_elements)?;
    let mut out = vec![0f32; n_elements];
    dequantize_into(ty, bytes, &mut out)?;
    Ok(out)
}

/// Like [`dequantize`], writing `out.len()` values into `out`.
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    check(ty, bytes, out.len())?;
    match ty {
        GgmlType::F32 => blocks::<1>(bytes, 4, out, |b, y| {
            y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }),
        GgmlType::F16 => blocks::<1>(bytes, 2, out, |b, y| y[0] = f16_at(b, 0)),
        GgmlType::BF16 => blocks::<1>(bytes, 2, out, |b, y| {
            y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32()
        }),
        GgmlType::Q8_0 => blocks::<32>(bytes, ty.type_size(), out, q8_0),
        GgmlType::Q4_0 => blocks::<32>(bytes, ty.type_size(), out, q4_0),
        GgmlType::Q4_1 => blocks::<32>(bytes, ty.type_size(), out, q4_1),
        GgmlType::Q5_0 => blocks::<32>(bytes, ty.type_size(), out, q5_0),
        GgmlType::Q5_1 => blocks::<32>(bytes, ty.type_size(), out, q5_1),
        GgmlType::Q4_K => blocks::<QK_K>(bytes, ty.type_size(), out, q4_k),
        GgmlType::Q6_K => blocks::<QK_K>(bytes, ty.type_size(), out, q6_k),
        other => {
            return Err(Error::Unsupported {
                what: "GGML dequantization",
                value: other.name().to_owned(),
            });
        }
    }
    Ok(())
}

fn check(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<()> {
    match ty.bytes_for(n_elements) {
        Some(n) if n == bytes.len() => Ok(()),
        expected => Err(Error::InvalidInput(format!(
            "{n_elements} {} values need {} bytes, got {}",
            ty.name(),
            expected.map_or_else(|| "a whole number of blocks and".into(), |n| n.to_string()),
            bytes.len()
        ))),
    }
}

/// Output elements per rayon task, and the size below which one thread does it all.
const PAR_CHUNK: usize = 1 << 14;

/// Runs `f` on every block (`ts` bytes in, `BS` values out), in parallel for large inputs.
/// The caller has checked that `bytes` holds exactly `out.len() / BS` blocks.
fn blocks<const BS: usize>(
    bytes: &[u8],
    ts: usize,
    out: &mut [f32],
    f: impl Fn(&[u8], &mut [f32; BS]) + Sync,
) {
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

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// `block_q8_0 { half d; int8 qs[32]; }`: `x = d * q`.
fn q8_0(b: &[u8], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = d * f32::from(q as i8);
    }
}

/// `block_q4_0 { half d; uint8 qs[16]; }`: byte j holds element j (low) and j + 16 (high);
/// `x = d * (q - 8)`.
fn q4_0(b: &[u8], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let (lo, hi) = y.split_at_mut(16);
    for (j, &q) in b[2..18].iter().enumerate() {
        lo[j] = d * f32::from((q & 0x0F) as i8 - 8);
        hi[j] = d * f32::from((q >> 4) as i8 - 8);
    }
}

/// `block_q4_1 { half d; half m; uint8 qs[16]; }`: `x = d * q + m`.
fn q4_1(b: &[u8], y: &mut [f32; 32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let (lo, hi) = y.split_at_mut(16);
    for (j, &q) in b[4..20].iter().enumerate() {
        lo[j] = d * f32::from(q & 0x0F) + m;
        hi[j] = d * f32::from(q >> 4) + m;
    }
}

/// `block_q5_0 { half d; uint8 qh[4]; uint8 qs[16]; }`: bit j of `qh` is the fifth bit of
/// element j; `x = d * (q - 16)`.
fn q5_0(b: &[u8], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let (lo, hi) = y.split_at_mut(16);
    for (j, &q) in b[6..22].iter().enumerate() {
        let h0 = (((qh >> j) & 1) << 4) as u8;
        let h1 = (((qh >> (j + 16)) & 1) << 4) as u8;
        lo[j] = d * f32::from(((q & 0x0F) | h0) as i8 - 16);
        hi[j] = d * f32::from(((q >> 4) | h1) as i8 - 16);
    }
}

/// `block_q5_1 { half d; half m; uint8 qh[4]; uint8 qs[16]; }`: `x = d * q + m`.
fn q5_1(b: &[u8], y: &mut [f32; 32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let (lo, hi) = y.split_at_mut(16);
    for (j, &q) in b[8..24].iter().enumerate() {
        let h0 = (((qh >> j) & 1) << 4) as u8;
        let h1 = (((qh >> (j + 16)) & 1) << 4) as u8;
        lo[j] = d * f32::from((q & 0x0F) | h0) + m;
        hi[j] = d * f32::from((q >> 4) | h1) + m;
    }
}

/// The 6-bit scale and min of sub-block `j` of a k-quant's 12 packed bytes
/// (`get_scale_min_k4`).
#[inline]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// `block_q4_K { half d; half dmin; uint8 scales[12]; uint8 qs[128]; }`: sub-block pairs of 64
/// values share 32 bytes (low nibbles first); `x = (d * sc) * q - (dmin * m)`.
fn q4_k(b: &[u8], y: &mut [f32; QK_K]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (pair, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * pair, scales);
        let (sc2, m2) = scale_min_k4(2 * pair + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let (lo, hi) = y.split_at_mut(32);
        for (l, &q) in q.iter().enumerate() {
            lo[l] = d1 * f32::from(q & 0x0F) - m1;
            hi[l] = d2 * f32::from(q >> 4) - m2;
        }
    }
}

/// `block_q6_K { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d; }`:
/// `x = (d * sc) * (q - 32)` with 4 low bits from `ql` and 2 high bits from `qh`.
fn q6_k(b: &[u8], y: &mut [f32; QK_K]) {
    let (ql, rest) = b.split_at(QK_K / 2);
    let (qh, rest) = rest.split_at(QK_K / 4);
    let (sc, d) = rest.split_at(QK_K / 16);
    let d = f16_at(d, 0);
    for half in 0..2 {
        let ql = &ql[64 * half..64 * half + 64];
        let qh = &qh[32 * half..32 * half + 32];
        let sc = &sc[8 * half..8 * half + 8];
        let y = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            y[l] = d * f32::from(sc[is] as i8) * f32::from(q1);
            y[l + 32] = d * f32::from(sc[is + 2] as i8) * f32::from(q2);
            y[l + 64] = d * f32::from(sc[is + 4] as i8) * f32::from(q3);
            y[l + 96] = d * f32::from(sc[is + 6] as i8) * f32::from(q4);
        }
    }
}

#[cfg(test)]
// The expected values are exact f32s printed as gguf-py printed them.
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;
    use crate::gguf::test_support::fixture;

    fn f32s(bytes: &[u8]) -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// Asserts bit equality (so -0.0 != 0.0 and NaN payloads count).
    fn assert_bits_eq(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{what}[{i}]: got {g}, want {w}");
        }
    }

    #[test]
    fn type_table_matches_gguf_py() {
        // (id, name, block_size, type_size) from gguf-py's GGML_QUANT_SIZES.
        let table = [
            (0, "F32", 1, 4),
            (1, "F16", 1, 2),
            (2, "Q4_0", 32, 18),
            (3, "Q4_1", 32, 20),
            (6, "Q5_0", 32, 22),
            (7, "Q5_1", 32, 24),
            (8, "Q8_0", 32, 34),
            (9, "Q8_1", 32, 40),
            (10, "Q2_K", 256, 84),
            (11, "Q3_K", 256, 110),
            (12, "Q4_K", 256, 144),
            (13, "Q5_K", 256, 176),
            (14, "Q6_K", 256, 210),
            (15, "Q8_K", 256, 292),
            (23, "IQ4_XS", 256, 136),
            (30, "BF16", 1, 2),
            (39, "MXFP4", 32, 17),
        ];
        for (id, name, bs, ts) in table {
            let t = GgmlType::from_u32(id).unwrap_or_else(|| panic!("type {id}"));
            assert_eq!(
                (t.id(), t.name(), t.block_size(), t.type_size()),
                (id, name, bs, ts)
            );
        }
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 42, 1000, u32::MAX] {
            assert_eq!(GgmlType::from_u32(id), None, "id {id}");
        }
    }

    /// Every `quant/bin/<case>.<TYPE>.bin` dequantizes bit-exactly to gguf-py's values.
    #[test]
    fn fixture_cases_bit_exact() {
        let cases: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture("quant/cases.json")).unwrap()).unwrap();
        let expected = std::fs::read(fixture("quant/dequant.safetensors")).unwrap();
        let expected = safetensors::SafeTensors::deserialize(&expected).unwrap();
        let mut checked = 0;
        for (case, spec) in cases["cases"].as_object().unwrap() {
            let shape: Vec<usize> = serde_json::from_value(spec["shape"].clone()).unwrap();
            let numel: usize = shape.iter().product();
            for (ty_name, t) in spec["types"].as_object().unwrap() {
                let ty = (0..64)
                    .filter_map(GgmlType::from_u32)
                    .find(|t| t.name() == ty_name)
                    .unwrap();
                let raw = std::fs::read(fixture(&format!("quant/{}", t["bin"].as_str().unwrap())))
                    .unwrap();
                assert_eq!(raw.len(), t["bytes"].as_u64().unwrap() as usize);
                let got = dequantize(ty, &raw, numel).unwrap();
                let key = format!("{case}.{ty_name}");
                let want = expected.tensor(&key).unwrap();
                assert_eq!(want.shape(), shape.as_slice());
                assert_bits_eq(&got, &f32s(want.data()), &key);
                checked += 1;
            }
        }
        assert_eq!(checked, 35);
    }

    /// Real rows of the SmolLM2 GGUF (Q8_0 embeddings, Q4_1 attn_q / ffn_down).
    #[test]
    fn smollm2_rows_bit_exact() {
        let spec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(fixture("quant/smollm2_blocks/blocks.json")).unwrap(),
        )
        .unwrap();
        let expected = std::fs::read(fixture("quant/smollm2_blocks/dequant.safetensors")).unwrap();
        let expected = safetensors::SafeTensors::deserialize(&expected).unwrap();
        for (name, t) in spec["tensors"].as_object().unwrap() {
            let ty = match t["type"].as_str().unwrap() {
                "Q8_0" => GgmlType::Q8_0,
                "Q4_1" => GgmlType::Q4_1,
                other => panic!("unexpected type {other}"),
            };
            let row_len = t["gguf_shape_ne"][0].as_u64().unwrap() as usize;
            let n_rows = t["rows"].as_array().unwrap().len();
            let raw =
                std::fs::read(fixture(&format!("quant/{}", t["bin"].as_str().unwrap()))).unwrap();
            assert_eq!(
                raw.len(),
                n_rows * t["row_bytes"].as_u64().unwrap() as usize
            );
            let got = dequantize(ty, &raw, n_rows * row_len).unwrap();
            assert_bits_eq(&got, &f32s(expected.tensor(name).unwrap().data()), name);
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
    fn errors_are_typed() {
        assert!(matches!(
            dequantize(GgmlType::Q8_0, &[0; 33], 32),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            dequantize(GgmlType::Q8_0, &[0; 34], 31),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            dequantize(GgmlType::Q3_K, &[0; 110], 256),
            Err(Error::Unsupported {
                what: "GGML dequantization",
                ..
            })
        ));
        assert!(dequantize(GgmlType::Q8_0, &[], 0).unwrap().is_empty());
    }
}
