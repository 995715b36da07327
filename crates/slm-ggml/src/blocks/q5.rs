//! Q5_0 (`x ≈ d·(q − 16)`, `d = max / −16`) and Q5_1 (`x ≈ d·q + m`, `d = (max − min) / 31`):
//! Q4's layouts plus a u32 holding bit 4 of every level.

use super::q4::WEIGHTED_SEARCH;
use super::search::{make_qkx2_quants, make_qx_quants};
use super::{
    Block, Overflow, QK, f16_at, f16_bytes, inverse, legacy_weights, min_max, pack_high_bits,
    pack_nibbles, signed_absmax, to_level, unsigned_levels,
};

/// Quantizes one block into 22 bytes: d, qh, qs.
pub(crate) fn quantize_q5_0(x: &Block, out: &mut [u8]) -> Result<(), Overflow> {
    let d = signed_absmax(x) / -16.0;
    let id = inverse(d);
    out[..2].copy_from_slice(&f16_bytes("d", d)?);
    // Two f32 roundings, as ggml on x86-64 (see Q4_0; gguf-py rounds once, in f64).
    let q: [u8; QK] = std::array::from_fn(|i| {
        let v = x[i] * id + 16.5;
        to_level(v.trunc(), 31)
    });
    out[2..6].copy_from_slice(&pack_high_bits(&q));
    pack_nibbles(&q, &mut out[6..22]);
    Ok(())
}

/// Quantizes one block into 24 bytes: d, m, qh, qs.
pub(crate) fn quantize_q5_1(x: &Block, out: &mut [u8]) -> Result<(), Overflow> {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = inverse(d);
    out[..2].copy_from_slice(&f16_bytes("d", d)?);
    out[2..4].copy_from_slice(&f16_bytes("m", min)?);
    let q: [u8; QK] = std::array::from_fn(|i| to_level(((x[i] - min) * id + 0.5).trunc(), 31));
    out[4..8].copy_from_slice(&pack_high_bits(&q));
    pack_nibbles(&q, &mut out[8..24]);
    Ok(())
}

/// Quantizes one block into 22 bytes weighted by the columns' importance `qw`
/// (`quantize_row_q5_0_impl`).
pub(crate) fn quantize_q5_0_weighted(
    x: &Block,
    qw: &Block,
    row_sigma2: f32,
    out: &mut [u8],
) -> Result<(), Overflow> {
    let mut levels = [0i8; QK];
    let d = make_qx_quants(16, x, &mut levels, Some(&legacy_weights(x, qw, row_sigma2)));
    let q = unsigned_levels(&levels);
    out[..2].copy_from_slice(&f16_bytes("d", d)?);
    out[2..6].copy_from_slice(&pack_high_bits(&q));
    pack_nibbles(&q, &mut out[6..22]);
    Ok(())
}

/// Quantizes one block into 24 bytes weighted by the columns' importance `qw`
/// (`quantize_row_q5_1_impl`).
pub(crate) fn quantize_q5_1_weighted(
    x: &Block,
    qw: &Block,
    row_sigma2: f32,
    out: &mut [u8],
) -> Result<(), Overflow> {
    let mut q = [0u8; QK];
    let weights = legacy_weights(x, qw, row_sigma2);
    let (d, neg_min) = make_qkx2_quants(31, x, &weights, &mut q, WEIGHTED_SEARCH);
    out[..2].copy_from_slice(&f16_bytes("d", d)?);
    out[2..4].copy_from_slice(&f16_bytes("m", -neg_min)?);
    out[4..8].copy_from_slice(&pack_high_bits(&q));
    pack_nibbles(&q, &mut out[8..24]);
    Ok(())
}

/// `block_q5_0 { half d; uint8 qh[4]; uint8 qs[16]; }`: bit j of `qh` is the fifth bit of
/// element j; `x = d * (q - 16)`.
pub(crate) fn dequantize_q5_0(b: &[u8], y: &mut Block) {
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
pub(crate) fn dequantize_q5_1(b: &[u8], y: &mut Block) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::tests::dequantize_block;
    use crate::types::GgmlType;

    #[test]
    fn q5_0_grid_values_are_exact() {
        // d = -16 / -16 = 1: every integer in -16..=15 is a level.
        let x: Block = std::array::from_fn(|i| i as f32 - 16.0);
        let mut b = [0u8; 22];
        quantize_q5_0(&x, &mut b).unwrap();
        let y = dequantize_block(GgmlType::Q5_0, &b);
        assert_eq!(y, x);
    }

    #[test]
    fn q5_1_uses_all_32_levels() {
        let x: Block = std::array::from_fn(|i| 0.25 * i as f32 - 2.0);
        let mut b = [0u8; 24];
        quantize_q5_1(&x, &mut b).unwrap();
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        assert_eq!(qh, 0xFFFF_0000, "levels 16..31 set bit 4");
        let y = dequantize_block(GgmlType::Q5_1, &b);
        assert_eq!(y, x);
    }
}
