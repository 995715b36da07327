//! The affine super-block of Q4_K and Q5_K: eight sub-blocks of 32 with 6-bit scales and
//! mins under two f16 super-scales, found the reference way (`quantize_row_q{4,5}_K_ref`) or
//! weighted by an importance matrix (`quantize_row_q{4,5}_K_impl`); only the bit packing differs
//! between the two formats.

use super::search::{ScaleSearch, make_qkx2_quants, make_qp_quants, nearest_int};
use super::{Overflow, QK_K, f16_at, f16_bytes};

/// The 6-bit scale and min of sub-block `j` of the 12 packed bytes (`get_scale_min_k4`).
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

/// Packs eight 6-bit scales and mins into 12 bytes (the inverse of [`scale_min_k4`]).
pub(crate) fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8], out: &mut [u8]) {
    out[..12].iter_mut().for_each(|b| *b = 0);
    for j in 0..8 {
        if j < 4 {
            out[j] = ls[j];
            out[j + 4] = lm[j];
        } else {
            out[j + 4] = (ls[j] & 0x0F) | ((lm[j] & 0x0F) << 4);
            out[j - 4] |= (ls[j] >> 4) << 6;
            out[j] |= (lm[j] >> 4) << 6;
        }
    }
}

/// The levels, 6-bit scales and mins, and f16 super-block scales of one Q4_K/Q5_K super-block
/// (`quantize_row_q4_K_ref` / `quantize_row_q5_K_ref` up to the bit packing, which is all
/// they differ in besides `nmax`, `rmin` and `nstep`).
pub(crate) struct AffineK {
    /// f16 `d` (scale of the scales), little-endian.
    pub d: [u8; 2],
    /// f16 `dmin` (scale of the mins), little-endian.
    pub dmin: [u8; 2],
    /// The packed 6-bit scales and mins.
    pub scales: [u8; 12],
    /// One level `0..=nmax` per value.
    pub levels: [u8; QK_K],
}

/// Quantizes one super-block the reference way: per sub-block of 32 `make_qkx2_quants` under
/// the weights `sqrt(mean(x²)) + |x|`, the scales and mins rounded to 6 bits against their
/// maxima, then every level recomputed from the stored (f16, 6-bit) scale and min.
pub(crate) fn affine_k(
    x: &[f32; QK_K],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> Result<AffineK, Overflow> {
    let mut levels = [0u8; QK_K];
    let mut weights = [0f32; 32];
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (scale, min) = make_qkx2_quants(
            nmax,
            xs,
            &weights,
            &mut levels[32 * j..32 * j + 32],
            ScaleSearch {
                rmin,
                rdelta: 0.1,
                nstep,
            },
        );
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // C stores nearest_int's int in a uint8_t (wrapping), then takes MIN(63, .).
    let ls: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_scale * scales[j]) as u8).min(63));
    let lm: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_min * mins[j]) as u8).min(63));
    finish(x, nmax, levels, &ls, &lm, max_scale / 63.0, max_min / 63.0)
}

/// Packs the 6-bit scales and mins, stores the f16 super-scales and recomputes every level
/// from the stored values (both quantizers end this way).
fn finish(
    x: &[f32; QK_K],
    nmax: i32,
    mut levels: [u8; QK_K],
    ls: &[u8; 8],
    lm: &[u8; 8],
    d: f32,
    dmin: f32,
) -> Result<AffineK, Overflow> {
    let mut packed = [0u8; 12];
    pack_scale_min_k4(ls, lm, &mut packed);
    let d = f16_bytes("d", d)?;
    let dmin = f16_bytes("dmin", dmin)?;
    let (d16, dmin16) = (f16_at(&d, 0), f16_at(&dmin, 0));
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &packed);
        let dj = d16 * sc as f32;
        if dj == 0.0 {
            continue; // ggml keeps the first pass's levels
        }
        let dm = dmin16 * m as f32;
        for i in 32 * j..32 * j + 32 {
            levels[i] = nearest_int((x[i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    Ok(AffineK {
        d,
        dmin,
        scales: packed,
        levels,
    })
}

/// Quantizes one super-block weighted by `qw` (the importance of each value's column): weights
/// `qw * sqrt(sigma² + x²)` with `sigma² = 2 * mean(x²)` of the super-block, a finer scale search
/// per sub-block, and the 6-bit scales and mins chosen by `make_qp_quants` under each
/// sub-block's total weight. `clamp_scales` is Q5_K's extra `MIN(63, .)` (Q4_K has none).
pub(crate) fn affine_k_weighted(
    x: &[f32; QK_K],
    qw: &[f32; QK_K],
    nmax: i32,
    clamp_scales: bool,
) -> Result<AffineK, Overflow> {
    let mut levels = [0u8; QK_K];
    let mut weights = [0f32; 32];
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let mut sw = [0f32; 8];
    let mut sum_x2 = 0.0f32;
    for &v in x.iter() {
        sum_x2 += v * v;
    }
    let sigma2 = 2.0 * sum_x2 / QK_K as f32;
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        for (l, w) in weights.iter_mut().enumerate() {
            *w = qw[32 * j + l] * (sigma2 + xs[l] * xs[l]).sqrt();
        }
        let mut sumw = 0.0f32;
        for &w in &weights {
            sumw += w;
        }
        sw[j] = sumw;
        let (scale, min) = make_qkx2_quants(
            nmax,
            xs,
            &weights,
            &mut levels[32 * j..32 * j + 32],
            ScaleSearch {
                rmin: -0.9,
                rdelta: 0.05,
                nstep: 36,
            },
        );
        scales[j] = scale;
        mins[j] = min;
    }
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
    let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
    if clamp_scales {
        ls.iter_mut()
            .chain(lm.iter_mut())
            .for_each(|l| *l = (*l).min(63));
    }
    finish(x, nmax, levels, &ls, &lm, d_block, m_block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_min_packing_round_trips() {
        let ls: [u8; 8] = [0, 1, 17, 63, 32, 45, 7, 62];
        let lm: [u8; 8] = [63, 0, 5, 33, 61, 2, 48, 16];
        let mut packed = [0u8; 12];
        pack_scale_min_k4(&ls, &lm, &mut packed);
        for j in 0..8 {
            assert_eq!(scale_min_k4(j, &packed), (ls[j], lm[j]), "sub-block {j}");
        }
    }
}
