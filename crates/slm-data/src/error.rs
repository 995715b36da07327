//! The error type of slm-data: every variant names the file, and the 1-based line where there
//! is one.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::limits::MAX_EMAIL_BYTES;

/// Everything that can go wrong while reading or writing datasets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error, with the path it happened on.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file (or, for a temporary file, its directory).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line that is not valid JSON.
    #[error("{}:{line}: malformed JSON: {source}", .path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parser's error (its "line 1" is the record's line).
        #[source]
        source: serde_json::Error,
    },
    /// A line that is not valid UTF-8.
    #[error("{}:{line}: invalid UTF-8 after byte {valid_up_to}", .path.display())]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Bytes of the line that were valid.
        valid_up_to: usize,
    },
    /// A line whose JSON value is not an object.
    #[error("{}:{line}: expected a JSON object, found {found}", .path.display())]
    NotAnObject {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was there (`an array`, `a string`, ...).
        found: &'static str,
    },
    /// A record without a field the [`FieldMap`](crate::FieldMap) names.
    #[error("{}:{line}: no field `{field}`", .path.display())]
    MissingField {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field's name.
        field: String,
    },
    /// A mapped field holding the wrong kind of value (an `input` that is a number, ...).
    #[error("{}:{line}: field `{field}` is {found}, expected {expected}", .path.display())]
    WrongType {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field's name.
        field: String,
        /// What the field must hold.
        expected: &'static str,
        /// What it holds.
        found: &'static str,
    },
    /// A line longer than the reader's limit.
    #[error("{}:{line}: line longer than {limit} bytes", .path.display())]
    LineTooLong {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The limit in force ([`MAX_LINE_BYTES`](crate::limits::MAX_LINE_BYTES) unless changed).
        limit: usize,
    },
    /// A file with no records (empty, or only blank lines), or a writer finished with none.
    #[error("{}: dataset has no records", .path.display())]
    EmptyDataset {
        /// The file.
        path: PathBuf,
    },
    /// A [`FieldMap`](crate::FieldMap) that maps two roles to the same field.
    #[error("field `{field}` is mapped to more than one role")]
    DuplicateField {
        /// The field's name.
        field: String,
    },
    /// An example whose metadata uses a key the writer needs for itself.
    #[error("{}: example `{id}` has metadata key `{key}`, which is reserved", .path.display())]
    ReservedMetaKey {
        /// The file being written.
        path: PathBuf,
        /// The example's id.
        id: String,
        /// The key (`id`, `input`, `target` or `label`).
        key: String,
    },
    /// A glob pattern that matches no file.
    #[error("{}: no file matches", .pattern.display())]
    NoMatch {
        /// The pattern.
        pattern: PathBuf,
    },
    /// An example whose metadata does not fit the schema a Parquet file was given.
    #[error("{}: example `{id}` has metadata `{key}` that does not fit the schema: {problem}", .path.display())]
    SchemaMismatch {
        /// The file being written.
        path: PathBuf,
        /// The example's id.
        id: String,
        /// The metadata key.
        key: String,
        /// What does not fit.
        problem: String,
    },
    /// A CSV/TSV record the parser rejects (unbalanced quotes, a wrong number of fields, ..).
    #[error("{}:{line}: malformed CSV: {source}", .path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line where the record starts.
        line: usize,
        /// The parser's error.
        #[source]
        source: csv::Error,
    },
    /// A column the [`FieldMap`](crate::FieldMap) names that the file's header or schema lacks.
    #[error("{}: no column `{column}` (the file has: {})", .path.display(), .available.join(", "))]
    UnknownColumn {
        /// The file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The columns the file has.
        available: Vec<String>,
    },
    /// An error from the Parquet reader or writer.
    #[error("{}: parquet: {source}", .path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The parquet crate's error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// An email that cannot be turned into an example.
    #[error("{}: {problem}", .path.display())]
    Email {
        /// The message's file.
        path: PathBuf,
        /// What is wrong with it.
        problem: EmailProblem,
    },
    /// A path whose format [`read_any`](crate::read_any) cannot tell from its extension.
    #[error("{}: unknown dataset format (expected .jsonl, .json, .csv, .tsv (each also .gz or .zst), .parquet, .eml, a folder or a glob)", .path.display())]
    UnsupportedFormat {
        /// The path.
        path: PathBuf,
    },
    /// An error from slm-core (the model, its tokenizer or its chat template).
    #[error(transparent)]
    Core(#[from] slm_core::Error),
    /// An error from the `tokenizers` crate while training or extending a tokenizer.
    #[error("tokenizer {action}: {source}")]
    Tokenizer {
        /// What was being done (`training`, `adding tokens`, ...).
        action: &'static str,
        /// The `tokenizers` error.
        #[source]
        source: tokenizers::Error,
    },
    /// An option outside its valid range (a zero batch size, min length above max, ...).
    #[error("invalid option `{name}`: {reason}")]
    InvalidOption {
        /// The option's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A tokenizer whose vocabulary does not fit the model it is paired with.
    #[error("tokenizer has {tokenizer} tokens, model vocabulary has {model}")]
    VocabMismatch {
        /// Tokens in the tokenizer (added tokens included).
        tokenizer: usize,
        /// The model's `vocab_size`.
        model: usize,
    },
    /// An example without the target or label its template needs.
    #[error("example `{id}` has no {field}")]
    MissingTarget {
        /// The example's id.
        id: String,
        /// `target` or `label`.
        field: &'static str,
    },
    /// A tokenized example longer than the sequence length a batcher packs to.
    #[error("example `{id}` has {tokens} tokens, more than the sequence length {max}")]
    ExampleTooLong {
        /// The example's id.
        id: String,
        /// Its length in tokens.
        tokens: usize,
        /// The limit.
        max: usize,
    },
    /// A curation config file that does not parse (TOML or JSON).
    #[error("{}: invalid curation config: {message}", .path.display())]
    ConfigParse {
        /// The config file.
        path: std::path::PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A curation config whose values do not fit together (split fractions, no inputs, ...).
    #[error("invalid curation config: {message}")]
    InvalidConfig {
        /// What is wrong.
        message: String,
    },
}

/// Why an email yields no example (the problem of an [`Error::Email`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmailProblem {
    /// No RFC 822 header could be parsed (empty input, or not an email at all).
    NotAMessage,
    /// Headers but no text: no `text/plain` or `text/html` part, or only blank ones
    /// (attachments only, an empty body, an HTML email that is only images).
    NoTextBody,
    /// A message over [`MAX_EMAIL_BYTES`].
    TooLarge {
        /// Its size in bytes.
        bytes: u64,
    },
}

impl fmt::Display for EmailProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmailProblem::NotAMessage => f.write_str("not an email: no header found"),
            EmailProblem::NoTextBody => {
                f.write_str("email has no text: no text/plain or text/html part with words")
            }
            EmailProblem::TooLarge { bytes } => write!(
                f,
                "email is {bytes} bytes, more than the limit of {MAX_EMAIL_BYTES}"
            ),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a JSON value's kind reads in an error message.
pub(crate) fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// An [`Error::Io`] on `path`.
pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An [`Error::Parquet`] on `path`.
pub(crate) fn parquet_error(
    path: &Path,
) -> impl FnOnce(parquet::errors::ParquetError) -> Error + '_ {
    move |source| Error::Parquet {
        path: path.to_path_buf(),
        source,
    }
}
