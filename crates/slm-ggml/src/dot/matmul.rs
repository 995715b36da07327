//! Matrix products over stored weights: `y[t][r] = W[r] · x[t]` for a few weight matrices that
//! share one input (a layer's q/k/v, or gate/up), every token of a step at once. Each weight row
//! is read once per call and meets every token while it is in cache, so decoding 8 sequences
//! costs little more memory traffic than decoding one. Rows are split across rayon's current
//! pool (run a model inside `ThreadPool::install` to choose the threads); once the
//! [`Activations`] buffer is warm nothing is allocated.

use super::packed::{GROUP, PackedMatrix};
use super::{Activations, Kernel, check};
use crate::error::{Error, Result};
use crate::types::GgmlType;

/// A weight matrix in its stored encoding: `rows` rows of `cols` values, each row's bytes
/// contiguous (GGML blocks, or little-endian F32/F16/BF16).
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: &'a [u8],
    packed: Option<&'a PackedMatrix>,
}

impl<'a> Matrix<'a> {
    /// Checks that `data` is `rows` rows of `cols` values of `ty`, a type [`matmul`] multiplies.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for types without a kernel; [`Error::LengthNotMultiple`] or
    /// [`Error::ByteLength`] when the bytes do not fit the shape.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: &'a [u8]) -> Result<Self> {
        if !Self::supports(ty) {
            return Err(Error::Unsupported {
                ty,
                op: "matrix products",
            });
        }
        let row_bytes = ty
            .bytes_for(cols)
            .ok_or(Error::LengthNotMultiple { ty, len: cols })?;
        if !is_float(ty) {
            check(ty, row_bytes, cols)?;
        }
        if data.len() != row_bytes * rows {
            return Err(Error::ByteLength {
                ty,
                elements: rows * cols,
                expected: row_bytes * rows,
                got: data.len(),
            });
        }
        Ok(Self {
            ty,
            rows,
            cols,
            row_bytes,
            data,
            packed: None,
        })
    }

    /// The same matrix with its repacked copy (made by [`PackedMatrix::pack`] from it), which
    /// [`matmul`] then reads instead of the stored blocks; a copy of another shape or type is
    /// ignored.
    pub fn with_packed(mut self, packed: &'a PackedMatrix) -> Self {
        if (packed.ty(), packed.rows(), packed.cols()) == (self.ty, self.rows, self.cols) {
            self.packed = Some(packed);
        }
        self
    }

    /// Weight types [`matmul`] multiplies: every type [`super::dot`] takes, and F32, F16 and
    /// BF16 (times unquantized f32 activations).
    pub fn supports(ty: GgmlType) -> bool {
        is_float(ty) || super::supports(ty)
    }

    /// The storage type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row (inputs).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The stored bytes of row `r`.
    pub fn row(&self, r: usize) -> &'a [u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }
}

fn is_float(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

/// How quantized weights meet the activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Activations quantized to Q8_0, integer products per block: llama.cpp's way, the fast one.
    /// Adds the activations' rounding (at most half a step of 1/127 of each block's largest
    /// magnitude) to the weights' own.
    #[default]
    Quantized,
    /// f32 activations times each weight row dequantized on the fly: what a framework computes
    /// from the dequantized matrix, up to the order of the additions. Slower; for parity checks.
    Exact,
}

/// `out[t * rows + r] = W[r] · x[t]` for every `(W, out)` of `products`, where `x` holds the
/// tokens' inputs laid end to end (`cols` values each, the same `cols` for every matrix) and
/// each `out` has room for `tokens * rows` values. Quantized weights meet `x` quantized to Q8_0
/// in `acts` (once for all of them); float weights meet it as f32.
///
/// # Errors
/// [`Error::ByteLength`] when a matrix's `cols` or an output's length does not fit `x`; as
/// [`Activations::quantize_rows`] for inputs that cannot be quantized.
pub fn matmul(
    products: &mut [(Matrix<'_>, &mut [f32])],
    x: &[f32],
    acts: &mut Activations,
) -> Result<()> {
    matmul_with(Kernel::detect(), Precision::Quantized, products, x, acts)
}

/// [`matmul`] with a chosen kernel (for tests and benchmarks).
///
/// # Errors
/// As [`matmul`], and [`Error::Unsupported`] for a kernel this CPU lacks.
pub fn matmul_with(
    kernel: Kernel,
    precision: Precision,
    products: &mut [(Matrix<'_>, &mut [f32])],
    x: &[f32],
    acts: &mut Activations,
) -> Result<()> {
    let Some(cols) = products.first().map(|(m, _)| m.cols) else {
        return Ok(());
    };
    if !kernel.available() {
        return Err(Error::Unsupported {
            ty: products[0].0.ty,
            op: "this matrix-product kernel on this CPU",
        });
    }
    let tokens = x.len() / cols.max(1);
    for (m, out) in products.iter() {
        if m.cols != cols || x.len() != tokens * cols || out.len() != tokens * m.rows {
            return Err(Error::ByteLength {
                ty: m.ty,
                elements: tokens * m.rows,
                expected: tokens * m.rows,
                got: out.len(),
            });
        }
    }
    let exact = |ty| is_float(ty) || precision == Precision::Exact;
    if products.iter().any(|(m, _)| !exact(m.ty)) {
        acts.quantize_rows(x, cols)?;
    }
    let acts = &*acts;
    // All the products' rows as one list of equal units of work, split across the current
    // pool (`crate::pool::for_each_range`) in one go.
    for products in products.chunks_mut(MAX_PRODUCTS) {
        let mut plans = [None; MAX_PRODUCTS];
        let mut total = 0;
        for (plan, (m, out)) in plans.iter_mut().zip(products.iter_mut()) {
            let split = Split::of(m, exact(m.ty), kernel);
            let units = split.units(m.rows);
            *plan = Some((*m, OutPtr(out.as_mut_ptr()), split, total));
            total += units;
        }
        crate::pool::for_each_range(total, |range| {
            for &(m, out, split, first) in plans.iter().flatten() {
                let units = first..first + split.units(m.rows);
                let (start, end) = (range.start.max(units.start), range.end.min(units.end));
                if start < end {
                    // SAFETY: `out` holds `tokens * m.rows` values (checked above); every
                    // unit is run by exactly one job and writes only its own rows.
                    unsafe { split.run(kernel, &m, start - first..end - first, acts, x, out) };
                }
            }
        });
    }
    Ok(())
}

/// Products per split of [`matmul_with`] (a fused call holds two or three).
const MAX_PRODUCTS: usize = 8;

/// How one product's rows are cut into units of work, and the kernel each unit runs.
#[derive(Debug, Clone, Copy)]
enum Split {
    /// Packed groups: `per_unit` groups (8 rows each) per unit.
    #[cfg(target_arch = "x86_64")]
    Packed {
        kernel: PackedKernel,
        per_unit: usize,
    },
    /// Quantized rows as stored, four per unit through the widest tile of the type.
    Tiles,
    /// One float (or, for exact precision, dequantized) row per unit.
    Rows,
}

impl Split {
    fn of(m: &Matrix<'_>, exact: bool, kernel: Kernel) -> Self {
        #[cfg(target_arch = "x86_64")]
        if let (Some(p), false, Kernel::Avx2) = (m.packed, exact, kernel)
            && PackedMatrix::runs(p.ty())
        {
            let kernel = PackedKernel::detect();
            // Two groups per unit for the 512-bit kernel (the last one alone when their
            // count is odd), one otherwise.
            let per_unit = if kernel == PackedKernel::Vnni512 {
                2
            } else {
                1
            };
            return Split::Packed { kernel, per_unit };
        }
        let _ = kernel;
        if exact { Split::Rows } else { Split::Tiles }
    }

    fn units(self, rows: usize) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Split::Packed { per_unit, .. } => (rows / GROUP).div_ceil(per_unit),
            Split::Tiles => rows.div_ceil(4),
            Split::Rows => rows,
        }
    }

    /// Runs `units` of `m` times every token of `acts` (or, for rows, of `x`).
    ///
    /// # Safety
    /// `out` holds `tokens * m.rows` values, no other job writes the rows of `units`, and a
    /// packed kernel runs on this CPU.
    unsafe fn run(
        self,
        kernel: Kernel,
        m: &Matrix<'_>,
        units: std::ops::Range<usize>,
        acts: &Activations,
        x: &[f32],
        out: OutPtr,
    ) {
        let cols = m.cols;
        let tokens = x.len() / cols.max(1);
        match self {
            #[cfg(target_arch = "x86_64")]
            Split::Packed { kernel, per_unit } => {
                let p = m.packed.expect("a packed split has its packed matrix");
                let groups = m.rows / GROUP;
                for u in units {
                    let g = u * per_unit;
                    let count = per_unit.min(groups - g);
                    // SAFETY (caller): the kernel runs here; this job alone writes rows
                    // `8g..8(g + count)`.
                    unsafe { packed_rows(p, g, count, acts, tokens, out.ptr(), m.rows, kernel) };
                }
            }
            Split::Tiles => {
                for g in units {
                    let rows = 4 * g..(4 * g + 4).min(m.rows);
                    super::tile_rows(kernel, m, rows, acts, tokens, |t, r, y| {
                        // SAFETY (caller): in bounds, and `(t, r)` is this job's alone.
                        unsafe { out.write(t * m.rows + r, y) }
                    });
                }
            }
            Split::Rows => {
                let mut buf = Vec::new();
                for r in units {
                    let (ty, row) = if is_float(m.ty) {
                        (m.ty, m.row(r))
                    } else {
                        buf.resize(cols, 0.0);
                        crate::codec::dequantize_into(m.ty, m.row(r), &mut buf)
                            .expect("Matrix::new checked the row's blocks");
                        (GgmlType::F32, f32_bytes(&buf))
                    };
                    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
                    let mut t = 0;
                    #[cfg(target_arch = "x86_64")]
                    if kernel == Kernel::Avx2 {
                        // Three tokens per pass over the row (its weights widened once for
                        // the three; each product summed as it is alone).
                        let xt = |t: usize| &x[t * cols..(t + 1) * cols];
                        while t + 3 <= tokens {
                            // SAFETY: the CPU has AVX2, FMA and F16C (`Kernel::Avx2`); `row`
                            // holds `cols` values of `ty`, every token `cols` values.
                            let y = unsafe {
                                super::x86::float_f32_tokens::<3>(
                                    ty,
                                    row,
                                    [xt(t), xt(t + 1), xt(t + 2)],
                                )
                            };
                            for (k, y) in y.into_iter().enumerate() {
                                // SAFETY (caller): as below.
                                unsafe { out.write((t + k) * m.rows + r, y) };
                            }
                            t += 3;
                        }
                    }
                    for t in t..tokens {
                        let y = float_dot(kernel, ty, row, &x[t * cols..(t + 1) * cols]);
                        // SAFETY (caller): in bounds, and `(t, r)` is this job's alone.
                        unsafe { out.write(t * m.rows + r, y) };
                    }
                }
            }
        }
    }
}

/// `sum_i a_i * b_i` with the fastest kernel (attention's query-key products).
pub fn f32_dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    float_dot(Kernel::detect(), GgmlType::F32, f32_bytes(&a[..n]), &b[..n])
}

/// `y += a * x` over the common length, with the fastest kernel (attention's weighted sum of
/// values).
pub fn f32_axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    #[cfg(target_arch = "x86_64")]
    if Kernel::detect() == Kernel::Avx2 {
        // SAFETY: the CPU has AVX2 and FMA (`Kernel::detect`).
        unsafe { super::x86::axpy_f32(a, &x[..n], &mut y[..n]) };
        return;
    }
    y[..n]
        .iter_mut()
        .zip(&x[..n])
        .for_each(|(y, x)| *y += a * x);
}

/// The bytes of f32 values (little-endian on every target this crate builds for).
fn f32_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: any f32 is four initialised bytes; u8 has no alignment requirement.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// The packed kernels, widest first.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PackedKernel {
    /// Two 8-row groups per 512-bit register ([`super::x86::packed_pair`]).
    Vnni512,
    /// One group per 256-bit register with VNNI ([`super::x86::packed_group`]).
    Vnni,
    /// One group per 256-bit register with `maddubs` ([`super::x86::packed_group_avx2`]).
    Avx2,
}

#[cfg(target_arch = "x86_64")]
impl PackedKernel {
    /// The widest this CPU runs (the caller checked [`PackedMatrix::runs`]).
    fn detect() -> Self {
        if super::x86::avx512_pairs() {
            Self::Vnni512
        } else if PackedMatrix::vnni() {
            Self::Vnni
        } else {
            Self::Avx2
        }
    }
}

/// Rows `8g..8(g + count)` of `p` (`count` 1, or 2 for [`PackedKernel::Vnni512`]) times every
/// token of `acts`, eight or four tokens at a time.
///
/// # Safety
/// `kernel` runs on this CPU, as [`super::x86::packed_group`] (or its AVX2 and 512-bit
/// versions) requires; `out` holds `tokens * rows` values.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn packed_rows(
    p: &PackedMatrix,
    g: usize,
    count: usize,
    acts: &Activations,
    tokens: usize,
    out: *mut f32,
    rows: usize,
    kernel: PackedKernel,
) {
    use super::x86::{TILE_Q4_0, TILE_Q4_1, TILE_Q5_0, TILE_Q8_0};
    let nb = p.cols() / crate::blocks::QK;
    let (g0, g1) = (p.group(g).as_ptr(), p.group(g + count - 1).as_ptr());
    let ptrs = |t: usize| {
        let r = acts.row(t);
        (r.blocks.as_ptr(), r.scales.as_ptr(), r.sums.as_ptr())
    };
    /// One group (or two, for `Vnni512` with `pair`) times `T` tokens: the kernel for the
    /// CPU and the type.
    ///
    /// # Safety
    /// As [`packed_rows`].
    unsafe fn run<const T: usize>(
        kernel: PackedKernel,
        pair: bool,
        ty: GgmlType,
        nb: usize,
        (g0, g1): (*const u8, *const u8),
        v: [(*const u8, *const f32, *const f32); T],
        o: [*mut f32; T],
    ) {
        use super::x86::{
            packed_group as vnni_k, packed_group_avx2 as avx2_k, packed_pair as pair_k,
        };
        let (x, dx, s) = (v.map(|v| v.0), v.map(|v| v.1), v.map(|v| v.2));
        // SAFETY: as the caller guarantees; Q8_0 is packed only where VNNI is
        // (`PackedMatrix::runs`).
        unsafe {
            match (kernel, pair, ty) {
                (PackedKernel::Vnni512, true, GgmlType::Q8_0) => {
                    pair_k::<TILE_Q8_0, T>(nb, g0, g1, x, dx, s, o)
                }
                (PackedKernel::Vnni512, true, GgmlType::Q4_0) => {
                    pair_k::<TILE_Q4_0, T>(nb, g0, g1, x, dx, s, o)
                }
                (PackedKernel::Vnni512, true, GgmlType::Q5_0) => {
                    pair_k::<TILE_Q5_0, T>(nb, g0, g1, x, dx, s, o)
                }
                (PackedKernel::Vnni512, true, _) => pair_k::<TILE_Q4_1, T>(nb, g0, g1, x, dx, s, o),
                (PackedKernel::Avx2, _, GgmlType::Q4_0) => {
                    avx2_k::<TILE_Q4_0, T>(nb, g0, x, dx, s, o)
                }
                (PackedKernel::Avx2, _, GgmlType::Q5_0) => {
                    avx2_k::<TILE_Q5_0, T>(nb, g0, x, dx, s, o)
                }
                (PackedKernel::Avx2, _, GgmlType::Q4_1) => {
                    avx2_k::<TILE_Q4_1, T>(nb, g0, x, dx, s, o)
                }
                (PackedKernel::Avx2, _, ty) => unreachable!("{ty} is packed only with VNNI"),
                (_, _, GgmlType::Q8_0) => vnni_k::<TILE_Q8_0, T>(nb, g0, x, dx, s, o),
                (_, _, GgmlType::Q4_0) => vnni_k::<TILE_Q4_0, T>(nb, g0, x, dx, s, o),
                (_, _, GgmlType::Q5_0) => vnni_k::<TILE_Q5_0, T>(nb, g0, x, dx, s, o),
                (_, _, _) => vnni_k::<TILE_Q4_1, T>(nb, g0, x, dx, s, o),
            }
        }
    }
    let pair = count == 2;
    // SAFETY (the pointer offsets and calls): as the caller guarantees.
    unsafe {
        let dst = |t: usize| out.add(t * rows + g * GROUP);
        let groups = (g0, g1);
        let mut t = 0;
        // Eight tokens per pass where the 32 vector registers of AVX-512 hold their sums.
        while kernel != PackedKernel::Avx2 && t + 8 <= tokens {
            let v: [_; 8] = std::array::from_fn(|i| ptrs(t + i));
            let o = std::array::from_fn(|i| dst(t + i));
            run::<8>(kernel, pair, p.ty(), nb, groups, v, o);
            t += 8;
        }
        while t + 4 <= tokens {
            let v: [_; 4] = std::array::from_fn(|i| ptrs(t + i));
            let o = std::array::from_fn(|i| dst(t + i));
            run::<4>(kernel, pair, p.ty(), nb, groups, v, o);
            t += 4;
        }
        while t < tokens {
            run::<1>(kernel, pair, p.ty(), nb, groups, [ptrs(t)], [dst(t)]);
            t += 1;
        }
    }
}

/// A float weight row times f32 activations with `kernel` (checked by the caller).
fn float_dot(kernel: Kernel, ty: GgmlType, row: &[u8], x: &[f32]) -> f32 {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::Avx2` is only used where the CPU has AVX2, FMA and F16C; `row`
        // holds `x.len()` values of `ty` (checked by `Matrix::new` and `matmul_with`).
        Kernel::Avx2 => unsafe { super::x86::float_f32(ty, row, x) },
        _ => super::scalar::float_f32(ty, row, x),
    }
}

/// A buffer written from several jobs at disjoint indices (a product's output, the activation
/// buffers).
pub(crate) struct OutPtr<T = f32>(pub(crate) *mut T);

impl<T> Clone for OutPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for OutPtr<T> {}

// SAFETY: jobs write disjoint elements and the buffer outlives the parallel loop.
unsafe impl<T> Send for OutPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for OutPtr<T> {}

impl<T> OutPtr<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the raw field).
    pub(crate) fn ptr(self) -> *mut T {
        self.0
    }

    /// # Safety
    /// `i` is in bounds and no other job writes it.
    pub(crate) unsafe fn write(self, i: usize, v: T) {
        // SAFETY (caller): in bounds, exclusive.
        unsafe { *self.0.add(i) = v };
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::codec::quantize;

    /// The AVX2 packed kernel, whatever else the CPU has (on a VNNI machine [`matmul`] picks
    /// the VNNI one, which `tests/matmul.rs` covers), equals the stored-layout products, at
    /// the extremes of the 16-bit pair sums too (every level 15 or 31 against activations
    /// of +-127).
    #[test]
    fn avx2_packed_kernel_gives_the_stored_products() {
        if !Kernel::Avx2.available() {
            eprintln!("skipping: no AVX2");
            return;
        }
        let cols = 576;
        let rows = 16;
        let patterns: [Box<dyn Fn(usize) -> f32>; 2] = [
            Box::new(|i| (((i as u64 * 2_654_435_761) % 2001) as f32 / 1000.0 - 1.0) * 0.3),
            // All at the block's top level: the largest sums maddubs meets.
            Box::new(|i| if (i / 7) % 2 == 0 { 1.0 } else { -1.0 }),
        ];
        for w_of in &patterns {
            let w: Vec<f32> = (0..rows * cols).map(w_of).collect();
            for tokens in [1usize, 3, 4, 5, 8] {
                let x: Vec<f32> = (0..tokens * cols)
                    .map(|i| {
                        if i % 3 == 0 {
                            4.0
                        } else {
                            (i as f32 * 0.37).sin() * 4.0
                        }
                    })
                    .collect();
                let mut acts = Activations::new();
                acts.quantize_rows(&x, cols).unwrap();
                for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0] {
                    let b = quantize(ty, &w).unwrap();
                    let m = Matrix::new(ty, rows, cols, &b).unwrap();
                    let packed = PackedMatrix::pack_layout(&m, |_| {}).unwrap();
                    let mut want = vec![0.0f32; tokens * rows];
                    let mut a2 = Activations::new();
                    matmul_with(
                        Kernel::Scalar,
                        Precision::Quantized,
                        &mut [(m, &mut want[..])],
                        &x,
                        &mut a2,
                    )
                    .unwrap();
                    let mut got = vec![0.0f32; tokens * rows];
                    for g in 0..rows / GROUP {
                        // SAFETY: AVX2 is available (checked); `packed` holds `rows` rows of
                        // `cols`, `acts` `tokens` rows and `got` `tokens * rows` values.
                        unsafe {
                            packed_rows(
                                &packed,
                                g,
                                1,
                                &acts,
                                tokens,
                                got.as_mut_ptr(),
                                rows,
                                PackedKernel::Avx2,
                            )
                        };
                    }
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                            "{ty} tokens {tokens} [{i}]: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    /// Three tokens per pass give each token the sum it gets alone, bit for bit, for every
    /// float type and lengths with and without a tail.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn float_token_passes_are_the_single_kernel() {
        if !Kernel::Avx2.available() {
            return;
        }
        for n in [8usize, 40, 576, 579] {
            let w: Vec<f32> = (0..n)
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let x: Vec<Vec<f32>> = (0..3)
                .map(|t| (0..n).map(|i| ((i + 7 * t) as f32 * 0.31).sin()).collect())
                .collect();
            for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
                let row = quantize(ty, &w).unwrap();
                // SAFETY: AVX2, FMA and F16C checked above; `row` holds `n` values of `ty`.
                let three = unsafe {
                    super::super::x86::float_f32_tokens::<3>(ty, &row, [&x[0], &x[1], &x[2]])
                };
                for t in 0..3 {
                    let alone = float_dot(Kernel::Avx2, ty, &row, &x[t]);
                    assert_eq!(three[t].to_bits(), alone.to_bits(), "{ty} n {n} token {t}");
                }
            }
        }
    }

    /// The 512-bit kernel's sixteen rows are the 256-bit VNNI kernel's two groups, bit for
    /// bit: the same integer sums and the same float steps per lane.
    #[test]
    fn pair_kernel_is_two_group_kernels() {
        if !super::super::x86::avx512_pairs() {
            eprintln!("skipping: no AVX-512 VNNI");
            return;
        }
        let (rows, cols) = (32, 576);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| (((i as u64 * 2_654_435_761) % 2001) as f32 / 1000.0 - 1.0) * 0.3)
            .collect();
        for tokens in [1usize, 4, 8, 9] {
            let x: Vec<f32> = (0..tokens * cols)
                .map(|i| (i as f32 * 0.37).sin() * 4.0)
                .collect();
            let mut acts = Activations::new();
            acts.quantize_rows(&x, cols).unwrap();
            for ty in [
                GgmlType::Q8_0,
                GgmlType::Q4_0,
                GgmlType::Q4_1,
                GgmlType::Q5_0,
            ] {
                let b = quantize(ty, &w).unwrap();
                let m = Matrix::new(ty, rows, cols, &b).unwrap();
                let packed = PackedMatrix::pack_layout(&m, |_| {}).unwrap();
                let mut single = vec![0.0f32; tokens * rows];
                let mut pairs = vec![0.0f32; tokens * rows];
                for g in 0..rows / GROUP {
                    // SAFETY: AVX-512 VNNI is available (checked); `packed` holds `rows` rows
                    // of `cols`, `acts` `tokens` rows, the outputs `tokens * rows` values.
                    unsafe {
                        let out = single.as_mut_ptr();
                        packed_rows(&packed, g, 1, &acts, tokens, out, rows, PackedKernel::Vnni);
                        if g % 2 == 0 {
                            let out = pairs.as_mut_ptr();
                            let k = PackedKernel::Vnni512;
                            packed_rows(&packed, g, 2, &acts, tokens, out, rows, k);
                        }
                    }
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&pairs), bits(&single), "{ty} tokens {tokens}");
            }
        }
    }
}
