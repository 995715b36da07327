//! [`CausalLm`]: what every other slm crate programs against.
//!
//! It is a trait so that evaluation, serving, distillation and synthetic-data code work with any
//! implementation: the burn [`Decoder`](crate::model::Decoder) (any device, trainable), a future
//! CPU fast path over quantized weights, or a test double.

use crate::config::ModelConfig;
use crate::error::{Error, Result};

/// Which positions get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogitsScope {
    /// Every position (scoring, training, parity tests).
    #[default]
    All,
    /// Only the last position of each row (generation): skips most of the LM-head work.
    Last,
}

/// A rectangular batch of token ids with an optional padding mask.
#[derive(Debug, Clone, Default)]
pub struct TokenBatch {
    /// `[B][T]` token ids; every row has the same length.
    pub ids: Vec<Vec<u32>>,
    /// `[B][T]`, `true` for real tokens, `false` for padding (left padding for generation).
    /// `None` means every token is real.
    pub attention_mask: Option<Vec<Vec<bool>>>,
    /// Which positions to return logits for.
    pub scope: LogitsScope,
}

impl TokenBatch {
    /// One unpadded sequence.
    pub fn single(ids: Vec<u32>, scope: LogitsScope) -> Self {
        Self {
            ids: vec![ids],
            attention_mask: None,
            scope,
        }
    }

    /// Left-pads `rows` with `pad_id` to a common length and builds the mask.
    pub fn left_padded(rows: &[Vec<u32>], pad_id: u32, scope: LogitsScope) -> Self {
        let t = rows.iter().map(Vec::len).max().unwrap_or(0);
        let ids = rows
            .iter()
            .map(|r| {
                std::iter::repeat_n(pad_id, t - r.len())
                    .chain(r.iter().copied())
                    .collect()
            })
            .collect();
        let mask = rows
            .iter()
            .map(|r| {
                std::iter::repeat_n(false, t - r.len())
                    .chain(std::iter::repeat_n(true, r.len()))
                    .collect()
            })
            .collect();
        Self {
            ids,
            attention_mask: Some(mask),
            scope,
        }
    }

    /// Checks the batch is non-empty, rectangular, in the vocabulary and matches its mask;
    /// returns `(batch, seq_len)`.
    pub fn validate(&self, vocab_size: usize) -> Result<(usize, usize)> {
        let b = self.ids.len();
        let t = self.ids.first().map(Vec::len).unwrap_or(0);
        if b == 0 || t == 0 {
            return Err(Error::InvalidInput("empty batch".into()));
        }
        if self.ids.iter().any(|r| r.len() != t) {
            return Err(Error::InvalidInput(
                "rows of the batch have different lengths".into(),
            ));
        }
        if let Some(id) = self
            .ids
            .iter()
            .flatten()
            .find(|&&id| id as usize >= vocab_size)
        {
            return Err(Error::TokenOutOfVocab {
                id: *id,
                vocab_size,
            });
        }
        if let Some(m) = &self.attention_mask
            && (m.len() != b || m.iter().any(|r| r.len() != t))
        {
            return Err(Error::InvalidInput(
                "attention_mask does not match the ids' shape".into(),
            ));
        }
        Ok((b, t))
    }
}

/// Logits on the host, `[batch, positions, vocab]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    /// The values.
    pub values: Vec<f32>,
    /// Rows of the batch.
    pub batch: usize,
    /// Positions per row (1 with [`LogitsScope::Last`]).
    pub positions: usize,
    /// Vocabulary size.
    pub vocab: usize,
}

impl Logits {
    /// The logits of row `b` at position `t`.
    pub fn at(&self, b: usize, t: usize) -> &[f32] {
        let start = (b * self.positions + t) * self.vocab;
        &self.values[start..start + self.vocab]
    }

    /// The logits of the last position of row `b`.
    pub fn last(&self, b: usize) -> &[f32] {
        self.at(b, self.positions - 1)
    }
}

/// A causal language model: token ids in, next-token logits out, with a cache for incremental
/// decoding.
pub trait CausalLm {
    /// Per-sequence state kept between calls (keys and values of past tokens).
    type Cache;

    /// The model's configuration.
    fn config(&self) -> &ModelConfig;

    /// An empty cache.
    fn new_cache(&self) -> Self::Cache;

    /// Runs the model over `batch`, appending it to `cache`. Positions continue from what the
    /// cache already holds; padded positions are masked out.
    fn forward(&self, batch: &TokenBatch, cache: &mut Self::Cache) -> Result<Logits>;
}
