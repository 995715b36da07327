//! The error type of slm-compress: every variant names the format, block or element at fault.

use crate::format::BlockFormat;

/// Everything that can go wrong while quantizing or dequantizing GGML blocks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The number of values is not a whole number of blocks.
    #[error("{format}: {len} values is not a multiple of the block size {}", .format.block_size())]
    LengthNotMultiple {
        /// The block format asked for.
        format: BlockFormat,
        /// The number of values given.
        len: usize,
    },
    /// An input value is NaN or infinite; gguf-py would quantize it to garbage, slm refuses.
    #[error("value {index} is {value}: only finite values can be quantized")]
    NonFinite {
        /// Index of the first non-finite value.
        index: usize,
        /// The value itself (NaN or ±inf).
        value: f32,
    },
    /// A block's scale (`d`) or minimum (`m`) does not fit in an f16 (|x| > 65504).
    #[error("{format}: block {block} needs {field} = {value}, which overflows f16")]
    ScaleOverflow {
        /// The block format asked for.
        format: BlockFormat,
        /// Index of the block.
        block: usize,
        /// `"d"` (the scale) or `"m"` (the minimum).
        field: &'static str,
        /// The f32 value that would have been stored.
        value: f32,
    },
    /// The byte buffer does not hold exactly the blocks of `elements` values.
    #[error("{format}: {elements} values take {expected} bytes, got {got}")]
    ByteLength {
        /// The block format of the buffer.
        format: BlockFormat,
        /// The number of values asked for.
        elements: usize,
        /// The bytes those values take.
        expected: usize,
        /// The bytes given.
        got: usize,
    },
    /// slm-core failed (its GGUF block decoder, for [`dequantize`](crate::dequantize)).
    #[error(transparent)]
    Core(#[from] slm_core::Error),
    /// A format name that is not one of `Q8_0`, `Q4_0`, `Q4_1`, `Q5_0`, `Q5_1`.
    #[error("unknown block format `{0}` (expected Q8_0, Q4_0, Q4_1, Q5_0 or Q5_1)")]
    UnknownFormat(String),
    /// Pruning settings that cannot be met (a sparsity outside [0, 1), an impossible N:M).
    #[error("pruning: {0}")]
    InvalidPruning(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
