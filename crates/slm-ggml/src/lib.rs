//! # slm-ggml
//!
//! The GGML layer of `slm`, without burn (as ggml is to llama.cpp): [`GgmlType`], the one enum
//! of GGML storage types in the workspace, and the block codecs every other crate uses: slm-core's
//! GGUF reader dequantizes through [`dequantize`], slm-compress's quantizers and GGUF export
//! write through [`quantize`].
//!
//! - Quantize: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, bit-exact with
//!   ggml's reference quantizers as `llama-quantize` runs them (x86-64) and with gguf-py's
//!   `gguf.quants.quantize` (what llama.cpp's `convert_hf_to_gguf.py` writes) on every
//!   reference case; the one place those two disagree (Q4_0/Q5_0 values a hair from a rounding
//!   boundary: gguf-py rounds as an FMA would) follows `llama-quantize`.
//! - Dequantize: the same types, bit-exact with ggml's `dequantize_row_*`.
//! - [`quantize_weighted`]: the 4-, 5- and 6-bit types weighted by an importance matrix
//!   (llama.cpp's imatrix), bit-exact with `llama-quantize --imatrix`.
//!
//! - [`dot`]: the CPU fast path's kernels: dot products and matrix products of every stored
//!   type (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K with 8-bit activations; F32, F16, BF16
//!   with f32 ones), AVX2 and AVX-512 VNNI (detected at run time) with a scalar reference
//!   beside each.
//! - [`pool`]: the persistent, spinning thread pool those kernels split a decode step across.
//!
//! Input is whole blocks (a weight matrix's rows laid end to end). NaN, infinities and scales
//! that do not fit an f16 are errors naming the value or block, never garbage.
//!
//! ```
//! use slm_ggml::prelude::*;
//!
//! # fn main() -> slm_ggml::Result<()> {
//! // One row of 64 weights: two blocks.
//! let row: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
//!
//! let bytes = quantize(GgmlType::Q4_0, &row)?;
//! assert_eq!(bytes.len(), 2 * GgmlType::Q4_0.type_size()); // 2 × 18 bytes
//!
//! let back = dequantize(GgmlType::Q4_0, &bytes, row.len())?;
//! let worst = row.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
//! assert!(worst <= 1.0 / 8.0 + 1e-3); // one step: |max| / 8 with |max| <= 1
//!
//! // Partial blocks and non-finite values are errors, not garbage.
//! assert!(matches!(quantize(GgmlType::Q8_0, &row[..40]), Err(Error::LengthNotMultiple { .. })));
//! assert_eq!("q4_k".parse::<GgmlType>()?, GgmlType::Q4_K);
//! # Ok(()) }
//! ```
//!
//! ## Tiny scales
//! When a block's largest magnitude is below about `1e-36` its f32 scale is subnormal and
//! `1 / d` overflows; gguf-py and ggml then cast infinities or NaN to integers, which C leaves
//! undefined. Here those levels saturate. The stored f16 scale of such a block is zero, so the
//! dequantized values (all zero) are the same either way; only the unused level bits may differ.
//!
//! This crate has no features.

mod blocks;
mod codec;
pub mod dot;
mod error;
pub mod pool;
mod types;

pub use codec::{dequantize, dequantize_into, quantize, quantize_weighted};
pub use error::{Error, Result};
pub use types::GgmlType;

/// The names most programs need: `use slm_ggml::prelude::*;`.
pub mod prelude {
    pub use crate::{Error, GgmlType, Result, dequantize, quantize, quantize_weighted};
}
