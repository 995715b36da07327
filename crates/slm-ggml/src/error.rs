//! The error type of slm-ggml: every variant names the type, block or element at fault.

use crate::types::GgmlType;

/// Everything that can go wrong while quantizing or dequantizing GGML blocks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The number of values is not a whole number of blocks.
    #[error("{ty}: {len} values is not a multiple of the block size {}", .ty.block_size())]
    LengthNotMultiple {
        /// The type asked for.
        ty: GgmlType,
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
    /// A block's scale (`d`), minimum (`m`) or, for F16, the value itself does not fit in an
    /// f16 (|x| > 65504).
    #[error("{ty}: block {block} needs {field} = {value}, which overflows f16")]
    ScaleOverflow {
        /// The type asked for.
        ty: GgmlType,
        /// Index of the block (of the value, for F16).
        block: usize,
        /// `"d"` (the scale), `"m"` (the minimum) or `"value"`.
        field: &'static str,
        /// The f32 value that would have been stored.
        value: f32,
    },
    /// The byte buffer does not hold exactly the blocks of `elements` values.
    #[error("{ty}: {elements} values take {expected} bytes, got {got}")]
    ByteLength {
        /// The type of the buffer.
        ty: GgmlType,
        /// The number of values asked for.
        elements: usize,
        /// The bytes those values take.
        expected: usize,
        /// The bytes given.
        got: usize,
    },
    /// A type this crate cannot quantize to or dequantize from (yet).
    #[error("{ty}: {op} is not implemented for this GGML type")]
    Unsupported {
        /// The type.
        ty: GgmlType,
        /// `"quantization"` or `"dequantization"`.
        op: &'static str,
    },
    /// An importance matrix that does not fit the tensor (one non-negative finite weight per
    /// column of whole-block rows).
    #[error("importance weights: {0}")]
    InvalidImportance(String),
    /// A type name that is not a GGML type.
    #[error("unknown GGML type `{0}` (expected a name such as F16, Q8_0, Q4_0 or Q4_K)")]
    UnknownType(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
