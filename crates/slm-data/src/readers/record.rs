//! Records to [`Example`]s: how one record (a JSON object, or a row made into one) maps onto
//! an [`Example`] through a [`FieldMap`], shared by every reader. Errors name the file and the
//! 1-based line (or row, or record number); ids default to `<file name>:<line>`.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result, kind};
use crate::example::Example;
use crate::fields::FieldMap;

/// [`example_from_object`] for a JSON value that should be an object; any other value is
/// [`Error::NotAnObject`] at `line` (or record number).
pub(crate) fn example_from_value(
    value: Value,
    fields: &FieldMap,
    path: &Path,
    line: usize,
) -> Result<Example> {
    match value {
        Value::Object(obj) => example_from_object(obj, fields, path, line),
        other => Err(Error::NotAnObject {
            path: path.to_path_buf(),
            line,
            found: kind(&other),
        }),
    }
}

/// Maps one record (a JSON object) onto an [`Example`] through `fields`; errors name `path`
/// and the 1-based `line` (or record number). Ids default to `<file name>:<line>`.
pub(crate) fn example_from_object(
    mut obj: Map<String, Value>,
    fields: &FieldMap,
    path: &Path,
    line: usize,
) -> Result<Example> {
    let field = Field { path, line };
    let input = field.string(&mut obj, &fields.input)?;
    let target = match &fields.target {
        Some(name) => field.optional_string(&mut obj, name)?,
        None => None,
    };
    let label = match &fields.label {
        Some(name) => field.label(&mut obj, name)?,
        None => None,
    };
    let id = match &fields.id {
        Some(name) => field.id(&mut obj, name)?,
        None => None,
    };
    let id = id.unwrap_or_else(|| {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        format!("{name}:{line}")
    });
    Ok(Example {
        id,
        input,
        target,
        label,
        meta: obj.into_iter().collect(),
    })
}

/// Takes mapped fields out of one record, with the errors naming its file and line.
struct Field<'a> {
    path: &'a Path,
    line: usize,
}

impl Field<'_> {
    fn take(&self, obj: &mut Map<String, Value>, name: &str) -> Result<Value> {
        obj.remove(name).ok_or_else(|| Error::MissingField {
            path: self.path.to_path_buf(),
            line: self.line,
            field: name.to_string(),
        })
    }

    fn wrong(&self, name: &str, expected: &'static str, found: &Value) -> Error {
        Error::WrongType {
            path: self.path.to_path_buf(),
            line: self.line,
            field: name.to_string(),
            expected,
            found: kind(found),
        }
    }

    fn string(&self, obj: &mut Map<String, Value>, name: &str) -> Result<String> {
        match self.take(obj, name)? {
            Value::String(s) => Ok(s),
            other => Err(self.wrong(name, "a string", &other)),
        }
    }

    fn optional_string(&self, obj: &mut Map<String, Value>, name: &str) -> Result<Option<String>> {
        match self.take(obj, name)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(self.wrong(name, "a string or null", &other)),
        }
    }

    fn label(&self, obj: &mut Map<String, Value>, name: &str) -> Result<Option<String>> {
        match self.take(obj, name)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            Value::Number(n) => Ok(Some(n.to_string())),
            Value::Bool(b) => Ok(Some(b.to_string())),
            other => Err(self.wrong(name, "a string, number, boolean or null", &other)),
        }
    }

    fn id(&self, obj: &mut Map<String, Value>, name: &str) -> Result<Option<String>> {
        match self.take(obj, name)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
            other => Err(self.wrong(name, "a string, integer or null", &other)),
        }
    }
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
