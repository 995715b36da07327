//! Errors of slm-infer.

/// What can go wrong while generating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model or tokenizer failed.
    #[error(transparent)]
    Core(#[from] slm_core::Error),
    /// Generation settings are invalid (negative temperature, top_p outside (0, 1], ...).
    #[error("invalid generation config: {0}")]
    InvalidConfig(String),
    /// The model produced NaN or infinite logits.
    #[error("the model produced non-finite logits at step {step}")]
    NonFiniteLogits {
        /// The generation step.
        step: usize,
    },
}

/// `Result` with slm-infer's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
