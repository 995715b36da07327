//! [`LabelAudit`]: class balance and conflicting labels among (near-)duplicates.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::example::Example;
use crate::stages::DuplicateGroup;

/// A duplicate group whose members carry different labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelConflict {
    /// The stage that grouped them (`exact_dedup` or `near_dedup`).
    pub stage: String,
    /// Member ids, the kept one first.
    pub ids: Vec<String>,
    /// The distinct labels (`null` for none).
    pub labels: Vec<Option<String>>,
}

/// Label statistics of a dataset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelAudit {
    /// Examples per label (`"<none>"` for unlabelled ones).
    pub counts: BTreeMap<String, usize>,
    /// The largest class's count over the smallest's (1.0 when balanced or with one class).
    pub imbalance_ratio: f64,
    /// Duplicate groups with more than one label: the kept example's label may be wrong.
    pub conflicts: Vec<LabelConflict>,
}

/// The name an absent label gets in counts.
pub const NO_LABEL: &str = "<none>";

/// Examples per label, with [`NO_LABEL`] for unlabelled ones.
pub fn label_counts<'a>(
    examples: impl IntoIterator<Item = &'a Example>,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in examples {
        *counts
            .entry(e.label.clone().unwrap_or_else(|| NO_LABEL.to_string()))
            .or_insert(0) += 1;
    }
    counts
}

impl LabelAudit {
    /// Audits `examples` (class balance) and `groups` (conflicting labels).
    pub fn new(examples: &[Example], groups: &[DuplicateGroup]) -> Self {
        let counts = label_counts(examples);
        let (max, min) = (
            counts.values().copied().max().unwrap_or(0),
            counts.values().copied().min().unwrap_or(0),
        );
        let imbalance_ratio = if min == 0 {
            1.0
        } else {
            max as f64 / min as f64
        };
        let conflicts = groups
            .iter()
            .filter_map(|g| {
                let labels: BTreeSet<&Option<String>> = g.labels.iter().collect();
                (labels.len() > 1).then(|| LabelConflict {
                    stage: g.stage.clone(),
                    ids: g.ids.clone(),
                    labels: labels.into_iter().cloned().collect(),
                })
            })
            .collect();
        LabelAudit {
            counts,
            imbalance_ratio,
            conflicts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_balance_and_conflicts() {
        let rows = vec![
            Example::new("1", "a").with_label("spam"),
            Example::new("2", "b").with_label("spam"),
            Example::new("3", "c").with_label("ham"),
            Example::new("4", "d"),
        ];
        let groups = vec![
            DuplicateGroup {
                stage: "near_dedup".into(),
                ids: vec!["1".into(), "3".into()],
                labels: vec![Some("spam".into()), Some("ham".into())],
            },
            DuplicateGroup {
                stage: "exact_dedup".into(),
                ids: vec!["1".into(), "2".into()],
                labels: vec![Some("spam".into()), Some("spam".into())],
            },
        ];
        let audit = LabelAudit::new(&rows, &groups);
        assert_eq!(audit.counts["spam"], 2);
        assert_eq!(audit.counts[NO_LABEL], 1);
        assert_eq!(audit.imbalance_ratio, 2.0);
        assert_eq!(audit.conflicts.len(), 1);
        assert_eq!(audit.conflicts[0].ids, ["1", "3"]);
    }
}
