//! Q4_0 (`x ≈ d·(q − 8)`, `d = max / −8` of the signed largest-magnitude value) and Q4_1
//! (`x ≈ d·q + m`, `d = (max − min) / 15`, `m = min`).

use super::search::{ScaleSearch, make_qkx2_quants, make_qx_quants};
use super::{
    Block, Overflow, QK, f16_at, f16_bytes, inverse, legacy_weights, min_max, pack_nibbles,
    signed_absmax, to_level, unsigned_levels,
};

/// The scale search of the importance-weighted affine formats (`make_qkx3_quants`' arguments).
pub(crate) const WEIGHTED_SEARCH: ScaleSearch = ScaleSearch {
    rmin: -0.9,
    rdelta: 0.05,
    nstep: 36,
};

/// Quantizes one block into 18 bytes.
pub(crate) fn quantize_q4_0(x: &Block, out: &mut [u8]) -> Result<(), Overflow> {
    let d = signed_absmax(x) / -8.0;
    let id = inverse(d);
    out[..2].copy_from_slice(&f16_bytes("d", d)?);
    // ggml's quantize_row_q4_0_ref as llama-quantize runs it on x86-64 (ggml-base has no FMA):
    // `x*id` rounded to f32, then `+ 8.5f` rounded again. gguf-py computes `x*id + 8.5` in f64
    // (one rounding, as an FMA would); the two differ only when `x*id + 8.5` lies within an
    // f32 rounding of an integer. SmolLM2 has such values, where this matches llama-quantize.
    let q: [u8; QK] = std::array::from_fn(|i| {
        let v = x[i] * id + 8.5;
        to_level(v.trunc(), 15)
    });
    pack_nibbles(&q, &mut out[2..18]);
    Ok(())
}

/// Quantizes one block into 20 bytes.
pub(crate) fn quantize_q4_1(x: &Block, out: &mut [u8]) -> Result<(), Overflow> {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = inverse(d);
    out[..2].copy_from_slice(&f16_bytes("d", d)?);
    out[2..4].copy_from_slice(&f16_bytes("m", min)?);
    // gguf-py: np.trunc((x - min) * id + np.float32(0.5)), all in f32.
    let q: [u8; QK] = std::array::from_fn(|i| to_level(((x[i] - min) * id + 0.5).trunc(), 15));
    pack_nibbles(&q, &mut out[4..20]);
    Ok(())
}

/// Quantizes one block into 18 bytes weighted by the columns' importance `qw`
/// (`quantize_row_q4_0_impl`): the scale `make_qx_quants` finds under the weights.
pub(crate) fn quantize_q4_0_weighted(
    x: &Block,
    qw: &Block,
    row_sigma2: f32,
    out: &mut [u8],
) -> Result<(), Overflow> {
    let mut levels = [0i8; QK];
    let d = make_qx_quants(8, x, &mut levels, Some(&legacy_weights(x, qw, row_sigma2)));
    out[..2].copy_from_slice(&f16_bytes("d", d)?);
    pack_nibbles(&unsigned_levels(&levels), &mut out[2..18]);
    Ok(())
}

/// Quantizes one block into 20 bytes weighted by the columns' importance `qw`
/// (`quantize_row_q4_1_impl`).
pub(crate) fn quantize_q4_1_weighted(
    x: &Block,
    qw: &Block,
    row_sigma2: f32,
    out: &mut [u8],
) -> Result<(), Overflow> {
    let mut levels = [0u8; QK];
    let weights = legacy_weights(x, qw, row_sigma2);
    let (d, neg_min) = make_qkx2_quants(15, x, &weights, &mut levels, WEIGHTED_SEARCH);
    out[..2].copy_from_slice(&f16_bytes("d", d)?);
    out[2..4].copy_from_slice(&f16_bytes("m", -neg_min)?);
    pack_nibbles(&levels, &mut out[4..20]);
    Ok(())
}

/// `block_q4_0 { half d; uint8 qs[16]; }`: byte j holds element j (low) and j + 16 (high);
/// `x = d * (q - 8)`.
pub(crate) fn dequantize_q4_0(b: &[u8], y: &mut Block) {
    let d = f16_at(b, 0);
    let (lo, hi) = y.split_at_mut(16);
    for (j, &q) in b[2..18].iter().enumerate() {
        lo[j] = d * f32::from((q & 0x0F) as i8 - 8);
        hi[j] = d * f32::from((q >> 4) as i8 - 8);
    }
}

/// `block_q4_1 { half d; half m; uint8 qs[16]; }`: `x = d * q + m`.
pub(crate) fn dequantize_q4_1(b: &[u8], y: &mut Block) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let (lo, hi) = y.split_at_mut(16);
    for (j, &q) in b[4..20].iter().enumerate() {
        lo[j] = d * f32::from(q & 0x0F) + m;
        hi[j] = d * f32::from(q >> 4) + m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::f16_at;
    use crate::blocks::tests::dequantize_block;
    use crate::types::GgmlType;

    #[test]
    fn q4_0_maps_the_signed_extreme_to_level_zero() {
        let mut x = [0.0f32; 32];
        x[0] = -4.0; // the first largest magnitude: d = -4 / -8 = 0.5, level 0
        x[1] = 4.0; // x·id + 8.5 = 16.5 → level 16, clipped to 15
        x[17] = 1.0; // level 10
        let mut b = [0u8; 18];
        quantize_q4_0(&x, &mut b).unwrap();
        assert_eq!(f16_at(&b, 0), 0.5);
        let y = dequantize_block(GgmlType::Q4_0, &b);
        assert_eq!(y[0], -4.0);
        assert_eq!(y[1], 3.5, "the opposite extreme is clipped to level 15");
        assert_eq!(y[17], 1.0);
        assert_eq!(y[2], 0.0);
    }

    #[test]
    fn q4_1_spans_min_to_max() {
        let x: Block = std::array::from_fn(|i| 1.0 + (i % 16) as f32);
        let mut b = [0u8; 20];
        quantize_q4_1(&x, &mut b).unwrap();
        assert_eq!((f16_at(&b, 0), f16_at(&b, 2)), (1.0, 1.0));
        let y = dequantize_block(GgmlType::Q4_1, &b);
        assert_eq!(y, x, "levels on the grid are exact");
    }

    #[test]
    fn q4_1_min_overflow_is_reported() {
        let x = [-70_000.0f32; 32];
        let err = quantize_q4_1(&x, &mut [0u8; 20]).unwrap_err();
        assert_eq!(err.field, "m");
    }
}
