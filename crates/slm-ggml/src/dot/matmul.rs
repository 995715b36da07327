//! Matrix products over stored weights: `y[t][r] = W[r] · x[t]` for a few weight matrices that
//! share one input (a layer's q/k/v, or gate/up), every token of a step at once. Each weight row
//! is read once per call and meets every token while it is in cache, so decoding 8 sequences
//! costs little more memory traffic than decoding one. Rows are split across rayon's current
//! pool (run a model inside `ThreadPool::install` to choose the threads); once the
//! [`Activations`] buffer is warm nothing is allocated.

use rayon::prelude::*;

use super::packed::{GROUP, PackedMatrix};
use super::{Activations, Kernel, check};
use crate::error::{Error, Result};
use crate::types::GgmlType;

/// Jobs per thread and product call.
const JOBS_PER_THREAD: usize = 2;

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
    // Enough rows per job that scheduling costs little next to the products.
    // A few jobs per thread over all the matrices: enough to balance, few enough that
    // scheduling costs little next to the products.
    let threads = rayon::current_num_threads().max(1);
    let total_rows: usize = products.iter().map(|(m, _)| m.rows).sum();
    let per_job = |rows: usize| {
        let share = rows * threads * JOBS_PER_THREAD / total_rows.max(1);
        rows.div_ceil(share.max(1)).max(1)
    };
    products.par_iter_mut().for_each(|(m, out)| {
        let m = *m;
        let out = OutPtr(out.as_mut_ptr());
        #[cfg(target_arch = "x86_64")]
        if let (Some(p), false, Kernel::Avx2) = (m.packed, exact(m.ty), kernel)
            && PackedMatrix::available()
        {
            let groups = (0..m.rows / GROUP)
                .into_par_iter()
                .with_min_len(per_job(m.rows).div_ceil(GROUP));
            groups.for_each(|g| {
                // SAFETY: VNNI is available (checked above); the group holds the row blocks of
                // `cols` values, every activation row `cols / 32` blocks, and `out` room for
                // `tokens * rows` values of which this job alone writes rows `8g..8g + 8`.
                unsafe { packed_rows(p, g, acts, tokens, out.ptr(), m.rows) };
            });
            return;
        }
        if !exact(m.ty) {
            // Groups of four rows, each through the widest tile the type has.
            let groups = (0..m.rows.div_ceil(4))
                .into_par_iter()
                .with_min_len(per_job(m.rows).div_ceil(4));
            groups.for_each(|g| {
                let rows = 4 * g..(4 * g + 4).min(m.rows);
                super::tile_rows(kernel, &m, rows, acts, tokens, |t, r, y| {
                    // SAFETY: `out` holds `tokens * m.rows` values (checked above) and each
                    // `(t, r)` is written by exactly one job.
                    unsafe { out.write(t * m.rows + r, y) }
                });
            });
            return;
        }
        let rows = (0..m.rows).into_par_iter().with_min_len(per_job(m.rows));
        rows.for_each_init(Vec::new, |buf: &mut Vec<f32>, r| {
            let (ty, row) = if is_float(m.ty) {
                (m.ty, m.row(r))
            } else {
                buf.resize(cols, 0.0);
                crate::codec::dequantize_into(m.ty, m.row(r), buf)
                    .expect("Matrix::new checked the row's blocks");
                (GgmlType::F32, f32_bytes(buf))
            };
            for t in 0..tokens {
                let y = float_dot(kernel, ty, row, &x[t * cols..(t + 1) * cols]);
                // SAFETY: as above.
                unsafe { out.write(t * m.rows + r, y) };
            }
        });
    });
    Ok(())
}

/// `sum_i a_i * b_i` with the fastest kernel (attention's query-key products).
pub fn f32_dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    float_dot(Kernel::detect(), GgmlType::F32, f32_bytes(&a[..n]), &b[..n])
}

/// The bytes of f32 values (little-endian on every target this crate builds for).
fn f32_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: any f32 is four initialised bytes; u8 has no alignment requirement.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// Rows `8g..8g + 8` of `p` times every token of `acts`, four tokens at a time.
///
/// # Safety
/// As [`super::x86::packed_group`]; `out` holds `tokens * rows` values.
#[cfg(target_arch = "x86_64")]
unsafe fn packed_rows(
    p: &PackedMatrix,
    g: usize,
    acts: &Activations,
    tokens: usize,
    out: *mut f32,
    rows: usize,
) {
    use super::x86::{TILE_Q4_0, TILE_Q4_1, TILE_Q5_0, TILE_Q8_0, packed_group};
    let nb = p.cols() / crate::blocks::QK;
    let group = p.group(g).as_ptr();
    let ptrs = |t: usize| {
        let r = acts.row(t);
        (r.blocks.as_ptr(), r.scales.as_ptr(), r.sums.as_ptr())
    };
    // SAFETY (the pointer offsets and calls): as the caller guarantees.
    unsafe {
        let dst = |t: usize| out.add(t * rows + g * GROUP);
        let mut t = 0;
        while t + 4 <= tokens {
            let v: [_; 4] = std::array::from_fn(|i| ptrs(t + i));
            let (x, dx, s) = (v.map(|v| v.0), v.map(|v| v.1), v.map(|v| v.2));
            let o: [*mut f32; 4] = std::array::from_fn(|i| dst(t + i));
            match p.ty() {
                GgmlType::Q8_0 => packed_group::<TILE_Q8_0, 4>(nb, group, x, dx, s, o),
                GgmlType::Q4_0 => packed_group::<TILE_Q4_0, 4>(nb, group, x, dx, s, o),
                GgmlType::Q5_0 => packed_group::<TILE_Q5_0, 4>(nb, group, x, dx, s, o),
                _ => packed_group::<TILE_Q4_1, 4>(nb, group, x, dx, s, o),
            }
            t += 4;
        }
        while t < tokens {
            let (x, dx, s) = ptrs(t);
            let o = [dst(t)];
            match p.ty() {
                GgmlType::Q8_0 => packed_group::<TILE_Q8_0, 1>(nb, group, [x], [dx], [s], o),
                GgmlType::Q4_0 => packed_group::<TILE_Q4_0, 1>(nb, group, [x], [dx], [s], o),
                GgmlType::Q5_0 => packed_group::<TILE_Q5_0, 1>(nb, group, [x], [dx], [s], o),
                _ => packed_group::<TILE_Q4_1, 1>(nb, group, [x], [dx], [s], o),
            }
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

/// The output of a product, written from several jobs at disjoint indices.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

// SAFETY: jobs write disjoint elements and the buffer outlives the parallel loop.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the raw field).
    fn ptr(self) -> *mut f32 {
        self.0
    }

    /// # Safety
    /// `i` is in bounds and no other job writes it.
    unsafe fn write(self, i: usize, v: f32) {
        // SAFETY (caller): in bounds, exclusive.
        unsafe { *self.0.add(i) = v };
    }
}
