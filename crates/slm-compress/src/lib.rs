//! # slm-compress
//!
//! Model compression for `slm`: pruning that keeps the model a valid checkpoint, and GGML
//! quantization (through [`slm_ggml`], the workspace's one home of GGML types and block codecs,
//! re-exported here as [`ggml`]).
//!
//! - [`prune`] zeros projection weights by magnitude (per output row, per layer or global) or
//!   Wanda score (per output row), N:M (2:4), or removes whole MLP neurons (structured), with a
//!   per-tensor [`PruneReport`]; [`IterativePruning`] reaches a sparsity in rounds with a
//!   recovery fine-tune between them.
//! - [`quantize_gguf`] writes any model slm opens as a GGUF of a [`QuantType`] (`Q4_K_M`,
//!   `Q8_0`, ...), tensor types chosen as `llama-quantize` chooses them and blocks bit-identical
//!   with its, optionally weighted by an [`ImportanceMatrix`] from calibration text
//!   ([`InputStats`]) or from `llama-imatrix`; [`Modelfile`] writes the Ollama Modelfile beside
//!   it (the Jinja chat template converted to Go template syntax).
//! - [`quantize`] / [`dequantize`] turn a tensor's rows into the block stream a GGUF file
//!   stores (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 byte-identical with gguf-py and llama.cpp's converter;
//!   Q4_K, Q5_K, Q6_K with ggml; F16, BF16), refusing NaN, infinities and scales that do not fit
//!   an f16.
//!
//! ```
//! use slm_compress::prelude::*;
//!
//! # fn main() -> slm_compress::Result<()> {
//! // One row of 64 weights: two blocks.
//! let row: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
//! let bytes = quantize(GgmlType::Q4_0, &row)?;
//! assert_eq!(bytes.len(), 2 * GgmlType::Q4_0.type_size()); // 2 × 18 bytes
//! let back = dequantize(GgmlType::Q4_0, &bytes, row.len())?;
//! let worst = row.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
//! assert!(worst <= 1.0 / 8.0 + 1e-3);
//!
//! // A partial block is a typed error, not garbage.
//! assert!(matches!(
//!     quantize(GgmlType::Q8_0, &row[..40]),
//!     Err(slm_compress::ggml::Error::LengthNotMultiple { .. })
//! ));
//! # Ok(()) }
//! ```
//!
//! This crate has no features of its own (`flex`, `ndarray`, `cuda` select slm-core's burn
//! backend).

pub mod calibration;
mod error;
pub mod iterative;
pub mod modelfile;
pub mod prune;
pub mod quantize;

pub use calibration::{InputStats, calibration_chunks};
pub use error::{Error, Result};
pub use iterative::{IterativePruning, PruneRound, SparsitySchedule};
pub use modelfile::{Modelfile, TemplateFamily};
pub use prune::{PruneMethod, PruneReport, TensorSparsity, prune};
pub use quantize::{
    ImportanceMatrix, QuantType, QuantizeConfig, QuantizeReport, TensorTypePlan, quantize_gguf,
};
pub use slm_ggml::{self as ggml, GgmlType, dequantize, quantize};

/// The names most programs need: `use slm_compress::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Error, GgmlType, ImportanceMatrix, PruneMethod, QuantType, QuantizeConfig, Result,
        dequantize, prune, quantize, quantize_gguf,
    };
}
