//! Q6_K: super-blocks of 256 values, 16 sub-blocks of 16 with int8 scales, one f16 `d`.

use super::search::{GROUP_MAX_EPS, make_qx_quants, nearest_int};
use super::{Overflow, QK_K, f16_at, f16_bytes};

/// Quantizes one super-block into 210 bytes (`quantize_row_q6_K_ref`): per sub-block of 16 the
/// scale `make_qx_quants` finds, the scales stored as int8 against the largest, the levels
/// recomputed from the stored scales.
pub(crate) fn quantize_q6_k(x: &[f32; QK_K], out: &mut [u8]) -> Result<(), Overflow> {
    quantize(x, None, out)
}

/// Quantizes one super-block into 210 bytes with the columns' importance `qw` as the weights of
/// the scale search (`quantize_row_q6_K_impl`).
pub(crate) fn quantize_q6_k_weighted(
    x: &[f32; QK_K],
    qw: &[f32; QK_K],
    _row_sigma2: f32,
    out: &mut [u8],
) -> Result<(), Overflow> {
    quantize(x, Some(qw), out)
}

fn quantize(x: &[f32; QK_K], qw: Option<&[f32; QK_K]>, out: &mut [u8]) -> Result<(), Overflow> {
    let mut levels = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    for (ib, slot) in scales.iter_mut().enumerate() {
        let range = 16 * ib..16 * ib + 16;
        let weights = qw.map(|w| &w[range.clone()]);
        let scale = make_qx_quants(32, &x[range.clone()], &mut levels[range], weights);
        *slot = scale;
        if scale.abs() > max_abs_scale {
            max_abs_scale = scale.abs();
            max_scale = scale;
        }
    }
    out[..210].iter_mut().for_each(|b| *b = 0);
    if max_abs_scale < GROUP_MAX_EPS {
        return Ok(()); // all zero, d = +0
    }
    let iscale = -128.0f32 / max_scale;
    let d = f16_bytes("d", 1.0 / iscale)?;
    out[208..210].copy_from_slice(&d);
    let d16 = f16_at(&d, 0);
    let mut sc = [0i8; 16];
    for ib in 0..16 {
        sc[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
        out[192 + ib] = sc[ib] as u8;
    }
    for (j, &s) in sc.iter().enumerate() {
        let dj = d16 * f32::from(s);
        if dj == 0.0 {
            continue; // ggml keeps make_qx_quants' levels
        }
        for i in 16 * j..16 * j + 16 {
            levels[i] = (nearest_int(x[i] / dj).clamp(-32, 31) + 32) as i8;
        }
    }
    let (ql, rest) = out.split_at_mut(128);
    let qh = &mut rest[..64];
    for half in 0..2 {
        let l = &levels[128 * half..128 * half + 128];
        let ql = &mut ql[64 * half..64 * half + 64];
        let qh = &mut qh[32 * half..32 * half + 32];
        for i in 0..32 {
            let q = |k: usize| l[i + 32 * k] as u8;
            ql[i] = (q(0) & 0x0F) | ((q(2) & 0x0F) << 4);
            ql[i + 32] = (q(1) & 0x0F) | ((q(3) & 0x0F) << 4);
            qh[i] = (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
        }
    }
    Ok(())
}

/// `block_q6_K { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d; }`:
/// `x = (d * sc) * (q - 32)` with 4 low bits from `ql` and 2 high bits from `qh`.
pub(crate) fn dequantize_q6_k(b: &[u8], y: &mut [f32; QK_K]) {
    let (ql, rest) = b.split_at(QK_K / 2);
    let (qh, rest) = rest.split_at(QK_K / 4);
    let (sc, d) = rest.split_at(QK_K / 16);
    let d = f16_at(d, 0);
    for half in 0..2 {
        let ql = &ql[64 * half..64 * half + 64];
        let qh = &qh[32 * half..32 * half + 32];
        let sc = &sc[8 * half..8 * half + 8];
        let y = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            y[l] = d * f32::from(sc[is] as i8) * f32::from(q1);
            y[l + 32] = d * f32::from(sc[is + 2] as i8) * f32::from(q2);
            y[l + 64] = d * f32::from(sc[is + 4] as i8) * f32::from(q3);
            y[l + 96] = d * f32::from(sc[is + 6] as i8) * f32::from(q4);
        }
    }
}
