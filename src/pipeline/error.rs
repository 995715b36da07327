//! The pipeline's error: each phase's crate error, kept typed, with the phase it came from.

use std::path::PathBuf;

/// Everything a pipeline run can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file that cannot be read or parsed.
    #[error("{}: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A setting out of range, or inputs that cannot make a pipeline (no base model, no test
    /// examples).
    #[error("invalid pipeline: {0}")]
    Invalid(String),
    /// A file of the run that cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A phase's artifact that does not parse.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The error.
        source: serde_json::Error,
    },
    /// slm-core (models, tokenizers, files).
    #[error(transparent)]
    Core(#[from] slm_core::Error),
    /// slm-data (curation, readers, templates).
    #[error(transparent)]
    Data(#[from] slm_data::Error),
    /// slm-train (fine-tuning, distillation).
    #[error(transparent)]
    Train(#[from] slm_train::Error),
    /// slm-compress (pruning, quantization).
    #[error(transparent)]
    Compress(#[from] slm_compress::Error),
    /// slm-infer (the engine).
    #[error(transparent)]
    Infer(#[from] slm_infer::Error),
    /// slm-energy (meters, reports).
    #[error(transparent)]
    Energy(#[from] slm_energy::Error),
}

/// The pipeline's `Result`.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
