//! [`Format`]: which reader a path calls for, told from its extension (or a folder), and
//! [`Compression`]: the whole-file compression a reader undoes while streaming.

use std::path::Path;

use super::csv::delimiter_for;
use crate::error::{Error, Result, io_error};

/// The dataset formats [`read_any`](super::read_any) knows.
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

/// A whole-file compression [`read_any`](super::read_any) undoes while reading, named by the last extension.
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
}
