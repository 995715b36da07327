//! Adding domain tokens to a base tokenizer and growing a model's embeddings to match.

use std::collections::BTreeMap;

use slm_core::model::{Decoder, hf_names};
use slm_core::tokenizer::Tokenizer;
use slm_core::weights::{StorageDtype, TensorInfo, WeightSource};
use tokenizers::AddedToken;

use crate::error::{Error, Result};

/// Returns `base` plus `new_tokens` as added (non-special) tokens, with `base`'s chat template
/// and special-token names kept. Tokens `base` already has are skipped; the new ones get the
/// ids after the current vocabulary, in order.
///
/// Added tokens are matched in the raw text before pre-tokenization, so `"mortgage"` becomes
/// one token wherever it occurs (the space before it is then its own token).
pub fn extend_tokenizer<S: AsRef<str>>(base: &Tokenizer, new_tokens: &[S]) -> Result<Tokenizer> {
    // Round-trip through `save`/`from_model_dir` so `tokenizer_config.json` (bos/eos/pad names
    // and the chat template) survives; slm-core's tokenizer has no setters for them.
    let dir = tempfile::tempdir().map_err(|source| Error::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    base.save(dir.path())?;
    let mut inner = base.inner().clone();
    let fresh: Vec<AddedToken> = new_tokens
        .iter()
        .map(AsRef::as_ref)
        .filter(|t| !t.is_empty() && inner.token_to_id(t).is_none())
        .map(|t| AddedToken::from(t.to_string(), false))
        .collect();
    inner.add_tokens(fresh).map_err(|source| Error::Tokenizer {
        action: "adding tokens",
        source,
    })?;
    let file = dir.path().join("tokenizer.json");
    inner
        .save(&file, false)
        .map_err(|source| Error::Tokenizer {
            action: "saving",
            source,
        })?;
    Ok(Tokenizer::from_model_dir(dir.path())?)
}

/// Named f32 tensors held in memory, so a modified parameter set can go back through
/// [`Decoder::from_weights`] with its strict name and shape checks.
struct MemoryWeights(BTreeMap<String, (Vec<usize>, Vec<f32>)>);

impl WeightSource for MemoryWeights {
    fn source_name(&self) -> String {
        "resized embeddings (in memory)".into()
    }

    fn tensor_names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    fn tensor_info(&self, name: &str) -> Option<TensorInfo> {
        self.0.get(name).map(|(shape, _)| TensorInfo {
            shape: shape.clone(),
            dtype: StorageDtype::F32,
        })
    }

    fn read_f32(&self, name: &str) -> slm_core::Result<Vec<f32>> {
        self.0
            .get(name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| slm_core::Error::MissingTensor {
                source_name: self.source_name(),
                name: name.to_string(),
            })
    }
}

/// Grows `decoder`'s vocabulary to `after` (an extension of `before`, as
/// [`extend_tokenizer`] makes) and returns the new decoder, with `vocab_size` updated in its
/// config.
///
/// Every token `after` has and `before` lacks gets an embedding row equal to the mean of the
/// rows of the sub-tokens `before` splits its text into (without special tokens).
/// transformers' `resize_token_embeddings` (with its default `mean_resizing=True`) draws new
/// rows around the mean of *all* old rows; averaging the token's own pieces, the usual recipe
/// for domain tokens, starts it at what the model already makes of that text. Rows of
/// existing tokens are untouched, so logits of sequences without new tokens are unchanged
/// over the old vocabulary.
///
/// **LM head.** A tied model (`tie_word_embeddings`) shares the row. An untied `lm_head` gets
/// the same treatment on its own rows: the new output row is the mean of the sub-tokens'
/// output rows, so the new token starts out about as likely as its pieces rather than at an
/// arbitrary logit. A model whose vocabulary is padded beyond `before` (more rows than tokens)
/// keeps its size when the new tokens fit; the padding rows they land on are overwritten.
pub fn resize_embeddings(
    decoder: &Decoder,
    before: &Tokenizer,
    after: &Tokenizer,
) -> Result<Decoder> {
    let config = decoder.config();
    let old_vocab = config.vocab_size;
    if before.vocab_size() > old_vocab {
        return Err(Error::VocabMismatch {
            tokenizer: before.vocab_size(),
            model: old_vocab,
        });
    }
    if let Some(id) = (0..before.vocab_size() as u32)
        .find(|&id| before.inner().id_to_token(id) != after.inner().id_to_token(id))
    {
        return Err(Error::InvalidOption {
            name: "after",
            reason: format!("not an extension of the base tokenizer: id {id} differs"),
        });
    }
    let new_vocab = old_vocab.max(after.vocab_size());
    let hidden = config.hidden_size;
    // (new id, sub-token ids under `before`)
    let mut plan = Vec::new();
    for id in before.vocab_size() as u32..after.vocab_size() as u32 {
        let Some(text) = after.inner().id_to_token(id) else {
            continue;
        };
        // Added tokens are stored as text; vocabulary tokens in byte-level form, which
        // `decode` turns back into text.
        let added = after.inner().get_added_vocabulary();
        let surface = if added.get_added_tokens_decoder().contains_key(&id) {
            text.clone()
        } else {
            after.decode(&[id], false)?
        };
        let pieces = before.encode(&surface, false)?;
        if pieces.is_empty() {
            return Err(Error::InvalidOption {
                name: "new_tokens",
                reason: format!("token `{text}` encodes to nothing under the base tokenizer"),
            });
        }
        plan.push((id as usize, pieces));
    }

    let mut params: BTreeMap<String, (Vec<usize>, Vec<f32>)> = decoder
        .named_parameters()?
        .into_iter()
        .map(|(name, shape, values)| (name, (shape, values)))
        .collect();
    for name in ["model.embed_tokens.weight", "lm_head.weight"] {
        let Some((shape, values)) = params.get_mut(name) else {
            continue;
        };
        values.resize(new_vocab * hidden, 0.0);
        shape[0] = new_vocab;
        for (id, pieces) in &plan {
            let row = mean_row(values, hidden, pieces);
            values[id * hidden..(id + 1) * hidden].copy_from_slice(&row);
        }
    }
    let mut new_config = config.clone();
    new_config.vocab_size = new_vocab;
    let on_disk = hf_names::to_checkpoint(
        &new_config,
        params.into_iter().map(|(n, (s, v))| (n, s, v)).collect(),
    )?;
    let weights = MemoryWeights(on_disk.into_iter().map(|(n, s, v)| (n, (s, v))).collect());
    Ok(Decoder::from_weights(
        &new_config,
        &weights,
        &decoder.device(),
    )?)
}

/// The mean of rows `ids` of a row-major `[_, hidden]` matrix: rows summed in order in f32,
/// then divided by their count.
pub(crate) fn mean_row(matrix: &[f32], hidden: usize, ids: &[u32]) -> Vec<f32> {
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
