//! A [`Batch`] through the decoder for training: token ids, RoPE positions and the attention
//! mask as tensors, then [`Decoder::forward_tensors`] (differentiable on an autodiff device).
//!
//! The mask is causal, hides padding, and is block-diagonal over packed examples: a token sees
//! only earlier tokens of its own segment (`segment_ids`), and positions restart at 0 in each,
//! so a packed row computes exactly what its examples would alone.
//!
//! [`target_logits`] applies the LM head only where the loss needs it: at the positions whose
//! next token is a target. A classifier's batch has one or two targets per example, so this
//! skips nearly all of the head's `[tokens, vocab]` product, its backward and the softmax over
//! the vocabulary (for SmolLM2-135M the head is a fifth of the forward's multiply-adds).

use burn::prelude::*;
use slm_core::model::Decoder;
use slm_core::prelude::LogitsScope;
use slm_data::inputs::Batch;

use crate::error::{Error, Result};

/// The `[B, T, vocab]` logits of `batch` under `model`.
///
/// # Errors
/// [`Error::InvalidBatch`] for an empty or ragged batch, or ids outside the vocabulary.
pub fn batch_logits(model: &Decoder, batch: &Batch) -> Result<Tensor<3>> {
    let (ids, pos, mask) = batch_tensors(model, batch)?;
    Ok(model.forward_tensors(ids, pos, mask, None, LogitsScope::All))
}

/// The logits of a batch at its target positions only: row `i` of `logits` (`[N, vocab]`) is
/// position `rows[i] = (b, t)`, which predicts `labels[i]` (the batch's label at `t + 1`).
#[derive(Debug, Clone)]
pub struct TargetLogits {
    /// `[N, vocab]`, in row-major `(b, t)` order.
    pub logits: Tensor<2>,
    /// The token each row predicts.
    pub labels: Vec<i64>,
    /// The `(row, position)` of each.
    pub rows: Vec<(usize, usize)>,
}

/// The positions `(b, t)` of `batch` whose next label is a target, with those labels.
pub fn target_rows(batch: &Batch) -> (Vec<(usize, usize)>, Vec<i64>) {
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (b, row) in batch.labels.iter().enumerate() {
        for (t, w) in row.windows(2).enumerate() {
            if w[1] != slm_data::inputs::IGNORE_INDEX {
                rows.push((b, t));
                labels.push(w[1]);
            }
        }
    }
    (rows, labels)
}

/// [`batch_logits`] at the target positions only ([`TargetLogits`]): the same values at those
/// positions, the LM head applied to `N` rows instead of `B * T`.
///
/// # Errors
/// As [`batch_logits`]; [`Error::InvalidBatch`] for a batch without targets or with labels
/// outside the vocabulary.
pub fn target_logits(model: &Decoder, batch: &Batch) -> Result<TargetLogits> {
    let (ids, pos, mask) = batch_tensors(model, batch)?;
    let (rows, labels) = target_rows(batch);
    let vocab = model.config().vocab_size;
    if rows.is_empty() {
        return Err(Error::InvalidBatch(
            "no position has a target (every label is -100)".into(),
        ));
    }
    if let Some(l) = labels.iter().find(|&&l| l < 0 || l as usize >= vocab) {
        return Err(Error::InvalidBatch(format!(
            "label {l} is outside the vocabulary ({vocab})"
        )));
    }
    let h = model.hidden_states(ids, pos, mask, None);
    let [b, t, d] = h.dims();
    let index: Vec<i32> = rows.iter().map(|&(r, p)| (r * t + p) as i32).collect();
    let index = Tensor::<1, Int>::from_data(TensorData::new(index, [rows.len()]), &h.device());
    let picked = h.reshape([b * t, d]).select(0, index);
    Ok(TargetLogits {
        logits: model.lm_head(picked),
        labels,
        rows,
    })
}

/// Token ids, positions and the block-diagonal causal mask of `batch` as tensors.
fn batch_tensors(
    model: &Decoder,
    batch: &Batch,
) -> Result<(Tensor<2, Int>, Tensor<2, Int>, Tensor<4, Bool>)> {
    let (b, t) = (batch.rows(), batch.seq_len());
    let vocab = model.config().vocab_size;
    if b == 0 || t == 0 {
        return Err(Error::InvalidBatch("the batch is empty".into()));
    }
    let ragged = |lens: Vec<usize>| lens.len() != b || lens.iter().any(|&l| l != t);
    let lens = |rows: &[Vec<u32>]| rows.iter().map(Vec::len).collect::<Vec<_>>();
    if ragged(lens(&batch.input_ids))
        || ragged(lens(&batch.position_ids))
        || ragged(lens(&batch.segment_ids))
        || ragged(batch.labels.iter().map(Vec::len).collect())
    {
        return Err(Error::InvalidBatch(format!(
            "rows of ids, positions, segments and labels must all be {b} x {t}"
        )));
    }
    if let Some(id) = batch
        .input_ids
        .iter()
        .flatten()
        .find(|&&i| i as usize >= vocab)
    {
        return Err(Error::InvalidBatch(format!(
            "token id {id} is outside the vocabulary ({vocab})"
        )));
    }
    let device = model.device();
    let ids: Vec<i32> = batch
        .input_ids
        .iter()
        .flatten()
        .map(|&i| i as i32)
        .collect();
    let pos: Vec<i32> = batch
        .position_ids
        .iter()
        .flatten()
        .map(|&p| p as i32)
        .collect();
    let mut masked = Vec::with_capacity(b * t * t);
    for seg in &batch.segment_ids {
        for q in 0..t {
            for k in 0..t {
                // Padding (segment 0) sees only itself, so its softmax stays finite.
                let visible = k <= q && seg[k] == seg[q] && (seg[q] != 0 || k == q);
                masked.push(!visible);
            }
        }
    }
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, t]), &device);
    let pos = Tensor::<2, Int>::from_data(TensorData::new(pos, [b, t]), &device);
    let mask = Tensor::<4, Bool>::from_data(TensorData::new(masked, [b, 1, t, t]), &device);
    Ok((ids, pos, mask))
}
