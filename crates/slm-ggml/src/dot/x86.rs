//! AVX2 + FMA (+ F16C for the scales) kernels (llama.cpp's `ggml-cpu/arch/x86/quants.c` AVX2 paths): per block, the
//! 32 products summed in integer lanes (`maddubs` then `madd`), converted to f32 and added with
//! one FMA by the block's scale; a horizontal sum at the end.

use std::arch::x86_64::*;

/// The f16 at `b[i..i + 2]` as f32, by the F16C instruction (the `half` crate's portable
/// conversion costs more than a block's integer products).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    let h = u16::from_le_bytes([b[i], b[i + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h))))
}

/// Sum of the eight f32 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// The 16 pairwise products of signed bytes `x * y`, summed to 8 i32 and converted to f32
/// (`mul_sum_i8_pairs_float`: |x| as unsigned times y with x's sign, which `maddubs` takes).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256 {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    mul_sum_u8_i8(ax, sy)
}

/// Unsigned bytes `x` times signed bytes `y`, pairwise, summed to 8 i32, as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn mul_sum_u8_i8(x: __m256i, y: __m256i) -> __m256 {
    let dot = _mm256_maddubs_epi16(x, y);
    let summed = _mm256_madd_epi16(dot, _mm256_set1_epi16(1));
    _mm256_cvtepi32_ps(summed)
}

/// 16 bytes of nibbles to 32 bytes: low nibbles first (elements 0..16), then high ones.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY (caller): `p` points at 16 readable bytes.
    let tmp = unsafe { _mm_loadu_si128(p as *const __m128i) };
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(tmp), tmp);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// 0xFF in byte `j` where bit `j` of the 4 bytes at `p` is set (`bytes_from_bits_32`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn bits(qh: &[u8]) -> __m256i {
    let x = i32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let shuffle = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x), shuffle);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// 32 signed bytes at `p`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load32(p: *const u8) -> __m256i {
    // SAFETY (caller): `p` points at 32 readable bytes.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// Q8_0 x Q8_0.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `w` and `x` hold the same number of 34-byte blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q8_0_q8_0(w: &[u8], x: &[u8], dx: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for ((wb, xb), &dx) in w.chunks_exact(34).zip(x.chunks_exact(34)).zip(dx) {
        let d = _mm256_set1_ps(f16_at(wb, 0) * dx);
        // SAFETY: each block has 32 bytes of levels after its 2-byte scale.
        let (qw, qx) = unsafe { (load32(wb.as_ptr().add(2)), load32(xb.as_ptr().add(2))) };
        acc = _mm256_fmadd_ps(d, mul_sum_i8(qw, qx), acc);
    }
    hsum(acc)
}

/// Q4_0 x Q8_0, as Q4_1 with the minimum `-8 d`: unsigned nibbles times the activations
/// (`maddubs` directly, no sign juggling), `8 d` times the activation block's scaled sum
/// subtracted: `sum (q - 8) y = sum q y - 8 sum y` exactly in integers.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `w` holds as many 18-byte blocks as `x` 34-byte ones and
/// `dx`/`dsums` entries.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q4_0_q8_0(w: &[u8], x: &[u8], dx: &[f32], dsums: &[f32]) -> f32 {
    // SAFETY: as the caller guarantees.
    unsafe { nibbles_q8_0::<false>(w, x, dx, dsums) }
}

/// Q4_1 x Q8_0 with the activation blocks' scaled level sums.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `w` holds as many 20-byte blocks as `x` 34-byte ones and
/// `dx`/`dsums` entries.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q4_1_q8_0(w: &[u8], x: &[u8], dx: &[f32], dsums: &[f32]) -> f32 {
    // SAFETY: as the caller guarantees.
    unsafe { nibbles_q8_0::<true>(w, x, dx, dsums) }
}

/// Blocks of `d` (and with `STORED_MIN` an f16 minimum `m`, else `m = -8 d`) and 16 bytes of
/// nibbles, value `d q + m`, times Q8_0 activations: `d d_x sum(q y) + m (d_x sum(y))`.
///
/// # Safety
/// As [`q4_0_q8_0`] or [`q4_1_q8_0`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn nibbles_q8_0<const STORED_MIN: bool>(
    w: &[u8],
    x: &[u8],
    dx: &[f32],
    dsums: &[f32],
) -> f32 {
    let (size, at) = if STORED_MIN { (20, 4) } else { (18, 2) };
    let mut acc = _mm256_setzero_ps();
    let mut offset = 0.0f32;
    for (((wb, xb), &dx), &dsum) in w
        .chunks_exact(size)
        .zip(x.chunks_exact(34))
        .zip(dx)
        .zip(dsums)
    {
        let d = f16_at(wb, 0);
        let m = if STORED_MIN { f16_at(wb, 2) } else { -8.0 * d };
        // SAFETY: 16 bytes of nibbles after the weight block's d (and m), 32 levels after the
        // activation block's scale.
        let (qw, qx) = unsafe { (nibbles(wb.as_ptr().add(at)), load32(xb.as_ptr().add(2))) };
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * dx), mul_sum_u8_i8(qw, qx), acc);
        offset += m * dsum;
    }
    hsum(acc) + offset
}

/// Q5_0 x Q8_0: the fifth bit clear turns a nibble into `nibble - 16` by or-ing 0xF0.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `w` holds as many 22-byte blocks as `x` 34-byte ones and
/// `dx` entries.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q5_0_q8_0(w: &[u8], x: &[u8], dx: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let f0 = _mm256_set1_epi8(0xF0u8 as i8);
    for ((wb, xb), &dx) in w.chunks_exact(22).zip(x.chunks_exact(34)).zip(dx) {
        let d = _mm256_set1_ps(f16_at(wb, 0) * dx);
        // SAFETY: 16 bytes of nibbles after d and qh, 32 levels after the activation's scale.
        let (lo, qx) = unsafe { (nibbles(wb.as_ptr().add(6)), load32(xb.as_ptr().add(2))) };
        let qw = _mm256_or_si256(lo, _mm256_andnot_si256(bits(&wb[2..6]), f0));
        acc = _mm256_fmadd_ps(d, mul_sum_i8(qw, qx), acc);
    }
    hsum(acc)
}

/// Q5_1 x Q8_0 with the activation blocks' scaled level sums.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `w` holds as many 24-byte blocks as `x` 34-byte ones and
/// `dx`/`dsums` entries.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q5_1_q8_0(w: &[u8], x: &[u8], dx: &[f32], dsums: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut offset = 0.0f32;
    let bit4 = _mm256_set1_epi8(0x10);
    for (((wb, xb), &dx), &dsum) in w
        .chunks_exact(24)
        .zip(x.chunks_exact(34))
        .zip(dx)
        .zip(dsums)
    {
        let d = _mm256_set1_ps(f16_at(wb, 0) * dx);
        // SAFETY: 16 bytes of nibbles after d, m and qh, 32 levels after the activation's scale.
        let (lo, qx) = unsafe { (nibbles(wb.as_ptr().add(8)), load32(xb.as_ptr().add(2))) };
        let qw = _mm256_or_si256(lo, _mm256_and_si256(bits(&wb[4..8]), bit4));
        acc = _mm256_fmadd_ps(d, mul_sum_u8_i8(qw, qx), acc);
        offset += f16_at(wb, 2) * dsum;
    }
    hsum(acc) + offset
}

/// Q4_K x Q8_0: each 32-wide sub-block (its levels the low or high nibbles of 32 bytes) meets
/// one activation block; its scale `d * sc` times the activation scale in one FMA, its minimum
/// `dmin * m` times the activation block's scaled sum.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `w` holds whole 144-byte super-blocks and `x`, `dx`, `dsums`
/// eight activation blocks per super-block.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q4_k_q8_0(w: &[u8], x: &[u8], dx: &[f32], dsums: &[f32]) -> f32 {
    // SAFETY: as the caller guarantees.
    unsafe { affine_k::<false>(w, x, dx, dsums) }
}

/// Q5_K x Q8_0: Q4_K's layout plus a fifth bit per value (`qh`, 32 bytes after the scales: bit
/// `j` of byte `l` belongs to value `l` of sub-block `j`).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `w` holds whole 176-byte super-blocks, `x` eight 34-byte
/// blocks per super-block with `dx`/`dsums` entries.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q5_k_q8_0(w: &[u8], x: &[u8], dx: &[f32], dsums: &[f32]) -> f32 {
    // SAFETY: as the caller guarantees.
    unsafe { affine_k::<true>(w, x, dx, dsums) }
}

/// The Q4_K/Q5_K super-block (`d`, `dmin`, 12 bytes of 6-bit scales and minimums, with
/// `FIFTH` 32 bytes of fifth bits, then 128 bytes of nibbles) times Q8_0 activations.
///
/// # Safety
/// As [`q4_k_q8_0`] or [`q5_k_q8_0`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn affine_k<const FIFTH: bool>(w: &[u8], x: &[u8], dx: &[f32], dsums: &[f32]) -> f32 {
    let (size, nibbles_at) = if FIFTH { (176, 48) } else { (144, 16) };
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0.0f32;
    let low = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    for (s, wb) in w.chunks_exact(size).enumerate() {
        let (d, dmin) = (f16_at(wb, 0), f16_at(wb, 2));
        // SAFETY: Q5_K's 32 fifth-bit bytes follow d, dmin and the 12 scale bytes.
        let qh = if FIFTH {
            unsafe { load32(wb.as_ptr().add(16)) }
        } else {
            _mm256_setzero_si256()
        };
        for pair in 0..4 {
            // SAFETY: 32 bytes of levels per pair of sub-blocks.
            let q = unsafe { load32(wb.as_ptr().add(nibbles_at + 32 * pair)) };
            for half in 0..2 {
                let j = 2 * pair + half;
                let (sc, m) = crate::blocks::k_affine::scale_min_k4(j, &wb[4..16]);
                let a = s * 8 + j;
                let mut levels = if half == 0 {
                    _mm256_and_si256(q, low)
                } else {
                    _mm256_and_si256(_mm256_srli_epi16::<4>(q), low)
                };
                if FIFTH {
                    let shift = _mm_cvtsi32_si128(j as i32);
                    let high = _mm256_and_si256(_mm256_srl_epi16(qh, shift), one);
                    levels = _mm256_or_si256(levels, _mm256_slli_epi16::<4>(high));
                }
                // SAFETY: activation block `a` exists (8 per super-block, checked by the caller).
                let y = unsafe { load32(x.as_ptr().add(a * 34 + 2)) };
                let scale = _mm256_set1_ps(d * f32::from(sc) * dx[a]);
                acc = _mm256_fmadd_ps(scale, mul_sum_u8_i8(levels, y), acc);
                mins += dmin * f32::from(m) * dsums[a];
            }
        }
    }
    hsum(acc) - mins
}

/// Float weights times f32 activations: 32 products per step in four FMA chains, the tail
/// (fewer than 8 values) scalar. F16 is widened by F16C, BF16 by a 16-bit shift.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `w` holds `x.len()` values of `ty` (`F32`, `F16` or `BF16`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn float_f32(ty: crate::GgmlType, w: &[u8], x: &[f32]) -> f32 {
    // SAFETY (caller): as for `float_f32_tokens`.
    let [y] = unsafe { float_f32_tokens::<1>(ty, w, [x]) };
    y
}

/// One float weight row times `T` activation rows: each weight vector is loaded (and widened)
/// once for the `T` of them, and each product is summed exactly as [`float_f32`] sums it alone
/// (the same four chains, order and tail), so a token's result does not depend on which
/// tokens share its pass.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; every `x[t]` has the same length and `w` holds that many
/// values of `ty` (`F32`, `F16` or `BF16`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn float_f32_tokens<const T: usize>(
    ty: crate::GgmlType,
    w: &[u8],
    x: [&[f32]; T],
) -> [f32; T] {
    let width = if ty == crate::GgmlType::F32 { 4 } else { 2 };
    let wp = w.as_ptr();
    // SAFETY (every `load` and `xv` below): `i + 8 <= n`, `w` holds `n * width` bytes and
    // every `x[t]` n values.
    let load = |i: usize| unsafe { load8(ty, wp.add(i * width)) };
    let xv = |t: usize, i: usize| unsafe { _mm256_loadu_ps(x[t].as_ptr().add(i)) };
    let n = x.first().map_or(0, |x| x.len());
    let mut acc = [[_mm256_setzero_ps(); 4]; T];
    let mut i = 0;
    while i + 32 <= n {
        for k in 0..4 {
            let j = i + 8 * k;
            let wv = load(j);
            for (t, a) in acc.iter_mut().enumerate() {
                a[k] = _mm256_fmadd_ps(wv, xv(t, j), a[k]);
            }
        }
        i += 32;
    }
    while i + 8 <= n {
        let wv = load(i);
        for (t, a) in acc.iter_mut().enumerate() {
            a[0] = _mm256_fmadd_ps(wv, xv(t, i), a[0]);
        }
        i += 8;
    }
    let mut out = [0.0f32; T];
    for (t, (a, o)) in acc.iter().zip(&mut out).enumerate() {
        *o = hsum(_mm256_add_ps(
            _mm256_add_ps(a[0], a[1]),
            _mm256_add_ps(a[2], a[3]),
        ));
        if i < n {
            *o += super::scalar::float_f32(ty, &w[i * width..], &x[t][i..]);
        }
    }
    out
}

/// Eight float weights of `ty` at `p`, as f32.
///
/// # Safety
/// `p` points at 8 readable values of `ty`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load8(ty: crate::GgmlType, p: *const u8) -> __m256 {
    // SAFETY (caller): 8 values of `ty` at `p`.
    unsafe {
        match ty {
            crate::GgmlType::F32 => _mm256_loadu_ps(p as *const f32),
            crate::GgmlType::F16 => _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
            _ => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
                _mm_loadu_si128(p as *const __m128i),
            ))),
        }
    }
}

/// The legacy block formats [`tile`] multiplies, as its `K` parameter.
pub(crate) const TILE_Q8_0: u8 = 0;
/// See [`TILE_Q8_0`].
pub(crate) const TILE_Q4_0: u8 = 1;
/// See [`TILE_Q8_0`].
pub(crate) const TILE_Q4_1: u8 = 2;
/// Q5_0, for the packed kernel only.
pub(crate) const TILE_Q5_0: u8 = 3;

/// The f16 at `p` as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn f16_ptr(p: *const u8) -> f32 {
    // SAFETY (caller): two readable bytes at `p`.
    let h = unsafe { std::ptr::read_unaligned(p as *const u16) };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h))))
}

/// `R` weight rows times `T` activation rows of one legacy format (`K`: Q8_0, Q4_0 or Q4_1),
/// `R * T` independent accumulators: each weight block is unpacked once for all `T` tokens and
/// each activation block loaded once for all `R` rows (llama.cpp's `gemm` tiles do the same
/// after repacking; here the stored layout is read as it is).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; every `w[r]` points at `blocks` weight blocks of `K`, every
/// `x[t]` at `blocks` 34-byte Q8_0 blocks with `blocks` entries at `dx[t]` and `sums[t]`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn tile<const K: u8, const R: usize, const T: usize>(
    blocks: usize,
    w: [*const u8; R],
    x: [*const u8; T],
    dx: [*const f32; T],
    sums: [*const f32; T],
) -> [[f32; T]; R] {
    let block_bytes = match K {
        TILE_Q8_0 => 34,
        TILE_Q4_0 => 18,
        _ => 20,
    };
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut offset = [[0.0f32; T]; R];
    for b in 0..blocks {
        // SAFETY (all pointer reads): `b < blocks`, and the caller's pointers hold `blocks`
        // blocks each.
        let mut qx = [_mm256_setzero_si256(); T];
        let mut sx = [0.0f32; T];
        let mut mx = [0.0f32; T];
        for t in 0..T {
            unsafe {
                qx[t] = load32(x[t].add(b * 34 + 2));
                sx[t] = *dx[t].add(b);
                if K != TILE_Q8_0 {
                    mx[t] = *sums[t].add(b);
                }
            }
        }
        for r in 0..R {
            let wb = unsafe { w[r].add(b * block_bytes) };
            let d = unsafe { f16_ptr(wb) };
            let q = unsafe {
                match K {
                    TILE_Q8_0 => load32(wb.add(2)),
                    TILE_Q4_0 => nibbles(wb.add(2)),
                    _ => nibbles(wb.add(4)),
                }
            };
            if K != TILE_Q8_0 {
                // Q4_0 is Q4_1 with the minimum -8 d (see `q4_0_q8_0`).
                let m = if K == TILE_Q4_0 {
                    -8.0 * d
                } else {
                    unsafe { f16_ptr(wb.add(2)) }
                };
                for t in 0..T {
                    let p = mul_sum_u8_i8(q, qx[t]);
                    acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(d * sx[t]), p, acc[r][t]);
                    offset[r][t] += m * mx[t];
                }
            } else {
                let aq = _mm256_sign_epi8(q, q);
                for t in 0..T {
                    let p = mul_sum_u8_i8(aq, _mm256_sign_epi8(qx[t], q));
                    acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(d * sx[t]), p, acc[r][t]);
                }
            }
        }
    }
    let mut out = [[0.0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            out[r][t] = hsum(acc[r][t]) + offset[r][t];
        }
    }
    out
}

/// Q6_K x Q8_0: per 32-value activation block, the 6-bit levels (4 from `ql`, 2 from `qh`)
/// times the activations minus 32 times their sum, the two 16-value halves weighted by their
/// int8 scales in one `madd` (llama.cpp's `ggml_vec_dot_q6_K_q8_K` AVX2 arithmetic).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `w` holds whole 210-byte super-blocks, `x` eight 34-byte
/// blocks per super-block with `dx` entries.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q6_k_q8_0(w: &[u8], x: &[u8], dx: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let low = _mm256_set1_epi8(0x0F);
    let three = _mm256_set1_epi8(3);
    let m32 = _mm256_set1_epi8(32);
    for (s, wb) in w.chunks_exact(210).enumerate() {
        let d = f16_at(wb, 208);
        let p = wb.as_ptr();
        for half in 0..2 {
            // SAFETY: `ql` is bytes 0..128, `qh` 128..192 of the super-block.
            let (ql0, ql1, qh) = unsafe {
                (
                    load32(p.add(64 * half)),
                    load32(p.add(64 * half + 32)),
                    load32(p.add(128 + 32 * half)),
                )
            };
            for quarter in 0..4 {
                let a = 4 * half + quarter;
                let ql = if quarter % 2 == 0 { ql0 } else { ql1 };
                let nib = if quarter < 2 {
                    _mm256_and_si256(ql, low)
                } else {
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql), low)
                };
                let hb = _mm256_and_si256(
                    _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * quarter as i32)),
                    three,
                );
                let levels = _mm256_or_si256(nib, _mm256_slli_epi16::<4>(hb));
                let b = s * 8 + a;
                // SAFETY: activation block `b` exists (8 per super-block, checked by the caller).
                let y = unsafe { load32(x.as_ptr().add(b * 34 + 2)) };
                let p16 = _mm256_sub_epi16(
                    _mm256_maddubs_epi16(levels, y),
                    _mm256_maddubs_epi16(m32, y),
                );
                let (s0, s1) = (
                    i16::from(wb[192 + 2 * a] as i8),
                    i16::from(wb[193 + 2 * a] as i8),
                );
                let scales = _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0));
                let p32 = _mm256_madd_epi16(p16, scales);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * dx[b]), _mm256_cvtepi32_ps(p32), acc);
            }
        }
    }
    hsum(acc)
}

/// The level offset a packed group's unsigned levels carry (their stored form less it is the
/// signed level): 128 for Q8_0, 16 for Q5_0, 8 for Q4_0 (Q4_1 adds its minimums instead).
const fn level_offset(k: u8) -> f32 {
    match k {
        TILE_Q8_0 => 128.0,
        TILE_Q5_0 => 16.0,
        _ => 8.0,
    }
}

/// The two 64-bit halves of a 128-bit shuffle index that copies byte `4 l + run` of each 128-bit
/// lane to all four bytes of its 32-bit lane `l` (row `l`'s fifth bits of columns
/// `8 run..8 run + 8`, Q5_0).
fn replicate_run(run: usize) -> (i64, i64) {
    let four = |byte: i64| byte * 0x0101_0101;
    let r = run as i64;
    (
        four(r) | four(r + 4) << 32,
        four(r + 8) | four(r + 12) << 32,
    )
}

/// The levels of a packed 4- or 5-bit group ([`super::packed`]) as unsigned bytes, one run of
/// eight columns at a time: the low nibbles (columns `8 run..8 run + 4` of each row's lane) and
/// the high ones (`8 run + 4..8 run + 8`), Q5_0's fifth bits or-ed in as 0x10.
#[derive(Clone, Copy)]
struct PackedLevels {
    /// Q5_0: byte `run` of each row's fifth bits copied to its four bytes.
    replicate: [__m256i; 4],
    bits_lo: __m256i,
    bits_hi: __m256i,
    bit4: __m256i,
    low: __m256i,
}

impl PackedLevels {
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn new() -> Self {
        // Shuffle indices: lane `l`'s four bytes all take byte `4 l + run` of their 128-bit
        // half (row `l`'s fifth bits of columns `8 run..8 run + 8`).
        let replicate = std::array::from_fn(|run| {
            let (a, b) = replicate_run(run);
            _mm256_setr_epi64x(a, b, a, b)
        });
        Self {
            replicate,
            bits_lo: _mm256_set1_epi32(0x0804_0201),
            bits_hi: _mm256_set1_epi32(0x8040_2010u32 as i32),
            bit4: _mm256_set1_epi8(0x10),
            low: _mm256_set1_epi8(0x0F),
        }
    }

    /// Run `run` of the group block at `p`: (low, high) levels; `qh` is the block's fifth bits
    /// (Q5_0), `header` its header bytes.
    ///
    /// # Safety
    /// `p + header` starts 128 readable bytes of levels.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn run<const K: u8>(
        &self,
        p: *const u8,
        header: usize,
        qh: __m256i,
        run: usize,
    ) -> (__m256i, __m256i) {
        // SAFETY (caller): in bounds.
        let w = unsafe { load32(p.add(header + 32 * run)) };
        let mut lo = _mm256_and_si256(w, self.low);
        let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(w), self.low);
        if K == TILE_Q5_0 {
            let rep = _mm256_shuffle_epi8(qh, self.replicate[run]);
            let set =
                |m| _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(rep, m), m), self.bit4);
            lo = _mm256_or_si256(lo, set(self.bits_lo));
            hi = _mm256_or_si256(hi, set(self.bits_hi));
        }
        (lo, hi)
    }
}

/// The f32 step of a packed block: the eight rows' integer sums `isum` times their scales and
/// the activation block's, plus the offset term (Q4_1: the eight minimums times the activation
/// block's scaled sum; the others: minus their level offset times it).
///
/// # Safety
/// `p` is a packed group block of `K`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn packed_block_f32<const K: u8>(
    p: *const u8,
    isum: __m256i,
    dx: f32,
    dsum: f32,
    acc: __m256,
) -> __m256 {
    // SAFETY (caller): the header holds 8 f16 scales (and for Q4_1 8 f16 minimums after them).
    unsafe {
        let sw = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
        let acc = _mm256_fmadd_ps(
            _mm256_mul_ps(sw, _mm256_set1_ps(dx)),
            _mm256_cvtepi32_ps(isum),
            acc,
        );
        let offset = level_offset(K);
        if K == TILE_Q4_1 {
            let mins = _mm256_cvtph_ps(_mm_loadu_si128(p.add(16) as *const __m128i));
            _mm256_fmadd_ps(mins, _mm256_set1_ps(dsum), acc)
        } else {
            _mm256_fnmadd_ps(sw, _mm256_set1_ps(offset * dsum), acc)
        }
    }
}

/// The [`crate::GgmlType`] of a tile kind.
fn tile_type(k: u8) -> crate::GgmlType {
    match k {
        TILE_Q8_0 => crate::GgmlType::Q8_0,
        TILE_Q4_0 => crate::GgmlType::Q4_0,
        TILE_Q5_0 => crate::GgmlType::Q5_0,
        _ => crate::GgmlType::Q4_1,
    }
}

/// One packed group of eight rows ([`super::packed`]) times `T` activation rows with AVX-512
/// VNNI: per block, the eight rows' products as eight 32-bit lanes (`vpdpbusd` of the packed
/// unsigned levels and four broadcast activation bytes), their eight scales in one conversion,
/// the offset (128 for Q8_0, 8 for Q4_0) times the activation block's scaled sum subtracted
/// (for Q4_1 its eight minimums times it added).
/// Writes eight values at each `out[t]`.
///
/// # Safety
/// The CPU has AVX2, FMA, F16C, AVX-512 VNNI and VL; `group` holds `blocks` packed blocks of
/// `K` (`TILE_Q8_0`, `TILE_Q4_0`, `TILE_Q4_1` or `TILE_Q5_0`); every `x[t]` points at `blocks`
/// 34-byte Q8_0 blocks with `blocks` entries at `dx[t]` and `sums[t]`; every `out[t]` at 8
/// writable f32.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub(crate) unsafe fn packed_group<const K: u8, const T: usize>(
    blocks: usize,
    group: *const u8,
    x: [*const u8; T],
    dx: [*const f32; T],
    sums: [*const f32; T],
    out: [*mut f32; T],
) {
    let ty = tile_type(K);
    let bs = super::packed::group_bytes(ty);
    let header = super::packed::header_bytes(ty);
    let levels = PackedLevels::new();
    let mut acc = [_mm256_setzero_ps(); T];
    // SAFETY (every pointer read and write below): within the extents the caller guarantees.
    unsafe {
        for b in 0..blocks {
            let p = group.add(b * bs);
            let mut isum = [_mm256_setzero_si256(); T];
            if K == TILE_Q8_0 {
                for run in 0..8 {
                    let w = load32(p.add(16 + 32 * run));
                    for t in 0..T {
                        let xp = x[t].add(b * 34 + 2 + 4 * run) as *const i32;
                        let xv = _mm256_set1_epi32(std::ptr::read_unaligned(xp));
                        isum[t] = _mm256_dpbusd_epi32(isum[t], w, xv);
                    }
                }
            } else {
                let qh = if K == TILE_Q5_0 {
                    load32(p.add(16))
                } else {
                    _mm256_setzero_si256()
                };
                for run in 0..4 {
                    let (lo, hi) = levels.run::<K>(p, header, qh, run);
                    for t in 0..T {
                        let xp = x[t].add(b * 34 + 2 + 8 * run);
                        let xl = _mm256_set1_epi32(std::ptr::read_unaligned(xp as *const i32));
                        let xh =
                            _mm256_set1_epi32(std::ptr::read_unaligned(xp.add(4) as *const i32));
                        isum[t] = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(isum[t], lo, xl), hi, xh);
                    }
                }
            }
            for t in 0..T {
                acc[t] = packed_block_f32::<K>(p, isum[t], *dx[t].add(b), *sums[t].add(b), acc[t]);
            }
        }
        for t in 0..T {
            _mm256_storeu_ps(out[t], acc[t]);
        }
    }
}

/// [`packed_group`] for CPUs with AVX2 but no VNNI, on the same layout, for the 4- and 5-bit
/// formats (Q8_0's levels plus 128 would saturate `maddubs`' 16-bit pair sums; its stored
/// layout runs through [`tile`] instead): `maddubs` of the packed unsigned levels and four
/// broadcast activation bytes gives each row lane two 16-bit pair sums. A 4-bit block's eight
/// of them add in 16 bits (at most 8 x 2 x 15 x 127 = 30,480) and widen once per block with one
/// `madd`; Q5_0's (31 x 127 per product) widen once per run.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; otherwise as [`packed_group`], `K` one of `TILE_Q4_0`,
/// `TILE_Q4_1` or `TILE_Q5_0`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn packed_group_avx2<const K: u8, const T: usize>(
    blocks: usize,
    group: *const u8,
    x: [*const u8; T],
    dx: [*const f32; T],
    sums: [*const f32; T],
    out: [*mut f32; T],
) {
    debug_assert!(K != TILE_Q8_0, "Q8_0 does not fit maddubs");
    let ty = tile_type(K);
    let bs = super::packed::group_bytes(ty);
    let header = super::packed::header_bytes(ty);
    let levels = PackedLevels::new();
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); T];
    // SAFETY (every pointer read and write below): within the extents the caller guarantees.
    unsafe {
        for b in 0..blocks {
            let p = group.add(b * bs);
            let qh = if K == TILE_Q5_0 {
                load32(p.add(16))
            } else {
                _mm256_setzero_si256()
            };
            let mut pairs = [_mm256_setzero_si256(); T];
            let mut isum = [_mm256_setzero_si256(); T];
            for run in 0..4 {
                let (lo, hi) = levels.run::<K>(p, header, qh, run);
                for t in 0..T {
                    let xp = x[t].add(b * 34 + 2 + 8 * run);
                    let xl = _mm256_set1_epi32(std::ptr::read_unaligned(xp as *const i32));
                    let xh = _mm256_set1_epi32(std::ptr::read_unaligned(xp.add(4) as *const i32));
                    let sum = _mm256_add_epi16(
                        _mm256_maddubs_epi16(lo, xl),
                        _mm256_maddubs_epi16(hi, xh),
                    );
                    if K == TILE_Q5_0 {
                        isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(sum, ones));
                    } else {
                        pairs[t] = _mm256_add_epi16(pairs[t], sum);
                    }
                }
            }
            for t in 0..T {
                if K != TILE_Q5_0 {
                    isum[t] = _mm256_madd_epi16(pairs[t], ones);
                }
                acc[t] = packed_block_f32::<K>(p, isum[t], *dx[t].add(b), *sums[t].add(b), acc[t]);
            }
        }
        for t in 0..T {
            _mm256_storeu_ps(out[t], acc[t]);
        }
    }
}

/// Whether this CPU runs [`packed_pair`]: AVX-512 F, BW and VNNI (with the AVX2 set the f32
/// step shares).
pub(crate) fn avx512_pairs() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && super::Kernel::Avx2.available()
}

/// Two adjacent packed groups (rows `8g..8g + 16`) times `T` activation rows in 512-bit
/// registers: the same layout and the same arithmetic lane for lane as [`packed_group`] (so
/// the same results, bit for bit), with group `g` in the low half of each register and group
/// `g + 1` in the high half. One `vpdpbusd` advances sixteen rows, so the integer products, the
/// activation broadcasts and the f32 step take half the instructions of two [`packed_group`]
/// calls. Writes sixteen values at each `out[t]`.
///
/// # Safety
/// The CPU has what [`avx512_pairs`] checks; `g0` and `g1` each hold `blocks` packed blocks of
/// `K`; every `x[t]` points at `blocks` 34-byte Q8_0 blocks with `blocks` entries at `dx[t]`
/// and `sums[t]`; every `out[t]` at 16 writable f32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
pub(crate) unsafe fn packed_pair<const K: u8, const T: usize>(
    blocks: usize,
    g0: *const u8,
    g1: *const u8,
    x: [*const u8; T],
    dx: [*const f32; T],
    sums: [*const f32; T],
    out: [*mut f32; T],
) {
    let ty = tile_type(K);
    let bs = super::packed::group_bytes(ty);
    let header = super::packed::header_bytes(ty);
    // SAFETY (every pointer read and write below): within the extents the caller guarantees.
    unsafe {
        let both = |p0: *const u8, p1: *const u8| {
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load32(p0)), load32(p1))
        };
        let halves = |p0: *const u8, p1: *const u8| {
            _mm512_cvtph_ps(_mm256_inserti128_si256::<1>(
                _mm256_castsi128_si256(_mm_loadu_si128(p0 as *const __m128i)),
                _mm_loadu_si128(p1 as *const __m128i),
            ))
        };
        let low = _mm512_set1_epi8(0x0F);
        let bit4 = _mm512_set1_epi8(0x10);
        let (bits_lo, bits_hi) = (
            _mm512_set1_epi32(0x0804_0201),
            _mm512_set1_epi32(0x8040_2010u32 as i32),
        );
        // As `PackedLevels::replicate`: shuffles stay within 128-bit lanes, so the same
        // indices serve all four.
        let replicate: [__m512i; 4] = std::array::from_fn(|run| {
            let (a, b) = replicate_run(run);
            _mm512_set_epi64(b, a, b, a, b, a, b, a)
        });
        let offset = level_offset(K);
        let mut acc = [_mm512_setzero_ps(); T];
        for b in 0..blocks {
            let (p0, p1) = (g0.add(b * bs), g1.add(b * bs));
            let mut isum = [_mm512_setzero_si512(); T];
            if K == TILE_Q8_0 {
                for run in 0..8 {
                    let w = both(p0.add(16 + 32 * run), p1.add(16 + 32 * run));
                    for t in 0..T {
                        let xp = x[t].add(b * 34 + 2 + 4 * run) as *const i32;
                        let xv = _mm512_set1_epi32(std::ptr::read_unaligned(xp));
                        isum[t] = _mm512_dpbusd_epi32(isum[t], w, xv);
                    }
                }
            } else {
                let qh = if K == TILE_Q5_0 {
                    both(p0.add(16), p1.add(16))
                } else {
                    _mm512_setzero_si512()
                };
                for (run, replicate) in replicate.iter().enumerate() {
                    let w = both(p0.add(header + 32 * run), p1.add(header + 32 * run));
                    let mut lo = _mm512_and_si512(w, low);
                    let mut hi = _mm512_and_si512(_mm512_srli_epi16::<4>(w), low);
                    if K == TILE_Q5_0 {
                        let rep = _mm512_shuffle_epi8(qh, *replicate);
                        lo = _mm512_or_si512(
                            lo,
                            _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(rep, bits_lo), bit4),
                        );
                        hi = _mm512_or_si512(
                            hi,
                            _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(rep, bits_hi), bit4),
                        );
                    }
                    for t in 0..T {
                        let xp = x[t].add(b * 34 + 2 + 8 * run);
                        let xl = _mm512_set1_epi32(std::ptr::read_unaligned(xp as *const i32));
                        let xh =
                            _mm512_set1_epi32(std::ptr::read_unaligned(xp.add(4) as *const i32));
                        isum[t] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(isum[t], lo, xl), hi, xh);
                    }
                }
            }
            // The f32 step of `packed_block_f32`, for both groups at once.
            let sw = halves(p0, p1);
            let mins = if K == TILE_Q4_1 {
                halves(p0.add(16), p1.add(16))
            } else {
                _mm512_setzero_ps()
            };
            for t in 0..T {
                let (d, s) = (*dx[t].add(b), *sums[t].add(b));
                let a = _mm512_fmadd_ps(
                    _mm512_mul_ps(sw, _mm512_set1_ps(d)),
                    _mm512_cvtepi32_ps(isum[t]),
                    acc[t],
                );
                acc[t] = if K == TILE_Q4_1 {
                    _mm512_fmadd_ps(mins, _mm512_set1_ps(s), a)
                } else {
                    _mm512_fnmadd_ps(sw, _mm512_set1_ps(offset * s), a)
                };
            }
        }
        for t in 0..T {
            _mm512_storeu_ps(out[t], acc[t]);
        }
    }
}

/// One block of activations quantized to Q8_0 with AVX2, exactly as the portable
/// `blocks::q8::quantize_q8_0` does it (`d = max|x| / 127` stored as f16 rounded to nearest
/// even, levels `round(x / d)` half away from zero, saturated to i8): writes the 34 bytes at
/// `out` and returns the stored scale as f32 and the levels' sum, or `None`, writing nothing,
/// when `d` does not fit an f16 (the caller reports it through the portable path).
///
/// `round` half away from zero is `trunc(v + copysign(0.49999997, v))`: the largest f32 below
/// one half never carries a value below a half over the next integer (the compiler lowers
/// `f32::round` the same way).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `x` points at 32 readable f32, `out` at 34 writable bytes.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_q8_0_block(x: *const f32, out: *mut u8) -> Option<(f32, i32)> {
    // SAFETY (every read and write): within the extents the caller guarantees.
    unsafe {
        let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(x.add(8 * i)));
        let sign = _mm256_set1_ps(-0.0);
        let abs = v.map(|v| _mm256_andnot_ps(sign, v));
        let m = _mm256_max_ps(_mm256_max_ps(abs[0], abs[1]), _mm256_max_ps(abs[2], abs[3]));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        let d = amax / 127.0;
        let h = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(d));
        let bits = _mm_extract_epi16::<0>(h) as u16;
        // An f16 of all-ones exponent is infinite or NaN: the scale did not fit.
        if bits & 0x7C00 == 0x7C00 {
            return None;
        }
        let id = _mm256_set1_ps(if d == 0.0 { 0.0 } else { 1.0 / d });
        let half = _mm256_set1_ps(0.499_999_97);
        let q = v.map(|v| {
            let a = _mm256_mul_ps(v, id);
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(_mm256_add_ps(
                a,
                _mm256_or_ps(half, _mm256_and_ps(sign, a)),
            ));
            _mm256_cvtps_epi32(r)
        });
        let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(sum),
            _mm256_extracti128_si256::<1>(sum),
        );
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        // Saturating packs to i8, then the lane order put back (llama.cpp's
        // `quantize_row_q8_0` AVX2 path).
        let p = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        std::ptr::write_unaligned(out as *mut u16, bits);
        _mm256_storeu_si256(out.add(2) as *mut __m256i, p);
        Some((f16_ptr(out), _mm_cvtsi128_si32(s)))
    }
}

/// `y += a * x` (equal lengths), eight lanes at a time with FMA.
///
/// # Safety
/// The CPU has AVX2 and FMA; `x.len() == y.len()`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn axpy_f32(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let av = _mm256_set1_ps(a);
    let (xp, yp) = (x.as_ptr(), y.as_mut_ptr());
    let mut i = 0;
    // SAFETY: `i + 8 <= n` for every vector access; both slices hold `n` values.
    unsafe {
        while i + 8 <= n {
            let v = _mm256_fmadd_ps(av, _mm256_loadu_ps(xp.add(i)), _mm256_loadu_ps(yp.add(i)));
            _mm256_storeu_ps(yp.add(i), v);
            i += 8;
        }
    }
    for k in i..n {
        y[k] = a.mul_add(x[k], y[k]);
    }
}

/// `e^x` in eight lanes: the Arm optimized-routines `expf` algorithm (as ggml's `ggml_v_expf`):
/// `n = round(x / ln 2)` by adding 1.5 * 2^23, `r = x - n ln 2` in two parts, `e^r - 1` as a
/// degree-5 polynomial, times `2^n` built in the exponent bits. Where `|n| > 126` the scale is
/// split in two factors so large results reach infinity and small ones the subnormals as `expf`
/// does (above 88.38: infinity; below -103.97: zero). Error under 2 ulp for normal results.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn exp8(x: __m256) -> __m256 {
    let c = |bits: u32| _mm256_set1_ps(f32::from_bits(bits));
    let shift = c(0x4b40_0000); // 1.5 * 2^23
    let z = _mm256_fmadd_ps(x, c(0x3fb8_aa3b), shift); // x / ln 2 + shift
    let n = _mm256_sub_ps(z, shift);
    // ln 2 = 0x1.62e4p-1 + 0x1.7f7d1cp-20.
    let r = _mm256_fnmadd_ps(n, c(0x35bf_be8e), _mm256_fnmadd_ps(n, c(0x3f31_7200), x));
    let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
    let one = _mm256_set1_ps(1.0);
    let scale = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(one)));
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let split = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(126.0));
    let r2 = _mm256_mul_ps(r, r);
    // e^r - 1 = c1 r + c2 r^2 + c3 r^3 + c4 r^4 + c5 r^5.
    let hi = _mm256_fmadd_ps(_mm256_fmadd_ps(c(0x3c07_2010), r, c(0x3d2b_9f17)), r2, {
        _mm256_fmadd_ps(c(0x3e2a_af33), r, c(0x3eff_fedb))
    });
    let p = _mm256_fmadd_ps(hi, r2, _mm256_mul_ps(c(0x3f7f_fff6), r));
    let plain = _mm256_fmadd_ps(p, scale, scale);
    if _mm256_movemask_ps(split) == 0 {
        return plain;
    }
    // 2^n = s1 * s2 with s1 = 2^127 (n > 0) or 2^-125 (n <= 0): each factor stays a normal.
    let neg = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps()));
    let g = _mm256_and_si256(neg, _mm256_set1_epi32(0x8200_0000_u32 as i32));
    let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
    let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    let split_value = _mm256_mul_ps(_mm256_fmadd_ps(s2, p, s2), s1);
    // Beyond |n| = 192 the result is infinity or zero: s1 squared is either.
    let saturate = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0));
    let v = _mm256_blendv_ps(plain, split_value, split);
    _mm256_blendv_ps(v, _mm256_mul_ps(s1, s1), saturate)
}

/// Applies `f` to `v` (and `other`'s values beside them, zeros where `None`) eight lanes at a
/// time; the tail goes through the same lanes (a padded register), so every value's result is
/// the same wherever it sits in `v`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn map8(v: &mut [f32], other: Option<&[f32]>, f: impl Fn(__m256, __m256) -> __m256) {
    let n = other.map_or(v.len(), |o| v.len().min(o.len()));
    let vp = v.as_mut_ptr();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n`, and both slices hold `n` values.
        unsafe {
            let y = other.map_or(_mm256_setzero_ps(), |o| _mm256_loadu_ps(o.as_ptr().add(i)));
            _mm256_storeu_ps(vp.add(i), f(_mm256_loadu_ps(vp.add(i)), y));
        }
        i += 8;
    }
    if i < n {
        let (mut x, mut y) = ([0.0f32; 8], [0.0f32; 8]);
        x[..n - i].copy_from_slice(&v[i..n]);
        if let Some(o) = other {
            y[..n - i].copy_from_slice(&o[i..n]);
        }
        // SAFETY: arrays of eight f32 are 32 readable and writable bytes.
        unsafe {
            let r = f(_mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr()));
            _mm256_storeu_ps(x.as_mut_ptr(), r);
        }
        v[i..n].copy_from_slice(&x[..n - i]);
    }
}

/// `g = g / (1 + e^-g) * u` (SwiGLU's gate), over the common length.
#[target_feature(enable = "avx2,fma")]
pub(crate) fn silu_mul(g: &mut [f32], u: &[f32]) {
    let one = _mm256_set1_ps(1.0);
    map8(g, Some(u), |x, u| {
        let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), u)
    });
}

/// `v = e^(v - m)` (a softmax's numerators).
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp_minus(v: &mut [f32], m: f32) {
    let mv = _mm256_set1_ps(m);
    map8(v, None, |x, _| exp8(_mm256_sub_ps(x, mv)));
}
