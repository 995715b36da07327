//! Adding domain tokens to a base tokenizer ([`extend_tokenizer`]), the ids they get and the
//! base sub-tokens each starts from ([`new_token_rows`]); the embedding resize itself is model
//! surgery and lives in slm-core ([`resize_vocab`]), which [`resize_embeddings`] calls.

use slm_core::model::{Decoder, NewRow, resize_vocab};
use slm_core::tokenizer::Tokenizer;
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
///
/// The tokenizer side (which ids, from which sub-tokens) is [`new_token_rows`]; the model
/// surgery is slm-core's [`resize_vocab`].
///
/// # Errors
/// [`Error::VocabMismatch`] when `before` has more tokens than the model's vocabulary, the
/// errors of [`new_token_rows`], and [`Error::Core`] from the resize.
pub fn resize_embeddings(
    decoder: &Decoder,
    before: &Tokenizer,
    after: &Tokenizer,
) -> Result<Decoder> {
    let old_vocab = decoder.config().vocab_size;
    if before.vocab_size() > old_vocab {
        return Err(Error::VocabMismatch {
            tokenizer: before.vocab_size(),
            model: old_vocab,
        });
    }
    let rows = new_token_rows(before, after)?;
    let new_vocab = old_vocab.max(after.vocab_size());
    Ok(resize_vocab(decoder, new_vocab, &rows)?)
}

/// The embedding rows the tokens `after` adds to `before` need: for each id `after` has and
/// `before` lacks, in order, the ids of the sub-tokens `before` splits its text into (without
/// special tokens), whose mean row it starts from ([`resize_vocab`] writes them).
///
/// # Errors
/// [`Error::InvalidOption`] when `after` is not an extension of `before` (an id below
/// `before`'s vocabulary size maps to another token) or a new token encodes to nothing under
/// `before`; [`Error::Core`] when encoding or decoding fails.
pub fn new_token_rows(before: &Tokenizer, after: &Tokenizer) -> Result<Vec<NewRow>> {
    if let Some(id) = (0..before.vocab_size() as u32)
        .find(|&id| before.inner().id_to_token(id) != after.inner().id_to_token(id))
    {
        return Err(Error::InvalidOption {
            name: "after",
            reason: format!("not an extension of the base tokenizer: id {id} differs"),
        });
    }
    let mut rows = Vec::new();
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
        rows.push(NewRow {
            id,
            mean_of: pieces,
        });
    }
    Ok(rows)
}
