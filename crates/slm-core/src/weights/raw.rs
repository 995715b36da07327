//! Tensors as stored: a tensor's bytes in its file's own encoding (f32, f16, bf16 or GGML
//! blocks), shared with the memory map they live in, so a fast path can compute on them
//! without converting or copying anything at load.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use crate::gguf::GgmlType;

/// Bytes owned by something shared (a file's memory map, or a buffer), cheap to clone and to
/// slice: every clone keeps the owner alive.
#[derive(Clone)]
pub struct SharedBytes {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    range: Range<usize>,
    /// Whether the owner is a read-only memory map of a file (see [`SharedBytes::release_pages`]).
    mapped: bool,
}

impl SharedBytes {
    /// All of `owner`'s bytes.
    pub fn new(owner: Arc<dyn AsRef<[u8]> + Send + Sync>) -> Self {
        let len = (*owner).as_ref().len();
        Self {
            owner,
            range: 0..len,
            mapped: false,
        }
    }

    /// All of a read-only, private memory map of a file (which [`SharedBytes::release_pages`]
    /// may hand back to the kernel: a later read faults the file's bytes in again).
    pub(crate) fn mapped(owner: Arc<dyn AsRef<[u8]> + Send + Sync>) -> Self {
        Self {
            mapped: true,
            ..Self::new(owner)
        }
    }

    /// Drops the whole memory pages of these bytes from the process's resident memory, where
    /// they are a read-only file map (a no-op for buffers): for weights a model has copied
    /// (repacked) and no longer reads, so they do not count twice. The bytes stay readable; a
    /// read brings them back from the page cache or the file.
    pub fn release_pages(&self) {
        #[cfg(unix)]
        if self.mapped {
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
            let bytes = self.bytes();
            let start = bytes.as_ptr() as usize;
            let (first, last) = (
                start.next_multiple_of(page),
                (start + bytes.len()) / page * page,
            );
            if last > first {
                // SAFETY: [first, last) lies inside a live, read-only, private file mapping
                // (`mapped`); MADV_DONTNEED on such pages only drops them: later reads see the
                // file's contents again, never zeros or stale data.
                unsafe {
                    libc::madvise(
                        first as *mut libc::c_void,
                        last - first,
                        libc::MADV_DONTNEED,
                    );
                }
            }
        }
    }

    /// A buffer of its own.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        Self::new(Arc::new(bytes))
    }

    /// The bytes `range` of these bytes, or `None` when it reaches past their end.
    pub fn slice(&self, range: Range<usize>) -> Option<Self> {
        if range.start > range.end || range.end > self.range.len() {
            return None;
        }
        Some(Self {
            owner: self.owner.clone(),
            range: self.range.start + range.start..self.range.start + range.end,
            mapped: self.mapped,
        })
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.range.clone()]
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBytes")
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// The order a tensor's rows are stored in, where it differs from Hugging Face's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrder {
    /// Rows as transformers has them: rotary pairs are `(i, i + head_dim / 2)` within a head.
    Hf,
    /// llama.cpp's rotary order for Llama's `q_proj`/`k_proj` (`convert_hf_to_gguf.py`'s
    /// `permute`): within each of `heads` heads, Hugging Face row `s * head_dim / 2 + j` is
    /// stored at `2 * j + s`, so rotary pairs are adjacent rows `(2j, 2j + 1)`. A model that
    /// rotates adjacent pairs computes the same attention from these rows as transformers does
    /// from its own, as long as queries and keys share the order.
    RotaryInterleaved {
        /// Heads the rows are grouped in.
        heads: usize,
    },
}

/// One tensor exactly as its file stores it.
#[derive(Debug, Clone)]
pub struct RawTensor {
    /// The encoding: `F32`, `F16`, `BF16` (little-endian) or a GGML block type.
    pub ty: GgmlType,
    /// Dimensions in Hugging Face order, outermost first (`[out, in]` for linears); rows are
    /// `shape[0]` and each row is stored contiguously.
    pub shape: Vec<usize>,
    /// Row order (see [`RowOrder`]).
    pub row_order: RowOrder,
    /// The stored bytes.
    pub data: SharedBytes,
}

impl RawTensor {
    /// An f32 tensor held in memory (what [`WeightSource::read_raw`](super::WeightSource::read_raw)
    /// falls back to for sources without stored bytes).
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self {
            ty: GgmlType::F32,
            shape,
            row_order: RowOrder::Hf,
            data: SharedBytes::from_vec(bytes),
        }
    }

    /// Rows (`shape[0]`, 1 for a scalar).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// Bytes of one row, `None` when a row is not a whole number of blocks.
    pub fn row_bytes(&self) -> Option<usize> {
        self.ty.bytes_for(self.cols())
    }

    /// Rows `range` of the tensor (the parts of a fused tensor such as Phi-3's `qkv_proj`),
    /// `None` when the range or the row size does not fit.
    pub fn rows_slice(&self, range: Range<usize>) -> Option<Self> {
        let rb = self.row_bytes()?;
        if range.end > self.rows() {
            return None;
        }
        let mut shape = self.shape.clone();
        if let Some(r) = shape.first_mut() {
            *r = range.len();
        }
        Some(Self {
            ty: self.ty,
            shape,
            row_order: self.row_order,
            data: self.data.slice(range.start * rb..range.end * rb)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_share_the_owner_and_stay_in_bounds() {
        let b = SharedBytes::from_vec((0u8..10).collect());
        let s = b.slice(2..6).unwrap();
        assert_eq!(s.bytes(), &[2, 3, 4, 5]);
        assert_eq!(s.slice(1..3).unwrap().bytes(), &[3, 4]);
        assert!(s.slice(3..5).is_none());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 3..1;
        assert!(b.slice(reversed).is_none());
    }

    #[test]
    fn row_slices_of_a_matrix() {
        let values: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let t = RawTensor::from_f32(vec![4, 3], &values);
        assert_eq!(t.row_bytes(), Some(12));
        let part = t.rows_slice(1..3).unwrap();
        assert_eq!(part.shape, vec![2, 3]);
        let got: Vec<f32> = part
            .data
            .bytes()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, vec![3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert!(t.rows_slice(3..5).is_none());
    }
}
