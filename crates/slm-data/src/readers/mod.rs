//! Readers for every format a dataset arrives in, behind one [`Reader`] trait, and
//! [`read_any`], which picks one by the path's extension (or a folder).
//!
//! | Format | Reader | Ids | Label |
//! |---|---|---|---|
//! | JSON Lines (`.jsonl`, `.ndjson`, `.json`) | [`JsonlReader`] | `id` field or `<file>:<line>` | [`FieldMap::label`] |
//! | A JSON array of records (`.json` starting with `[`) | [`JsonArrayReader`] | `id` field or `<file>:<record>` | [`FieldMap::label`] |
//! | CSV / TSV (`.csv`, `.tsv`, `.tab`) | [`CsvReader`] | `id` column or `<file>:<line>` | [`FieldMap::label`] |
//! | Parquet (`.parquet`, `.pq`) | [`ParquetReader`] | `id` column or `<file>:<row>` | [`FieldMap::label`] |
//! | A folder of text files | [`TextDirReader`] | relative path | sub-folder name |
//! | One RFC 822 email (`.eml`) | [`EmailReader`] | file name | none |
//! | A folder of emails | [`TextDirReader::emails`] | relative path | sub-folder name |
//! | A glob pattern (`data/train-*.parquet`) | [`ShardedReader`] | per shard, as above | per shard |
//!
//! JSON Lines and CSV/TSV may be compressed whole (`.jsonl.gz`, `.jsonl.zst`, `.csv.gz`, ...:
//! gzip and zstd, as datatrove and The Pile ship them); they are decompressed while streaming.
//!
//! Each reader lives in its own file and maps records onto [`Example`]s through the shared
//! mapping in `record.rs`; writers are in [`crate::writers`].

mod csv;
mod email;
mod format;
mod json_array;
mod jsonl;
mod parquet;
pub(crate) mod record;
mod shards;
mod text_dir;

use std::path::Path;

pub use self::csv::{CsvReader, delimiter_for};
pub use self::email::{EmailReader, parse_email};
pub use self::format::{Compression, Format};
pub use self::json_array::JsonArrayReader;
pub use self::jsonl::{JsonlReader, read_jsonl};
pub use self::parquet::ParquetReader;
pub use self::shards::{ShardedReader, is_glob};
pub use self::text_dir::{DocumentKind, TextDirReader};
pub use crate::error::EmailProblem;
pub use crate::limits::{MAX_EMAIL_BYTES, MAX_LINE_BYTES};

use crate::error::{Error, Result};
use crate::example::Example;
use crate::fields::FieldMap;

/// A streaming source of [`Example`]s: an iterator of `Result<Example>` that knows which file
/// or folder it reads.
///
/// Why a trait: curation stages and the CLI take "some dataset" without caring about its
/// format, and [`read_any`] hands back a `Box<dyn Reader>`. Every implementation keeps the
/// same contract, which the tests check per format:
/// - a bad record yields an error naming the file and its 1-based line (or row), and reading
///   goes on with the next record, so a caller decides whether to skip or stop;
/// - an input without records yields one [`Error::EmptyDataset`], never an empty stream;
/// - a column named by the [`FieldMap`] that the source lacks is a typed error naming it
///   ([`Error::UnknownColumn`] for formats with a header or schema, [`Error::MissingField`] for
///   JSON Lines, whose records each carry their own keys).
pub trait Reader: Iterator<Item = Result<Example>> + Send {
    /// The file or folder this reader reads (as named in its errors).
    fn path(&self) -> &Path;
}

/// Opens `path` with the reader its [`Format`] calls for; `fields` maps columns for the
/// columnar formats (text folders and emails take the input from the file's text and the
/// label from the sub-folder, and ignore it).
///
/// ```no_run
/// use slm_data::{FieldMap, read_any};
/// # fn main() -> slm_data::Result<()> {
/// let fields = FieldMap::new("text").with_label("label");
/// for example in read_any("data/spamassassin/sample.jsonl", &fields)? {
///     let example = example?;
///     println!("{} {:?}", example.id, example.label);
/// }
/// # Ok(()) }
/// ```
///
/// A path that does not exist but holds `*`, `?` or `[` is a glob pattern: every file it
/// matches is read, in sorted order, as one dataset ([`ShardedReader`]).
///
/// # Errors
/// [`Error::UnsupportedFormat`], [`Error::NoMatch`] for a pattern without files, and whatever
/// the chosen reader's `open` returns.
pub fn read_any(path: impl AsRef<Path>, fields: &FieldMap) -> Result<Box<dyn Reader>> {
    let path = path.as_ref();
    if is_glob(path) {
        return Ok(Box::new(ShardedReader::open(path, fields.clone())?));
    }
    read_as(path, Format::detect(path)?, fields)
}

/// Like [`read_any`], with the format given.
pub fn read_as(
    path: impl AsRef<Path>,
    format: Format,
    fields: &FieldMap,
) -> Result<Box<dyn Reader>> {
    let path = path.as_ref();
    if let Some(compression) = Compression::detect(path) {
        let bytes = compression.open(path)?;
        return Ok(match format {
            Format::Jsonl => Box::new(JsonlReader::from_reader(
                std::io::BufReader::new(bytes),
                path,
                fields.clone(),
            )?),
            Format::Csv { delimiter } => Box::new(CsvReader::from_reader(
                bytes,
                path,
                fields.clone(),
                delimiter,
            )?),
            _ => {
                return Err(Error::UnsupportedFormat {
                    path: path.to_path_buf(),
                });
            }
        });
    }
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    Ok(match format {
        Format::Jsonl if is_json && json_array::starts_with_array(path)? => {
            Box::new(JsonArrayReader::open(path, fields.clone())?)
        }
        Format::Jsonl => Box::new(JsonlReader::open(path, fields.clone())?),
        Format::Csv { delimiter } => Box::new(CsvReader::open_with_delimiter(
            path,
            fields.clone(),
            delimiter,
        )?),
        Format::Parquet => Box::new(ParquetReader::open(path, fields.clone())?),
        Format::TextDir => Box::new(TextDirReader::open(path)?),
        Format::Email => Box::new(EmailReader::open(path)?),
    })
}
