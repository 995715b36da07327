//! The causal language-modelling loss on target tokens only, with transformers' semantics:
//! labels are aligned with the input ids, the model shifts them (the logits at position `t`
//! predict the label at `t + 1`), and [`IGNORE_INDEX`] (-100) marks positions without a loss
//! (prompt, padding, the first token of each packed example). The mean runs over the
//! remaining targets of the whole batch.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
pub use slm_data::inputs::IGNORE_INDEX;

use crate::error::{Error, Result};

/// Mean cross-entropy of `logits` `[B, T, V]` against `labels` `[B][T]` over the targets that
/// are not [`IGNORE_INDEX`], with the number of those targets; the loss is a `[1]` tensor
/// (differentiable on an autodiff device).
///
/// # Errors
/// [`Error::InvalidBatch`] when the labels do not match the logits' shape, a label is outside
/// the vocabulary, or no position has a target (a mean over nothing).
pub fn causal_lm_loss(logits: Tensor<3>, labels: &[Vec<i64>]) -> Result<(Tensor<1>, usize)> {
    let [b, t, v] = logits.dims();
    if labels.len() != b || labels.iter().any(|r| r.len() != t) {
        return Err(Error::InvalidBatch(format!(
            "labels are not {b} x {t} like the logits"
        )));
    }
    let mut index = Vec::with_capacity(b * t.saturating_sub(1));
    let mut weight = Vec::with_capacity(index.capacity());
    for row in labels {
        for &label in &row[1..] {
            if label == IGNORE_INDEX {
                index.push(0i32);
                weight.push(0f32);
            } else if label < 0 || label as usize >= v {
                return Err(Error::InvalidBatch(format!(
                    "label {label} is outside the vocabulary ({v})"
                )));
            } else {
                index.push(label as i32);
                weight.push(1.0);
            }
        }
    }
    let n = weight.iter().filter(|&&w| w > 0.0).count();
    if n == 0 {
        return Err(Error::InvalidBatch(
            "no position has a target (every label is -100)".into(),
        ));
    }
    let device = logits.device();
    let logp = log_softmax(logits.narrow(1, 0, t - 1), 2);
    let index = Tensor::<3, Int>::from_data(TensorData::new(index, [b, t - 1, 1]), &device);
    let weight = Tensor::<3>::from_data(TensorData::new(weight, [b, t - 1, 1]), &device);
    let picked = logp.gather(2, index) * weight;
    Ok((picked.sum().neg().div_scalar(n as f64).reshape([1]), n))
}

/// [`causal_lm_loss`] from logits at the target positions only
/// ([`TargetLogits`](crate::forward::TargetLogits)): the same mean over the same targets.
///
/// # Errors
/// [`Error::InvalidBatch`] for labels outside the vocabulary or no target.
pub fn target_loss(targets: &crate::forward::TargetLogits) -> Result<Tensor<1>> {
    let [n, v] = targets.logits.dims();
    crate::distill::hard_ce(
        targets.logits.clone().reshape([1, n, v]),
        std::slice::from_ref(&targets.labels),
    )
}
