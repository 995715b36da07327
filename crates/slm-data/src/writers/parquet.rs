//! [`ParquetWriter`]: writes one Parquet file per split, atomically, that
//! `datasets.load_dataset("parquet", ..)` and pandas read as is; its columns are a
//! [`ParquetSchema`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use tempfile::NamedTempFile;

use super::parquet_schema::ParquetSchema;
use crate::error::{Error, Result, io_error, parquet_error};
use crate::example::Example;

/// Writes [`Example`]s as one Parquet file (snappy), atomically: the file appears at `path`
/// only on [`finish`](Self::finish).
///
/// Columns: `id` and `input` (strings), `target` and `label` (nullable strings), then one
/// column per metadata key in order of first appearance, typed from its values: all
/// booleans -> `BOOLEAN`, all integers -> `INT64`, all numbers -> `DOUBLE`, all strings ->
/// `STRING`, anything else (arrays, objects, mixed) -> the value's JSON text. A key an example
/// lacks is null there. Examples are buffered until `finish` (a split is written in one row
/// group), so the writer needs memory for one split.
///
/// Splits of one dataset must share a schema (`datasets` refuses splits whose features
/// differ, and a column that is all null in one split would get another type there): give
/// every split's writer the same [`ParquetSchema`] ([`with_schema`](Self::with_schema)).
#[derive(Debug)]
pub struct ParquetWriter {
    path: PathBuf,
    examples: Vec<Example>,
    schema: Option<ParquetSchema>,
}

impl ParquetWriter {
    /// Starts writing `path` (nothing touches the disk until [`finish`](Self::finish)).
    pub fn create(path: impl AsRef<Path>) -> Self {
        ParquetWriter {
            path: path.as_ref().to_path_buf(),
            examples: Vec::new(),
            schema: None,
        }
    }

    /// Writes `schema` instead of typing the columns from the examples this file gets;
    /// [`finish`](Self::finish) then refuses an example whose metadata does not fit it.
    pub fn with_schema(mut self, schema: ParquetSchema) -> Self {
        self.schema = Some(schema);
        self
    }

    /// [`with_schema`](Self::with_schema) of [`ParquetSchema::of`] `examples`.
    pub fn with_schema_of<'a>(self, examples: impl IntoIterator<Item = &'a Example>) -> Self {
        self.with_schema(ParquetSchema::of(examples))
    }

    /// Appends one example.
    ///
    /// # Errors
    /// [`Error::ReservedMetaKey`] when its metadata uses `id`, `input`, `target` or `label`.
    pub fn write(&mut self, example: &Example) -> Result<()> {
        example.check_reserved_meta(&self.path)?;
        self.examples.push(example.clone());
        Ok(())
    }

    /// Examples written so far.
    pub fn written(&self) -> usize {
        self.examples.len()
    }

    /// Writes the file into a temporary file beside `path`, syncs it and moves it into
    /// place; returns the number of examples.
    ///
    /// # Errors
    /// [`Error::EmptyDataset`] when nothing was written (the target is left untouched),
    /// [`Error::Io`] and [`Error::Parquet`].
    pub fn finish(self) -> Result<usize> {
        let ParquetWriter {
            path,
            examples,
            schema: preset,
        } = self;
        if examples.is_empty() {
            return Err(Error::EmptyDataset { path });
        }
        let schema = match preset {
            Some(schema) => {
                schema.check(&examples, &path)?;
                schema
            }
            None => ParquetSchema::of(&examples),
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp = NamedTempFile::new_in(&dir).map_err(io_error(&dir))?;
        let parquet_schema = schema.to_parquet().map_err(parquet_error(&path))?;
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build(),
        );
        let mut writer = SerializedFileWriter::new(tmp.as_file_mut(), parquet_schema, props)
            .map_err(parquet_error(&path))?;
        let mut group = writer.next_row_group().map_err(parquet_error(&path))?;
        schema
            .write_columns(&examples, &mut group)
            .map_err(parquet_error(&path))?;
        group.close().map_err(parquet_error(&path))?;
        writer.close().map_err(parquet_error(&path))?;
        slm_core::io::persist_temp(tmp, &path)?;
        Ok(examples.len())
    }
}

/// Writes `examples` to `path` as Parquet, atomically; returns how many were written.
pub fn write_parquet<'a>(
    path: impl AsRef<Path>,
    examples: impl IntoIterator<Item = &'a Example>,
) -> Result<usize> {
    let mut writer = ParquetWriter::create(path);
    for example in examples {
        writer.write(example)?;
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::FieldMap;
    use crate::readers::ParquetReader;
    use serde_json::Value;

    fn examples() -> Vec<Example> {
        vec![
            Example::new("a", "first")
                .with_label("spam")
                .with_meta("n", 3)
                .with_meta("ok", true)
                .with_meta("score", 0.5)
                .with_meta("tags", serde_json::json!(["x", "y"])),
            Example::new("b", "second \"quoted\"\nline")
                .with_target("2nd")
                .with_meta("n", 4)
                .with_meta("subject", "hi")
                .with_meta("score", 1),
        ]
    }

    #[test]
    fn round_trips_through_the_canonical_field_map() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.parquet");
        assert_eq!(write_parquet(&path, &examples()).unwrap(), 2);
        let back: Vec<Example> = ParquetReader::open(&path, FieldMap::canonical())
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let mut want = examples();
        // Missing keys come back as nulls, scores as doubles, JSON values as their text.
        want[0].meta.insert("subject".into(), Value::Null);
        want[0].meta.insert("score".into(), serde_json::json!(0.5));
        want[0]
            .meta
            .insert("tags".into(), Value::from(r#"["x","y"]"#));
        want[1].meta.insert("ok".into(), Value::Null);
        want[1].meta.insert("score".into(), serde_json::json!(1.0));
        want[1].meta.insert("tags".into(), Value::Null);
        assert_eq!(back, want);
    }

    #[test]
    fn splits_share_a_schema_and_misfits_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let all = examples();
        // Alone, the second example would type `n` as an integer and lack `ok` and `tags`.
        let path = dir.path().join("val.parquet");
        let mut w = ParquetWriter::create(&path).with_schema_of(&all);
        w.write(&all[1]).unwrap();
        w.finish().unwrap();
        let back = ParquetReader::open(&path, FieldMap::canonical()).unwrap();
        let row = back.map(|r| r.unwrap()).next().unwrap();
        let keys: Vec<&str> = row.meta.keys().map(String::as_str).collect();
        assert_eq!(keys, ["n", "ok", "score", "subject", "tags"]);
        assert_eq!(row.meta["score"], serde_json::json!(1.0));

        let misfit = Example::new("c", "third").with_meta("ok", "yes");
        let mut w = ParquetWriter::create(&path).with_schema_of(&all);
        w.write(&misfit).unwrap();
        let err = w.finish().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: example `c` has metadata `ok` that does not fit the schema: a string where the column holds a boolean",
                path.display()
            )
        );
        let unknown = Example::new("d", "fourth").with_meta("extra", 1);
        let mut w = ParquetWriter::create(&path).with_schema_of(&all);
        w.write(&unknown).unwrap();
        assert!(matches!(w.finish(), Err(Error::SchemaMismatch { key, .. }) if key == "extra"));
        // The file from the good write is still there.
        assert_eq!(
            ParquetReader::open(&path, FieldMap::canonical())
                .unwrap()
                .num_rows(),
            1
        );
    }

    #[test]
    fn an_empty_write_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.parquet");
        assert!(matches!(
            write_parquet(&empty, &[]),
            Err(Error::EmptyDataset { .. })
        ));
        assert!(!empty.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
