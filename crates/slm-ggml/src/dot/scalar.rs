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

/// The integer dot of `n` weight levels with `n` activation levels.
fn idot(w: impl Iterator<Item = i32>, y: &[u8]) -> i32 {
    w.zip(y).map(|(a, &b)| a * i32::from(b as i8)).sum()
}

/// Q4_K / Q5_K super-blocks (eight sub-blocks of 32 with 6-bit scales and mins) times Q8_0
/// activations, one activation block per sub-block: `sum_j (d sc_j) (d_x sum(q y)) - (dmin m_j)
/// (d_x sum(y))`. `levels(sub, l)` is level `l` of sub-block `sub` of the super-block bytes.
fn affine_k(
    w: &[u8],
    ts: usize,
    x: &[u8],
    dx: &[f32],
    dsums: &[f32],
    levels: impl Fn(&[u8], usize, usize) -> i32,
) -> f32 {
    let mut sum = 0.0f32;
    for (s, wb) in w.chunks_exact(ts).enumerate() {
        let (d, dmin) = (f16_at(wb, 0), f16_at(wb, 2));
        for j in 0..8 {
            let (sc, m) = crate::blocks::k_affine::scale_min_k4(j, &wb[4..16]);
            let a = s * 8 + j;
            let xb = &x[a * 34..(a + 1) * 34];
            let q = idot((0..32).map(|l| levels(wb, j, l)), &xb[2..]);
            sum += (d * f32::from(sc)) * (dx[a] * q as f32) - (dmin * f32::from(m)) * dsums[a];
        }
    }
    sum
}

/// Q4_K weights (144-byte super-blocks) times Q8_0 activations.
pub(crate) fn q4_k_q8_0(w: &[u8], x: &[u8], dx: &[f32], dsums: &[f32]) -> f32 {
    affine_k(w, 144, x, dx, dsums, |b, j, l| {
        let q = b[16 + 32 * (j / 2) + l];
        i32::from(if j % 2 == 0 { q & 0x0F } else { q >> 4 })
    })
}

/// Q5_K weights (176-byte super-blocks) times Q8_0 activations.
pub(crate) fn q5_k_q8_0(w: &[u8], x: &[u8], dx: &[f32], dsums: &[f32]) -> f32 {
    affine_k(w, 176, x, dx, dsums, |b, j, l| {
        let q = b[48 + 32 * (j / 2) + l];
        let low = if j % 2 == 0 { q & 0x0F } else { q >> 4 };
        let high = (b[16 + l] >> j) & 1;
        i32::from(low | (high << 4))
    })
}

/// Q6_K weights (210-byte super-blocks: 16 sub-blocks of 16 with int8 scales) times Q8_0
/// activations, two sub-blocks per activation block.
pub(crate) fn q6_k_q8_0(w: &[u8], x: &[u8], dx: &[f32]) -> f32 {
    let mut sum = 0.0f32;
    for (s, wb) in w.chunks_exact(210).enumerate() {
        let (ql, qh, sc) = (&wb[..128], &wb[128..192], &wb[192..208]);
        let d = f16_at(wb, 208);
        // Level of value `i` (0..256) of the super-block, minus 32.
        let level = |i: usize| -> i32 {
            let (half, r) = (i / 128, i % 128);
            let (quarter, l) = (r / 32, r % 32);
            let low = ql[64 * half + l + 32 * (quarter % 2)];
            let low = if quarter < 2 { low & 0x0F } else { low >> 4 };
            let high = (qh[32 * half + l] >> (2 * quarter)) & 3;
            i32::from(low | (high << 4)) - 32
        };
        for a in 0..8 {
            let xb = &x[(s * 8 + a) * 34..(s * 8 + a + 1) * 34];
            let lo = idot((0..16).map(|l| level(32 * a + l)), &xb[2..18]);
            let hi = idot((16..32).map(|l| level(32 * a + l)), &xb[18..34]);
            let (s0, s1) = (f32::from(sc[2 * a] as i8), f32::from(sc[2 * a + 1] as i8));
            sum += d * dx[s * 8 + a] * (s0 * lo as f32 + s1 * hi as f32);
        }
    }
    sum
}

/// Float weights (`F32`, `F16` or `BF16`, little-endian) times f32 activations, in eight
/// partial sums as the SIMD kernels add them.
pub(crate) fn float_f32(ty: crate::GgmlType, w: &[u8], x: &[f32]) -> f32 {
    let value = |i: usize| -> f32 {
        match ty {
            crate::GgmlType::F32 => {
                f32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]])
            }
            crate::GgmlType::F16 => half::f16::from_le_bytes([w[2 * i], w[2 * i + 1]]).to_f32(),
            _ => f32::from_bits(u32::from(u16::from_le_bytes([w[2 * i], w[2 * i + 1]])) << 16),
        }
    };
    let mut acc = [0.0f32; 8];
    for (i, &xi) in x.iter().enumerate() {
        acc[i % 8] += value(i) * xi;
    }
    acc.iter().sum()
}
