//! One block of each format: quantize `f32` values into its bytes and back.
//!
//! Block layouts follow `ggml/src/ggml-common.h`. Dequantization follows `ggml-quants.c`
//! (`dequantize_row_*`) and gguf-py's `gguf/quants.py` operation for operation; quantization
//! follows ggml's reference quantizers as `llama-quantize` runs them on x86-64 (ggml-base is
//! built without FMA: every operation rounds to f32 in C's order) and gguf-py, which agree except
//! that gguf-py rounds Q4_0's and Q5_0's `x*id + offset` once in f64 (see `q4.rs`). Rust never
//! fuses `a * b + c` on its own, so plain expressions reproduce those roundings bit for bit.

use half::f16;

pub(crate) mod float;
pub(crate) mod k_affine;
pub(crate) mod q4;
pub(crate) mod q4_k;
pub(crate) mod q5;
pub(crate) mod q5_k;
pub(crate) mod q6_k;
pub(crate) mod q8;
pub(crate) mod search;

/// Values per block of the legacy formats (`QK8_0`, `QK4_0`, ... in ggml).
pub(crate) const QK: usize = 32;

/// Values per super-block of the k-quants (`QK_K`).
pub(crate) const QK_K: usize = 256;

/// One legacy block's values.
pub(crate) type Block = [f32; QK];

/// The f16 at `b[i..i + 2]`, widened to f32.
#[inline]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// A scale or minimum that did not fit in an f16: which field and its f32 value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Overflow {
    /// `"d"` or `"m"`.
    pub field: &'static str,
    /// The f32 value before conversion.
    pub value: f32,
}

/// `x` as f16 (round to nearest even, as numpy's `astype(np.float16)`), little-endian.
fn f16_bytes(field: &'static str, x: f32) -> Result<[u8; 2], Overflow> {
    let h = f16::from_f32(x);
    if h.is_finite() {
        Ok(h.to_le_bytes())
    } else {
        Err(Overflow { field, value: x })
    }
}

/// `1 / d`, or 0 when `d == 0` (gguf-py: `np.where(d == 0, 0, 1 / d)`).
fn inverse(d: f32) -> f32 {
    if d == 0.0 { 0.0 } else { 1.0 / d }
}

/// The value of largest magnitude, keeping its sign; the first one on ties
/// (`np.take_along_axis(x, abs(x).argmax(), ...)`).
fn signed_absmax(x: &Block) -> f32 {
    let mut best = x[0];
    for &v in &x[1..] {
        if v.abs() > best.abs() {
            best = v;
        }
    }
    best
}

/// `(min, max)` of a block; on equal values (`-0.0` and `0.0`) the first one is kept.
fn min_max(x: &Block) -> (f32, f32) {
    let (mut lo, mut hi) = (x[0], x[0]);
    for &v in &x[1..] {
        if v < lo {
            lo = v;
        }
        if v > hi {
            hi = v;
        }
    }
    (lo, hi)
}

/// A float that numpy casts to an unsigned integer and clips to `0..=max`. For the finite,
/// in-range values a finite block produces this is numpy's cast; out of range it saturates
/// (where numpy's cast is platform-defined: see the crate docs on tiny scales).
fn to_level(q: f32, max: u8) -> u8 {
    (q as u8).min(max)
}

/// Packs 32 levels < 16 into 16 bytes: byte `j` holds element `j` in its low nibble and
/// element `j + 16` in its high nibble. Bits above the low four of each level are dropped.
fn pack_nibbles(q: &[u8; QK], out: &mut [u8]) {
    for j in 0..QK / 2 {
        out[j] = (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4);
    }
}

/// Bit 4 of every level, element `i` at bit `i` of a little-endian u32
/// (`np.packbits(q >> 4, bitorder="little")`).
fn pack_high_bits(q: &[u8; QK]) -> [u8; 4] {
    let bits = q
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, &v)| acc | (u32::from((v >> 4) & 1) << i));
    bits.to_le_bytes()
}

/// The per-value weights of the importance-weighted legacy quantizers
/// (`quantize_row_q*_impl`): the column's importance `qw` times `sqrt(sigma² + x²)`, with
/// `sigma²` the mean square of the whole row.
fn legacy_weights(x: &Block, qw: &Block, row_sigma2: f32) -> Block {
    std::array::from_fn(|j| qw[j] * (row_sigma2 + x[j] * x[j]).sqrt())
}

/// Levels of a `make_qx_quants` (stored as `l + nmax`, non-negative) as bytes.
fn unsigned_levels(levels: &[i8; QK]) -> [u8; QK] {
    std::array::from_fn(|i| levels[i] as u8)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::types::GgmlType;

    /// One block decoded through the crate's [`dequantize`](crate::dequantize).
    pub(crate) fn dequantize_block(ty: GgmlType, bytes: &[u8]) -> Block {
        let v = crate::dequantize(ty, bytes, QK).unwrap();
        v.try_into().unwrap()
    }

    /// The low nibble of element `i` (`0..32`) from 16 packed bytes.
    fn nibble(packed: &[u8], i: usize) -> u8 {
        if i < 16 {
            packed[i] & 0x0F
        } else {
            packed[i - 16] >> 4
        }
    }

    /// Bit 4 of element `i`'s level from the packed u32.
    fn high_bit(qh: u32, i: usize) -> u8 {
        ((qh >> i) & 1) as u8 * 16
    }

    #[test]
    fn signed_absmax_keeps_sign_and_first_tie() {
        let mut x = [0.0f32; 32];
        x[3] = -2.0;
        x[7] = 2.0;
        assert_eq!(signed_absmax(&x), -2.0);
        x[1] = 2.0;
        assert_eq!(signed_absmax(&x), 2.0);
    }

    #[test]
    fn nibbles_and_high_bits_round_trip() {
        let q: [u8; 32] = std::array::from_fn(|i| (i as u8 * 7) % 32);
        let mut packed = [0u8; 16];
        pack_nibbles(&q, &mut packed);
        let qh = u32::from_le_bytes(pack_high_bits(&q));
        for (i, &want) in q.iter().enumerate() {
            assert_eq!(nibble(&packed, i) | high_bit(qh, i), want, "element {i}");
        }
    }

    #[test]
    fn f16_overflow_is_reported() {
        assert_eq!(f16_bytes("d", 1.0).unwrap(), [0x00, 0x3C]);
        assert_eq!(
            f16_bytes("m", 70_000.0),
            Err(Overflow {
                field: "m",
                value: 70_000.0
            })
        );
        // Underflow is not an error: gguf-py stores the zero (or subnormal) scale.
        assert_eq!(f16_bytes("d", 1e-9).unwrap(), [0, 0]);
    }

    #[test]
    fn levels_saturate_instead_of_wrapping() {
        assert_eq!(to_level(16.0, 15), 15);
        assert_eq!(to_level(3.0, 15), 3);
        assert_eq!(to_level(-1.0, 15), 0);
        assert_eq!(to_level(f32::NAN, 31), 0);
    }
}
