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
    /// The engine's waiting queue is full (a server answers 429).
    #[error("the engine's queue is full ({capacity} requests waiting); retry later")]
    QueueFull {
        /// `max_queue`.
        capacity: usize,
    },
    /// The prompt needs more key/value memory than the engine's whole pool.
    #[error("the prompt of {tokens} tokens cannot fit the key/value pool ({capacity} tokens)")]
    PromptTooLarge {
        /// Prompt tokens.
        tokens: usize,
        /// Tokens the pool holds.
        capacity: usize,
    },
    /// A constrained-output spec could not be compiled (or the grammar engine failed): what
    /// and why.
    #[error("invalid constraint: {0}")]
    InvalidConstraint(String),
    /// The engine has stopped.
    #[error("the engine has stopped")]
    EngineStopped,
    /// The model failed while running the request.
    #[error("the request failed: {0}")]
    RequestFailed(String),
    /// The model produced NaN or infinite logits.
    #[error("the model produced non-finite logits at step {step}")]
    NonFiniteLogits {
        /// The generation step.
        step: usize,
    },
}

/// `Result` with slm-infer's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
