//! Rebuilding a Hugging Face tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! Only byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`) are supported. The
//! pre-tokenizer depends on `tokenizer.ggml.pre` and reproduces the split llama.cpp applies for
//! that value (`src/llama-vocab.cpp`), written as the `tokenizer.json` of the original model
//! has it:
//!
//! | `pre` | normalizer | pre-tokenizer | BPE `ignore_merges` | BOS by default |
//! | --- | --- | --- | --- | --- |
//! | `llama-bpe`, `llama3`, `llama-v3` | - | Split(Llama-3 regex) + ByteLevel | yes | yes |
//! | `qwen2` | NFC | Split(Qwen2 regex) + ByteLevel | no | no |
//! | `smollm` | - | Digits(individual) + ByteLevel(GPT-2 regex) | no | no |
//! | `gpt-2`, `gpt2` | - | ByteLevel(GPT-2 regex) | no | no |
//! | `default` or absent | - | llama.cpp's four default splits + ByteLevel | no | no |
//!
//! Tokens of type 3 (control) become special added tokens, type 4 (user-defined) plain added
//! tokens, and `bos`/`eos`/`unknown`/`padding` ids are registered as special too.
//! `tokenizer.ggml.add_bos_token` / `add_eos_token` drive the post-processor template; the
//! decoder is ByteLevel. For SmolLM2 this gives the same ids, offsets and decoded strings as
//! the `tokenizer.json` transformers writes from the GGUF.

use std::collections::BTreeMap;

use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::processors::sequence::Sequence as PostSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::GgufFile;
use crate::error::{Error, Result};

/// Split regex of Llama 3 (`tokenizer.json` of Meta-Llama-3; llama.cpp's LLAMA3 pre type).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Split regex of Qwen2 (single digits).
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// llama.cpp's splits for `pre = "default"`, applied one after the other.
const DEFAULT_REGEXES: [&str; 4] = [
    r"[\p{P}\$\+<=>\^~\|]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"\p{N}+",
    r"[0-9][0-9][0-9]",
];

/// GGUF token types (`GGUFTokenType` of gguf-py).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The pre-tokenizer families of `tokenizer.ggml.pre` this module knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pre {
    Llama3,
    Qwen2,
    SmolLm,
    Gpt2,
    Default,
}

impl Pre {
    fn from_name(pre: &str) -> Option<Self> {
        Some(match pre {
            "llama-bpe" | "llama3" | "llama-v3" => Pre::Llama3,
            "qwen2" => Pre::Qwen2,
            "smollm" => Pre::SmolLm,
            "gpt-2" | "gpt2" => Pre::Gpt2,
            "default" => Pre::Default,
            _ => return None,
        })
    }

    /// llama.cpp's `add_bos` default for the pre type (used when `add_bos_token` is absent).
    fn adds_bos(self) -> bool {
        self == Pre::Llama3
    }
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

fn split(regex: &str) -> Result<PreTokenizerWrapper> {
    Split::new(
        SplitPattern::Regex(regex.to_owned()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map(Into::into)
    .map_err(tok_err)
}

fn pre_tokenizer(pre: Pre) -> Result<PreTokenizerWrapper> {
    let byte_level = |trim_offsets, use_regex| -> PreTokenizerWrapper {
        ByteLevel::new(false, trim_offsets, use_regex).into()
    };
    Ok(match pre {
        Pre::Llama3 => PreSequence::new(vec![split(LLAMA3_REGEX)?, byte_level(true, false)]).into(),
        Pre::Qwen2 => PreSequence::new(vec![split(QWEN2_REGEX)?, byte_level(false, false)]).into(),
        Pre::SmolLm => PreSequence::new(vec![Digits::new(true).into(), byte_level(true, true)]).into(),
        Pre::Gpt2 => byte_level(true, true),
        Pre::Default => {
            let mut steps = DEFAULT_REGEXES.iter().map(|r| split(r)).collect::<Result<Vec<_>>>()?;
            steps.push(byte_level(true, false));
            PreSequence::new(steps).into()
        }
    })
}

/// `[bos] $A [eos]` / `[bos] $A [eos] [bos]:1 $B:1 [eos]:1` with the given optional
/// `(content, id)` tokens, built through serde so any token content is accepted.
fn template(bos: Option<(&str, u32)>, eos: Option<(&str, u32)>) -> Result<TemplateProcessing> {
    use serde_json::json;
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut special_tokens = serde_json::Map::new();
    for (seq, type_id) in [("A", 0), ("B", 1)] {
        let mut pieces = Vec::new();
        if let Some((t, _)) = bos {
            pieces.push(json!({"SpecialToken": {"id": t, "type_id": type_id}}));
        }
        pieces.push(json!({"Sequence": {"id": seq, "type_id": type_id}}));
        if let Some((t, _)) = eos {
            pieces.push(json!({"SpecialToken": {"id": t, "type_id": type_id}}));
        }
        if seq == "A" {
            single.extend(pieces.iter().cloned());
        }
        pair.extend(pieces);
    }
    for (t, id) in bos.into_iter().chain(eos) {
        special_tokens.insert(t.to_owned(), json!({"id": t, "ids": [id], "tokens": [t]}));
    }
    serde_json::from_value(json!({
        "type": "TemplateProcessing",
        "single": single,
        "pair": pair,
        "special_tokens": special_tokens,
    }))
    .map_err(tok_err)
}

/// Builds the `tokenizers::Tokenizer` described by a GGUF file's `tokenizer.ggml.*` metadata.
///
/// Fails with [`Error::Unsupported`] (`what = "GGUF tokenizer model"`) for a model other than
/// `gpt2` (SentencePiece `llama` vocabularies are not implemented) or an unknown
/// `tokenizer.ggml.pre`, with [`Error::MissingField`] when required keys are absent, and with
/// [`Error::Tokenizer`] when the vocabulary and merges are inconsistent.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<Tokenizer> {
    let model = file.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(Error::Unsupported {
            what: "GGUF tokenizer model",
            value: model.to_owned(),
        });
    }
    let pre_name = match file.get("tokenizer.ggml.pre") {
        Some(v) => v
            .as_str()
            .ok_or_else(|| Error::MissingField {
                source_name: file.source_name(),
                field: "tokenizer.ggml.pre".into(),
            })?
            .to_owned(),
        None => {
            tracing::warn!(
                path = %file.path().display(),
                "GGUF has no tokenizer.ggml.pre; using llama.cpp's `default` pre-tokenizer"
            );
            "default".to_owned()
        }
    };
    let pre = Pre::from_name(&pre_name).ok_or_else(|| Error::Unsupported {
        what: "GGUF tokenizer model",
        value: format!("gpt2 with tokenizer.ggml.pre = `{pre_name}`"),
    })?;

    let tokens = file.get_str_array("tokenizer.ggml.tokens")?;
    let vocab_size = tokens.len();
    let merges = file
        .get_str_array("tokenizer.ggml.merges")?
        .into_iter()
        .enumerate()
        .map(|(i, m)| match m.split_once(' ') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(' ') => {
                Ok((a.to_owned(), b.to_owned()))
            }
            _ => Err(Error::Tokenizer(format!(
                "{}: merge #{i} `{m}` is not two tokens separated by one space",
                file.source_name()
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    let token_types = match file.get("tokenizer.ggml.token_type") {
        None => vec![1; vocab_size],
        Some(_) => file.get_i64_array("tokenizer.ggml.token_type")?,
    };
    if token_types.len() != vocab_size {
        return Err(Error::Tokenizer(format!(
            "{}: {} token types for {vocab_size} tokens",
            file.source_name(),
            token_types.len()
        )));
    }

    // Duplicate strings keep the last id, like transformers' `{tok: i for i, tok in ...}`.
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| ((*t).to_owned(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre == Pre::Llama3)
        .build()
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", file.source_name())))?;

    let mut tokenizer = Tokenizer::new(bpe);
    if pre == Pre::Qwen2 {
        tokenizer.with_normalizer(Some(NFC)).map_err(tok_err)?;
    }
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
    tokenizer.with_decoder(Some(ByteLevel::default()));

    // Special-token ids: each optional, each must be inside the vocabulary.
    let special_id = |key: &str| -> Result<Option<u32>> {
        let Some(v) = file.get(key) else {
            return Ok(None);
        };
        let id = v.as_u32().ok_or_else(|| Error::MissingField {
            source_name: file.source_name(),
            field: key.to_owned(),
        })?;
        if id as usize >= vocab_size {
            return Err(Error::TokenOutOfVocab { id, vocab_size });
        }
        Ok(Some(id))
    };
    let bos = special_id("tokenizer.ggml.bos_token_id")?;
    let eos = special_id("tokenizer.ggml.eos_token_id")?;
    let unk = special_id("tokenizer.ggml.unknown_token_id")?;
    let pad = special_id("tokenizer.ggml.padding_token_id")?;

    // Added tokens, by id: control and the named special ids are special, user-defined not.
    let mut added: BTreeMap<u32, AddedToken> = BTreeMap::new();
    for (id, (&content, &ty)) in tokens.iter().zip(&token_types).enumerate() {
        let special = ty == TOKEN_TYPE_CONTROL;
        if special || ty == TOKEN_TYPE_USER_DEFINED {
            added.insert(id as u32, AddedToken::from(content, special).normalized(false));
        }
    }
    for id in [bos, eos, unk, pad].into_iter().flatten() {
        added.insert(id, AddedToken::from(tokens[id as usize], true).normalized(false));
    }
    tokenizer
        .add_tokens(&added.into_values().collect::<Vec<_>>())
        .map_err(tok_err)?;

    let flag = |key: &str, default: bool| -> Result<bool> {
        match file.get(key) {
            None => Ok(default),
            Some(_) => file.get_bool(key),
        }
    };
    let add_bos = flag("tokenizer.ggml.add_bos_token", pre.adds_bos())?;
    let add_eos = flag("tokenizer.ggml.add_eos_token", false)?;
    let named = |on: bool, id: Option<u32>, key: &str| -> Result<Option<(&str, u32)>> {
        if !on {
            return Ok(None);
        }
        let id = id.ok_or_else(|| Error::MissingField {
            source_name: file.source_name(),
            field: key.to_owned(),
        })?;
        Ok(Some((tokens[id as usize], id)))
    };
    let template = template(
        named(add_bos, bos, "tokenizer.ggml.bos_token_id")?,
        named(add_eos, eos, "tokenizer.ggml.eos_token_id")?,
    )?;
    let post: PostProcessorWrapper = if pre == Pre::Llama3 {
        PostSequence::new(vec![ByteLevel::new(true, false, true).into(), template.into()]).into()
    } else {
        template.into()
    };
    tokenizer.with_post_processor(Some(post));
    Ok(tokenizer)
}
