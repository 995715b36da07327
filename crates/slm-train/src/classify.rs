//! A classifier's evaluation on a labelled dataset: each example's prompt built by the task's
//! template (inputs cut as in training), every label scored by slm-infer's
//! [`score_labels`] (one forward over the shared prompt), and the
//! [`ClassificationReport`] of the predictions. `slm eval` and the trainer's evaluation
//! callback both run this.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use slm_core::model::Decoder;
use slm_core::tokenizer::Tokenizer;
use slm_data::Example;
use slm_data::inputs::TaskSpec;
use slm_infer::{ClassificationReport, score_labels};

use crate::error::{Error, Result};

/// One example's prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The example's id.
    pub id: String,
    /// Its label.
    pub label: String,
    /// The predicted label.
    pub predicted: String,
    /// Each label's probability, normalised over the labels.
    pub probs: BTreeMap<String, f64>,
}

/// The result of [`evaluate_classifier`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierEval {
    /// Accuracy, macro-F1, per-label metrics, confusion matrix.
    #[serde(flatten)]
    pub report: ClassificationReport,
    /// Examples classified per second (tokenization and scoring).
    pub predictions_per_second: f64,
    /// Every prediction, in data order.
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
}

/// The prompt of `example` exactly as training saw it ([`TaskSpec::tokenize`]: the input cut
/// to leave room for the longest label, the same prompt for every label) and each label's
/// completion tokens, for label scoring: what `slm eval`, the trainer's evaluation and
/// `slm serve`'s `/v1/classify` score.
///
/// # Errors
/// [`Error::InvalidBatch`] when the template cannot render or tokenize the example.
pub fn label_prompt(
    task: &TaskSpec,
    tokenizer: &Tokenizer,
    example: &Example,
    labels: &[String],
) -> Result<(Vec<u32>, Vec<Vec<u32>>)> {
    let data = |e: slm_data::Error| Error::InvalidBatch(e.to_string());
    let prompt = task
        .prompt_for_labels(example, labels, tokenizer)
        .map_err(data)?;
    let candidates = task.label_completions(labels, tokenizer).map_err(data)?;
    Ok((prompt, candidates))
}

/// Classifies `examples` with `model` by scoring each of the task's labels.
///
/// # Errors
/// [`Error::InvalidBatch`] for a task without labels, no examples, or an example whose label
/// is not one of the task's; model and tokenizer errors.
pub fn evaluate_classifier(
    model: &Decoder,
    tokenizer: &Tokenizer,
    task: &TaskSpec,
    examples: &[Example],
) -> Result<ClassifierEval> {
    let labels = task
        .labels
        .as_ref()
        .ok_or_else(|| Error::InvalidBatch("the task has no labels to classify into".into()))?;
    if examples.is_empty() {
        return Err(Error::InvalidBatch("no examples to evaluate".into()));
    }
    let started = Instant::now();
    let mut pairs = Vec::with_capacity(examples.len());
    let mut predictions = Vec::with_capacity(examples.len());
    for example in examples {
        let gold = example.label.as_deref().unwrap_or("");
        let gold_index = labels.iter().position(|l| l == gold).ok_or_else(|| {
            Error::InvalidBatch(format!(
                "example {}: label `{gold}` is not one of {}",
                example.id,
                labels.join(", ")
            ))
        })?;
        let (prompt, candidates) = label_prompt(task, tokenizer, example, labels)?;
        let scores = score_labels(model, &prompt, &candidates)
            .map_err(|e| Error::InvalidBatch(format!("example {}: {e}", example.id)))?;
        pairs.push((gold_index, scores.best));
        predictions.push(Prediction {
            id: example.id.clone(),
            label: gold.to_string(),
            predicted: labels[scores.best].clone(),
            probs: labels.iter().cloned().zip(scores.probs).collect(),
        });
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(ClassifierEval {
        report: ClassificationReport::new(labels, &pairs),
        predictions_per_second: examples.len() as f64 / secs.max(1e-9),
        predictions,
    })
}
