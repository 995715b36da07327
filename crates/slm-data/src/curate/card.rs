//! [`DatasetCard`]: what a curation run did, as JSON and Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::curate::audit::{LabelAudit, label_counts};
use crate::curate::split::Splits;
use crate::curate::stage::StageReport;
use crate::example::Example;

/// Upper bounds (exclusive, in characters) of the length histogram's buckets; the last bucket
/// is open-ended.
pub const LENGTH_BUCKETS: [usize; 10] = [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];

/// One bucket of the input length histogram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LengthBucket {
    /// Smallest length in the bucket (characters).
    pub min_chars: usize,
    /// One past the largest length, or `None` for the open last bucket.
    pub max_chars: Option<usize>,
    /// Examples in the bucket.
    pub count: usize,
}

/// A split's size and label distribution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitCard {
    /// Examples in the split.
    pub count: usize,
    /// Examples per label.
    pub labels: BTreeMap<String, usize>,
}

/// The dataset card: counts per stage, splits, labels, lengths and the label audit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetCard {
    /// The dataset's name.
    pub name: String,
    /// Input files.
    pub inputs: Vec<String>,
    /// Rows read (before any stage), including unreadable ones.
    pub rows_read: usize,
    /// One report per stage, `read` first.
    pub stages: Vec<StageReport>,
    /// Every split written, by name.
    pub splits: BTreeMap<String, SplitCard>,
    /// Labels over all kept examples.
    pub label_distribution: BTreeMap<String, usize>,
    /// Input lengths (characters) of all kept examples.
    pub length_histogram: Vec<LengthBucket>,
    /// Class balance and label conflicts.
    pub audit: LabelAudit,
    /// The seed the splits used.
    pub seed: u64,
    /// Things the run could not do as configured (a holdout without metadata, ...).
    pub warnings: Vec<String>,
    /// The file each split was written to, relative to the card (Parquet when written, else
    /// JSONL); the Markdown card lists them in its Hugging Face front matter, so
    /// `datasets.load_dataset(folder)` loads the splits as named.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data_files: BTreeMap<String, String>,
}

/// Counts `examples` into [`LENGTH_BUCKETS`].
pub fn length_histogram<'a>(examples: impl IntoIterator<Item = &'a Example>) -> Vec<LengthBucket> {
    let mut counts = vec![0usize; LENGTH_BUCKETS.len() + 1];
    for e in examples {
        let n = e.input.chars().count();
        let b = LENGTH_BUCKETS
            .iter()
            .position(|&hi| n < hi)
            .unwrap_or(LENGTH_BUCKETS.len());
        counts[b] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, count)| LengthBucket {
            min_chars: if i == 0 { 0 } else { LENGTH_BUCKETS[i - 1] },
            max_chars: LENGTH_BUCKETS.get(i).copied(),
            count,
        })
        .collect()
}

impl DatasetCard {
    /// Fills in splits, label distribution and length histogram from `splits`.
    pub fn with_splits(mut self, splits: &Splits) -> Self {
        for (name, rows) in splits.named() {
            if !rows.is_empty() || name != "live" {
                self.splits.insert(
                    name.to_string(),
                    SplitCard {
                        count: rows.len(),
                        labels: label_counts(rows.iter()),
                    },
                );
            }
        }
        let all = || splits.named().into_iter().flat_map(|(_, rows)| rows.iter());
        self.label_distribution = label_counts(all());
        self.length_histogram = length_histogram(all());
        self
    }

    /// The card as Markdown (the `README.md` of the output folder).
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        if !self.data_files.is_empty() {
            // JSON strings are valid YAML scalars, whatever the name holds.
            let quote = |s: &str| serde_json::Value::from(s).to_string();
            let _ = writeln!(
                md,
                "---\npretty_name: {}\nconfigs:\n- config_name: default\n  data_files:",
                quote(&self.name)
            );
            for (split, path) in &self.data_files {
                let _ = writeln!(md, "  - split: {}\n    path: {}", quote(split), quote(path));
            }
            md.push_str("---\n\n");
        }
        let _ = writeln!(md, "# {}\n", self.name);
        let _ = writeln!(
            md,
            "Curated by `slm-data` from {} rows read ({}). Split seed: {}.\n",
            self.rows_read,
            self.inputs.join(", "),
            self.seed
        );
        md.push_str("## Splits\n\n| split | examples | labels |\n|---|---:|---|\n");
        for (name, s) in &self.splits {
            let labels: Vec<String> = s.labels.iter().map(|(l, n)| format!("{l}: {n}")).collect();
            let _ = writeln!(md, "| {name} | {} | {} |", s.count, labels.join(", "));
        }
        md.push_str("\n## Stages\n\n| stage | in | out | modified | dropped (by reason) |\n|---|---:|---:|---:|---|\n");
        for r in &self.stages {
            let dropped: Vec<String> = r.dropped.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                r.stage,
                r.input,
                r.output,
                r.modified,
                dropped.join(", ")
            );
        }
        md.push_str("\n## Labels\n\n| label | examples |\n|---|---:|\n");
        for (l, n) in &self.label_distribution {
            let _ = writeln!(md, "| {l} | {n} |");
        }
        let _ = writeln!(
            md,
            "\nLargest over smallest class: {:.2}.",
            self.audit.imbalance_ratio
        );
        if !self.audit.conflicts.is_empty() {
            let _ = writeln!(
                md,
                "\n{} duplicate groups carry conflicting labels:\n",
                self.audit.conflicts.len()
            );
            for c in self.audit.conflicts.iter().take(20) {
                let labels: Vec<&str> = c
                    .labels
                    .iter()
                    .map(|l| l.as_deref().unwrap_or("<none>"))
                    .collect();
                let _ = writeln!(
                    md,
                    "- {} ({}): {}",
                    c.ids.join(", "),
                    c.stage,
                    labels.join(" / ")
                );
            }
        }
        md.push_str("\n## Input length (characters)\n\n| bucket | examples |\n|---|---:|\n");
        for b in &self.length_histogram {
            let range = match b.max_chars {
                Some(hi) => format!("{}-{}", b.min_chars, hi - 1),
                None => format!("{}+", b.min_chars),
            };
            let _ = writeln!(md, "| {range} | {} |", b.count);
        }
        if !self.warnings.is_empty() {
            md.push_str("\n## Warnings\n\n");
            for w in &self.warnings {
                let _ = writeln!(md, "- {w}");
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_cover_every_length() {
        let rows: Vec<Example> = [0usize, 31, 32, 100, 20000]
            .iter()
            .map(|&n| Example::new("x", "a".repeat(n)))
            .collect();
        let h = length_histogram(&rows);
        assert_eq!(h.len(), LENGTH_BUCKETS.len() + 1);
        assert_eq!(h.iter().map(|b| b.count).sum::<usize>(), 5);
        assert_eq!((h[0].count, h[1].count, h[2].count), (2, 1, 1));
        assert_eq!(h.last().unwrap().count, 1);
        assert_eq!(h.last().unwrap().max_chars, None);
    }
}
