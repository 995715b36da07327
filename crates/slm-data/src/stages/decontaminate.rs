//! [`Decontaminate`]: drops training examples that share a long word n-gram with the eval set.

use std::collections::HashSet;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::curate::{Stage, StageOutput, Verdict, filter_map_examples};
use crate::error::Result;
use crate::example::Example;
use crate::stages::minhash::simplify_text;

/// Decontamination settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecontaminateConfig {
    /// Words per n-gram (13, as in GPT-3's and many eval harnesses' contamination checks).
    pub n: usize,
}

impl Default for DecontaminateConfig {
    fn default() -> Self {
        DecontaminateConfig { n: 13 }
    }
}

/// Drops every example whose input shares a word n-gram with an eval text, reason
/// `eval_overlap`. Words come from the same simplified text as MinHash (lowercased, punctuation
/// removed, numbers folded). An eval text with fewer than `n` words contributes its whole word
/// sequence, which then matches a training input with exactly those words.
#[derive(Debug, Clone)]
pub struct Decontaminate {
    n: usize,
    grams: HashSet<u64>,
}

fn word_grams(text: &str, n: usize) -> Vec<u64> {
    let simple = simplify_text(text);
    let words: Vec<&str> = simple.split(' ').filter(|w| !w.is_empty()).collect();
    if words.is_empty() {
        return Vec::new();
    }
    if words.len() < n {
        return vec![xxh3_64(words.join(" ").as_bytes())];
    }
    words
        .windows(n)
        .map(|w| xxh3_64(w.join(" ").as_bytes()))
        .collect()
}

impl Decontaminate {
    /// Indexes the n-grams of `eval_texts`.
    pub fn new<S: AsRef<str> + Sync>(config: DecontaminateConfig, eval_texts: &[S]) -> Self {
        let n = config.n.max(1);
        let grams = eval_texts
            .par_iter()
            .flat_map_iter(|t| word_grams(t.as_ref(), n))
            .collect();
        Decontaminate { n, grams }
    }

    /// Distinct eval n-grams indexed.
    pub fn len(&self) -> usize {
        self.grams.len()
    }

    /// Whether no eval n-gram is indexed.
    pub fn is_empty(&self) -> bool {
        self.grams.is_empty()
    }

    /// Whether `text` shares an n-gram with the eval set.
    pub fn contaminated(&self, text: &str) -> bool {
        word_grams(text, self.n)
            .iter()
            .any(|g| self.grams.contains(g))
    }
}

impl Stage for Decontaminate {
    fn name(&self) -> &str {
        "decontaminate"
    }

    fn apply(&self, examples: Vec<Example>) -> Result<StageOutput> {
        Ok(filter_map_examples(self.name(), examples, |e| {
            if self.contaminated(&e.input) {
                Verdict::drop("eval_overlap")
            } else {
                Verdict::Keep
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirteen_shared_words_contaminate_twelve_do_not() {
        let eval =
            ["one two three four five six seven eight nine ten eleven twelve thirteen fourteen"];
        let d = Decontaminate::new(DecontaminateConfig::default(), &eval);
        assert!(d.contaminated(
            "prefix: One two three four five six seven eight nine ten eleven twelve THIRTEEN!"
        ));
        assert!(
            !d.contaminated(
                "two three four five six seven eight nine ten eleven twelve thirteen"
                    .replacen("seven", "x", 1)
                    .as_str()
            )
        );
        let short = Decontaminate::new(DecontaminateConfig::default(), &["What is 2+2?"]);
        assert!(short.contaminated("what is 3 + 3"));
        assert!(!short.contaminated("what is it"));
    }
}
