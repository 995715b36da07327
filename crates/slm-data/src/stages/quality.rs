//! [`QualityFilter`]: Gopher-style heuristics (Rae et al. 2021, as datatrove's
//! `GopherQualityFilter` and `GopherRepetitionFilter` apply them) plus a simple English check.
//! The reasons keep datatrove's names (`gopher_short_doc`, `dup_line_frac`, ...).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::curate::{Stage, StageOutput, Verdict, filter_map_examples};
use crate::error::Result;
use crate::example::Example;

/// Gopher's stop words; a text with fewer than [`QualityConfig::min_stop_words`] of them is
/// unlikely to be English prose.
pub const STOP_WORDS: [&str; 8] = ["the", "be", "to", "of", "and", "that", "have", "with"];

/// Thresholds of the [`QualityFilter`]; `None` turns a check off. Defaults are Gopher's except
/// `min_words` (5 instead of 50: task inputs such as tickets or SMS are short) and the ASCII
/// check (off).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityConfig {
    /// Fewest words (whitespace-separated).
    pub min_words: Option<usize>,
    /// Most words (100,000).
    pub max_words: Option<usize>,
    /// Shortest mean word length in characters (3).
    pub min_avg_word_length: Option<f64>,
    /// Longest mean word length (10).
    pub max_avg_word_length: Option<f64>,
    /// Most `#`, `...` and `…` per word (0.1).
    pub max_symbol_word_ratio: Option<f64>,
    /// Largest fraction of lines starting with a bullet (0.9).
    pub max_bullet_lines_ratio: Option<f64>,
    /// Largest fraction of lines ending with `...` or `…` (0.3).
    pub max_ellipsis_lines_ratio: Option<f64>,
    /// Smallest fraction of words with at least one letter (0.8).
    pub min_alpha_words_ratio: Option<f64>,
    /// Fewest [`STOP_WORDS`] (2): Gopher's English check.
    pub min_stop_words: Option<usize>,
    /// Smallest fraction of letters that are ASCII (off): a cheap "Latin-script English" check.
    pub min_ascii_letter_fraction: Option<f64>,
    /// Largest fraction of lines that repeat an earlier line (0.3).
    pub max_dup_line_frac: Option<f64>,
    /// Largest fraction of paragraphs (split on blank lines) that repeat an earlier one (0.3).
    pub max_dup_para_frac: Option<f64>,
    /// `(n, f)`: the most frequent word n-gram may cover at most `f` of the word characters
    /// (`[(2, 0.2), (3, 0.18), (4, 0.16)]`).
    pub top_n_grams: Vec<(usize, f64)>,
    /// `(n, f)`: word n-grams seen before may cover at most `f` of the word characters
    /// (`[(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]`).
    pub dup_n_grams: Vec<(usize, f64)>,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            min_words: Some(5),
            max_words: Some(100_000),
            min_avg_word_length: Some(3.0),
            max_avg_word_length: Some(10.0),
            max_symbol_word_ratio: Some(0.1),
            max_bullet_lines_ratio: Some(0.9),
            max_ellipsis_lines_ratio: Some(0.3),
            min_alpha_words_ratio: Some(0.8),
            min_stop_words: Some(2),
            min_ascii_letter_fraction: None,
            max_dup_line_frac: Some(0.3),
            max_dup_para_frac: Some(0.3),
            top_n_grams: vec![(2, 0.2), (3, 0.18), (4, 0.16)],
            dup_n_grams: vec![
                (5, 0.15),
                (6, 0.14),
                (7, 0.13),
                (8, 0.12),
                (9, 0.11),
                (10, 0.10),
            ],
        }
    }
}

/// The quality stage: drops an input failing the first check of [`QualityConfig`], in the
/// order of its fields, with the measured value as detail.
#[derive(Debug, Clone, Default)]
pub struct QualityFilter {
    /// Its thresholds.
    pub config: QualityConfig,
}

fn over(value: f64, limit: Option<f64>) -> bool {
    limit.is_some_and(|l| value > l)
}

fn under(value: f64, limit: Option<f64>) -> bool {
    limit.is_some_and(|l| value < l)
}

fn dup_fraction<'a>(parts: impl Iterator<Item = &'a str>) -> f64 {
    let (mut seen, mut total, mut dups) = (HashSet::new(), 0usize, 0usize);
    for p in parts.map(str::trim).filter(|p| !p.is_empty()) {
        total += 1;
        if !seen.insert(p) {
            dups += 1;
        }
    }
    if total == 0 {
        0.0
    } else {
        dups as f64 / total as f64
    }
}

impl QualityFilter {
    /// The stage with `config`.
    pub fn new(config: QualityConfig) -> Self {
        QualityFilter { config }
    }

    /// Why `text` fails, if it does: `(reason, measured value)`.
    pub fn check(&self, text: &str) -> Option<(String, String)> {
        let c = &self.config;
        let fail = |reason: &str, v: f64| Some((reason.to_string(), format!("{v:.3}")));
        let raw_words: Vec<&str> = text.split_whitespace().collect();
        let n = raw_words.len();
        if c.min_words.is_some_and(|m| n < m) {
            return fail("gopher_short_doc", n as f64);
        }
        if c.max_words.is_some_and(|m| n > m) {
            return fail("gopher_long_doc", n as f64);
        }
        let words: Vec<String> = raw_words
            .iter()
            .map(|w| {
                w.trim_matches(|ch: char| !ch.is_alphanumeric())
                    .to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .collect();
        let nf = n.max(1) as f64;
        let avg = words.iter().map(|w| w.chars().count()).sum::<usize>() as f64
            / words.len().max(1) as f64;
        if under(avg, c.min_avg_word_length) {
            return fail("gopher_below_avg_threshold", avg);
        }
        if over(avg, c.max_avg_word_length) {
            return fail("gopher_above_avg_threshold", avg);
        }
        let symbols =
            text.matches('#').count() + text.matches("...").count() + text.matches('…').count();
        if over(symbols as f64 / nf, c.max_symbol_word_ratio) {
            return fail("gopher_too_many_symbols", symbols as f64 / nf);
        }
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let nl = lines.len().max(1) as f64;
        let bullets = lines
            .iter()
            .filter(|l| {
                l.trim_start()
                    .starts_with(['•', '●', '○', '■', '□', '▪', '▫', '*', '-', '–', '‣'])
            })
            .count() as f64;
        if over(bullets / nl, c.max_bullet_lines_ratio) {
            return fail("gopher_too_many_bullets", bullets / nl);
        }
        let ellipsis = lines
            .iter()
            .filter(|l| {
                let l = l.trim_end();
                l.ends_with("...") || l.ends_with('…')
            })
            .count() as f64;
        if over(ellipsis / nl, c.max_ellipsis_lines_ratio) {
            return fail("gopher_too_many_end_ellipsis", ellipsis / nl);
        }
        let alpha = raw_words
            .iter()
            .filter(|w| w.chars().any(char::is_alphabetic))
            .count() as f64;
        if under(alpha / nf, c.min_alpha_words_ratio) {
            return fail("gopher_below_alpha_threshold", alpha / nf);
        }
        if let Some(m) = c.min_stop_words {
            let stops = words
                .iter()
                .filter(|w| STOP_WORDS.contains(&w.as_str()))
                .count();
            if stops < m {
                return fail("gopher_enough_stop_words", stops as f64);
            }
        }
        if let Some(m) = c.min_ascii_letter_fraction {
            let (ascii, letters) = text
                .chars()
                .filter(|ch| ch.is_alphabetic())
                .fold((0usize, 0usize), |(a, l), ch| {
                    (a + usize::from(ch.is_ascii()), l + 1)
                });
            let frac = if letters == 0 {
                0.0
            } else {
                ascii as f64 / letters as f64
            };
            if frac < m {
                return fail("not_english", frac);
            }
        }
        let lf = dup_fraction(text.lines());
        if over(lf, c.max_dup_line_frac) {
            return fail("dup_line_frac", lf);
        }
        let pf = dup_fraction(text.split("\n\n"));
        if over(pf, c.max_dup_para_frac) {
            return fail("dup_para_frac", pf);
        }
        let total_chars: usize = words.iter().map(|w| w.chars().count()).sum();
        if total_chars == 0 {
            return None;
        }
        for &(k, limit) in &c.top_n_grams {
            if k == 0 || words.len() < k {
                continue;
            }
            let mut counts: HashMap<&[String], usize> = HashMap::new();
            for g in words.windows(k) {
                *counts.entry(g).or_default() += 1;
            }
            let top = counts
                .iter()
                .filter(|(_, c)| **c > 1)
                .map(|(g, &c)| g.iter().map(|w| w.chars().count()).sum::<usize>() * c)
                .max()
                .unwrap_or(0);
            let frac = top as f64 / total_chars as f64;
            if frac > limit {
                return fail(&format!("top_{k}_gram"), frac);
            }
        }
        for &(k, limit) in &c.dup_n_grams {
            if k == 0 || words.len() < k {
                continue;
            }
            let mut seen: HashSet<&[String]> = HashSet::new();
            let mut covered = vec![false; words.len()];
            for (i, g) in words.windows(k).enumerate() {
                if !seen.insert(g) {
                    covered[i..i + k].iter_mut().for_each(|c| *c = true);
                }
            }
            let dup: usize = words
                .iter()
                .zip(&covered)
                .filter(|(_, c)| **c)
                .map(|(w, _)| w.chars().count())
                .sum();
            let frac = dup as f64 / total_chars as f64;
            if frac > limit {
                return fail(&format!("duplicated_{k}_n_grams"), frac);
            }
        }
        None
    }
}

impl Stage for QualityFilter {
    fn name(&self) -> &str {
        "quality"
    }

    fn apply(&self, examples: Vec<Example>) -> Result<StageOutput> {
        Ok(filter_map_examples(self.name(), examples, |e| {
            match self.check(&e.input) {
                Some((reason, detail)) => Verdict::Drop { reason, detail },
                None => Verdict::Keep,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gopher_checks_fire_with_their_reasons() {
        let f = QualityFilter::default();
        let good = "The order arrived late and the box was damaged, so I would like to have a refund with the shipping costs.";
        assert_eq!(f.check(good), None);
        let reason = |t: &str| f.check(t).map(|r| r.0);
        assert_eq!(reason("too short").as_deref(), Some("gopher_short_doc"));
        assert_eq!(
            reason("# # # # # the and of to with").as_deref(),
            Some("gopher_below_avg_threshold")
        );
        assert_eq!(
            reason("buy now the cheap pills of the best quality ### ### ###").as_deref(),
            Some("gopher_too_many_symbols")
        );
        assert_eq!(
            reason("spam spam spam spam spam spam spam spam").as_deref(),
            Some("gopher_enough_stop_words")
        );
        let repeated = "the cat sat with the dog\nthe cat sat with the dog\nthe cat sat with the dog\nand that was it";
        assert_eq!(reason(repeated).as_deref(), Some("dup_line_frac"));
        let ascii = QualityFilter::new(QualityConfig {
            min_ascii_letter_fraction: Some(0.9),
            min_stop_words: None,
            ..Default::default()
        });
        assert_eq!(
            ascii
                .check("Это совсем не английский текст вообще")
                .map(|r| r.0)
                .as_deref(),
            Some("not_english")
        );
    }
}
