//! Q5_0 (`x ≈ d·(q − 16)`, `d = max / −16`) and Q5_1 (`x ≈ d·q + m`, `d = (max − min) / 31`):
//! Q4's layouts plus a u32 holding bit 4 of every level.

use super::{
    Block, Overflow, f16_bytes, inverse, min_max, pack_high_bits, pack_nibbles, signed_absmax,
    to_level,
};
use crate::format::BLOCK_SIZE;

/// Quantizes one block into 22 bytes: d, qh, qs.
pub(crate) fn quantize_q5_0(x: &Block, out: &mut [u8]) -> Result<(), Overflow> {
    let d = signed_absmax(x) / -16.0;
    let id = inverse(d);
    out[..2].copy_from_slice(&f16_bytes("d", d)?);
    // gguf-py: np.trunc(f64(x) * f64(id) + 16.5, dtype=f32), as for Q4_0.
    let q: [u8; BLOCK_SIZE] = std::array::from_fn(|i| {
        let v = (f64::from(x[i]) * f64::from(id) + 16.5) as f32;
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
    let q: [u8; BLOCK_SIZE] =
        std::array::from_fn(|i| to_level(((x[i] - min) * id + 0.5).trunc(), 31));
    out[4..8].copy_from_slice(&pack_high_bits(&q));
    pack_nibbles(&q, &mut out[8..24]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::tests::dequantize_block;
    use crate::format::BlockFormat;

    #[test]
    fn q5_0_grid_values_are_exact() {
        // d = -16 / -16 = 1: every integer in -16..=15 is a level.
        let x: Block = std::array::from_fn(|i| i as f32 - 16.0);
        let mut b = [0u8; 22];
        quantize_q5_0(&x, &mut b).unwrap();
        let y = dequantize_block(BlockFormat::Q5_0, &b);
        assert_eq!(y, x);
    }

    #[test]
    fn q5_1_uses_all_32_levels() {
        let x: Block = std::array::from_fn(|i| 0.25 * i as f32 - 2.0);
        let mut b = [0u8; 24];
        quantize_q5_1(&x, &mut b).unwrap();
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        assert_eq!(qh, 0xFFFF_0000, "levels 16..31 set bit 4");
        let y = dequantize_block(BlockFormat::Q5_1, &b);
        assert_eq!(y, x);
    }
}
