//! Model surgery on the vocabulary: [`resize_vocab`] grows a decoder's token embedding (and an
//! untied LM head) to a larger vocabulary and starts chosen rows as the mean of existing rows,
//! the model side of adding tokens to a tokenizer.

use super::decoder::Decoder;
use crate::error::{Error, Result};

/// The parameters a vocabulary resize changes: one row per token.
const VOCAB_ROWS: [&str; 2] = ["model.embed_tokens.weight", "lm_head.weight"];

/// One row [`resize_vocab`] writes: row `id` of the token embedding (and of an untied LM head)
/// starts as the mean of the rows `mean_of`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRow {
    /// The token id whose row is written.
    pub id: u32,
    /// Existing token ids whose rows are averaged: summed in order in f32, then divided by
    /// their count.
    pub mean_of: Vec<u32>,
}

/// Returns `decoder` with a vocabulary of `vocab_size` rows and `vocab_size` in its config.
///
/// The token embedding, and an untied `lm_head`, get `vocab_size` rows: existing rows are
/// untouched (so logits of sequences without new tokens are unchanged over the old
/// vocabulary), each [`NewRow`] is written in order as the mean of its `mean_of` rows of the
/// same matrix, and any other added row is zero. A tied model shares the embedding row. Rows
/// below the old size may be rewritten too (a vocabulary padded beyond its tokenizer keeps its
/// size when the new tokens land on padding rows).
///
/// The new decoder is built from [`Decoder::named_parameters`] on the same device.
///
/// # Errors
/// [`Error::InvalidInput`] for a `vocab_size` below the model's or a row without `mean_of`
/// ids; [`Error::TokenOutOfVocab`] for a row id at or beyond `vocab_size`, or a `mean_of` id
/// beyond the model's vocabulary; [`Error::Backend`] when the parameters cannot be read.
pub fn resize_vocab(decoder: &Decoder, vocab_size: usize, rows: &[NewRow]) -> Result<Decoder> {
    let config = decoder.config();
    let old_vocab = config.vocab_size;
    if vocab_size < old_vocab {
        return Err(Error::InvalidInput(format!(
            "a vocabulary resize to {vocab_size} rows would drop rows of the model's {old_vocab}"
        )));
    }
    for row in rows {
        if row.id as usize >= vocab_size {
            return Err(Error::TokenOutOfVocab {
                id: row.id,
                vocab_size,
            });
        }
        if row.mean_of.is_empty() {
            return Err(Error::InvalidInput(format!(
                "the new row of token {} averages no rows",
                row.id
            )));
        }
        if let Some(&id) = row.mean_of.iter().find(|&&id| id as usize >= old_vocab) {
            return Err(Error::TokenOutOfVocab {
                id,
                vocab_size: old_vocab,
            });
        }
    }
    let hidden = config.hidden_size;
    let mut params = decoder.named_parameters()?;
    for (name, shape, values) in params.iter_mut() {
        if !VOCAB_ROWS.contains(&name.as_str()) {
            continue;
        }
        values.resize(vocab_size * hidden, 0.0);
        shape[0] = vocab_size;
        for row in rows {
            let mean = mean_row(values, hidden, &row.mean_of);
            let id = row.id as usize;
            values[id * hidden..(id + 1) * hidden].copy_from_slice(&mean);
        }
    }
    let mut new_config = config.clone();
    new_config.vocab_size = vocab_size;
    Decoder::from_named_parameters(
        &new_config,
        params,
        "resized embeddings (in memory)",
        &decoder.device(),
    )
}

/// The mean of rows `ids` of a row-major `[_, hidden]` matrix: rows summed in order in f32,
/// then divided by their count.
fn mean_row(matrix: &[f32], hidden: usize, ids: &[u32]) -> Vec<f32> {
    let mut sum = vec![0f32; hidden];
    for &id in ids {
        let row = &matrix[id as usize * hidden..(id as usize + 1) * hidden];
        for (s, x) in sum.iter_mut().zip(row) {
            *s += x;
        }
    }
    let n = ids.len() as f32;
    sum.iter().map(|s| s / n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_rows_sum_in_order_then_divide() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(mean_row(&m, 2, &[0, 2]), vec![3.0, 4.0]);
        assert_eq!(mean_row(&m, 2, &[1]), vec![3.0, 4.0]);
        assert_eq!(mean_row(&m, 2, &[1, 1, 2]), vec![11.0 / 3.0, 14.0 / 3.0]);
    }
}
