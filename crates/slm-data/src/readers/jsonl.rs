//! [`JsonlReader`]: streams [`Example`]s out of a JSON Lines file, one record per line.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Reader;
use super::record::example_from_value;
use crate::error::{Error, Result};
use crate::example::Example;
use crate::fields::FieldMap;
use crate::limits::MAX_LINE_BYTES;

/// Reads a JSON Lines dataset lazily, yielding one `Result<Example>` per non-blank line.
///
/// - Blank lines (only whitespace) are skipped; a UTF-8 byte-order mark on line 1 is ignored;
///   `\r\n` endings are accepted.
/// - A bad line yields an error naming the file and its 1-based line, and reading goes on
///   with the next line, so a caller may skip bad records or stop at the first. An I/O error
///   ends the stream.
/// - A file with no records at all (empty, or only blank lines) yields one
///   [`Error::EmptyDataset`].
#[derive(Debug)]
pub struct JsonlReader<R = BufReader<File>> {
    reader: R,
    path: PathBuf,
    fields: FieldMap,
    max_line_bytes: usize,
    line: usize,
    saw_record: bool,
    done: bool,
    buf: Vec<u8>,
}

impl JsonlReader<BufReader<File>> {
    /// Opens `path` for reading with `fields`.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened, [`Error::DuplicateField`] for a field map
    /// naming one field twice.
    pub fn open(path: impl AsRef<Path>, fields: FieldMap) -> Result<Self> {
        let path = path.as_ref();
        fields.validate()?;
        let file = File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        JsonlReader::from_reader(BufReader::new(file), path, fields)
    }
}

impl<R: BufRead> JsonlReader<R> {
    /// Reads from any buffered reader; `path` names it in errors and generated ids.
    ///
    /// # Errors
    /// [`Error::DuplicateField`] for a field map naming one field twice.
    pub fn from_reader(reader: R, path: impl Into<PathBuf>, fields: FieldMap) -> Result<Self> {
        fields.validate()?;
        Ok(JsonlReader {
            reader,
            path: path.into(),
            fields,
            max_line_bytes: MAX_LINE_BYTES,
            line: 0,
            saw_record: false,
            done: false,
            buf: Vec::new(),
        })
    }

    /// Sets the longest line accepted, in bytes (default [`MAX_LINE_BYTES`]).
    pub fn with_max_line_bytes(mut self, limit: usize) -> Self {
        self.max_line_bytes = limit;
        self
    }

    /// The path errors name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every example, stopping at the first error.
    pub fn read_all(self) -> Result<Vec<Example>> {
        self.collect()
    }

    fn io_error(&mut self, source: std::io::Error) -> Error {
        self.done = true;
        Error::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Reads the next line into `buf` without its ending; `Ok(false)` at the end of the input,
    /// `Ok(true)` with an over-long line's remainder skipped and `buf` cleared.
    fn next_line(&mut self) -> std::io::Result<Option<bool>> {
        self.buf.clear();
        let limit = self.max_line_bytes as u64 + 1;
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > self.max_line_bytes {
            // Too long: drop the rest of the line without keeping it.
            loop {
                let chunk = self.reader.fill_buf()?;
                if chunk.is_empty() {
                    break;
                }
                match chunk.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.reader.consume(i + 1);
                        break;
                    }
                    None => {
                        let len = chunk.len();
                        self.reader.consume(len);
                    }
                }
            }
            self.buf.clear();
            return Ok(Some(true));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(false))
    }

    fn parse(&self, text: &str) -> Result<Example> {
        let (path, line) = (&self.path, self.line);
        let value: Value = serde_json::from_str(text).map_err(|source| Error::Json {
            path: path.clone(),
            line,
            source,
        })?;
        example_from_value(value, &self.fields, path, line)
    }
}

/// Reads every example of a JSON Lines file, stopping at the first error.
pub fn read_jsonl(path: impl AsRef<Path>, fields: FieldMap) -> Result<Vec<Example>> {
    JsonlReader::open(path, fields)?.read_all()
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = Result<Example>;

    fn next(&mut self) -> Option<Result<Example>> {
        if self.done {
            return None;
        }
        loop {
            let too_long = match self.next_line() {
                Ok(Some(too_long)) => too_long,
                Ok(None) => {
                    self.done = true;
                    return (!self.saw_record).then(|| {
                        Err(Error::EmptyDataset {
                            path: self.path.clone(),
                        })
                    });
                }
                Err(e) => return Some(Err(self.io_error(e))),
            };
            self.line += 1;
            if too_long {
                self.saw_record = true;
                return Some(Err(Error::LineTooLong {
                    path: self.path.clone(),
                    line: self.line,
                    limit: self.max_line_bytes,
                }));
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(text) => text,
                Err(e) => {
                    self.saw_record = true;
                    return Some(Err(Error::InvalidUtf8 {
                        path: self.path.clone(),
                        line: self.line,
                        valid_up_to: e.valid_up_to(),
                    }));
                }
            };
            let text = if self.line == 1 {
                text.strip_prefix('\u{feff}').unwrap_or(text)
            } else {
                text
            };
            if text.trim().is_empty() {
                continue;
            }
            self.saw_record = true;
            return Some(self.parse(text));
        }
    }
}

impl<R: BufRead + Send> Reader for JsonlReader<R> {
    fn path(&self) -> &Path {
        JsonlReader::path(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read(text: &str, fields: FieldMap) -> Vec<Result<Example>> {
        JsonlReader::from_reader(Cursor::new(text.as_bytes().to_vec()), "mem.jsonl", fields)
            .unwrap()
            .collect()
    }

    #[test]
    fn maps_fields_and_keeps_the_rest_as_meta() {
        let text = "{\"q\": \"hi\", \"a\": \"hello\", \"cls\": 2, \"src\": \"x\"}\r\n\n   \n{\"q\": \"yo\", \"a\": null, \"cls\": \"b\"}";
        let fields = FieldMap::new("q").with_target("a").with_label("cls");
        let got: Vec<Example> = read(text, fields).into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            Example::new("mem.jsonl:1", "hi")
                .with_target("hello")
                .with_label("2")
                .with_meta("src", "x")
        );
        assert_eq!(got[1], Example::new("mem.jsonl:4", "yo").with_label("b"));
    }

    #[test]
    fn ids_come_from_the_id_field_when_mapped() {
        let text = "{\"input\": \"a\", \"id\": 7}\n{\"input\": \"b\", \"id\": \"x-1\"}\n{\"input\": \"c\", \"id\": null}\n";
        let got: Vec<String> = read(text, FieldMap::new("input").with_id("id"))
            .into_iter()
            .map(|r| r.unwrap().id)
            .collect();
        assert_eq!(got, ["7", "x-1", "mem.jsonl:3"]);
    }

    #[test]
    fn errors_name_file_and_line_and_reading_goes_on() {
        let text = "{\"input\": \"ok\"}\n{\"input\": 3}\n[1]\n{\"input\": \n{\"text\": \"no input\"}\n{\"input\": \"ok again\"}\n";
        let got = read(text, FieldMap::default());
        let msgs: Vec<String> = got
            .iter()
            .map(|r| match r {
                Ok(ex) => format!("ok {}", ex.input),
                Err(e) => e.to_string(),
            })
            .collect();
        assert_eq!(msgs[0], "ok ok");
        assert_eq!(
            msgs[1],
            "mem.jsonl:2: field `input` is a number, expected a string"
        );
        assert_eq!(
            msgs[2],
            "mem.jsonl:3: expected a JSON object, found an array"
        );
        assert!(
            msgs[3].starts_with("mem.jsonl:4: malformed JSON: "),
            "{}",
            msgs[3]
        );
        assert_eq!(msgs[4], "mem.jsonl:5: no field `input`");
        assert_eq!(msgs[5], "ok ok again");
        assert_eq!(got.len(), 6);
    }

    #[test]
    fn a_label_column_that_does_not_exist_fails_on_line_one() {
        let got = read(
            "{\"input\": \"a\", \"label\": \"x\"}\n",
            FieldMap::new("input").with_label("lable"),
        );
        assert!(
            matches!(&got[0], Err(Error::MissingField { line: 1, field, .. }) if field == "lable")
        );
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let bytes = b"{\"input\": \"a\"}\n{\"input\": \"\xff\"}\n".to_vec();
        let got: Vec<_> =
            JsonlReader::from_reader(Cursor::new(bytes), "bad.jsonl", FieldMap::default())
                .unwrap()
                .collect();
        assert!(got[0].is_ok());
        let err = got[1].as_ref().unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidUtf8 {
                    line: 2,
                    valid_up_to: 11,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn empty_and_blank_files_are_empty_datasets() {
        for text in ["", "\n\n  \n", "\u{feff}\n"] {
            let got = read(text, FieldMap::default());
            assert_eq!(got.len(), 1, "{text:?}");
            assert!(matches!(&got[0], Err(Error::EmptyDataset { .. })));
        }
    }

    #[test]
    fn a_bom_on_line_one_is_ignored() {
        let got = read("\u{feff}{\"input\": \"a\"}", FieldMap::default());
        assert_eq!(got[0].as_ref().unwrap().input, "a");
    }

    #[test]
    fn over_long_lines_are_skipped_with_an_error() {
        let text = format!(
            "{{\"input\": \"{}\"}}\n{{\"input\": \"short\"}}\n",
            "x".repeat(100)
        );
        let reader = JsonlReader::from_reader(
            Cursor::new(text.into_bytes()),
            "long.jsonl",
            FieldMap::default(),
        )
        .unwrap()
        .with_max_line_bytes(64);
        let got: Vec<_> = reader.collect();
        assert!(matches!(
            &got[0],
            Err(Error::LineTooLong {
                line: 1,
                limit: 64,
                ..
            })
        ));
        assert_eq!(got[1].as_ref().unwrap().input, "short");
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn duplicate_field_maps_are_refused() {
        let dup = FieldMap::new("x").with_label("x");
        assert!(matches!(
            JsonlReader::from_reader(Cursor::new(Vec::new()), "m", dup),
            Err(Error::DuplicateField { .. })
        ));
    }
}
