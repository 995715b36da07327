//! A [`Batch`] through the decoder for training: token ids, RoPE positions and the attention
//! mask as tensors, then [`Decoder::forward_tensors`] (differentiable on an autodiff device).
//!
//! The mask is causal, hides padding, and is block-diagonal over packed examples: a token sees
//! only earlier tokens of its own segment (`segment_ids`), and positions restart at 0 in each,
//! so a packed row computes exactly what its examples would alone.

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
    Ok(model.forward_tensors(ids, pos, mask, None, LogitsScope::All))
}
