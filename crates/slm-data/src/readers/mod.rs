//! Readers for every format a dataset arrives in, behind one [`Reader`] trait, and
//! [`read_any`], which picks one by the path's extension (or a folder).
//!
//! | Format | Reader | Ids | Label |
//! |---|---|---|---|
//! | JSON Lines (`.jsonl`, `.ndjson`, `.json`) | [`JsonlReader`](crate::JsonlReader) | `id` field or `<file>:<line>` | [`FieldMap::label`] |
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

mod csv;
mod email;
mod json_array;
mod parquet;
mod shards;
mod text_dir;

use std::path::Path;

pub use self::csv::{CsvReader, delimiter_for};
pub use self::email::{EmailReader, parse_email};
pub use self::json_array::JsonArrayReader;
pub use self::parquet::{ParquetReader, ParquetSchema, ParquetWriter, write_parquet};
pub use self::shards::{ShardedReader, is_glob};
pub use self::text_dir::{DocumentKind, TextDirReader};
pub use crate::error::EmailProblem;
pub use crate::limits::MAX_EMAIL_BYTES;

use crate::error::{Error, Result};
use crate::example::Example;
use crate::fields::FieldMap;
use crate::reader::JsonlReader;

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

impl<R: std::io::BufRead + Send> Reader for JsonlReader<R> {
    fn path(&self) -> &Path {
        JsonlReader::path(self)
    }
}

/// The dataset formats [`read_any`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// JSON Lines: one object per line.
    Jsonl,
    /// Delimiter-separated values with a header row (`,` for `.csv`, tab for `.tsv`/`.tab`).
    Csv {
        /// The field delimiter.
        delimiter: u8,
    },
    /// Apache Parquet.
    Parquet,
    /// A folder with one document per file, labelled by sub-folder.
    TextDir,
    /// One raw RFC 822 email.
    Email,
}

/// A whole-file compression [`read_any`] undoes while reading, named by the last extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// gzip (`.gz`), multi-member files included.
    Gzip,
    /// Zstandard (`.zst`, `.zstd`).
    Zstd,
}

impl Compression {
    /// The compression `path`'s last extension names, if any (case-insensitive).
    pub fn detect(path: &Path) -> Option<Compression> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "gz" | "gzip" => Some(Compression::Gzip),
            "zst" | "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// `path` without its compression extension (`a.tsv.gz` -> `a.tsv`), as far as the
    /// format is concerned; `path` itself when it is not compressed.
    pub(crate) fn inner_name(path: &Path) -> &Path {
        match Compression::detect(path) {
            Some(_) => Path::new(path.file_stem().unwrap_or_default()),
            None => path,
        }
    }

    /// A reader of `path`'s decompressed bytes.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened (or, for zstd, its decoder set up).
    pub fn open(self, path: &Path) -> Result<Box<dyn std::io::Read + Send>> {
        let file = std::fs::File::open(path).map_err(io_error(path))?;
        Ok(match self {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::new(file).map_err(io_error(path))?)
            }
        })
    }
}

impl Format {
    /// The format of `path`: a folder is [`Format::TextDir`], files go by extension
    /// (case-insensitive), looking through a compression extension (`.jsonl.gz` is JSON
    /// Lines; see [`Compression`]).
    ///
    /// # Errors
    /// [`Error::UnsupportedFormat`] for an unknown or missing extension, or a compressed file
    /// that is not JSON Lines or CSV/TSV.
    pub fn detect(path: &Path) -> Result<Format> {
        if path.is_dir() {
            return Ok(Format::TextDir);
        }
        if Compression::detect(path).is_some() {
            return match Format::detect(Compression::inner_name(path)) {
                Ok(format @ (Format::Jsonl | Format::Csv { .. })) => Ok(format),
                _ => Err(Error::UnsupportedFormat {
                    path: path.to_path_buf(),
                }),
            };
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        Ok(match ext.as_deref() {
            Some("jsonl" | "ndjson" | "json") => Format::Jsonl,
            Some("csv" | "tsv" | "tab") => Format::Csv {
                delimiter: delimiter_for(path),
            },
            Some("parquet" | "pq") => Format::Parquet,
            Some("eml") => Format::Email,
            _ => {
                return Err(Error::UnsupportedFormat {
                    path: path.to_path_buf(),
                });
            }
        })
    }
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

/// An [`Error::Io`] on `path`.
pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The 1-based line of byte `offset` in `bytes`.
pub(crate) fn line_of(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// Checks that every column `fields` names is in `available`.
pub(crate) fn check_columns(path: &Path, fields: &FieldMap, available: &[String]) -> Result<()> {
    let named = [
        Some(&fields.input),
        fields.target.as_ref(),
        fields.label.as_ref(),
        fields.id.as_ref(),
    ];
    for column in named.into_iter().flatten() {
        if !available.contains(column) {
            return Err(Error::UnknownColumn {
                path: path.to_path_buf(),
                column: column.clone(),
                available: available.to_vec(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_extensions() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Format::detect(dir.path()).unwrap(), Format::TextDir);
        assert_eq!(Format::detect(Path::new("a.JSONL")).unwrap(), Format::Jsonl);
        assert_eq!(
            Format::detect(Path::new("a.tsv")).unwrap(),
            Format::Csv { delimiter: b'\t' }
        );
        assert_eq!(
            Format::detect(Path::new("a.csv")).unwrap(),
            Format::Csv { delimiter: b',' }
        );
        assert_eq!(
            Format::detect(Path::new("x.parquet")).unwrap(),
            Format::Parquet
        );
        assert_eq!(Format::detect(Path::new("m.eml")).unwrap(), Format::Email);
        assert_eq!(
            Format::detect(Path::new("a.jsonl.GZ")).unwrap(),
            Format::Jsonl
        );
        assert_eq!(
            Format::detect(Path::new("a.tsv.zst")).unwrap(),
            Format::Csv { delimiter: b'\t' }
        );
        assert_eq!(
            Compression::detect(Path::new("a.jsonl.zstd")),
            Some(Compression::Zstd)
        );
        assert!(Format::detect(Path::new("a.eml.gz")).is_err());
        assert!(matches!(
            Format::detect(Path::new("notes.docx")),
            Err(Error::UnsupportedFormat { .. })
        ));
    }

    #[test]
    fn lines_are_one_based() {
        assert_eq!(line_of(b"ab\ncd\nef", 0), 1);
        assert_eq!(line_of(b"ab\ncd\nef", 4), 2);
        assert_eq!(line_of(b"ab\ncd\nef", 99), 3);
    }
}
