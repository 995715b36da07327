//! Q4_K: super-blocks of 256 values, 8 sub-blocks of 32 with 6-bit scales and mins.

use super::{QK_K, f16_at};

/// The 6-bit scale and min of sub-block `j` of a k-quant's 12 packed bytes
/// (`get_scale_min_k4`).
#[inline]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
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
