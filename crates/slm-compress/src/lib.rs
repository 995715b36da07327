//! # slm-compress
//!
//! Model compression for `slm`. Today: GGML block quantization, the formats a GGUF file stores
//! and llama.cpp runs (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1), bit-exact with gguf-py's
//! `gguf.quants.quantize`/`dequantize`, so a tensor quantized here is byte for byte the one
//! llama.cpp's own converter would write. Every block holds 32 values; [`quantize`] takes whole
//! blocks (a weight matrix's rows laid end to end) and refuses NaN, infinities and scales that
//! do not fit an f16 rather than writing garbage.
//!
//! ```
//! use slm_compress::prelude::*;
//!
//! # fn main() -> slm_compress::Result<()> {
//! // One row of 64 weights: two blocks.
//! let row: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
//!
//! let bytes = quantize(BlockFormat::Q4_0, &row)?;
//! assert_eq!(bytes.len(), 2 * BlockFormat::Q4_0.type_size()); // 2 × 18 bytes
//!
//! let back = dequantize(BlockFormat::Q4_0, &bytes, row.len())?;
//! let worst = row.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
//! assert!(worst <= 1.0 / 8.0 + 1e-3); // one step: |max| / 8 with |max| <= 1
//!
//! // Partial blocks and non-finite values are errors, not garbage.
//! assert!(matches!(quantize(BlockFormat::Q8_0, &row[..40]), Err(Error::LengthNotMultiple { .. })));
//! # Ok(()) }
//! ```
//!
//! ## Tiny scales
//! When a block's largest magnitude is below about `1e-36` its f32 scale is subnormal and
//! `1 / d` overflows; gguf-py and ggml then cast infinities or NaN to integers, which C leaves
//! undefined. Here those levels saturate. The stored f16 scale of such a block is zero, so the
//! dequantized values (all zero) are the same either way; only the unused level bits may differ.
//!
//! [`prune`] zeros projection weights by magnitude (per output row) or N:M (2:4), or removes
//! whole MLP neurons (structured), with a per-tensor [`PruneReport`].
//!
//! ## Later
//! Later issues add Wanda (activation-weighted) pruning, the `Quantizer` trait, a
//! `QuantizedLinear` with CPU kernels (a scalar reference beside every SIMD version) and a GGUF
//! writer.
//!
//! This crate has no features.

mod blocks;
mod codec;
mod error;
mod format;
pub mod prune;

pub use codec::{dequantize, quantize};
pub use error::{Error, Result};
pub use format::{BLOCK_SIZE, BlockFormat};
pub use prune::{PruneMethod, PruneReport, TensorSparsity, prune};

/// The names most programs need: `use slm_compress::prelude::*;`.
pub mod prelude {
    pub use crate::{BlockFormat, Error, Result, dequantize, quantize};
}
