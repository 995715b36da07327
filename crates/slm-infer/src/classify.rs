//! Classification by label scoring: for a prompt and N candidate completions (one per label),
//! each candidate's total log-probability under the model, from one forward over the shared
//! prompt and one short forward per candidate continuing from its cache (never N full passes),
//! with probabilities normalised over the candidates. [`ClassificationReport`] turns
//! predictions into accuracy, macro-F1, per-label precision/recall and the confusion matrix.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use slm_core::{CausalLm, LogitsScope, TokenBatch};

use crate::error::{Error, Result};

/// The scores of every candidate for one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelScores {
    /// Total log-probability of each candidate's tokens after the prompt.
    pub log_probs: Vec<f64>,
    /// `softmax(log_probs)`: the candidates' probabilities, normalised over the candidates.
    pub probs: Vec<f64>,
    /// The index of the most likely candidate (the first on ties).
    pub best: usize,
}

impl LabelScores {
    /// Scores from each candidate's total log-probability: probabilities normalised over the
    /// candidates, the best the first maximum.
    pub fn from_log_probs(log_probs: Vec<f64>) -> Self {
        let max = log_probs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = log_probs.iter().map(|l| (l - max).exp()).sum();
        let probs = log_probs.iter().map(|l| (l - max).exp() / z).collect();
        let best = log_probs
            .iter()
            .enumerate()
            .fold(0, |b, (i, &l)| if l > log_probs[b] { i } else { b });
        Self {
            log_probs,
            probs,
            best,
        }
    }
}

/// `log(sum(exp(row)))` in f64, shifted by the maximum (stable for any finite row).
pub fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    max + sum.ln()
}

/// `log softmax(row)[id]` in f64.
pub fn log_softmax_at(row: &[f32], id: u32) -> f64 {
    row[id as usize] as f64 - log_sum_exp(row)
}

/// Scores `candidates` (token ids of each label's completion) after `prompt`.
///
/// # Errors
/// [`Error::InvalidConfig`] for an empty prompt, no candidates or an empty candidate;
/// [`Error::NonFiniteLogits`] when the model's logits are not finite; model errors.
pub fn score_labels<M: CausalLm>(
    model: &M,
    prompt: &[u32],
    candidates: &[Vec<u32>],
) -> Result<LabelScores>
where
    M::Cache: Clone,
{
    if prompt.is_empty() || candidates.is_empty() || candidates.iter().any(Vec::is_empty) {
        return Err(Error::InvalidConfig(
            "label scoring needs a prompt and non-empty candidates".into(),
        ));
    }
    let mut cache = model.new_cache();
    let last = model.forward(
        &TokenBatch::single(prompt.to_vec(), LogitsScope::Last),
        &mut cache,
    )?;
    let first_row = last.last(0);
    let mut log_probs = Vec::with_capacity(candidates.len());
    // One normaliser for the prompt row that scores every candidate's first token.
    let first_lse = log_sum_exp(first_row);
    for candidate in candidates {
        let mut lp = first_row[candidate[0] as usize] as f64 - first_lse;
        if candidate.len() > 1 {
            let mut branch = cache.clone();
            let rest = model.forward(
                &TokenBatch::single(candidate[..candidate.len() - 1].to_vec(), LogitsScope::All),
                &mut branch,
            )?;
            for (t, &id) in candidate[1..].iter().enumerate() {
                lp += log_softmax_at(rest.at(0, t), id);
            }
        }
        if !lp.is_finite() {
            return Err(Error::NonFiniteLogits { step: 0 });
        }
        log_probs.push(lp);
    }
    Ok(LabelScores::from_log_probs(log_probs))
}

/// Precision, recall and F1 of one label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelMetrics {
    /// Of the examples predicted as the label, the share that are.
    pub precision: f64,
    /// Of the examples that are the label, the share predicted as it.
    pub recall: f64,
    /// Harmonic mean of the two (0 when both are 0).
    pub f1: f64,
    /// Examples that are the label.
    pub support: usize,
}

/// Accuracy, macro-F1, per-label metrics and the confusion matrix of a set of predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// The labels, in the order of the confusion matrix.
    pub labels: Vec<String>,
    /// Examples scored.
    pub examples: usize,
    /// Share of examples predicted right.
    pub accuracy: f64,
    /// Unweighted mean of the labels' F1.
    pub macro_f1: f64,
    /// Per-label precision, recall, F1 and support.
    pub per_label: BTreeMap<String, LabelMetrics>,
    /// `confusion[gold][predicted]` counts, indexed like `labels`.
    pub confusion: Vec<Vec<usize>>,
}

impl ClassificationReport {
    /// The report of `pairs` (gold, predicted), both indices into `labels`.
    pub fn new(labels: &[String], pairs: &[(usize, usize)]) -> Self {
        let n = labels.len();
        let mut confusion = vec![vec![0usize; n]; n];
        for &(g, p) in pairs {
            confusion[g][p] += 1;
        }
        let right: usize = (0..n).map(|i| confusion[i][i]).sum();
        let mut per_label = BTreeMap::new();
        let mut f1_sum = 0.0;
        for (i, label) in labels.iter().enumerate() {
            let tp = confusion[i][i] as f64;
            let predicted: usize = (0..n).map(|g| confusion[g][i]).sum();
            let support: usize = confusion[i].iter().sum();
            let ratio = |a: f64, b: usize| if b == 0 { 0.0 } else { a / b as f64 };
            let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            f1_sum += f1;
            per_label.insert(
                label.clone(),
                LabelMetrics {
                    precision,
                    recall,
                    f1,
                    support,
                },
            );
        }
        ClassificationReport {
            labels: labels.to_vec(),
            examples: pairs.len(),
            accuracy: if pairs.is_empty() {
                0.0
            } else {
                right as f64 / pairs.len() as f64
            },
            macro_f1: if n == 0 { 0.0 } else { f1_sum / n as f64 },
            per_label,
            confusion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use slm_core::prelude::*;

    #[test]
    fn log_softmax_normalises() {
        let row = [1.0f32, 2.0, 3.0];
        let total: f64 = (0..3).map(|i| log_softmax_at(&row, i).exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    fn tiny() -> Decoder {
        crate::test_support::tiny_config().init(&Device::flex())
    }

    #[test]
    fn shared_prefix_scores_equal_full_passes() {
        let model = tiny();
        let prompt = [0u32, 5, 9, 12];
        let candidates = vec![vec![7u32], vec![3, 8, 2], vec![30, 31]];
        let scores = score_labels(&model, &prompt, &candidates).unwrap();
        for (c, &got) in candidates.iter().zip(&scores.log_probs) {
            let full: Vec<u32> = prompt.iter().chain(c).copied().collect();
            let logits = model
                .forward(
                    &TokenBatch::single(full, LogitsScope::All),
                    &mut model.new_cache(),
                )
                .unwrap();
            let want: f64 = c
                .iter()
                .enumerate()
                .map(|(k, &id)| log_softmax_at(logits.at(0, prompt.len() - 1 + k), id))
                .sum();
            assert!((got - want).abs() < 1e-4, "{c:?}: {got} vs {want}");
        }
        assert!((scores.probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let best = scores.log_probs.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(scores.log_probs[scores.best], best);
    }

    #[test]
    fn metrics_match_a_hand_count() {
        let labels = vec!["ham".to_string(), "spam".to_string()];
        // gold ham: 3 right, 1 as spam; gold spam: 1 right, 1 as ham.
        let pairs = [(0, 0), (0, 0), (0, 0), (0, 1), (1, 1), (1, 0)];
        let r = ClassificationReport::new(&labels, &pairs);
        assert_eq!(r.confusion, vec![vec![3, 1], vec![1, 1]]);
        assert!((r.accuracy - 4.0 / 6.0).abs() < 1e-12);
        let ham = &r.per_label["ham"];
        assert!((ham.precision - 0.75).abs() < 1e-12 && (ham.recall - 0.75).abs() < 1e-12);
        let spam = &r.per_label["spam"];
        assert!((spam.precision - 0.5).abs() < 1e-12 && (spam.recall - 0.5).abs() < 1e-12);
        assert!((r.macro_f1 - (0.75 + 0.5) / 2.0).abs() < 1e-12);
    }
}
