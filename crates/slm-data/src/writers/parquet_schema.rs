//! [`ParquetSchema`]: the columns [`ParquetWriter`](super::ParquetWriter) writes, typed from
//! the examples (schema inference), checked against the examples of another split, and each
//! column's values written out.

use std::path::Path;
use std::sync::Arc;

use parquet::basic::{LogicalType, Repetition, Type as PhysicalType};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::writer::SerializedRowGroupWriter;
use parquet::schema::types::Type;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::example::Example;

/// The columns [`ParquetWriter`](super::ParquetWriter) writes, typed from a set of examples (say, every split of a
/// dataset), to give several files one schema.
#[derive(Debug, Clone)]
pub struct ParquetSchema(Vec<Column>);

impl ParquetSchema {
    /// The schema `examples` call for (see [`ParquetWriter`](super::ParquetWriter) for the typing rules).
    pub fn of<'a>(examples: impl IntoIterator<Item = &'a Example>) -> Self {
        ParquetSchema(columns(examples))
    }

    /// Every example's metadata has a column, and a value that column's kind holds.
    pub(super) fn check(&self, examples: &[Example], path: &Path) -> Result<()> {
        check_schema(&self.0, examples, path)
    }

    /// The Parquet schema of these columns.
    pub(super) fn to_parquet(&self) -> parquet::errors::Result<Arc<Type>> {
        schema(&self.0)
    }

    /// Writes every column of `examples` into `group`, in schema order.
    pub(super) fn write_columns<W: std::io::Write + Send>(
        &self,
        examples: &[Example],
        group: &mut SerializedRowGroupWriter<'_, W>,
    ) -> parquet::errors::Result<()> {
        for column in &self.0 {
            let mut out = group
                .next_column()?
                .expect("one column writer per schema column");
            column.write(examples, &mut out)?;
            out.close()?;
        }
        Ok(())
    }
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
