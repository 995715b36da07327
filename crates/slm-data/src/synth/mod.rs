//! Synthetic augmentation for rare classes: a [`Generator`] writes candidate examples, then
//! [`augment`] keeps those that pass four filters, in this order, and reports why it dropped
//! the others:
//!
//! 1. **length**: bounds in characters and words ([`QualityBounds`]);
//! 2. **dedup**: an exact hash of the normalised text (lower case, whitespace collapsed)
//!    against the train set, the eval set and the earlier candidates;
//! 3. **characters**: no undecodable bytes (U+FFFD) and no control characters other than
//!    tab and newlines;
//! 4. **label check**: a [`LabelScorer`] (the teacher's [`TeacherScorer`]) must rank the
//!    intended label first among all labels.
//!
//! [`TeacherGenerator`] prompts a teacher [`CausalLm`](slm_core::CausalLm) with a few
//! examples of the class and samples a new one with a seeded loop, so a run is reproducible.
//!
//! ```
//! use slm_data::Example;
//! use slm_data::synth::{augment, AugmentConfig, GenerationRequest, Generator, QualityBounds};
//!
//! // A stand-in generator (a real one prompts a teacher model).
//! struct Fixed(Vec<&'static str>);
//! impl Generator for Fixed {
//!     fn generate(&mut self, r: &GenerationRequest<'_>) -> slm_data::Result<Vec<Example>> {
//!         Ok(self.0.iter().map(|t| Example::new("x", *t).with_label(r.label)).collect())
//!     }
//! }
//!
//! # fn main() -> slm_data::Result<()> {
//! let train = vec![Example::new("t1", "Win a FREE cruise now").with_label("spam")];
//! let mut generator = Fixed(vec!["win a free   cruise NOW", "ok", "Claim your prize today"]);
//! let request = GenerationRequest { label: "spam", seeds: &train, count: 3 };
//! let config = AugmentConfig::new(QualityBounds { min_chars: 5, ..QualityBounds::default() });
//! let out = augment(&mut generator, &request, &train, &[], &config, None)?;
//! assert_eq!(out.kept.len(), 1); // a duplicate of a train text and a too-short text dropped
//! assert_eq!(out.report.dropped.len(), 2);
//! # Ok(()) }
//! ```

mod teacher;

pub use teacher::{TeacherConfig, TeacherGenerator, TeacherScorer, few_shot_prompt};

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::Serialize;

use crate::error::Result;
use crate::example::Example;

/// What to generate: `count` new examples of class `label`, imitating `seeds`.
#[derive(Debug, Clone, Copy)]
pub struct GenerationRequest<'a> {
    /// The class to write examples of.
    pub label: &'a str,
    /// Examples of that class to imitate.
    pub seeds: &'a [Example],
    /// How many candidates to write.
    pub count: usize,
}

/// Writes candidate examples for a class.
///
/// It is a trait so a teacher model, a template filler, an external API or a test double can
/// feed the same filtering in [`augment`].
pub trait Generator {
    /// Up to `request.count` candidates, each with `label` set to `request.label`.
    fn generate(&mut self, request: &GenerationRequest<'_>) -> Result<Vec<Example>>;
}

/// Scores how well each label fits a text (higher is better), for the label check.
///
/// A trait so the check can use a teacher model ([`TeacherScorer`]), a trained classifier or
/// a test double.
pub trait LabelScorer {
    /// One score per label, in the order given.
    fn label_scores(&self, text: &str, labels: &[String]) -> Result<Vec<f64>>;
}

/// Length limits a synthetic text must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QualityBounds {
    /// Fewest characters (after trimming).
    pub min_chars: usize,
    /// Most characters.
    pub max_chars: usize,
    /// Fewest whitespace-separated words.
    pub min_words: usize,
}

impl Default for QualityBounds {
    /// 1 to 10,000 characters, at least 1 word.
    fn default() -> Self {
        Self {
            min_chars: 1,
            max_chars: 10_000,
            min_words: 1,
        }
    }
}

/// Settings of [`augment`].
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentConfig {
    /// Length limits.
    pub quality: QualityBounds,
    /// Every label of the task, for the label check (the intended label is added if missing).
    pub labels: Vec<String>,
}

impl AugmentConfig {
    /// These bounds and no other labels.
    pub fn new(quality: QualityBounds) -> Self {
        Self {
            quality,
            labels: Vec::new(),
        }
    }

    /// With the task's labels.
    pub fn with_labels(mut self, labels: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.labels = labels.into_iter().map(Into::into).collect();
        self
    }
}

/// Why a candidate was dropped.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DropReason {
    /// Fewer characters or words than the bounds allow.
    TooShort {
        /// Characters after trimming.
        chars: usize,
        /// Words.
        words: usize,
    },
    /// More characters than the bounds allow.
    TooLong {
        /// Characters after trimming.
        chars: usize,
    },
    /// The text holds U+FFFD (bytes that did not decode) or control characters.
    BadCharacters {
        /// How many such characters.
        count: usize,
    },
    /// The normalised text equals a train or eval text, or an earlier candidate.
    Duplicate,
    /// The scorer ranked another label first.
    LabelMismatch {
        /// The label that scored highest.
        predicted: String,
    },
}

/// A dropped candidate and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DroppedCandidate {
    /// The candidate's text.
    pub input: String,
    /// Why it was dropped.
    #[serde(flatten)]
    pub reason: DropReason,
}

/// What [`augment`] did.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AugmentReport {
    /// Candidates the generator wrote.
    pub generated: usize,
    /// Candidates kept.
    pub kept: usize,
    /// Every dropped candidate with its reason.
    pub dropped: Vec<DroppedCandidate>,
}

/// Kept examples and the report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AugmentOutput {
    /// The candidates that passed every filter, ids renumbered `synth-{label}-{n}`.
    pub kept: Vec<Example>,
    /// Counts and drop reasons.
    pub report: AugmentReport,
}

/// The dedup key: a hash of the text lower-cased with whitespace collapsed. `DefaultHasher::new`
/// has fixed keys, so keys are stable within a build.
pub fn normalized_text_hash(text: &str) -> u64 {
    let norm = text
        .split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ");
    let mut h = DefaultHasher::new();
    norm.hash(&mut h);
    h.finish()
}

/// Generates candidates with `generator` and filters them: length, dedup against `train`,
/// `eval` and earlier candidates, characters, then the label check when a `scorer` is given
/// (see the [module docs](self)).
pub fn augment(
    generator: &mut dyn Generator,
    request: &GenerationRequest<'_>,
    train: &[Example],
    eval: &[Example],
    config: &AugmentConfig,
    scorer: Option<&dyn LabelScorer>,
) -> Result<AugmentOutput> {
    let candidates = generator.generate(request)?;
    let mut seen: HashSet<u64> = train
        .iter()
        .chain(eval)
        .map(|e| normalized_text_hash(&e.input))
        .collect();
    let mut labels = config.labels.clone();
    if !labels.iter().any(|l| l == request.label) {
        labels.push(request.label.to_string());
    }
    let q = &config.quality;
    let mut out = AugmentOutput::default();
    out.report.generated = candidates.len();
    for mut ex in candidates {
        let text = ex.input.trim();
        let (chars, words) = (text.chars().count(), text.split_whitespace().count());
        let mut reject = |reason| {
            out.report.dropped.push(DroppedCandidate {
                input: ex.input.clone(),
                reason,
            })
        };
        if chars < q.min_chars || words < q.min_words {
            reject(DropReason::TooShort { chars, words });
            continue;
        }
        if chars > q.max_chars {
            reject(DropReason::TooLong { chars });
            continue;
        }
        if !seen.insert(normalized_text_hash(text)) {
            reject(DropReason::Duplicate);
            continue;
        }
        let bad = text
            .chars()
            .filter(|&c| c == '\u{FFFD}' || (c.is_control() && !matches!(c, '\t' | '\n' | '\r')))
            .count();
        if bad > 0 {
            reject(DropReason::BadCharacters { count: bad });
            continue;
        }
        if let Some(scorer) = scorer {
            let scores = scorer.label_scores(text, &labels)?;
            let best = scores
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
                .map(|(i, _)| labels[i].clone())
                .unwrap_or_default();
            if best != request.label {
                reject(DropReason::LabelMismatch { predicted: best });
                continue;
            }
        }
        ex.id = format!("synth-{}-{}", request.label, out.kept.len());
        ex.label = Some(request.label.to_string());
        out.kept.push(ex);
    }
    out.report.kept = out.kept.len();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<&'static str>);
    impl Generator for Fixed {
        fn generate(&mut self, r: &GenerationRequest<'_>) -> Result<Vec<Example>> {
            Ok(self
                .0
                .iter()
                .map(|t| Example::new("x", *t).with_label(r.label))
                .collect())
        }
    }

    /// Says "ham" for texts containing "meeting", "spam" otherwise.
    struct Keyword;
    impl LabelScorer for Keyword {
        fn label_scores(&self, text: &str, labels: &[String]) -> Result<Vec<f64>> {
            let ham = text.contains("meeting");
            Ok(labels
                .iter()
                .map(|l| if (l == "ham") == ham { 0.0 } else { -5.0 })
                .collect())
        }
    }

    #[test]
    fn every_filter_drops_what_it_should() {
        let train = vec![Example::new("t", "Cheap pills online").with_label("spam")];
        let eval = vec![Example::new("e", "Win big at the casino").with_label("spam")];
        let mut g = Fixed(vec![
            "cheap   PILLS online",             // duplicate of train
            "win big at the casino",            // duplicate of eval
            "hi",                               // too short
            "x",                                // too short
            "Free \u{FFFD}\u{7} money today",   // bad characters
            "Lowest mortgage rates, act now",   // kept
            "lowest mortgage rates, act now",   // duplicate of a kept candidate
            "Agenda for the meeting on Monday", // label mismatch
            "A very long text that goes on and on and on and on and on", // too long
        ]);
        let req = GenerationRequest {
            label: "spam",
            seeds: &train,
            count: 9,
        };
        let cfg = AugmentConfig::new(QualityBounds {
            min_chars: 5,
            max_chars: 40,
            min_words: 2,
        })
        .with_labels(["ham", "spam"]);
        let out = augment(&mut g, &req, &train, &eval, &cfg, Some(&Keyword)).unwrap();
        assert_eq!(out.kept.len(), 1);
        assert_eq!(out.kept[0].id, "synth-spam-0");
        let reasons: Vec<_> = out
            .report
            .dropped
            .iter()
            .map(|d| d.reason.clone())
            .collect();
        assert_eq!(
            reasons
                .iter()
                .filter(|r| **r == DropReason::Duplicate)
                .count(),
            3
        );
        assert_eq!(
            reasons
                .iter()
                .filter(|r| matches!(r, DropReason::TooShort { .. }))
                .count(),
            2
        );
        assert!(reasons.contains(&DropReason::TooLong { chars: 57 }));
        assert!(reasons.contains(&DropReason::LabelMismatch {
            predicted: "ham".into()
        }));
        assert!(reasons.contains(&DropReason::BadCharacters { count: 2 }));
        assert_eq!(out.report.generated, 9);
        assert_eq!(out.report.kept + out.report.dropped.len(), 9);
    }
}
