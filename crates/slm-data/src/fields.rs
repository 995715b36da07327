//! [`FieldMap`]: which fields of a source record play which role.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which JSON fields hold an [`Example`](crate::Example)'s input, target, label and id.
///
/// `input` is always read. `target`, `label` and `id` are read when named; a named field must
/// be present in every record (a `null` value means "none"), so a typo in a column name fails
/// on the first line instead of yielding a dataset without labels. Unnamed and unmapped fields
/// go to [`Example::meta`](crate::Example::meta). Without an `id` field, ids are
/// `<file name>:<line>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMap {
    /// The field holding the input text (must be a string).
    pub input: String,
    /// The field holding the target text (a string or null).
    pub target: Option<String>,
    /// The field holding the label (a string, number or boolean, kept as text; or null).
    pub label: Option<String>,
    /// The field holding the id (a string or integer).
    pub id: Option<String>,
}

impl Default for FieldMap {
    /// Reads `input` only.
    fn default() -> Self {
        FieldMap::new("input")
    }
}

impl FieldMap {
    /// Reads the input from `input`, nothing else.
    pub fn new(input: impl Into<String>) -> Self {
        FieldMap {
            input: input.into(),
            target: None,
            label: None,
            id: None,
        }
    }

    /// The layout [`JsonlWriter`](crate::JsonlWriter) writes: `id`, `input`, `target`, `label`.
    pub fn canonical() -> Self {
        FieldMap::new("input")
            .with_target("target")
            .with_label("label")
            .with_id("id")
    }

    /// Also reads the target from `field`.
    pub fn with_target(mut self, field: impl Into<String>) -> Self {
        self.target = Some(field.into());
        self
    }

    /// Also reads the label from `field`.
    pub fn with_label(mut self, field: impl Into<String>) -> Self {
        self.label = Some(field.into());
        self
    }

    /// Also reads the id from `field`.
    pub fn with_id(mut self, field: impl Into<String>) -> Self {
        self.id = Some(field.into());
        self
    }

    /// [`Error::DuplicateField`] when one field is named for two roles.
    pub fn validate(&self) -> Result<()> {
        let names: Vec<&String> = [
            Some(&self.input),
            self.target.as_ref(),
            self.label.as_ref(),
            self.id.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (i, a) in names.iter().enumerate() {
            if names[i + 1..].contains(a) {
                return Err(Error::DuplicateField {
                    field: a.to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_and_validation() {
        let f = FieldMap::new("text").with_label("category");
        assert_eq!(
            (f.input.as_str(), f.label.as_deref(), f.target.as_deref()),
            ("text", Some("category"), None)
        );
        assert!(f.validate().is_ok());
        assert!(FieldMap::canonical().validate().is_ok());
        let dup = FieldMap::new("text").with_target("text");
        assert!(matches!(dup.validate(), Err(Error::DuplicateField { field }) if field == "text"));
    }
}
