//! What the k-quants share: ggml's rounding (`nearest_int`), its scale searches
//! (`make_qx_quants`, `make_qkx2_quants`) and the 6-bit scale/min packing of Q4_K and Q5_K.
//!
//! Ported from `ggml-quants.c` line for line: plain f32 operations in C's evaluation order (no
//! fused multiply-add, which the x86-64 reference build of ggml-base never uses either), so the
//! blocks are bit-identical with `llama-quantize`'s.

use super::{Overflow, QK_K, f16_at, f16_bytes};

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below it is all zero.
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// `nearest_int`: round half to even through the f32 magic number 1.5 * 2^23 (valid for
/// |x| <= 4194303, which every caller's arguments satisfy for finite input).
#[inline]
pub(crate) fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0f32;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// `make_qx_quants` with `rmse_type == 1` and no importance weights (`w = x²`), as Q6_K's
/// reference quantizer calls it: symmetric levels `-nmax..nmax-1` stored as `l + nmax` in `levels`,
/// the returned scale refined over 19 trial inverse scales.
pub(crate) fn make_qx_quants(nmax: i32, x: &[f32], levels: &mut [i8]) -> f32 {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        levels.iter_mut().for_each(|l| *l = 0);
        return 0.0;
    }
    let clamp = |l: i32| l.clamp(-nmax, nmax - 1);
    let mut iscale = -(nmax as f32) / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for (i, &v) in x.iter().enumerate() {
        let l = clamp(nearest_int(iscale * v));
        levels[i] = (l + nmax) as i8;
        let w = v * v;
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1f32 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let l = clamp(nearest_int(iscale * v));
            let w = v * v;
            sumlx += w * v * l as f32;
            suml2 += w * l as f32 * l as f32;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (i, &v) in x.iter().enumerate() {
                levels[i] = (nmax + clamp(nearest_int(iscale * v))) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// The inverse scales a k-quant search tries: `nstep + 1` of them, from `(nmax + rmin)` in steps
/// of `rdelta`, over the value range.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScaleSearch {
    pub rmin: f32,
    pub rdelta: f32,
    pub nstep: i32,
}

/// `make_qkx2_quants`: affine levels `0..=nmax` for `x` (at most 32 values) under `weights`,
/// searching the inverse scales of `search`; returns `(scale, -min)` (the minimum is stored
/// negated, as ggml's `the_min`).
pub(crate) fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    levels: &mut [u8],
    search: ScaleSearch,
) -> (f32, f32) {
    let ScaleSearch {
        rmin,
        rdelta,
        nstep,
    } = search;
    let n = x.len();
    let mut aux = [0u8; 32];
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels[..n].iter_mut().for_each(|l| *l = 0);
        return (0.0, -min);
    }
    let nmax_f = nmax as f32;
    let mut iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        levels[i] = l as u8;
        let diff = scale * levels[i] as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if cur_error < best_error {
                levels[..n].copy_from_slice(&aux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

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

/// Quantizes one super-block affinely: per sub-block of 32 `make_qkx2_quants` under the
/// weights `sqrt(mean(x²)) + |x|`, the scales and mins rounded to 6 bits against their
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
    let mut packed = [0u8; 12];
    pack_scale_min_k4(&ls, &lm, &mut packed);
    let d = f16_bytes("d", max_scale / 63.0)?;
    let dmin = f16_bytes("dmin", max_min / 63.0)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        let cases = [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (3.49, 3),
            (-7.6, -8),
        ];
        for (x, want) in cases {
            assert_eq!(nearest_int(x), want, "{x}");
        }
    }

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
