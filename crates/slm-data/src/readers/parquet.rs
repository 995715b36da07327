//! [`ParquetReader`]: Apache Parquet, the format Hugging Face datasets are published in,
//! streamed row by row through parquet's record API. Parquet files are written by
//! [`ParquetWriter`](crate::writers::ParquetWriter).
//!
//! The crate is built without arrow (compile time) and with the codecs data tools write:
//! snappy (pandas, pyarrow and Hugging Face's default, and what the writer uses), zstd (polars'
//! default), gzip and LZ4; Brotli and LZO are an [`Error::Parquet`] naming the codec.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use serde_json::Value;

use super::Reader;
use super::record::{check_columns, example_from_object};
use crate::error::{Error, Result, io_error, parquet_error};
use crate::example::Example;
use crate::fields::FieldMap;

/// Reads a Parquet file lazily, yielding one `Result<Example>` per row.
///
/// - The [`FieldMap`] names top-level columns; one the schema lacks is
///   [`Error::UnknownColumn`] when the reader is built.
/// - String columns are text; integer and boolean labels are kept as text (`0`, `true`);
///   nulls in target, label or id mean "none". Other columns go to [`Example::meta`] as JSON
///   (lists as arrays, structs as objects, binary as base64).
/// - A label column that the file's Hugging Face metadata (`huggingface` key, as `datasets`
///   writes it) declares a `ClassLabel` gives the class *name* (`spam`, not `1`); an id
///   outside the declared names is [`Error::WrongType`].
/// - Ids default to `<file name>:<row>`, 1-based; errors name the file and row.
/// - Snappy, gzip, LZ4 and zstd compression are read (pyarrow, pandas and `datasets` write
///   snappy, polars zstd); a file that needs another codec is an [`Error::Parquet`] naming it.
/// - A file without rows yields one [`Error::EmptyDataset`]; a decoding error ends the stream.
pub struct ParquetReader {
    path: PathBuf,
    fields: FieldMap,
    class_names: Option<Vec<String>>,
    rows: RowIter<'static>,
    row: usize,
    num_rows: usize,
    done: bool,
}

impl std::fmt::Debug for ParquetReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetReader")
            .field("path", &self.path)
            .field("fields", &self.fields)
            .field("row", &self.row)
            .field("num_rows", &self.num_rows)
            .finish_non_exhaustive()
    }
}

impl ParquetReader {
    /// Opens `path` and checks its schema against `fields`.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Parquet`] for a file that is not Parquet,
    /// [`Error::DuplicateField`], [`Error::UnknownColumn`].
    pub fn open(path: impl AsRef<Path>, fields: FieldMap) -> Result<Self> {
        let path = path.as_ref();
        fields.validate()?;
        let file = File::open(path).map_err(io_error(path))?;
        let reader = SerializedFileReader::new(file).map_err(parquet_error(path))?;
        let meta = reader.metadata().file_metadata();
        let columns: Vec<String> = meta
            .schema_descr()
            .root_schema()
            .get_fields()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        check_columns(path, &fields, &columns)?;
        let num_rows = usize::try_from(meta.num_rows()).unwrap_or(0);
        let class_names = fields.label.as_deref().and_then(|label| {
            let hf = meta
                .key_value_metadata()?
                .iter()
                .find(|kv| kv.key == "huggingface")?
                .value
                .as_deref()?;
            class_label_names(hf, label)
        });
        Ok(ParquetReader {
            path: path.to_path_buf(),
            fields,
            class_names,
            rows: reader.into_iter(),
            row: 0,
            num_rows,
            done: false,
        })
    }

    /// The number of rows the file's footer declares.
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }
}

impl Iterator for ParquetReader {
    type Item = Result<Example>;

    fn next(&mut self) -> Option<Result<Example>> {
        if self.done {
            return None;
        }
        if self.num_rows == 0 {
            self.done = true;
            return Some(Err(Error::EmptyDataset {
                path: self.path.clone(),
            }));
        }
        let row = match self.rows.next()? {
            Ok(row) => row,
            Err(e) => {
                self.done = true;
                return Some(Err(parquet_error(&self.path)(e)));
            }
        };
        self.row += 1;
        let Value::Object(mut obj) = row.to_json_value() else {
            unreachable!("Row::to_json_value always returns an object")
        };
        if let (Some(names), Some(label)) = (&self.class_names, &self.fields.label)
            && let Some(value) = obj.get_mut(label)
            && let Some(id) = value.as_i64()
        {
            match usize::try_from(id).ok().and_then(|i| names.get(i)) {
                Some(name) => *value = Value::String(name.clone()),
                None => {
                    return Some(Err(Error::WrongType {
                        path: self.path.clone(),
                        line: self.row,
                        field: label.clone(),
                        expected: "a class id the file's ClassLabel names",
                        found: "an id outside its names",
                    }));
                }
            }
        }
        Some(example_from_object(obj, &self.fields, &self.path, self.row))
    }
}

/// The class names of `column` when the Hugging Face `datasets` metadata JSON declares it a
/// `ClassLabel` (`{"info": {"features": {column: {"_type": "ClassLabel", "names": [..]}}}}`).
fn class_label_names(hf_metadata: &str, column: &str) -> Option<Vec<String>> {
    let meta: Value = serde_json::from_str(hf_metadata).ok()?;
    let feature = meta.get("info")?.get("features")?.get(column)?;
    if feature.get("_type")?.as_str()? != "ClassLabel" {
        return None;
    }
    feature
        .get("names")?
        .as_array()?
        .iter()
        .map(|n| n.as_str().map(str::to_string))
        .collect()
}

impl Reader for ParquetReader {
    fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writers::write_parquet;

    #[test]
    fn unknown_columns_and_non_parquet_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        let rows = [Example::new("a", "first").with_meta("n", 3)];
        write_parquet(&path, &rows).unwrap();
        let err = ParquetReader::open(&path, FieldMap::new("text")).unwrap_err();
        assert!(
            matches!(&err, Error::UnknownColumn { column, available, .. }
                if column == "text" && available[..4] == ["id", "input", "target", "label"]),
            "{err}"
        );
        let bogus = dir.path().join("bogus.parquet");
        std::fs::write(&bogus, "not parquet at all").unwrap();
        assert!(matches!(
            ParquetReader::open(&bogus, FieldMap::default()),
            Err(Error::Parquet { .. })
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
