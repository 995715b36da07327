//! Q4_K: super-blocks of 256 values, 8 sub-blocks of 32 with 6-bit scales and mins;
//! `block_q4_K { half d; half dmin; uint8 scales[12]; uint8 qs[128]; }`.

use super::k_affine::{AffineK, affine_k, affine_k_weighted, scale_min_k4};
use super::{Overflow, QK_K, f16_at};

/// Quantizes one super-block into 144 bytes (`quantize_row_q4_K_ref`).
pub(crate) fn quantize_q4_k(x: &[f32; QK_K], out: &mut [u8]) -> Result<(), Overflow> {
    write(&affine_k(x, 15, -1.0, 20)?, out);
    Ok(())
}

/// Quantizes one super-block into 144 bytes weighted by the columns' importance `qw`
/// (`quantize_row_q4_K_impl`).
pub(crate) fn quantize_q4_k_weighted(
    x: &[f32; QK_K],
    qw: &[f32; QK_K],
    _row_sigma2: f32,
    out: &mut [u8],
) -> Result<(), Overflow> {
    write(&affine_k_weighted(x, qw, 15, false)?, out);
    Ok(())
}

/// Lays out `block_q4_K`.
fn write(q: &AffineK, out: &mut [u8]) {
    out[..2].copy_from_slice(&q.d);
    out[2..4].copy_from_slice(&q.dmin);
    out[4..16].copy_from_slice(&q.scales);
    // Sub-block pairs of 64 values share 32 bytes: the first in the low nibbles.
    for (pair, qs) in out[16..144].chunks_exact_mut(32).enumerate() {
        let l = &q.levels[64 * pair..64 * pair + 64];
        for (i, b) in qs.iter_mut().enumerate() {
            *b = l[i] | (l[i + 32] << 4);
        }
    }
}

/// Sub-block pairs of 64 values share 32 bytes (low nibbles first);
/// `x = (d * sc) * q - (dmin * m)`.
pub(crate) fn dequantize_q4_k(b: &[u8], y: &mut [f32; QK_K]) {
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
