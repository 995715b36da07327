//! [`LabelFilter`]: rename labels, keep only some, drop unlabelled examples.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::curate::{Stage, StageOutput, Verdict, filter_map_examples};
use crate::error::Result;
use crate::example::Example;

/// Settings of [`LabelFilter`]; renaming happens first, then the checks.
///
/// ```toml
/// [[stages.custom]]
/// name = "label_filter"
/// after = "read"
/// params = { rename = { "hard-ham" = "ham", "easy-ham" = "ham" }, keep = ["spam", "ham"], drop_unlabelled = true }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelFilterConfig {
    /// Label renames (`old = "new"`), applied before `keep`.
    pub rename: BTreeMap<String, String>,
    /// When set, only these labels stay (reason `label_not_kept`); unlabelled examples stay
    /// unless `drop_unlabelled`.
    pub keep: Option<BTreeSet<String>>,
    /// Drop examples without a label (reason `no_label`).
    pub drop_unlabelled: bool,
}

impl LabelFilterConfig {
    /// The stage.
    pub fn init(self) -> LabelFilter {
        LabelFilter { config: self }
    }
}

/// Renames, keeps and drops by label; a renamed example counts as modified.
#[derive(Debug, Clone, Default)]
pub struct LabelFilter {
    /// Its settings.
    pub config: LabelFilterConfig,
}

impl Stage for LabelFilter {
    fn name(&self) -> &str {
        "label_filter"
    }

    fn apply(&self, examples: Vec<Example>) -> Result<StageOutput> {
        let c = &self.config;
        Ok(filter_map_examples(self.name(), examples, |e| {
            let label = e
                .label
                .as_ref()
                .map(|l| c.rename.get(l).unwrap_or(l).clone());
            match &label {
                None if c.drop_unlabelled => return Verdict::drop("no_label"),
                Some(l) if c.keep.as_ref().is_some_and(|k| !k.contains(l)) => {
                    return Verdict::Drop {
                        reason: "label_not_kept".to_string(),
                        detail: l.clone(),
                    };
                }
                _ => {}
            }
            if label == e.label {
                Verdict::Keep
            } else {
                let mut renamed = e.clone();
                renamed.label = label;
                Verdict::Modified(renamed)
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_then_keeps_and_drops() {
        let rows = vec![
            Example::new("1", "a").with_label("hard-ham"),
            Example::new("2", "b").with_label("spam"),
            Example::new("3", "c").with_label("phishing"),
            Example::new("4", "d"),
        ];
        let config = LabelFilterConfig {
            rename: [("hard-ham".to_string(), "ham".to_string())].into(),
            keep: Some(["ham", "spam"].map(String::from).into()),
            drop_unlabelled: true,
        };
        let out = config.init().apply(rows).unwrap();
        let kept: Vec<(&str, Option<&str>)> = out
            .kept
            .iter()
            .map(|e| (e.id.as_str(), e.label.as_deref()))
            .collect();
        assert_eq!(kept, [("1", Some("ham")), ("2", Some("spam"))]);
        assert_eq!(out.modified, 1);
        let reasons: Vec<(&str, &str)> = out
            .dropped
            .iter()
            .map(|d| (d.reason.as_str(), d.detail.as_str()))
            .collect();
        assert_eq!(reasons, [("label_not_kept", "phishing"), ("no_label", "")]);
    }
}
