//! The error type of slm-compress.

/// Everything that can go wrong while pruning, quantizing or exporting a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A GGML block codec refused its input (a partial block, a NaN, a scale beyond f16).
    #[error(transparent)]
    Ggml(#[from] slm_ggml::Error),
    /// slm-core failed (a model, tokenizer or file it read or wrote).
    #[error(transparent)]
    Core(#[from] slm_core::Error),
    /// Calibration that cannot be used (no tokens, a mismatched capture, an importance matrix
    /// for another model).
    #[error("calibration: {0}")]
    InvalidCalibration(String),
    /// A file type name `llama-quantize` does not have (or slm does not write).
    #[error(
        "unknown quantization type `{0}` (expected F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M or Q6_K)"
    )]
    UnknownQuantType(String),
    /// The recovery step of iterative pruning (a fine-tune, from another crate) failed.
    #[error("recovery step: {0}")]
    Recovery(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Pruning settings that cannot be met (a sparsity outside [0, 1), an impossible N:M).
    #[error("pruning: {0}")]
    InvalidPruning(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
