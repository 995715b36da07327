//! [`Example`]: one record of a dataset.

use serde::{Deserialize, Serialize};

/// The keys an [`Example`] serializes itself, which its metadata may not use.
pub(crate) const RESERVED_KEYS: [&str; 4] = ["id", "input", "target", "label"];

/// One dataset record: the model's input, what it should produce or which class it is, and
/// everything else the source carried.
///
/// Serialized flat: `{"id": .., "input": .., "target": .., "label": .., <meta keys>..}` with
/// `null` for an absent target or label, which is what [`JsonlWriter`](crate::JsonlWriter)
/// writes and [`FieldMap::canonical`](crate::FieldMap::canonical) reads back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// A stable identifier (from the source, or `<file name>:<line>`).
    pub id: String,
    /// The text the model sees.
    pub input: String,
    /// The text the model should produce (generation tasks).
    pub target: Option<String>,
    /// The class (classification tasks).
    pub label: Option<String>,
    /// Every other field of the source record, untouched, in key order (whatever order the
    /// source had, and whether or not serde_json preserves insertion order).
    #[serde(flatten)]
    pub meta: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Example {
    /// The first of [`RESERVED_KEYS`] the metadata uses, if any.
    pub(crate) fn reserved_meta_key(&self) -> Option<&'static str> {
        RESERVED_KEYS
            .into_iter()
            .find(|k| self.meta.contains_key(*k))
    }

    /// Fails with [`Error::ReservedMetaKey`](crate::Error::ReservedMetaKey) when the metadata
    /// uses one of [`RESERVED_KEYS`]: a writer to `path` would hold that key twice.
    pub(crate) fn check_reserved_meta(&self, path: &std::path::Path) -> crate::Result<()> {
        match self.reserved_meta_key() {
            Some(key) => Err(crate::Error::ReservedMetaKey {
                path: path.to_path_buf(),
                id: self.id.clone(),
                key: key.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// An example with only an id and an input.
    pub fn new(id: impl Into<String>, input: impl Into<String>) -> Self {
        Example {
            id: id.into(),
            input: input.into(),
            target: None,
            label: None,
            meta: Default::default(),
        }
    }

    /// With a target text.
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// With a label.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// With one more metadata entry.
    pub fn with_meta(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_flat_with_nulls() {
        let ex = Example::new("a1", "2+2?")
            .with_label("math")
            .with_meta("source", "quiz");
        let json = serde_json::to_string(&ex).unwrap();
        assert_eq!(
            json,
            r#"{"id":"a1","input":"2+2?","target":null,"label":"math","source":"quiz"}"#
        );
        assert_eq!(serde_json::from_str::<Example>(&json).unwrap(), ex);
    }
}
