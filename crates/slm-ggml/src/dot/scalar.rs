//! The portable reference kernels: exact integer sums per block, one f32 multiply-add per block
//! (llama.cpp's generic `ggml_vec_dot_*_q8_0`).

use crate::blocks::f16_at;

/// Q8_0 weights (34-byte blocks) times Q8_0 activations.
pub(crate) fn q8_0_q8_0(w: &[u8], x: &[u8], dx: &[f32]) -> f32 {
    let mut sum = 0.0f32;
    for ((wb, xb), &dx) in w.chunks_exact(34).zip(x.chunks_exact(34)).zip(dx) {
        let s: i32 = wb[2..]
            .iter()
            .zip(&xb[2..])
            .map(|(&a, &b)| i32::from(a as i8) * i32::from(b as i8))
            .sum();
        sum += s as f32 * (f16_at(wb, 0) * dx);
    }
    sum
}

/// Q4_0 weights (18-byte blocks: `d`, nibbles `q`, value `d * (q - 8)`) times Q8_0 activations.
pub(crate) fn q4_0_q8_0(w: &[u8], x: &[u8], dx: &[f32]) -> f32 {
    let mut sum = 0.0f32;
    for ((wb, xb), &dx) in w.chunks_exact(18).zip(x.chunks_exact(34)).zip(dx) {
        let mut s = 0i32;
        for j in 0..16 {
            let (lo, hi) = (
                i32::from(wb[2 + j] & 0x0F) - 8,
                i32::from(wb[2 + j] >> 4) - 8,
            );
            s += lo * i32::from(xb[2 + j] as i8) + hi * i32::from(xb[18 + j] as i8);
        }
        sum += s as f32 * (f16_at(wb, 0) * dx);
    }
    sum
}

/// Q4_1 weights (20-byte blocks: `d`, `m`, nibbles `q`, value `d * q + m`) times Q8_0
/// activations with their per-block scaled sums: `d_w d_x sum(q y) + m_w (d_x sum(y))`.
pub(crate) fn q4_1_q8_0(w: &[u8], x: &[u8], dx: &[f32], dsums: &[f32]) -> f32 {
    let mut sum = 0.0f32;
    for (((wb, xb), &dx), &dsum) in w
        .chunks_exact(20)
        .zip(x.chunks_exact(34))
        .zip(dx)
        .zip(dsums)
    {
        let mut s = 0i32;
        for j in 0..16 {
            let (lo, hi) = (i32::from(wb[4 + j] & 0x0F), i32::from(wb[4 + j] >> 4));
            s += lo * i32::from(xb[2 + j] as i8) + hi * i32::from(xb[18 + j] as i8);
        }
        sum += s as f32 * (f16_at(wb, 0) * dx) + f16_at(wb, 2) * dsum;
    }
    sum
}

/// The fifth bits of a Q5 block's 32 levels, element `j` at bit `j`.
fn high_bits(qh: &[u8]) -> u32 {
    u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]])
}

/// Q5_0 weights (22-byte blocks: `d`, `qh`, nibbles; value `d * (q - 16)`) times Q8_0
/// activations.
pub(crate) fn q5_0_q8_0(w: &[u8], x: &[u8], dx: &[f32]) -> f32 {
    let mut sum = 0.0f32;
    for ((wb, xb), &dx) in w.chunks_exact(22).zip(x.chunks_exact(34)).zip(dx) {
        let qh = high_bits(&wb[2..6]);
        let mut s = 0i32;
        for j in 0..16 {
            let lo = i32::from(wb[6 + j] & 0x0F) | (((qh >> j) & 1) as i32) << 4;
            let hi = i32::from(wb[6 + j] >> 4) | (((qh >> (j + 16)) & 1) as i32) << 4;
            s += (lo - 16) * i32::from(xb[2 + j] as i8) + (hi - 16) * i32::from(xb[18 + j] as i8);
        }
        sum += s as f32 * (f16_at(wb, 0) * dx);
    }
    sum
}

/// Q5_1 weights (24-byte blocks: `d`, `m`, `qh`, nibbles; value `d * q + m`) times Q8_0
/// activations with their scaled sums.
pub(crate) fn q5_1_q8_0(w: &[u8], x: &[u8], dx: &[f32], dsums: &[f32]) -> f32 {
    let mut sum = 0.0f32;
    for (((wb, xb), &dx), &dsum) in w
        .chunks_exact(24)
        .zip(x.chunks_exact(34))
        .zip(dx)
        .zip(dsums)
    {
        let qh = high_bits(&wb[4..8]);
        let mut s = 0i32;
        for j in 0..16 {
            let lo = i32::from(wb[8 + j] & 0x0F) | (((qh >> j) & 1) as i32) << 4;
            let hi = i32::from(wb[8 + j] >> 4) | (((qh >> (j + 16)) & 1) as i32) << 4;
            s += lo * i32::from(xb[2 + j] as i8) + hi * i32::from(xb[18 + j] as i8);
        }
        sum += s as f32 * (f16_at(wb, 0) * dx) + f16_at(wb, 2) * dsum;
    }
    sum
}
