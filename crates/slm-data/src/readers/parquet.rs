//! Apache Parquet, the format Hugging Face datasets are published in: [`ParquetReader`]
//! streams rows through parquet's record API, and [`ParquetWriter`] writes one file per
//! split, atomically, that `datasets.load_dataset("parquet", ..)` and pandas read as is.
//!
//! The crate is built without arrow (compile time) and with the codecs data tools write:
//! snappy (pandas, pyarrow and Hugging Face's default, and what the writer uses), zstd (polars'
//! default), gzip and LZ4; Brotli and LZO are an [`Error::Parquet`] naming the codec.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, Type as PhysicalType};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::reader::RowIter;
use parquet::schema::types::Type;
use serde_json::Value;
use tempfile::NamedTempFile;

use super::{Reader, check_columns, io_error};
use crate::error::{Error, Result};
use crate::example::Example;
use crate::fields::FieldMap;
use crate::reader::example_from_object;

fn parquet_error(path: &Path) -> impl FnOnce(ParquetError) -> Error + '_ {
    move |source| Error::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

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
    columns: Option<Vec<Column>>,
}

/// The columns [`ParquetWriter`] writes, typed from a set of examples (say, every split of a
/// dataset), to give several files one schema.
#[derive(Debug, Clone)]
pub struct ParquetSchema(Vec<Column>);

impl ParquetSchema {
    /// The schema `examples` call for (see [`ParquetWriter`] for the typing rules).
    pub fn of<'a>(examples: impl IntoIterator<Item = &'a Example>) -> Self {
        ParquetSchema(columns(examples))
    }
}

impl ParquetWriter {
    /// Starts writing `path` (nothing touches the disk until [`finish`](Self::finish)).
    pub fn create(path: impl AsRef<Path>) -> Self {
        ParquetWriter {
            path: path.as_ref().to_path_buf(),
            examples: Vec::new(),
            columns: None,
        }
    }

    /// Writes `schema` instead of typing the columns from the examples this file gets;
    /// [`finish`](Self::finish) then refuses an example whose metadata does not fit it.
    pub fn with_schema(mut self, schema: ParquetSchema) -> Self {
        self.columns = Some(schema.0);
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
            columns: preset,
        } = self;
        if examples.is_empty() {
            return Err(Error::EmptyDataset { path });
        }
        let columns = match preset {
            Some(columns) => {
                check_schema(&columns, &examples, &path)?;
                columns
            }
            None => columns(&examples),
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp = NamedTempFile::new_in(&dir).map_err(io_error(&dir))?;
        let schema = schema(&columns).map_err(parquet_error(&path))?;
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build(),
        );
        let mut writer = SerializedFileWriter::new(tmp.as_file_mut(), schema, props)
            .map_err(parquet_error(&path))?;
        let mut group = writer.next_row_group().map_err(parquet_error(&path))?;
        for column in &columns {
            let mut out = group
                .next_column()
                .map_err(parquet_error(&path))?
                .expect("one column writer per schema column");
            column
                .write(&examples, &mut out)
                .map_err(parquet_error(&path))?;
            out.close().map_err(parquet_error(&path))?;
        }
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

/// Where a column's values come from.
#[derive(Debug, Clone)]
enum Source {
    Id,
    Input,
    Target,
    Label,
    Meta(String),
}

/// How a column is stored.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    Int,
    Double,
    Str,
    Json,
}

#[derive(Debug, Clone)]
struct Column {
    source: Source,
    kind: Kind,
    optional: bool,
}

impl Kind {
    /// The kind a value needs; `None` for null (fits every column).
    fn of(value: &Value) -> Option<Kind> {
        Some(match value {
            Value::Null => return None,
            Value::Bool(_) => Kind::Bool,
            Value::Number(n) if n.is_i64() => Kind::Int,
            Value::Number(_) => Kind::Double,
            Value::String(_) => Kind::Str,
            Value::Array(_) | Value::Object(_) => Kind::Json,
        })
    }

    /// The narrowest kind that holds both: equal kinds stay, integers and doubles make
    /// doubles, anything else becomes JSON text.
    fn merge(self, other: Kind) -> Kind {
        match (self, other) {
            (a, b) if a == b => a,
            (Kind::Int | Kind::Double, Kind::Int | Kind::Double) => Kind::Double,
            _ => Kind::Json,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Bool => "a boolean",
            Kind::Int => "an integer",
            Kind::Double => "a number",
            Kind::Str => "a string",
            Kind::Json => "JSON",
        }
    }
}

fn columns<'a>(examples: impl IntoIterator<Item = &'a Example>) -> Vec<Column> {
    let fixed = [
        (Source::Id, false),
        (Source::Input, false),
        (Source::Target, true),
        (Source::Label, true),
    ];
    let mut columns: Vec<Column> = fixed
        .into_iter()
        .map(|(source, optional)| Column {
            source,
            kind: Kind::Str,
            optional,
        })
        .collect();
    // Meta keys in order of first appearance, each with the kind of its non-null values.
    let mut kinds: Vec<(String, Option<Kind>)> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for example in examples {
        for (key, value) in &example.meta {
            let i = *index.entry(key.as_str()).or_insert_with(|| {
                kinds.push((key.clone(), None));
                kinds.len() - 1
            });
            if let Some(this) = Kind::of(value) {
                let kind = &mut kinds[i].1;
                *kind = Some(kind.map_or(this, |k| k.merge(this)));
            }
        }
    }
    columns.extend(kinds.into_iter().map(|(key, kind)| Column {
        source: Source::Meta(key),
        kind: kind.unwrap_or(Kind::Str),
        optional: true,
    }));
    columns
}

/// Every example's metadata has a column, and a value that column's kind holds.
fn check_schema(columns: &[Column], examples: &[Example], path: &Path) -> Result<()> {
    let kinds: std::collections::HashMap<&str, Kind> = columns
        .iter()
        .filter_map(|c| match &c.source {
            Source::Meta(key) => Some((key.as_str(), c.kind)),
            _ => None,
        })
        .collect();
    // `write` has already refused reserved metadata keys.
    for example in examples {
        for (key, value) in &example.meta {
            let fits = match (kinds.get(key.as_str()), Kind::of(value)) {
                (None, _) => Err("no column".to_string()),
                (Some(_), None) => Ok(()),
                (Some(&column), Some(this)) if column.merge(this) == column => Ok(()),
                (Some(&column), Some(this)) => Err(format!(
                    "{} where the column holds {}",
                    this.describe(),
                    column.describe()
                )),
            };
            if let Err(problem) = fits {
                return Err(Error::SchemaMismatch {
                    path: path.to_path_buf(),
                    id: example.id.clone(),
                    key: key.clone(),
                    problem,
                });
            }
        }
    }
    Ok(())
}

fn schema(columns: &[Column]) -> parquet::errors::Result<Arc<Type>> {
    let mut fields = Vec::with_capacity(columns.len());
    for column in columns {
        let name = match &column.source {
            Source::Id => "id",
            Source::Input => "input",
            Source::Target => "target",
            Source::Label => "label",
            Source::Meta(key) => key.as_str(),
        };
        let (physical, logical) = match column.kind {
            Kind::Bool => (PhysicalType::BOOLEAN, None),
            Kind::Int => (PhysicalType::INT64, None),
            Kind::Double => (PhysicalType::DOUBLE, None),
            Kind::Str | Kind::Json => (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
        };
        let repetition = if column.optional {
            Repetition::OPTIONAL
        } else {
            Repetition::REQUIRED
        };
        fields.push(Arc::new(
            Type::primitive_type_builder(name, physical)
                .with_repetition(repetition)
                .with_logical_type(logical)
                .build()?,
        ));
    }
    Ok(Arc::new(
        Type::group_type_builder("schema")
            .with_fields(fields)
            .build()?,
    ))
}

impl Column {
    fn value<'a>(&self, example: &'a Example) -> Option<&'a Value> {
        match &self.source {
            Source::Meta(key) => example.meta.get(key).filter(|v| !v.is_null()),
            _ => None,
        }
    }

    fn text(&self, example: &Example) -> Option<String> {
        match &self.source {
            Source::Id => Some(example.id.clone()),
            Source::Input => Some(example.input.clone()),
            Source::Target => example.target.clone(),
            Source::Label => example.label.clone(),
            Source::Meta(_) => self.value(example).map(|v| match v {
                Value::String(s) if self.kind == Kind::Str => s.clone(),
                other => other.to_string(),
            }),
        }
    }

    fn write(
        &self,
        examples: &[Example],
        out: &mut parquet::file::writer::SerializedColumnWriter<'_>,
    ) -> parquet::errors::Result<()> {
        let mut defs: Vec<i16> = Vec::with_capacity(examples.len());
        macro_rules! write_values {
            ($ty:ty, $get:expr) => {{
                let mut values = Vec::with_capacity(examples.len());
                for example in examples {
                    match $get(example) {
                        Some(v) => {
                            values.push(v);
                            defs.push(1);
                        }
                        None => defs.push(0),
                    }
                }
                let defs = self.optional.then_some(defs.as_slice());
                out.typed::<$ty>().write_batch(&values, defs, None)?;
            }};
        }
        match self.kind {
            Kind::Str | Kind::Json => write_values!(ByteArrayType, |e: &Example| self
                .text(e)
                .map(|s| ByteArray::from(s.into_bytes()))),
            Kind::Bool => write_values!(BoolType, |e: &Example| self
                .value(e)
                .and_then(Value::as_bool)),
            Kind::Int => write_values!(Int64Type, |e: &Example| self
                .value(e)
                .and_then(Value::as_i64)),
            Kind::Double => write_values!(DoubleType, |e: &Example| self
                .value(e)
                .and_then(Value::as_f64)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn unknown_columns_empty_writes_and_non_parquet_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        write_parquet(&path, &examples()).unwrap();
        let err = ParquetReader::open(&path, FieldMap::new("text")).unwrap_err();
        assert!(
            matches!(&err, Error::UnknownColumn { column, available, .. }
                if column == "text" && available[..4] == ["id", "input", "target", "label"]),
            "{err}"
        );
        let empty = dir.path().join("empty.parquet");
        assert!(matches!(
            write_parquet(&empty, &[]),
            Err(Error::EmptyDataset { .. })
        ));
        assert!(!empty.exists());
        let bogus = dir.path().join("bogus.parquet");
        std::fs::write(&bogus, "not parquet at all").unwrap();
        assert!(matches!(
            ParquetReader::open(&bogus, FieldMap::default()),
            Err(Error::Parquet { .. })
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
