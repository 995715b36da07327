//! The float types, one value per "block": F32, F16 (IEEE half) and BF16.
//!
//! F16 rounds to nearest even, as numpy's `astype(np.float16)` in llama.cpp's converter; BF16
//! rounds to nearest even, as gguf-py's `quants.BF16` (which only differs on NaN, refused here).

use half::{bf16, f16};

use super::Overflow;

/// Writes `x` as little-endian f32.
pub(crate) fn quantize_f32(x: &[f32; 1], out: &mut [u8]) -> Result<(), Overflow> {
    out.copy_from_slice(&x[0].to_le_bytes());
    Ok(())
}

/// Writes `x` as f16; a finite value beyond f16's range (|x| > 65504) is an overflow.
pub(crate) fn quantize_f16(x: &[f32; 1], out: &mut [u8]) -> Result<(), Overflow> {
    out.copy_from_slice(&super::f16_bytes("value", x[0])?);
    Ok(())
}

/// Writes `x` as bf16 (same exponent range as f32: never overflows for finite input that
/// rounds below f32::MAX).
pub(crate) fn quantize_bf16(x: &[f32; 1], out: &mut [u8]) -> Result<(), Overflow> {
    let h = bf16::from_f32(x[0]);
    if !h.is_finite() {
        return Err(Overflow {
            field: "value",
            value: x[0],
        });
    }
    out.copy_from_slice(&h.to_le_bytes());
    Ok(())
}

/// Reads a little-endian f32.
pub(crate) fn dequantize_f32(b: &[u8], y: &mut [f32; 1]) {
    y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
}

/// Reads an f16.
pub(crate) fn dequantize_f16(b: &[u8], y: &mut [f32; 1]) {
    y[0] = f16::from_le_bytes([b[0], b[1]]).to_f32();
}

/// Reads a bf16.
pub(crate) fn dequantize_bf16(b: &[u8], y: &mut [f32; 1]) {
    y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_rounds_to_nearest_even_and_refuses_overflow() {
        let mut b = [0u8; 2];
        // 1 + 2^-11 lies halfway between 1 and the next f16: ties go to the even mantissa (1).
        quantize_f16(&[1.0 + 2f32.powi(-11)], &mut b).unwrap();
        assert_eq!(f16::from_le_bytes(b), f16::ONE);
        quantize_f16(&[65504.0], &mut b).unwrap();
        assert_eq!(f16::from_le_bytes(b).to_f32(), 65504.0);
        let err = quantize_f16(&[70000.0], &mut b).unwrap_err();
        assert_eq!(err.field, "value");
    }

    #[test]
    fn bf16_keeps_the_f32_range() {
        let mut b = [0u8; 2];
        quantize_bf16(&[1e30], &mut b).unwrap();
        let mut y = [0f32];
        dequantize_bf16(&b, &mut y);
        assert!((y[0] / 1e30 - 1.0).abs() < 1e-2);
        assert!(
            quantize_bf16(&[f32::MAX], &mut b).is_err(),
            "rounds up to infinity"
        );
    }
}
