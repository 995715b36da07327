//! The error type of slm-core: every variant names the file, tensor, key or line at fault.

use std::path::PathBuf;

/// Everything that can go wrong while reading configs, weights, tokenizers or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error, with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config.json, tokenizer_config.json, index) could not be parsed.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A file is not in the format it claims to be in (truncated, lying header, bad magic).
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong, in words.
        reason: String,
    },
    /// The model's architecture is not one slm-core implements.
    #[error(
        "unsupported architecture {0} (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Phi3ForCausalLM; GGUF llama, mistral, qwen2, phi3)"
    )]
    UnsupportedArchitecture(String),
    /// A GGML block codec refused its input (a truncated tensor, a partial block, an
    /// unsupported type).
    #[error(transparent)]
    Ggml(#[from] slm_ggml::Error),
    /// A config value is present but not supported (a rope type, an activation, ...).
    #[error("unsupported {what}: `{value}`")]
    Unsupported {
        /// Which setting.
        what: &'static str,
        /// The value found.
        value: String,
    },
    /// A config field that is required is missing or has the wrong type.
    #[error("{source_name}: missing or invalid field `{field}`")]
    MissingField {
        /// Where the config came from (a path or "GGUF metadata").
        source_name: String,
        /// The field's name.
        field: String,
    },
    /// A config is internally inconsistent (for example heads do not divide the hidden size).
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A size the config states disagrees with what the weights hold (checked before anything
    /// is allocated from the config).
    #[error("{source_name}: the config says {field} = {config}, the weights hold {weights}")]
    ConfigMismatch {
        /// The checkpoint.
        source_name: String,
        /// The config field.
        field: &'static str,
        /// The config's value.
        config: usize,
        /// What the weights hold.
        weights: usize,
    },
    /// A tensor the config requires is not in the checkpoint.
    #[error("{source_name}: tensor `{name}` is missing")]
    MissingTensor {
        /// The checkpoint.
        source_name: String,
        /// The tensor's (Hugging Face) name.
        name: String,
    },
    /// A checkpoint holds tensors that the config does not explain.
    #[error("{source_name}: unexpected tensors {names:?} (config and weights disagree)")]
    UnexpectedTensors {
        /// The checkpoint.
        source_name: String,
        /// Up to a few of the unexplained names.
        names: Vec<String>,
    },
    /// A tensor's shape disagrees with what the config implies.
    #[error("{source_name}: tensor `{name}` has shape {got:?}, config implies {expected:?}")]
    ShapeMismatch {
        /// The checkpoint.
        source_name: String,
        /// The tensor.
        name: String,
        /// Its shape in the file.
        got: Vec<usize>,
        /// The shape the config implies.
        expected: Vec<usize>,
    },
    /// A tensor is stored in a dtype slm-core cannot read.
    #[error("{source_name}: tensor `{name}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The checkpoint.
        source_name: String,
        /// The tensor.
        name: String,
        /// The dtype, as the file names it.
        dtype: String,
    },
    /// The tokenizer could not be built, loaded or run.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A chat template failed to parse or render.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// A token id is outside the vocabulary.
    #[error("token id {id} is outside the vocabulary (size {vocab_size})")]
    TokenOutOfVocab {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// The input to a forward pass is malformed (ragged batch, empty, mask mismatch, too long),
    /// or a model edit asked for is (a vocabulary resize that would drop rows, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A tensor operation of the backend failed.
    #[error("backend: {0}")]
    Backend(String),
    /// The key/value pool has fewer free blocks than a step or fork needs (the scheduler's cue
    /// to wait or preempt; raise the memory budget to hold more).
    #[error("key/value cache full: {needed} blocks needed, {free} free")]
    KvCacheFull {
        /// Blocks the request needs.
        needed: usize,
        /// Blocks free.
        free: usize,
    },
    /// A sequence would grow past the model's context (`max_position_embeddings`); nothing is
    /// cut silently.
    #[error("{tokens} tokens exceed the model's context of {max}")]
    ContextOverflow {
        /// Tokens the sequence would hold.
        tokens: usize,
        /// The context length.
        max: usize,
    },
}

/// `Result` with slm-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A [`Error::Format`] for `path`.
    pub fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
