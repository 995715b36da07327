//! Deduplication stages: [`ExactDedup`] (hash of the normalised input) and [`NearDedup`]
//! (MinHash-LSH clusters). Both keep the first example of a group in input order and report
//! the groups, which the label audit reuses.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use crate::curate::{Dropped, Stage, StageOutput};
use crate::error::Result;
use crate::example::Example;
use crate::stages::minhash::{MinHashConfig, MinHasher};

/// Examples that a dedup stage found to be the same: the first is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicateGroup {
    /// The stage that found it (`exact_dedup` or `near_dedup`).
    pub stage: String,
    /// Member ids, the kept one first.
    pub ids: Vec<String>,
    /// Member labels, in the same order.
    pub labels: Vec<Option<String>>,
}

fn split_groups(
    stage: &str,
    reason: &str,
    examples: Vec<Example>,
    groups: &[Vec<usize>],
) -> (StageOutput, Vec<DuplicateGroup>) {
    let mut keeper: Vec<Option<usize>> = vec![None; examples.len()];
    let mut found = Vec::with_capacity(groups.len());
    for g in groups {
        for &i in &g[1..] {
            keeper[i] = Some(g[0]);
        }
        found.push(DuplicateGroup {
            stage: stage.to_string(),
            ids: g.iter().map(|&i| examples[i].id.clone()).collect(),
            labels: g.iter().map(|&i| examples[i].label.clone()).collect(),
        });
    }
    let ids: Vec<String> = keeper
        .iter()
        .map(|k| k.map(|k| examples[k].id.clone()).unwrap_or_default())
        .collect();
    let mut out = StageOutput::default();
    for (i, example) in examples.into_iter().enumerate() {
        match keeper[i] {
            None => out.kept.push(example),
            Some(_) => out.dropped.push(
                Dropped::new(example.id, stage, reason)
                    .with_detail(format!("duplicate of {}", ids[i])),
            ),
        }
    }
    (out, found)
}

/// Drops examples whose input is byte-identical (128-bit xxh3) to an earlier one; run it after
/// [`Normalize`](super::Normalize) so "identical" means "identical once normalised".
/// Reason `exact_duplicate`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExactDedup;

impl ExactDedup {
    /// Drops duplicates and returns the groups found.
    pub fn dedup(&self, examples: Vec<Example>) -> (StageOutput, Vec<DuplicateGroup>) {
        let hashes: Vec<u128> = examples
            .par_iter()
            .map(|e| xxh3_128(e.input.as_bytes()))
            .collect();
        let mut first: HashMap<u128, usize> = HashMap::with_capacity(hashes.len());
        let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, h) in hashes.iter().enumerate() {
            match first.get(h) {
                Some(&f) => groups.entry(f).or_insert_with(|| vec![f]).push(i),
                None => {
                    first.insert(*h, i);
                }
            }
        }
        let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
        groups.sort_unstable_by_key(|g| g[0]);
        split_groups(self.name(), "exact_duplicate", examples, &groups)
    }
}

impl Stage for ExactDedup {
    fn name(&self) -> &str {
        "exact_dedup"
    }

    fn apply(&self, examples: Vec<Example>) -> Result<StageOutput> {
        let (mut out, groups) = self.dedup(examples);
        out.duplicates = groups;
        Ok(out)
    }
}

/// Drops near-duplicates found by MinHash-LSH ([`MinHasher::clusters`]), keeping the first of
/// each cluster in input order. Reason `near_duplicate`. Inputs with fewer words than
/// `n_grams` are never near-duplicates (as in datatrove); exact dedup covers them.
#[derive(Debug, Clone)]
pub struct NearDedup {
    hasher: MinHasher,
}

impl NearDedup {
    /// The stage with `config`.
    pub fn new(config: MinHashConfig) -> Self {
        NearDedup {
            hasher: MinHasher::new(config),
        }
    }

    /// Drops near-duplicates and returns the clusters found.
    pub fn dedup(&self, examples: Vec<Example>) -> (StageOutput, Vec<DuplicateGroup>) {
        let texts: Vec<&str> = examples.iter().map(|e| e.input.as_str()).collect();
        let groups = self.hasher.clusters(&texts);
        split_groups(self.name(), "near_duplicate", examples, &groups)
    }
}

impl Default for NearDedup {
    fn default() -> Self {
        NearDedup::new(MinHashConfig::default())
    }
}

impl Stage for NearDedup {
    fn name(&self) -> &str {
        "near_dedup"
    }

    fn apply(&self, examples: Vec<Example>) -> Result<StageOutput> {
        let (mut out, groups) = self.dedup(examples);
        out.duplicates = groups;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_dedup_keeps_the_first_and_names_it() {
        let rows = vec![
            Example::new("a", "same").with_label("x"),
            Example::new("b", "other"),
            Example::new("c", "same").with_label("y"),
        ];
        let (out, groups) = ExactDedup.dedup(rows);
        assert_eq!(
            out.kept.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(out.dropped[0].detail, "duplicate of a");
        assert_eq!(groups[0].ids, ["a", "c"]);
        assert_eq!(groups[0].labels, [Some("x".into()), Some("y".into())]);
    }
}
