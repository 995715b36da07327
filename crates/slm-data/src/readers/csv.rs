//! [`CsvReader`]: streams [`Example`]s out of a CSV or TSV file with a header row.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use csv::ByteRecord;
use serde_json::{Map, Value};

use super::Reader;
use super::record::{check_columns, example_from_object};
use crate::error::{Error, Result, io_error};
use crate::example::Example;
use crate::fields::FieldMap;

/// The delimiter a file's extension implies: tab for `.tsv` and `.tab` (also under `.gz` or
/// `.zst`), comma otherwise.
pub fn delimiter_for(path: &Path) -> u8 {
    match super::Compression::inner_name(path)
        .extension()
        .and_then(|e| e.to_str())
    {
        Some(ext) if ext.eq_ignore_ascii_case("tsv") || ext.eq_ignore_ascii_case("tab") => b'\t',
        _ => b',',
    }
}

/// Reads a delimiter-separated file lazily, yielding one `Result<Example>` per record.
///
/// - The first row is the header; the [`FieldMap`] names its columns, and a column it names
///   that the header lacks is [`Error::UnknownColumn`] when the reader is built.
/// - Quoted fields may hold delimiters, doubled quotes and line breaks; `\r\n` endings are
///   accepted; a UTF-8 byte-order mark before the header is ignored.
/// - Every cell is text. An empty `target`, `label` or `id` cell means "none" (as pandas
///   reads it); other columns go to [`Example::meta`] as strings.
/// - A bad record (wrong number of fields, invalid UTF-8) yields an error naming the file and
///   the 1-based line the record starts on, and reading goes on. Ids default to
///   `<file name>:<line>`.
/// - A file without records (empty, or a header only) yields one [`Error::EmptyDataset`].
#[derive(Debug)]
pub struct CsvReader<R = File> {
    inner: csv::Reader<LineCounter<R>>,
    path: PathBuf,
    fields: FieldMap,
    headers: Vec<String>,
    record: ByteRecord,
    saw_record: bool,
    done: bool,
}

impl CsvReader<File> {
    /// Opens `path`, with the delimiter its extension implies ([`delimiter_for`]).
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::DuplicateField`], [`Error::UnknownColumn`], and
    /// [`Error::Csv`] or [`Error::InvalidUtf8`] for a bad header.
    pub fn open(path: impl AsRef<Path>, fields: FieldMap) -> Result<Self> {
        let path = path.as_ref();
        Self::open_with_delimiter(path, fields, delimiter_for(path))
    }

    /// Opens `path` with an explicit delimiter (`b';'`, `b'|'`, ..).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with_delimiter(
        path: impl AsRef<Path>,
        fields: FieldMap,
        delimiter: u8,
    ) -> Result<Self> {
        let path = path.as_ref();
        fields.validate()?;
        let file = File::open(path).map_err(io_error(path))?;
        CsvReader::from_reader(file, path, fields, delimiter)
    }
}

impl<R: Read> CsvReader<R> {
    /// Reads from any reader; `path` names it in errors and generated ids.
    ///
    /// # Errors
    /// As [`CsvReader::open`], less the file's own I/O errors.
    pub fn from_reader(
        reader: R,
        path: impl Into<PathBuf>,
        fields: FieldMap,
        delimiter: u8,
    ) -> Result<Self> {
        fields.validate()?;
        let path = path.into();
        let mut inner = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            .flexible(false)
            .from_reader(LineCounter::new(reader));
        let raw = inner
            .byte_headers()
            .map_err(|e| csv_error(&path, e, 1))?
            .clone();
        let mut headers = Vec::with_capacity(raw.len());
        for (i, cell) in raw.iter().enumerate() {
            let cell = if i == 0 {
                cell.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(cell)
            } else {
                cell
            };
            let name = std::str::from_utf8(cell).map_err(|e| Error::InvalidUtf8 {
                path: path.clone(),
                line: 1,
                valid_up_to: e.valid_up_to(),
            })?;
            headers.push(name.to_string());
        }
        let empty = headers.is_empty() || (headers.len() == 1 && headers[0].is_empty());
        if !empty {
            check_columns(&path, &fields, &headers)?;
        }
        Ok(CsvReader {
            inner,
            path,
            fields,
            headers,
            record: ByteRecord::new(),
            saw_record: false,
            done: false,
        })
    }

    /// The header's column names.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The 1-based line a record or error at `position` starts on.
    fn line(&mut self, position: Option<&csv::Position>) -> usize {
        let counter = self.inner.get_mut();
        match position {
            Some(p) => counter.line_at(p.byte()),
            None => counter.passed + 1,
        }
    }

    fn to_example(&self, line: usize) -> Result<Example> {
        let optional = [
            self.fields.target.as_ref(),
            self.fields.label.as_ref(),
            self.fields.id.as_ref(),
        ];
        let mut obj = Map::with_capacity(self.headers.len());
        for (name, cell) in self.headers.iter().zip(self.record.iter()) {
            let text = std::str::from_utf8(cell).map_err(|e| Error::InvalidUtf8 {
                path: self.path.clone(),
                line,
                valid_up_to: e.valid_up_to(),
            })?;
            let value = if text.is_empty() && optional.contains(&Some(name)) {
                Value::Null
            } else {
                Value::String(text.to_string())
            };
            obj.insert(name.clone(), value);
        }
        example_from_object(obj, &self.fields, &self.path, line)
    }
}

fn csv_error(path: &Path, e: csv::Error, line: usize) -> Error {
    if e.is_io_error() {
        Error::Io {
            path: path.to_path_buf(),
            source: e.into(),
        }
    } else {
        Error::Csv {
            path: path.to_path_buf(),
            line,
            source: e,
        }
    }
}

/// Passes bytes through and remembers where the line breaks are, because the csv crate's
/// own line count is one short after `\r\n` endings (it reports a record as starting on
/// the `\n` that ends the previous one).
#[derive(Debug)]
struct LineCounter<R> {
    inner: R,
    offset: u64,
    /// Offsets of `\n` bytes read but not yet passed by a record.
    pending: VecDeque<u64>,
    /// `\n` bytes before the last record asked about.
    passed: usize,
}

impl<R> LineCounter<R> {
    fn new(inner: R) -> Self {
        LineCounter {
            inner,
            offset: 0,
            pending: VecDeque::new(),
            passed: 0,
        }
    }

    /// The 1-based line of the record the csv crate places at byte `byte`: every line break
    /// at or before it ends an earlier line (a record never starts with `\n`, so one at
    /// `byte` is the rest of a `\r\n`). Records come in order, so passed breaks are dropped.
    fn line_at(&mut self, byte: u64) -> usize {
        while self.pending.front().is_some_and(|&nl| nl <= byte) {
            self.pending.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for (i, _) in buf[..n].iter().enumerate().filter(|(_, b)| **b == b'\n') {
            self.pending.push_back(self.offset + i as u64);
        }
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R: Read> Iterator for CsvReader<R> {
    type Item = Result<Example>;

    fn next(&mut self) -> Option<Result<Example>> {
        if self.done {
            return None;
        }
        match self.inner.read_byte_record(&mut self.record) {
            Ok(true) => {
                self.saw_record = true;
                let position = self.record.position().cloned();
                let line = self.line(position.as_ref());
                Some(self.to_example(line))
            }
            Ok(false) => {
                self.done = true;
                (!self.saw_record).then(|| {
                    Err(Error::EmptyDataset {
                        path: self.path.clone(),
                    })
                })
            }
            Err(e) => {
                self.saw_record = true;
                let line = self.line(e.position());
                let err = csv_error(&self.path, e, line);
                if matches!(err, Error::Io { .. }) {
                    self.done = true;
                }
                Some(Err(err))
            }
        }
    }
}

impl<R: Read + Send> Reader for CsvReader<R> {
    fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &[u8], fields: FieldMap, delimiter: u8) -> Vec<Result<Example>> {
        CsvReader::from_reader(text, "mem.csv", fields, delimiter)
            .unwrap()
            .collect()
    }

    #[test]
    fn quotes_multiline_fields_and_crlf() {
        let text = b"text,label,src\r\n\"Hello, \"\"world\"\"\",pos,a\r\n\"two\r\nlines\",neg,b\r\nplain,,c\r\n";
        let got: Vec<Example> = read(text, FieldMap::new("text").with_label("label"), b',')
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            Example::new("mem.csv:2", "Hello, \"world\"")
                .with_label("pos")
                .with_meta("src", "a")
        );
        assert_eq!(got[1].input, "two\r\nlines");
        assert_eq!(got[1].id, "mem.csv:3");
        assert_eq!(
            got[2].id, "mem.csv:5",
            "the multiline record spans lines 3-4"
        );
        assert_eq!(got[2].label, None, "an empty label cell is no label");
    }

    #[test]
    fn tsv_and_bom() {
        let text = "\u{feff}id\tq\ta\n7\twho?\tme\n".as_bytes();
        let got = read(
            text,
            FieldMap::new("q").with_target("a").with_id("id"),
            b'\t',
        );
        assert_eq!(
            got[0].as_ref().unwrap(),
            &Example::new("7", "who?").with_target("me")
        );
    }

    #[test]
    fn unknown_columns_are_named() {
        let err = CsvReader::from_reader(
            &b"text,label\nx,y\n"[..],
            "m.csv",
            FieldMap::new("text").with_label("lable"),
            b',',
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.csv: no column `lable` (the file has: text, label)"
        );
    }

    #[test]
    fn bad_records_name_their_line_and_reading_goes_on() {
        let text = b"text,label\nok,a\ntoo,many,fields\nbad \xff utf8,b\nfine,c\n";
        let got = read(text, FieldMap::new("text").with_label("label"), b',');
        assert_eq!(got.len(), 4);
        assert!(got[0].is_ok());
        let e1 = got[1].as_ref().unwrap_err();
        assert!(matches!(e1, Error::Csv { line: 3, .. }), "{e1}");
        assert!(
            e1.to_string().starts_with("mem.csv:3: malformed CSV"),
            "{e1}"
        );
        assert!(matches!(
            got[2].as_ref().unwrap_err(),
            Error::InvalidUtf8 {
                line: 4,
                valid_up_to: 4,
                ..
            }
        ));
        assert_eq!(got[3].as_ref().unwrap().input, "fine");
    }

    #[test]
    fn empty_and_header_only_files_are_empty_datasets() {
        for text in [&b""[..], b"text,label\n", b"text\r\n"] {
            let got = read(text, FieldMap::new("text"), b',');
            assert_eq!(got.len(), 1, "{text:?}");
            assert!(matches!(&got[0], Err(Error::EmptyDataset { .. })));
        }
    }
}
