//! Q8_0: `d = max|x| / 127`, `q = round(x / d)` (half away from zero), `x ≈ d·q`.

use super::{Block, Overflow, f16_at, f16_bytes, inverse};

/// Quantizes one block into 34 bytes (`out.len() == 34`).
pub(crate) fn quantize_q8_0(x: &Block, out: &mut [u8]) -> Result<(), Overflow> {
    // f32::max skips NaN as the comparison would, and vectorises.
    let amax = x.iter().fold(0.0f32, |m, v| v.abs().max(m));
    let d = amax / 127.0;
    let id = inverse(d);
    out[..2].copy_from_slice(&f16_bytes("d", d)?);
    for (o, &v) in out[2..].iter_mut().zip(x) {
        // gguf-py's np_roundf is floor(a) + floor(2·(a − floor(a))) with the sign put back:
        // exactly round-half-away-from-zero, which is f32::round.
        *o = ((v * id).round() as i8) as u8;
    }
    Ok(())
}

/// `block_q8_0 { half d; int8 qs[32]; }`: `x = d * q`.
pub(crate) fn dequantize_q8_0(b: &[u8], y: &mut Block) {
    let d = f16_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = d * f32::from(q as i8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::f16_at;
    use crate::blocks::tests::dequantize_block;
    use crate::types::GgmlType;

    #[test]
    fn ramp_round_trips_within_half_a_step() {
        let x: Block = std::array::from_fn(|i| i as f32 - 16.0);
        let mut b = [0u8; 34];
        quantize_q8_0(&x, &mut b).unwrap();
        let y = dequantize_block(GgmlType::Q8_0, &b);
        let d = f16_at(&b, 0);
        assert_eq!(b[2] as i8, -127, "the largest magnitude maps to ±127");
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= d / 2.0 + 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn halves_round_away_from_zero() {
        // d = 127/127 = 1, so x/d is x itself.
        let mut x = [0.0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = 0.5;
        let mut b = [0u8; 34];
        quantize_q8_0(&x, &mut b).unwrap();
        assert_eq!([b[3] as i8, b[4] as i8, b[5] as i8], [3, -3, 1]);
    }

    #[test]
    fn zeros_have_zero_scale() {
        let mut b = [0xAAu8; 34];
        quantize_q8_0(&[0.0; 32], &mut b).unwrap();
        assert!(b.iter().all(|&v| v == 0));
    }
}
