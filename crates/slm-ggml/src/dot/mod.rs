//! Quantized dot products (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K, AVX2 and a
//! scalar reference for each): a weight row stored in its GGML blocks times activations quantized
//! to 8 bits per block, as llama.cpp multiplies them (`ggml_vec_dot_q4_0_q8_0` and friends):
//! integer products within a block, one float multiply-add per block. The weights are never
//! dequantized, so a matrix-vector product reads 4.5-8.5 bits per weight instead of 32.
//!
//! [`Activations`] holds a vector quantized to Q8_0 blocks (with each block's integer sum, for
//! the affine formats); [`dot`] and [`matvec`] pick the kernel for the weight type at run time:
//! AVX2 where the CPU has it (`is_x86_feature_detected!`), the portable scalar reference
//! otherwise. Every SIMD kernel is tested against its scalar reference and against the f32 dot
//! product of the dequantized values.

mod activation;
mod bandwidth;
mod matmul;
mod packed;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use activation::{exp_minus, silu_mul};
pub use bandwidth::read_bandwidth;
pub use matmul::{Matrix, Precision, f32_axpy, f32_dot, matmul, matmul_with};
pub use packed::PackedMatrix;

use crate::blocks::q8::quantize_q8_0;
use crate::blocks::{Block, QK, f16_at};
use crate::error::{Error, Result};
use crate::types::GgmlType;
use matmul::OutPtr;

/// Activations quantized for the integer dot products: one or more rows, each Q8_0 blocks
/// (`d` f16, 32 x i8; the k-quants' 32-wide sub-blocks each meet one, Q6_K's 16-wide ones two
/// per block), and per block its scale as f32 and `d * sum(levels)` (llama.cpp's Q8_1 `s`, for
/// the affine formats), so the kernels convert no activation scale.
///
/// Reusable: [`Activations::quantize_rows`] refills the same buffers, so a decode loop that
/// keeps one allocates nothing once warm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activations {
    blocks: Vec<u8>,
    scales: Vec<f32>,
    scaled_sums: Vec<f32>,
    len: usize,
    rows: usize,
}

/// One row of [`Activations`], as the kernels take it.
#[derive(Clone, Copy)]
pub(crate) struct Row<'a> {
    pub blocks: &'a [u8],
    pub scales: &'a [f32],
    pub sums: &'a [f32],
}

impl Activations {
    /// No rows yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Quantizes `x` (a whole number of 32-value blocks) to Q8_0, as llama.cpp quantizes the
    /// activations of a matrix-vector product with 4- and 8-bit weights.
    ///
    /// # Errors
    /// As [`Activations::quantize_rows`].
    pub fn quantize(x: &[f32]) -> Result<Self> {
        let mut a = Self::new();
        a.quantize_rows(x, x.len())?;
        Ok(a)
    }

    /// Quantizes `x`, rows of `cols` values laid end to end, into these buffers.
    ///
    /// # Errors
    /// [`Error::LengthNotMultiple`] when `cols` is not a whole number of blocks or `x` not a
    /// whole number of rows; [`Error::NonFinite`] for NaN or infinities; [`Error::ScaleOverflow`]
    /// for an activation beyond f16's range times 127.
    pub fn quantize_rows(&mut self, x: &[f32], cols: usize) -> Result<()> {
        let ty = GgmlType::Q8_0;
        if cols == 0 || !cols.is_multiple_of(QK) || !x.len().is_multiple_of(cols) {
            return Err(Error::LengthNotMultiple { ty, len: cols });
        }
        if let Some(index) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                index,
                value: x[index],
            });
        }
        let nb = x.len() / QK;
        self.blocks.resize(nb * 34, 0);
        self.scales.resize(nb, 0.0);
        self.scaled_sums.resize(nb, 0.0);
        // Rows in parallel once there are enough of them to pay for the split (prefill).
        const PARALLEL_BLOCKS: usize = 512;
        let per_job = PARALLEL_BLOCKS.max(cols / QK);
        let overflow = |first: usize| {
            move |(i, o): (usize, crate::blocks::Overflow)| Error::ScaleOverflow {
                ty,
                block: first + i,
                field: o.field,
                value: o.value,
            }
        };
        if nb <= per_job {
            quantize_blocks(x, &mut self.blocks, &mut self.scales, &mut self.scaled_sums)
                .map_err(overflow(0))?;
        } else {
            // Jobs write disjoint block ranges of the three buffers; the first overflowing
            // block (if any) is named afterwards by the serial path.
            let (blocks, scales, sums) = (
                OutPtr(self.blocks.as_mut_ptr()),
                OutPtr(self.scales.as_mut_ptr()),
                OutPtr(self.scaled_sums.as_mut_ptr()),
            );
            let bad = std::sync::atomic::AtomicUsize::new(usize::MAX);
            crate::pool::for_each_range(nb.div_ceil(per_job), |jobs| {
                let first = jobs.start * per_job;
                let end = (jobs.end * per_job).min(nb);
                // SAFETY: `first..end` is within the buffers' `nb` blocks and no other job's.
                let (b, d, s) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(
                            blocks.ptr().add(first * 34),
                            (end - first) * 34,
                        ),
                        std::slice::from_raw_parts_mut(scales.ptr().add(first), end - first),
                        std::slice::from_raw_parts_mut(sums.ptr().add(first), end - first),
                    )
                };
                if let Err((i, _)) = quantize_blocks(&x[first * QK..end * QK], b, d, s) {
                    bad.fetch_min(first + i, std::sync::atomic::Ordering::Relaxed);
                }
            });
            let bad = bad.into_inner();
            if bad != usize::MAX {
                let b = bad;
                quantize_blocks_with(
                    Kernel::Scalar,
                    &x[b * QK..(b + 1) * QK],
                    &mut self.blocks[b * 34..(b + 1) * 34],
                    &mut self.scales[b..b + 1],
                    &mut self.scaled_sums[b..b + 1],
                )
                .map_err(overflow(b))?;
            }
        }
        self.len = cols;
        self.rows = x.len() / cols;
        Ok(())
    }

    /// Values per row.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0 || self.rows == 0
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn row(&self, t: usize) -> Row<'_> {
        let nb = self.len / QK;
        Row {
            blocks: &self.blocks[t * nb * 34..(t + 1) * nb * 34],
            scales: &self.scales[t * nb..(t + 1) * nb],
            sums: &self.scaled_sums[t * nb..(t + 1) * nb],
        }
    }
}

/// What quantizing activation blocks gives: on overflow, the block and its field.
type BlocksResult = std::result::Result<(), (usize, crate::blocks::Overflow)>;

/// Quantizes the blocks of `x` into `blocks` (34 bytes each) with their f32 scales and scaled
/// level sums, with AVX2 where the CPU has it (the same bytes either way); on overflow, the
/// block and its field.
fn quantize_blocks(
    x: &[f32],
    blocks: &mut [u8],
    scales: &mut [f32],
    sums: &mut [f32],
) -> BlocksResult {
    quantize_blocks_with(Kernel::detect(), x, blocks, scales, sums)
}

/// [`quantize_blocks`] with a chosen kernel (the tests compare the two).
fn quantize_blocks_with(
    kernel: Kernel,
    x: &[f32],
    blocks: &mut [u8],
    scales: &mut [f32],
    sums: &mut [f32],
) -> BlocksResult {
    for (i, ((xb, out), (d, s))) in x
        .chunks_exact(QK)
        .zip(blocks.chunks_exact_mut(34))
        .zip(scales.iter_mut().zip(sums.iter_mut()))
        .enumerate()
    {
        (*d, *s) = quantize_block(kernel, xb, out).map_err(|o| (i, o))?;
    }
    Ok(())
}

/// One block of [`quantize_blocks_with`]: its stored scale and scaled level sum.
fn quantize_block(
    kernel: Kernel,
    xb: &[f32],
    out: &mut [u8],
) -> std::result::Result<(f32, f32), crate::blocks::Overflow> {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx2 {
        // SAFETY: `Kernel::Avx2` is only chosen where the CPU has AVX2, FMA and F16C; `xb`
        // holds 32 values and `out` 34 bytes. `None` (a scale beyond f16) falls through to
        // the portable path, which names the overflow.
        if let Some((d, sum)) = unsafe { x86::quantize_q8_0_block(xb.as_ptr(), out.as_mut_ptr()) } {
            return Ok((d, d * sum as f32));
        }
    }
    let _ = kernel;
    let block: &Block = xb.try_into().expect("chunks of QK");
    quantize_q8_0(block, out)?;
    let d = f16_at(out, 0);
    Ok((
        d,
        d * out[2..].iter().map(|&q| i32::from(q as i8)).sum::<i32>() as f32,
    ))
}

/// Which implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The portable reference.
    Scalar,
    /// AVX2 with FMA and F16C (x86-64, detected at run time).
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Self {
        // Asked per product and per attention key: the answer is kept (0 = not yet known).
        static KNOWN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
        match KNOWN.load(std::sync::atomic::Ordering::Relaxed) {
            1 => return Kernel::Scalar,
            2 => return Kernel::Avx2,
            _ => {}
        }
        let mut kernel = Kernel::Scalar;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            kernel = Kernel::Avx2;
        }
        let code = if kernel == Kernel::Avx2 { 2 } else { 1 };
        KNOWN.store(code, std::sync::atomic::Ordering::Relaxed);
        kernel
    }

    /// Whether this CPU can run the kernel.
    pub fn available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            Kernel::Avx2 => Kernel::detect() == Kernel::Avx2,
        }
    }
}

/// Weight types [`dot`] multiplies.
pub fn supports(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q4_K | Q5_K | Q6_K)
}

/// `sum_i w_i * x_i` for one weight row `row` (GGML blocks of `ty`) and activations `x`, with
/// the fastest kernel.
///
/// # Errors
/// [`Error::Unsupported`] for other weight types; [`Error::ByteLength`] when `row` does not
/// hold exactly `x.len()` values.
pub fn dot(ty: GgmlType, row: &[u8], x: &Activations) -> Result<f32> {
    dot_with(Kernel::detect(), ty, row, x)
}

/// [`dot`] with a chosen kernel (for tests and benchmarks).
///
/// # Errors
/// As [`dot`], and [`Error::Unsupported`] for a kernel this CPU lacks.
pub fn dot_with(kernel: Kernel, ty: GgmlType, row: &[u8], x: &Activations) -> Result<f32> {
    check(ty, row.len(), x.len)?;
    if x.rows != 1 {
        return Err(Error::Unsupported {
            ty,
            op: "a dot product with more than one activation row",
        });
    }
    if !kernel.available() {
        return Err(Error::Unsupported {
            ty,
            op: "this dot-product kernel on this CPU",
        });
    }
    Ok(run(kernel, ty, row, x.row(0)))
}

/// `out[r] = dot(row r, x)` for a row-major matrix of `out.len()` rows stored in `ty`'s blocks,
/// rows split across the current pool's threads ([`crate::pool::for_each_range`]).
///
/// # Errors
/// As [`dot`]; [`Error::ByteLength`] when `weights` is not `out.len()` rows of `x.len()` values.
pub fn matvec(ty: GgmlType, weights: &[u8], x: &Activations, out: &mut [f32]) -> Result<()> {
    let row_bytes = ty
        .bytes_for(x.len)
        .ok_or(Error::LengthNotMultiple { ty, len: x.len })?;
    if weights.len() != row_bytes * out.len() {
        return Err(Error::ByteLength {
            ty,
            elements: x.len * out.len(),
            expected: row_bytes * out.len(),
            got: weights.len(),
        });
    }
    check(ty, row_bytes, x.len)?;
    if x.rows != 1 {
        return Err(Error::Unsupported {
            ty,
            op: "a matrix-vector product with more than one activation row",
        });
    }
    let (kernel, x) = (Kernel::detect(), x.row(0));
    let (rows, y) = (out.len(), OutPtr(out.as_mut_ptr()));
    crate::pool::for_each_range(rows, |range| {
        for r in range {
            let v = run(kernel, ty, &weights[r * row_bytes..(r + 1) * row_bytes], x);
            // SAFETY: `r < rows` and no other job writes row `r`.
            unsafe { y.write(r, v) };
        }
    });
    Ok(())
}

fn check(ty: GgmlType, row_bytes: usize, n: usize) -> Result<()> {
    if !supports(ty) {
        return Err(Error::Unsupported {
            ty,
            op: "quantized dot products",
        });
    }
    let expected = ty
        .bytes_for(n)
        .ok_or(Error::LengthNotMultiple { ty, len: n })?;
    if row_bytes != expected || !n.is_multiple_of(QK) {
        return Err(Error::ByteLength {
            ty,
            elements: n,
            expected,
            got: row_bytes,
        });
    }
    Ok(())
}

/// `emit(t, r, W[r] · x[t])` for the rows `rows` of `m` and every token of `acts`: four rows
/// at once through the AVX2 tiles where the type has them and there are several tokens (2 x 4
/// per 4 tokens, 4 x 1 for the rest), one product at a time otherwise.
pub(crate) fn tile_rows(
    kernel: Kernel,
    m: &Matrix<'_>,
    rows: std::ops::Range<usize>,
    acts: &Activations,
    tokens: usize,
    mut emit: impl FnMut(usize, usize, f32),
) {
    // One token streams its weights from memory, where one row at a time is fastest: measured
    // in decode (slm bench, SmolLM2, 2 threads) four interleaved rows ran at 0.65-0.7x (Q8_0
    // 105 -> 68 t/s, Q4_1 119 -> 84); they only win on cached matrices (benches/matvec.rs
    // ffn_up Q8_0: 91 vs 121 us) and when several tokens share each unpacked block.
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx2 && rows.len() == 4 && tokens > 1 {
        let kind = match m.ty() {
            GgmlType::Q8_0 => Some(x86::TILE_Q8_0),
            GgmlType::Q4_0 => Some(x86::TILE_Q4_0),
            GgmlType::Q4_1 => Some(x86::TILE_Q4_1),
            _ => None,
        };
        if let Some(kind) = kind {
            let nb = m.cols() / QK;
            let w: [*const u8; 4] = std::array::from_fn(|i| m.row(rows.start + i).as_ptr());
            let ptrs = |t: usize| {
                let row = acts.row(t);
                (row.blocks.as_ptr(), row.scales.as_ptr(), row.sums.as_ptr())
            };
            let mut t = 0;
            while t + 4 <= tokens {
                let p: [_; 4] = std::array::from_fn(|i| ptrs(t + i));
                let (x, dx, s) = (p.map(|p| p.0), p.map(|p| p.1), p.map(|p| p.2));
                for half in 0..2 {
                    let w2 = [w[2 * half], w[2 * half + 1]];
                    // SAFETY: AVX2 is available (`kernel`); every row holds `nb` blocks of its
                    // type and every activation row `nb` Q8_0 blocks (checked by `Matrix::new`
                    // and `matmul_with`).
                    let y = unsafe {
                        match kind {
                            x86::TILE_Q8_0 => {
                                x86::tile::<{ x86::TILE_Q8_0 }, 2, 4>(nb, w2, x, dx, s)
                            }
                            x86::TILE_Q4_0 => {
                                x86::tile::<{ x86::TILE_Q4_0 }, 2, 4>(nb, w2, x, dx, s)
                            }
                            _ => x86::tile::<{ x86::TILE_Q4_1 }, 2, 4>(nb, w2, x, dx, s),
                        }
                    };
                    for (i, yr) in y.iter().enumerate() {
                        for (j, &v) in yr.iter().enumerate() {
                            emit(t + j, rows.start + 2 * half + i, v);
                        }
                    }
                }
                t += 4;
            }
            while t < tokens {
                let (x, dx, s) = ptrs(t);
                // SAFETY: as above.
                let y = unsafe {
                    match kind {
                        x86::TILE_Q8_0 => {
                            x86::tile::<{ x86::TILE_Q8_0 }, 4, 1>(nb, w, [x], [dx], [s])
                        }
                        x86::TILE_Q4_0 => {
                            x86::tile::<{ x86::TILE_Q4_0 }, 4, 1>(nb, w, [x], [dx], [s])
                        }
                        _ => x86::tile::<{ x86::TILE_Q4_1 }, 4, 1>(nb, w, [x], [dx], [s]),
                    }
                };
                for (i, yr) in y.iter().enumerate() {
                    emit(t, rows.start + i, yr[0]);
                }
                t += 1;
            }
            return;
        }
    }
    for r in rows {
        for t in 0..tokens {
            emit(t, r, run(kernel, m.ty(), m.row(r), acts.row(t)));
        }
    }
}

/// The kernel for a checked row.
fn run(kernel: Kernel, ty: GgmlType, row: &[u8], x: Row<'_>) -> f32 {
    let Row {
        blocks,
        scales,
        sums,
    } = x;
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::Avx2` is only chosen (`detect`) or accepted (`available`) when the
        // CPU reports AVX2, FMA and F16C; the lengths were checked by `check`.
        Kernel::Avx2 => unsafe {
            match ty {
                GgmlType::Q8_0 => x86::q8_0_q8_0(row, blocks, scales),
                GgmlType::Q4_0 => x86::q4_0_q8_0(row, blocks, scales, sums),
                GgmlType::Q5_0 => x86::q5_0_q8_0(row, blocks, scales),
                GgmlType::Q5_1 => x86::q5_1_q8_0(row, blocks, scales, sums),
                GgmlType::Q4_K => x86::q4_k_q8_0(row, blocks, scales, sums),
                GgmlType::Q5_K => x86::q5_k_q8_0(row, blocks, scales, sums),
                GgmlType::Q6_K => x86::q6_k_q8_0(row, blocks, scales),
                _ => x86::q4_1_q8_0(row, blocks, scales, sums),
            }
        },
        _ => match ty {
            GgmlType::Q8_0 => scalar::q8_0_q8_0(row, blocks, scales),
            GgmlType::Q4_0 => scalar::q4_0_q8_0(row, blocks, scales),
            GgmlType::Q5_0 => scalar::q5_0_q8_0(row, blocks, scales),
            GgmlType::Q5_1 => scalar::q5_1_q8_0(row, blocks, scales, sums),
            GgmlType::Q4_K => scalar::q4_k_q8_0(row, blocks, scales, sums),
            GgmlType::Q5_K => scalar::q5_k_q8_0(row, blocks, scales, sums),
            GgmlType::Q6_K => scalar::q6_k_q8_0(row, blocks, scales),
            _ => scalar::q4_1_q8_0(row, blocks, scales, sums),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The bytes, scales and sums of [`quantize_blocks`] (AVX2 where the CPU has it) and of
    /// the portable path, for `x`.
    fn both(x: &[f32]) -> [(Vec<u8>, Vec<f32>, Vec<f32>); 2] {
        let nb = x.len() / QK;
        let run = |kernel| {
            let (mut b, mut d, mut s) = (vec![0u8; nb * 34], vec![0.0; nb], vec![0.0; nb]);
            quantize_blocks_with(kernel, x, &mut b, &mut d, &mut s).unwrap();
            (b, d, s)
        };
        [run(Kernel::detect()), run(Kernel::Scalar)]
    }

    #[test]
    fn simd_activation_blocks_are_the_portable_ones() {
        // Ties at every half (x / d lands on k + 0.5 when amax is 127), the largest f32 below
        // a half, zeros, tiny and huge-but-representable values.
        let mut x: Vec<f32> = (0..32).map(|i| i as f32 - 15.5).collect();
        x[31] = 127.0;
        x.extend((0..32).map(|i| {
            if i == 0 {
                127.0
            } else {
                0.499_999_97 * i as f32
            }
        }));
        x.extend([0.0f32; 32]);
        x.extend((0..32).map(|i| (i as f32 - 16.0) * 1e-30));
        x.extend((0..32).map(|i| (i as f32 - 16.0) * 500.0));
        x.extend((0..32).map(|i| if i % 2 == 0 { -2.5 } else { 2.5 }));
        let [simd, portable] = both(&x);
        assert_eq!(simd, portable);
    }

    #[test]
    fn a_scale_beyond_f16_is_named_by_either_path() {
        let mut x = vec![1.0f32; 64];
        x[40] = 1e10;
        let mut acts = Activations::new();
        let err = acts.quantize_rows(&x, 64).unwrap_err();
        assert!(
            matches!(
                err,
                Error::ScaleOverflow {
                    block: 1,
                    field: "d",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    proptest! {
        #[test]
        fn simd_activation_blocks_match_for_any_values(
            x in proptest::collection::vec(-1e4f32..1e4, 32..=256),
        ) {
            let n = x.len() / QK * QK;
            let [simd, portable] = both(&x[..n]);
            prop_assert_eq!(simd, portable);
        }
    }
}
