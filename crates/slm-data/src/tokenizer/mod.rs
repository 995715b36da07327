//! Domain tokenizers: training a byte-level BPE tokenizer on a corpus ([`train_bpe`]), measuring
//! how many tokens a tokenizer spends per word on domain text ([`fertility`]), and extending a
//! base tokenizer with domain tokens ([`extend_tokenizer`]), with the ids the new tokens get and
//! the sub-tokens each starts from ([`new_token_rows`]); [`resize_embeddings`] hands those to
//! slm-core's model surgery ([`slm_core::model::resize_vocab`]).
//!
//! The trained tokenizer uses the Llama 3 layout: a regex split (contractions, letter runs,
//! digit groups of at most three, punctuation runs, whitespace) followed by GPT-2's byte-level
//! mapping, so every byte sequence is encodable and nothing maps to an unknown token.

mod extend;

pub use extend::{extend_tokenizer, new_token_rows, resize_embeddings};

use std::path::PathBuf;

use slm_core::tokenizer::Tokenizer;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::error::{Error, Result};

/// The Llama 3 (tiktoken `cl100k`-style) pre-tokenizer pattern, as in Llama 3's
/// `tokenizer.json`.
pub const LLAMA3_SPLIT_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The special tokens [`BpeTrainingConfig::new`] reserves (ids 0, 1, 2, in this order), named
/// as Llama 3 names them.
pub const DEFAULT_SPECIAL_TOKENS: [&str; 3] = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"];

/// How to train a byte-level BPE tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpeTrainingConfig {
    /// Target vocabulary size, special tokens and the 256 byte symbols included.
    pub vocab_size: usize,
    /// Special tokens, given the first ids in this order; never split, never merged.
    pub special_tokens: Vec<String>,
    /// A pair must occur at least this often to be merged.
    pub min_frequency: u64,
}

impl BpeTrainingConfig {
    /// `vocab_size` with [`DEFAULT_SPECIAL_TOKENS`] and `min_frequency` 2.
    pub fn new(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            special_tokens: DEFAULT_SPECIAL_TOKENS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            min_frequency: 2,
        }
    }

    /// With these special tokens instead of the defaults.
    pub fn with_special_tokens(
        mut self,
        tokens: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.special_tokens = tokens.into_iter().map(Into::into).collect();
        self
    }

    /// Checks the vocabulary leaves room for the 256 bytes and the special tokens.
    pub fn validate(&self) -> Result<()> {
        let floor = 256 + self.special_tokens.len();
        if self.vocab_size < floor {
            return Err(Error::InvalidOption {
                name: "vocab_size",
                reason: format!(
                    "{} is below 256 byte symbols + {} special tokens",
                    self.vocab_size,
                    self.special_tokens.len()
                ),
            });
        }
        Ok(())
    }
}

/// An untrained tokenizer with the Llama 3 pre-tokenizer, byte-level decoding and a BPE model.
fn byte_level_skeleton() -> Result<tokenizers::Tokenizer> {
    let mut tk = tokenizers::Tokenizer::new(BPE::default());
    let split = Split::new(
        SplitPattern::Regex(LLAMA3_SPLIT_PATTERN.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|source| Error::Tokenizer {
        action: "building the pre-tokenizer",
        source,
    })?;
    tk.with_pre_tokenizer(Some(Sequence::new(vec![
        split.into(),
        ByteLevel::new(false, true, false).into(),
    ])));
    tk.with_post_processor(Some(ByteLevel::new(true, false, true)));
    tk.with_decoder(Some(ByteLevel::new(true, true, true)));
    Ok(tk)
}

/// Trains a byte-level BPE tokenizer on `texts` (one document or line per item).
pub fn train_bpe_from_texts<I, S>(texts: I, config: &BpeTrainingConfig) -> Result<Tokenizer>
where
    I: IntoIterator<Item = S>,
    I::IntoIter: Send,
    S: AsRef<str> + Send,
{
    config.validate()?;
    let mut tk = byte_level_skeleton()?;
    let special: Vec<AddedToken> = config
        .special_tokens
        .iter()
        .map(|t| AddedToken::from(t.clone(), true))
        .collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(config.vocab_size)
        .min_frequency(config.min_frequency)
        .show_progress(false)
        .special_tokens(special)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut seen = 0usize;
    let texts = texts.into_iter().inspect(|_| seen += 1);
    tk.train(&mut trainer, texts)
        .map_err(|source| Error::Tokenizer {
            action: "training",
            source,
        })?;
    if seen == 0 {
        return Err(Error::InvalidOption {
            name: "corpus",
            reason: "no text to train on".into(),
        });
    }
    Ok(Tokenizer::new(tk))
}

/// The training texts of `corpus`: a dataset (JSON Lines, CSV/TSV, Parquet, a folder of
/// documents, or a glob over shards such as `curated/train*.parquet`) gives the `text_field`
/// of each record, one text per record; any other file (`.txt`, `.md`, no extension) is read
/// as UTF-8 text, one text per line (line endings kept).
///
/// # Errors
/// [`Error::InvalidOption`] for no paths; reader errors (a missing file, invalid UTF-8, a bad
/// record, a missing `text_field`) name the file and line.
pub fn read_corpus(corpus: &[PathBuf], text_field: &str) -> Result<Vec<String>> {
    if corpus.is_empty() {
        return Err(Error::InvalidOption {
            name: "corpus",
            reason: "no files given".into(),
        });
    }
    let mut texts = Vec::new();
    for path in corpus {
        match crate::readers::read_any(path, &crate::FieldMap::new(text_field)) {
            Ok(dataset) => {
                for example in dataset {
                    texts.push(example?.input);
                }
                continue;
            }
            // Not a dataset format: plain text, below.
            Err(Error::UnsupportedFormat { .. }) => {}
            Err(e) => return Err(e),
        }
        let text = std::fs::read(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let text = String::from_utf8(text).map_err(|e| Error::InvalidUtf8 {
            path: path.clone(),
            line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            valid_up_to: e.utf8_error().valid_up_to(),
        })?;
        texts.extend(text.split_inclusive('\n').map(str::to_string));
    }
    Ok(texts)
}

/// Trains a byte-level BPE tokenizer on `corpus` (text files, or datasets whose `text_field`
/// is the text; see [`read_corpus`]) with `vocab_size` tokens and `special_tokens` at the
/// first ids: what `slm tokenizer train --corpus .. --vocab-size N --out FILE [--text-field F]`
/// runs. Save the result with `tokenizer.inner().save(path, true)` or [`Tokenizer::save`].
///
/// An empty `special_tokens` uses [`DEFAULT_SPECIAL_TOKENS`]. The corpus is read into memory
/// first, so a missing file or bad record is an error naming the file (and line) before
/// training starts.
pub fn train_bpe(
    corpus: &[PathBuf],
    text_field: &str,
    vocab_size: usize,
    special_tokens: &[String],
) -> Result<Tokenizer> {
    let mut config = BpeTrainingConfig::new(vocab_size);
    if !special_tokens.is_empty() {
        config = config.with_special_tokens(special_tokens.iter().cloned());
    }
    train_bpe_from_texts(read_corpus(corpus, text_field)?, &config)
}

/// How many tokens a tokenizer spends on a text sample (special tokens not counted).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FertilityReport {
    /// Texts measured.
    pub texts: usize,
    /// Whitespace-separated words.
    pub words: usize,
    /// Tokens, without special tokens.
    pub tokens: usize,
    /// Characters (Unicode scalar values).
    pub chars: usize,
    /// `tokens / words`: 1.0 means one token per word; lower is better.
    pub tokens_per_word: f64,
    /// `chars / tokens`.
    pub chars_per_token: f64,
    /// Share of distinct words that encode (with a leading space, as inside a sentence) to a
    /// single token.
    pub single_token_word_share: f64,
}

/// Measures `tokenizer` on `texts`.
pub fn fertility<S: AsRef<str>>(tokenizer: &Tokenizer, texts: &[S]) -> Result<FertilityReport> {
    let (mut words, mut tokens, mut chars) = (0usize, 0usize, 0usize);
    let mut distinct = std::collections::BTreeSet::new();
    for text in texts {
        let text = text.as_ref();
        for w in text.split_whitespace() {
            words += 1;
            distinct.insert(w);
        }
        chars += text.chars().count();
        tokens += tokenizer.encode(text, false)?.len();
    }
    let mut single = 0usize;
    for w in &distinct {
        if tokenizer.encode(&format!(" {w}"), false)?.len() == 1 {
            single += 1;
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(FertilityReport {
        texts: texts.len(),
        words,
        tokens,
        chars,
        tokens_per_word: ratio(tokens, words),
        chars_per_token: ratio(chars, tokens),
        single_token_word_share: ratio(single, distinct.len()),
    })
}

/// Fertility of a base and a retrained tokenizer on the same texts.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FertilityComparison {
    /// The base tokenizer.
    pub base: FertilityReport,
    /// The retrained (or extended) tokenizer.
    pub retrained: FertilityReport,
    /// `1 - retrained.tokens / base.tokens`: the share of tokens the retrained tokenizer
    /// saves (negative when it spends more).
    pub token_reduction: f64,
}

/// Measures `base` and `retrained` on `texts`.
pub fn compare_fertility<S: AsRef<str>>(
    base: &Tokenizer,
    retrained: &Tokenizer,
    texts: &[S],
) -> Result<FertilityComparison> {
    let (base, retrained) = (fertility(base, texts)?, fertility(retrained, texts)?);
    let token_reduction = if base.tokens == 0 {
        0.0
    } else {
        1.0 - retrained.tokens as f64 / base.tokens as f64
    };
    Ok(FertilityComparison {
        base,
        retrained,
        token_reduction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let base = [
            "Your mortgage refinance application was approved.",
            "Click here to claim your free prize now!!!",
            "The meeting about the quarterly budget moved to Friday.",
            "Limited offer: cheap mortgage rates, refinance today.",
        ];
        (0..50)
            .map(|i| format!("{} #{i}\n", base[i % base.len()]))
            .collect()
    }

    #[test]
    fn trains_round_trips_and_reserves_special_tokens() {
        let tk = train_bpe_from_texts(corpus(), &BpeTrainingConfig::new(400)).unwrap();
        assert!(tk.vocab_size() <= 400 && tk.vocab_size() > 259);
        assert_eq!(tk.token_to_id("<|begin_of_text|>"), Some(0));
        assert_eq!(tk.token_to_id("<|pad|>"), Some(2));
        let text = "Refinance your mortgage, naïve ünïcødé 12345 \u{1F600}";
        let ids = tk.encode(text, false).unwrap();
        assert_eq!(tk.decode(&ids, false).unwrap(), text);
        // Domain words the corpus repeats become single tokens.
        assert_eq!(tk.encode(" mortgage", false).unwrap().len(), 1);
    }

    #[test]
    fn retrained_tokenizer_has_lower_fertility_on_its_domain() {
        let texts = corpus();
        let small = train_bpe_from_texts(texts.clone(), &BpeTrainingConfig::new(262)).unwrap();
        let big = train_bpe_from_texts(texts.clone(), &BpeTrainingConfig::new(500)).unwrap();
        let cmp = compare_fertility(&small, &big, &texts).unwrap();
        let (a, b) = (cmp.base, cmp.retrained);
        assert!(cmp.token_reduction > 0.0);
        assert!(b.tokens_per_word < a.tokens_per_word, "{a:?} vs {b:?}");
        assert!(b.single_token_word_share > a.single_token_word_share);
        assert_eq!(a.words, b.words);
    }

    #[test]
    fn rejects_tiny_vocab_and_empty_corpus() {
        let err = train_bpe_from_texts(corpus(), &BpeTrainingConfig::new(100)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidOption {
                    name: "vocab_size",
                    ..
                }
            ),
            "{err}"
        );
        let err = train_bpe_from_texts(Vec::<String>::new(), &BpeTrainingConfig::new(300));
        assert!(err.is_err());
        assert!(train_bpe(&[], "text", 300, &[]).is_err());
    }

    #[test]
    fn trains_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corpus.txt");
        std::fs::write(&path, corpus().concat()).unwrap();
        let tk = train_bpe(&[path], "text", 300, &["<s>".to_string()]).unwrap();
        assert_eq!(tk.token_to_id("<s>"), Some(0));
        let missing = train_bpe(&[dir.path().join("nope.txt")], "text", 300, &[]).unwrap_err();
        assert!(missing.to_string().contains("nope.txt"));
    }

    #[test]
    fn a_corpus_can_be_text_lines_or_a_dataset_field() {
        let dir = tempfile::tempdir().unwrap();
        let txt = dir.path().join("notes.txt");
        std::fs::write(&txt, "first line\nsecond line\n").unwrap();
        let rows = [
            crate::Example::new("1", "an email body"),
            crate::Example::new("2", "another body"),
        ];
        crate::writers::write_parquet(dir.path().join("train-0.parquet"), &rows[..1]).unwrap();
        crate::writers::write_parquet(dir.path().join("train-1.parquet"), &rows[1..]).unwrap();
        let jsonl = dir.path().join("val.jsonl");
        crate::write_jsonl(&jsonl, &rows).unwrap();
        let texts = read_corpus(
            &[txt, dir.path().join("train-*.parquet"), jsonl.clone()],
            "input",
        )
        .unwrap();
        assert_eq!(
            texts,
            [
                "first line\n",
                "second line\n",
                "an email body",
                "another body",
                "an email body",
                "another body"
            ]
        );
        // A dataset without the field is an error naming the file and line, not JSON as text.
        let err = read_corpus(&[jsonl], "text").unwrap_err();
        assert!(
            err.to_string().ends_with("val.jsonl:1: no field `text`"),
            "{err}"
        );
    }
}
