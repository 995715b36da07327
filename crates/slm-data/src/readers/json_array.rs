//! [`JsonArrayReader`]: a `.json` file holding one array of records, the layout of Alpaca's
//! `alpaca_data.json` and many instruction datasets (JSON Lines files go to
//! [`JsonlReader`](super::JsonlReader)).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Reader;
use super::record::example_from_value;
use crate::error::{Error, Result, io_error, kind};
use crate::example::Example;
use crate::fields::FieldMap;

/// Whether the file at `path` starts (after whitespace and a byte-order mark) with `[`, that
/// is, holds a JSON array rather than JSON Lines.
pub(crate) fn starts_with_array(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let mut file = std::fs::File::open(path).map_err(io_error(path))?;
    let n = file.read(&mut head).map_err(io_error(path))?;
    let head = head[..n]
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(&head[..n]);
    Ok(head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'['))
}

/// Reads a JSON array of objects, one [`Example`] per element, in order.
///
/// - The whole file is parsed when the reader is built (a syntax error is [`Error::Json`]
///   with the line serde reports); the elements are then mapped lazily.
/// - Errors and default ids count records, 1-based (`<file name>:<record>`), where JSON Lines
///   count lines; an element that is not an object is [`Error::NotAnObject`].
/// - An empty array yields one [`Error::EmptyDataset`].
#[derive(Debug)]
pub struct JsonArrayReader {
    path: PathBuf,
    fields: FieldMap,
    items: std::vec::IntoIter<Value>,
    record: usize,
    done: bool,
}

impl JsonArrayReader {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Json`] for invalid JSON or [`Error::NotAnObject`] (record 0)
    /// when the top level is not an array, [`Error::DuplicateField`].
    pub fn open(path: impl AsRef<Path>, fields: FieldMap) -> Result<Self> {
        let path = path.as_ref();
        fields.validate()?;
        let bytes = std::fs::read(path).map_err(io_error(path))?;
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let value: Value = serde_json::from_slice(bytes).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            line: source.line(),
            source,
        })?;
        let items = match value {
            Value::Array(items) => items,
            other => {
                return Err(Error::NotAnObject {
                    path: path.to_path_buf(),
                    line: 0,
                    found: kind(&other),
                });
            }
        };
        Ok(JsonArrayReader {
            path: path.to_path_buf(),
            fields,
            items: items.into_iter(),
            record: 0,
            done: false,
        })
    }
}

impl Iterator for JsonArrayReader {
    type Item = Result<Example>;

    fn next(&mut self) -> Option<Result<Example>> {
        if self.done {
            return None;
        }
        let Some(item) = self.items.next() else {
            self.done = true;
            return (self.record == 0).then(|| {
                Err(Error::EmptyDataset {
                    path: self.path.clone(),
                })
            });
        };
        self.record += 1;
        Some(example_from_value(
            item,
            &self.fields,
            &self.path,
            self.record,
        ))
    }
}

impl Reader for JsonArrayReader {
    fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_alpaca_style_array() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alpaca_data.json");
        std::fs::write(
            &path,
            "\u{feff}[\n  {\"instruction\": \"Give three tips.\", \"input\": \"\", \"output\": \"1. Eat.\"},\n  {\"instruction\": \"Add 2+2.\", \"input\": \"\", \"output\": \"4\"},\n  7\n]\n",
        )
        .unwrap();
        assert!(starts_with_array(&path).unwrap());
        let fields = FieldMap::new("instruction").with_target("output");
        let rows: Vec<Result<Example>> = JsonArrayReader::open(&path, fields.clone())
            .unwrap()
            .collect();
        let first = rows[0].as_ref().unwrap();
        assert_eq!(
            (
                first.id.as_str(),
                first.input.as_str(),
                first.target.as_deref()
            ),
            ("alpaca_data.json:1", "Give three tips.", Some("1. Eat."))
        );
        assert_eq!(first.meta["input"], "");
        assert_eq!(
            rows[2].as_ref().unwrap_err().to_string(),
            format!(
                "{}:3: expected a JSON object, found a number",
                path.display()
            )
        );
        // Through read_any: `.json` with an array comes here, JSON Lines stay JSON Lines.
        assert_eq!(crate::read_any(&path, &fields).unwrap().count(), 3);
        std::fs::write(&path, "[]").unwrap();
        let mut empty = JsonArrayReader::open(&path, fields.clone()).unwrap();
        assert!(matches!(
            empty.next(),
            Some(Err(Error::EmptyDataset { .. }))
        ));
        std::fs::write(&path, "[{\"instruction\": \"x\"},\n  oops]").unwrap();
        let err = JsonArrayReader::open(&path, fields).unwrap_err();
        assert!(matches!(err, Error::Json { line: 2, .. }), "{err}");
    }
}
