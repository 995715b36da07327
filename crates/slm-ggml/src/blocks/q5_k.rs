//! Q5_K: Q4_K's super-block with a fifth bit per value;
//! `block_q5_K { half d; half dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]; }`.

use super::k_affine::{AffineK, affine_k, affine_k_weighted, scale_min_k4};
use super::{Overflow, QK_K, f16_at};

/// Quantizes one super-block into 176 bytes (`quantize_row_q5_K_ref`).
pub(crate) fn quantize_q5_k(x: &[f32; QK_K], out: &mut [u8]) -> Result<(), Overflow> {
    write(&affine_k(x, 31, -0.5, 15)?, out);
    Ok(())
}

/// Quantizes one super-block into 176 bytes weighted by the columns' importance `qw`
/// (`quantize_row_q5_K_impl`).
pub(crate) fn quantize_q5_k_weighted(
    x: &[f32; QK_K],
    qw: &[f32; QK_K],
    _row_sigma2: f32,
    out: &mut [u8],
) -> Result<(), Overflow> {
    write(&affine_k_weighted(x, qw, 31, true)?, out);
    Ok(())
}

/// Lays out `block_q5_K`.
fn write(q: &AffineK, out: &mut [u8]) {
    out[..2].copy_from_slice(&q.d);
    out[2..4].copy_from_slice(&q.dmin);
    out[4..16].copy_from_slice(&q.scales);
    let (qh, ql) = out[16..176].split_at_mut(32);
    qh.iter_mut().for_each(|b| *b = 0);
    for (pair, ql) in ql.chunks_exact_mut(32).enumerate() {
        let (m1, m2) = (1u8 << (2 * pair), 2u8 << (2 * pair));
        for j in 0..32 {
            let mut l1 = q.levels[64 * pair + j];
            if l1 > 15 {
                l1 -= 16;
                qh[j] |= m1;
            }
            let mut l2 = q.levels[64 * pair + j + 32];
            if l2 > 15 {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[j] = l1 | (l2 << 4);
        }
    }
}

/// `dequantize_row_q5_K`: `x = (d * sc) * (low4 + 16 * high) - (dmin * m)`.
pub(crate) fn dequantize_q5_k(b: &[u8], y: &mut [f32; QK_K]) {
    let (d, min) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let ql = &b[48..176];
    for (pair, (ql, y)) in ql.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (u1, u2) = (1u8 << (2 * pair), 2u8 << (2 * pair));
        let (sc1, m1) = scale_min_k4(2 * pair, scales);
        let (sc2, m2) = scale_min_k4(2 * pair + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
        let (lo, hi) = y.split_at_mut(32);
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            lo[l] = d1 * f32::from((ql[l] & 0x0F) + h1) - m1;
            hi[l] = d2 * f32::from((ql[l] >> 4) + h2) - m2;
        }
    }
}
