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
    /// Pruning settings that cannot be met (a sparsity outside [0, 1), an impossible N:M).
    #[error("pruning: {0}")]
    InvalidPruning(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
