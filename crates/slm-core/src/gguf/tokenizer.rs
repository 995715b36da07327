//! Rebuilding a Hugging Face tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! SentencePiece vocabularies (`tokenizer.ggml.model = "llama"`: Llama 2, TinyLlama, Mistral,
//! Phi-3) become a byte-fallback BPE in the layout of those models' own `tokenizer.json` (see
//! [`tokenizer_from_gguf`]). For byte-level BPE vocabularies (`"gpt2"`) the
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

use std::collections::{BTreeMap, HashMap};

use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::normalizers::{NormalizerWrapper, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::processors::sequence::Sequence as PostSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::{GgufFile, GgufValue};
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
        Pre::SmolLm => {
            PreSequence::new(vec![Digits::new(true).into(), byte_level(true, true)]).into()
        }
        Pre::Gpt2 => byte_level(true, true),
        Pre::Default => {
            let mut steps = DEFAULT_REGEXES
                .iter()
                .map(|r| split(r))
                .collect::<Result<Vec<_>>>()?;
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

/// Builds the `tokenizers::Tokenizer` described by a GGUF file's `tokenizer.ggml.*` metadata:
/// byte-level BPE (`gpt2`) or SentencePiece (`llama`, see [`sentencepiece_model`]).
///
/// Fails with [`Error::Unsupported`] (`what = "GGUF tokenizer model"`) for another model or an
/// unknown `tokenizer.ggml.pre`, with [`Error::MissingField`] when required keys are absent, and
/// with [`Error::Tokenizer`] when the vocabulary, scores and merges are inconsistent.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<Tokenizer> {
    let model = file.get_str("tokenizer.ggml.model")?;
    let spm = match model {
        "gpt2" => false,
        "llama" => true,
        other => {
            return Err(Error::Unsupported {
                what: "GGUF tokenizer model",
                value: other.to_owned(),
            });
        }
    };
    let tokens = file.get_str_array("tokenizer.ggml.tokens")?;
    let vocab_size = tokens.len();
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
    let (mut tokenizer, add_bos_default, byte_level_post) = if spm {
        // llama.cpp adds BOS to a SentencePiece vocabulary that does not say otherwise.
        (sentencepiece_model(file, &tokens)?, true, false)
    } else {
        let (tokenizer, pre) = byte_level_model(file, &tokens)?;
        (tokenizer, pre.adds_bos(), pre == Pre::Llama3)
    };
    add_special_and_post(
        file,
        &mut tokenizer,
        &tokens,
        &token_types,
        add_bos_default,
        byte_level_post,
        if spm { &SPM_SPECIAL } else { &[] },
    )?;
    Ok(tokenizer)
}

/// The merges of a GGUF vocabulary: `tokenizer.ggml.merges` when present, each two tokens
/// separated by one space.
fn file_merges(file: &GgufFile) -> Result<Option<Vec<(String, String)>>> {
    if file.get("tokenizer.ggml.merges").is_none() {
        return Ok(None);
    }
    file.get_str_array("tokenizer.ggml.merges")?
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
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Token to id; duplicate strings keep the last id, like transformers'
/// `{tok: i for i, tok in enumerate(tokens)}`.
fn vocab_of(tokens: &[&str]) -> Vocab {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| ((*t).to_owned(), i as u32))
        .collect()
}

/// The byte-level BPE model, normalizer, pre-tokenizer and decoder of a `gpt2` vocabulary.
fn byte_level_model(file: &GgufFile, tokens: &[&str]) -> Result<(Tokenizer, Pre)> {
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
    let merges = file_merges(file)?.ok_or_else(|| Error::MissingField {
        source_name: file.source_name(),
        field: "tokenizer.ggml.merges".into(),
    })?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab_of(tokens), merges)
        .ignore_merges(pre == Pre::Llama3)
        .build()
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", file.source_name())))?;
    let mut tokenizer = Tokenizer::new(bpe);
    if pre == Pre::Qwen2 {
        tokenizer.with_normalizer(Some(NFC)).map_err(tok_err)?;
    }
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok((tokenizer, pre))
}

/// The tokenizer of a SentencePiece (`llama`) vocabulary in the layout of the original models'
/// `tokenizer.json` (Llama 2, TinyLlama, Mistral v0.1, Phi-3; transformers' `phi3_tokenizer`
/// GGUF builder): a BPE with byte fallback (`<0x0A>`) and fused unknowns over the pieces,
/// merges from the file or, as SentencePiece GGUFs carry none, recovered from the scores
/// ([`merges_from_scores`]); normalizers `Prepend("▁")` (unless `add_space_prefix` is false)
/// and `Replace(" ", "▁")`; decoders `Replace("▁", " ")`, `ByteFallback`, `Fuse` and, with the
/// space prefix, `Strip` of one leading space. This gives llama.cpp's and SentencePiece's ids,
/// leading spaces included (`" Hello"` is `▁` + `▁Hello`).
fn sentencepiece_model(file: &GgufFile, tokens: &[&str]) -> Result<Tokenizer> {
    let merges = match file_merges(file)? {
        Some(m) => m,
        None => {
            let scores = file.get_f32_array("tokenizer.ggml.scores")?;
            if scores.len() != tokens.len() {
                return Err(Error::Tokenizer(format!(
                    "{}: {} scores for {} tokens",
                    file.source_name(),
                    scores.len(),
                    tokens.len()
                )));
            }
            merges_from_scores(tokens, &scores)
        }
    };
    let bpe = BPE::builder()
        .vocab_and_merges(vocab_of(tokens), merges)
        .byte_fallback(true)
        .fuse_unk(true)
        .build()
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", file.source_name())))?;
    let space_prefix = match file.get("tokenizer.ggml.add_space_prefix") {
        None => true,
        Some(_) => file.get_bool("tokenizer.ggml.add_space_prefix")?,
    };
    let mut tokenizer = Tokenizer::new(bpe);
    let replace = |from: &str, to: &str| Replace::new(from, to).map_err(tok_err);
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if space_prefix {
        normalizers.push(Prepend::new(SPACE_MARK.to_owned()).into());
    }
    normalizers.push(replace(" ", SPACE_MARK)?.into());
    tokenizer
        .with_normalizer(Some(NormalizerSequence::new(normalizers)))
        .map_err(tok_err)?;
    let mut decoders: Vec<DecoderWrapper> = vec![
        replace(SPACE_MARK, " ")?.into(),
        ByteFallback::default().into(),
        Fuse::default().into(),
    ];
    if space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// Pieces transformers' `LlamaTokenizer` registers as special whatever the file types them
/// (its default `unk`/`bos`/`eos`): Phi-3's user-defined `</s>` is skipped when decoding.
const SPM_SPECIAL: [&str; 3] = ["<unk>", "<s>", "</s>"];

/// SentencePiece's word-boundary mark.
const SPACE_MARK: &str = "\u{2581}";

/// BPE merges recovered from a SentencePiece vocabulary's scores, as transformers'
/// `generate_merges` does: every split of every piece into two pieces of the vocabulary
/// (ordered by their ids within a piece), then all of them by the merged piece's score, longer
/// left then right parts first on ties, the order kept among equals.
pub(crate) fn merges_from_scores(tokens: &[&str], scores: &[f32]) -> Vec<(String, String)> {
    // `{token: index}` (the last id of a duplicate) and `dict(zip(tokens, scores))` (first
    // position, last score).
    let mut id: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        id.insert(t, i);
    }
    let mut order: Vec<(&str, f32)> = Vec::with_capacity(tokens.len());
    let mut at: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (t, &score) in tokens.iter().zip(scores) {
        match at.get(t) {
            Some(&k) => order[k].1 = score,
            None => {
                at.insert(t, order.len());
                order.push((t, score));
            }
        }
    }
    let mut merges: Vec<(&str, &str, f32)> = Vec::new();
    for &(piece, score) in &order {
        let start = merges.len();
        for (cut, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(cut);
            if id.contains_key(l) && id.contains_key(r) {
                merges.push((l, r, score));
            }
        }
        merges[start..].sort_by_key(|(l, r, _)| (id[l], id[r]));
    }
    // Python's `sorted(..., reverse=True)` is stable: equal keys keep their order.
    merges.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then(b.0.chars().count().cmp(&a.0.chars().count()))
            .then(b.1.chars().count().cmp(&a.1.chars().count()))
    });
    merges
        .into_iter()
        .map(|(l, r, _)| (l.to_owned(), r.to_owned()))
        .collect()
}

/// Registers the special and added tokens of a GGUF vocabulary on `tokenizer` (with
/// `extra_special`, where present in the vocabulary) and sets its post-processor (BOS/EOS from `add_bos_token`/`add_eos_token`, defaulting to
/// `add_bos_default`; Llama 3's ByteLevel offsets step first when `byte_level_post`).
fn add_special_and_post(
    file: &GgufFile,
    tokenizer: &mut Tokenizer,
    tokens: &[&str],
    token_types: &[i64],
    add_bos_default: bool,
    byte_level_post: bool,
    extra_special: &[&str],
) -> Result<()> {
    let vocab_size = tokens.len();
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
    for (id, (&content, &ty)) in tokens.iter().zip(token_types).enumerate() {
        let special = ty == TOKEN_TYPE_CONTROL;
        if special || ty == TOKEN_TYPE_USER_DEFINED {
            added.insert(
                id as u32,
                AddedToken::from(content, special).normalized(false),
            );
        }
    }
    let extra = extra_special
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t));
    for id in [bos, eos, unk, pad].into_iter().flatten().chain(extra) {
        added.insert(
            id,
            AddedToken::from(tokens[id as usize], true).normalized(false),
        );
    }
    tokenizer.add_tokens(added.into_values()).map_err(tok_err)?;

    let flag = |key: &str, default: bool| -> Result<bool> {
        match file.get(key) {
            None => Ok(default),
            Some(_) => file.get_bool(key),
        }
    };
    let add_bos = flag("tokenizer.ggml.add_bos_token", add_bos_default)?;
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
    let post: PostProcessorWrapper = if byte_level_post {
        PostSequence::new(vec![
            ByteLevel::new(true, false, true).into(),
            template.into(),
        ])
        .into()
    } else {
        template.into()
    };
    tokenizer.with_post_processor(Some(post));
    Ok(())
}

/// gguf-py's `TokenType` values for the ids that are not control or user-defined.
const TOKEN_TYPE_NORMAL: i32 = 1;
const TOKEN_TYPE_UNUSED: i32 = 5;

/// What decides tokenization in a pre-tokenizer or normalizer, without the parts that only
/// move offsets (`trim_offsets`): one string per step.
fn signature(value: &serde_json::Value, out: &mut Vec<String>) {
    let Some(ty) = value.get("type").and_then(serde_json::Value::as_str) else {
        return;
    };
    match ty {
        "Sequence" => {
            for key in ["pretokenizers", "normalizers"] {
                if let Some(items) = value.get(key).and_then(serde_json::Value::as_array) {
                    items.iter().for_each(|v| signature(v, out));
                }
            }
        }
        "ByteLevel" => out.push(format!(
            "ByteLevel(prefix_space={}, regex={})",
            value["add_prefix_space"], value["use_regex"]
        )),
        "Split" => out.push(format!(
            "Split({}, {}, invert={})",
            value["pattern"], value["behavior"], value["invert"]
        )),
        "Digits" => out.push(format!("Digits({})", value["individual_digits"])),
        other => out.push(format!("{other}({value})")),
    }
}

/// The tokenization-relevant shape of a tokenizer: its normalizer and pre-tokenizer steps.
fn tokenizer_signature(tokenizer: &Tokenizer) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if let Some(n) = tokenizer.get_normalizer() {
        signature(&serde_json::to_value(n).map_err(tok_err)?, &mut out);
    }
    if let Some(p) = tokenizer.get_pre_tokenizer() {
        signature(&serde_json::to_value(p).map_err(tok_err)?, &mut out);
    }
    Ok(out)
}

/// The `tokenizer.ggml.pre` name llama.cpp needs to split text as `tokenizer` does, found by
/// comparing its normalizer and pre-tokenizer with the ones [`tokenizer_from_gguf`] builds for
/// each name (one table serves both directions). `None` when it matches none of them.
pub(crate) fn gguf_pre_name(tokenizer: &Tokenizer) -> Result<Option<&'static str>> {
    let ours = tokenizer_signature(tokenizer)?;
    for (pre, name) in [
        (Pre::Llama3, "llama-bpe"),
        (Pre::Qwen2, "qwen2"),
        (Pre::SmolLm, "smollm"),
        (Pre::Gpt2, "gpt-2"),
        (Pre::Default, "default"),
    ] {
        let mut candidate = Tokenizer::new(BPE::default());
        if pre == Pre::Qwen2 {
            candidate.with_normalizer(Some(NFC)).map_err(tok_err)?;
        }
        candidate.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
        if tokenizer_signature(&candidate)? == ours {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Added tokens llama.cpp's converter types as control although they are not marked special
/// (`does_token_look_special`).
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// The `add_bos`/`add_eos`/`add_sep` flags llama.cpp's converter reads off a post-processor
/// (`SpecialVocab._try_load_from_tokenizer_json`), in the order it sets them.
fn add_special_flags(
    post: &serde_json::Value,
    bos: Option<&str>,
    eos: Option<&str>,
) -> Vec<(&'static str, bool)> {
    let mut flags: Vec<(&'static str, bool)> = Vec::new();
    let mut set = |key: &'static str, v: bool, only_if_absent: bool| match flags
        .iter_mut()
        .find(|(k, _)| *k == key)
    {
        Some(_) if only_if_absent => {}
        Some((_, old)) => *old = v,
        None => flags.push((key, v)),
    };
    let processors = match post.get("processors").and_then(serde_json::Value::as_array) {
        Some(list) => list.clone(),
        None => vec![post.clone()],
    };
    let special = |piece: &serde_json::Value| {
        piece
            .get("SpecialToken")
            .and_then(|t| t.get("id"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    for p in &processors {
        match p.get("type").and_then(serde_json::Value::as_str) {
            Some("ByteLevel") => {
                set("bos", false, true);
                set("eos", false, true);
            }
            Some("RobertaProcessing") => {
                set("bos", true, false);
                set("eos", true, false);
                set("sep", true, false);
            }
            Some("TemplateProcessing") => {
                let empty = Vec::new();
                let single = p["single"].as_array().unwrap_or(&empty);
                let pair = p["pair"].as_array().unwrap_or(&empty);
                let (mut first, mut last) = (None, None);
                if single.len() > 1 {
                    first = special(&single[0]);
                    if let Some(f) = &first {
                        set("bos", Some(f.as_str()) == bos, false);
                    }
                    last = special(&single[single.len() - 1]);
                    if let Some(l) = &last {
                        set("eos", Some(l.as_str()) == eos, false);
                    }
                }
                let start = usize::from(first.is_some() && pair.first().and_then(special) == first);
                let stop = if last.is_some() && pair.last().and_then(special) == last {
                    pair.len().saturating_sub(1)
                } else {
                    pair.len()
                };
                let inner = pair.get(start..stop.max(start)).unwrap_or(&[]);
                let seq = |v: Option<&serde_json::Value>| {
                    v.and_then(|v| v.get("Sequence"))
                        .and_then(|s| s.get("id"))
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned)
                };
                if inner.len() > 2
                    && seq(inner.first()).as_deref() == Some("A")
                    && seq(inner.last()).as_deref() == Some("B")
                {
                    let middle = &inner[1..inner.len() - 1];
                    let is_sep = |v: &serde_json::Value| special(v).as_deref() == eos;
                    let mut add_sep = middle.first().is_some_and(is_sep) && last.is_none();
                    if middle.len() == 2 && is_sep(&middle[1]) {
                        add_sep = true;
                    }
                    set("sep", add_sep, false);
                }
            }
            _ => {}
        }
    }
    flags
}

/// The GGUF tokenizer metadata of a byte-level BPE tokenizer (`tokenizer.ggml.model = gpt2`),
/// key for key and in the order llama.cpp's `convert_hf_to_gguf.py` writes it: `model`, `pre`,
/// `tokens` (holes up to `vocab_size` as `[PAD{id}]`), `token_type`, `merges`, the special ids
/// (`bos`, `eos`, `unknown`, `padding` from the tokenizer's config, then the model config's ids
/// for the ones still missing), `add_bos_token`/`add_eos_token`/`add_sep_token` from the
/// post-processor, and `tokenizer.chat_template`.
///
/// Fails with [`Error::Unsupported`] for a tokenizer that is not byte-level BPE (SentencePiece
/// vocabularies with byte fallback) or whose pre-tokenizer matches no `tokenizer.ggml.pre`
/// llama.cpp knows and slm reproduces, and with [`Error::Tokenizer`] when an id is at or above
/// `vocab_size`.
pub fn tokenizer_metadata(
    tokenizer: &crate::tokenizer::Tokenizer,
    vocab_size: usize,
    config_ids: [Option<u32>; 3],
) -> Result<Vec<(String, GgufValue)>> {
    let inner = tokenizer.inner();
    let json: serde_json::Value =
        serde_json::from_str(&inner.to_string(false).map_err(tok_err)?).map_err(tok_err)?;
    let model = &json["model"];
    if model["type"] != "BPE" || model["byte_fallback"] == true {
        return Err(Error::Unsupported {
            what: "tokenizer for GGUF export (byte-level BPE only)",
            value: format!(
                "{} with byte_fallback = {}",
                model["type"], model["byte_fallback"]
            ),
        });
    }
    let pre = gguf_pre_name(inner)?.ok_or_else(|| Error::Unsupported {
        what: "pre-tokenizer for GGUF export (no tokenizer.ggml.pre matches it)",
        value: tokenizer_signature(inner)
            .map(|s| s.join(" + "))
            .unwrap_or_default(),
    })?;

    let vocab = inner.get_vocab(true);
    let mut by_id: Vec<Option<&str>> = vec![None; vocab_size];
    for (token, &id) in &vocab {
        let slot = by_id.get_mut(id as usize).ok_or_else(|| {
            Error::Tokenizer(format!(
                "token `{token}` has id {id}, outside the model's vocabulary of {vocab_size}"
            ))
        })?;
        *slot = Some(token.as_str());
    }
    let added = inner.get_added_tokens_decoder();
    let mut tokens = Vec::with_capacity(vocab_size);
    let mut types = Vec::with_capacity(vocab_size);
    for (id, token) in by_id.iter().enumerate() {
        let (text, ty) = match (token, added.get(&(id as u32))) {
            (None, _) => (format!("[PAD{id}]"), TOKEN_TYPE_UNUSED),
            (Some(t), Some(a)) if a.special || looks_special(t) => {
                ((*t).to_owned(), TOKEN_TYPE_CONTROL as i32)
            }
            (Some(t), Some(_)) => (t.replace('\u{2581}', " "), TOKEN_TYPE_USER_DEFINED as i32),
            (Some(t), None) => ((*t).to_owned(), TOKEN_TYPE_NORMAL),
        };
        tokens.push(GgufValue::String(text));
        types.push(GgufValue::I32(ty));
    }
    // tokenizers >= 0.20 writes merges as pairs; a space inside a part becomes U+0120.
    let merges: Vec<GgufValue> = model["merges"]
        .as_array()
        .map(|m| m.as_slice())
        .unwrap_or(&[])
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Array(pair) if pair.len() == 2 => {
                let part = |v: &serde_json::Value| v.as_str().unwrap_or("").replace(' ', "\u{120}");
                Ok(format!("{} {}", part(&pair[0]), part(&pair[1])))
            }
            other => Err(Error::Tokenizer(format!("unexpected BPE merge {other}"))),
        })
        .map(|m| m.map(GgufValue::String))
        .collect::<Result<_>>()?;

    let mut out: Vec<(String, GgufValue)> = vec![
        (
            "tokenizer.ggml.model".into(),
            GgufValue::String("gpt2".into()),
        ),
        ("tokenizer.ggml.pre".into(), GgufValue::String(pre.into())),
        ("tokenizer.ggml.tokens".into(), GgufValue::Array(tokens)),
        ("tokenizer.ggml.token_type".into(), GgufValue::Array(types)),
    ];
    if !merges.is_empty() {
        out.push(("tokenizer.ggml.merges".into(), GgufValue::Array(merges)));
    }
    // Special ids: the tokenizer config's names (looked up among the added tokens), then the
    // model config's ids for those still unset.
    let by_name = |name: Option<&str>| {
        name.and_then(|n| {
            added
                .iter()
                .find(|(_, a)| a.content == n)
                .map(|(&id, _)| id)
        })
    };
    let [config_bos, config_eos, config_pad] = config_ids;
    let mut ids: Vec<(&str, u32)> = Vec::new();
    for (key, id) in [
        ("bos", by_name(tokenizer.bos_token())),
        ("eos", by_name(tokenizer.eos_token())),
        ("unknown", by_name(tokenizer.unk_token())),
        ("padding", by_name(tokenizer.pad_token())),
        ("bos", config_bos),
        ("eos", config_eos),
        ("padding", config_pad),
    ] {
        if let Some(id) = id
            && !ids.iter().any(|(k, _)| *k == key)
        {
            if id as usize >= vocab_size {
                return Err(Error::TokenOutOfVocab { id, vocab_size });
            }
            ids.push((key, id));
        }
    }
    for (key, id) in ids {
        out.push((format!("tokenizer.ggml.{key}_token_id"), GgufValue::U32(id)));
    }
    if let Some(post) = json.get("post_processor").filter(|p| !p.is_null()) {
        for (key, on) in add_special_flags(post, tokenizer.bos_token(), tokenizer.eos_token()) {
            out.push((
                format!("tokenizer.ggml.add_{key}_token"),
                GgufValue::Bool(on),
            ));
        }
    }
    if let Some(t) = tokenizer.chat_template().filter(|t| !t.source().is_empty()) {
        out.push((
            "tokenizer.chat_template".into(),
            GgufValue::String(t.source().to_owned()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::test_support::{fixture, rewrite, smollm2_gguf};
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    fn json(path: &std::path::Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn tiny() -> GgufFile {
        GgufFile::open(fixture("quant/gguf/llama-tiny.f32.gguf")).unwrap()
    }

    /// Checks a tokenizer against a `cases.json` of the fixtures (ids, tokens, byte offsets,
    /// ids with special tokens, decoding with and without special tokens).
    fn check_cases(tok: &Tokenizer, cases: &serde_json::Value) {
        let cases = cases["cases"].as_array().unwrap();
        assert!(cases.len() > 20);
        for case in cases {
            let text = case["text"].as_str().unwrap();
            let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
            let with: Vec<u32> = serde_json::from_value(case["ids_with_special"].clone()).unwrap();
            let enc = tok.encode(text, false).unwrap();
            assert_eq!(enc.get_ids(), ids.as_slice(), "ids of {text:?}");
            let tokens: Vec<String> = serde_json::from_value(case["tokens"].clone()).unwrap();
            assert_eq!(enc.get_tokens(), tokens.as_slice(), "tokens of {text:?}");
            let offsets: Vec<(usize, usize)> =
                serde_json::from_value(case["offsets_bytes"].clone()).unwrap();
            assert_eq!(enc.get_offsets(), offsets.as_slice(), "offsets of {text:?}");
            assert_eq!(
                tok.encode(text, true).unwrap().get_ids(),
                with.as_slice(),
                "{text:?}"
            );
            assert_eq!(
                tok.decode(&ids, true).unwrap(),
                case["decoded"].as_str().unwrap()
            );
            let decoded_with = case["decoded_with_special"].as_str().unwrap();
            assert_eq!(tok.decode(&with, false).unwrap(), decoded_with, "{text:?}");
        }
    }

    /// Compares the parts of two `tokenizer.json`s that must agree (the model by vocab, merges
    /// and `ignore_merges`; `continuing_subword_prefix` "" and null behave alike).
    fn check_structure(ours: &Tokenizer, theirs: &serde_json::Value, keys: &[&str]) {
        let ours: serde_json::Value =
            serde_json::from_str(&ours.to_string(false).unwrap()).unwrap();
        for key in keys {
            assert_eq!(ours[key], theirs[key], "{key}");
        }
        for key in [
            "type",
            "vocab",
            "merges",
            "ignore_merges",
            "byte_fallback",
            "unk_token",
        ] {
            assert_eq!(ours["model"][key], theirs["model"][key], "model.{key}");
        }
    }

    /// The llama-tiny GGUF (`pre = llama-bpe`) rebuilds the fixture tokenizer exactly.
    #[test]
    fn llama_tiny_matches_fixture_tokenizer() {
        let tok = tokenizer_from_gguf(&tiny()).unwrap();
        let cases = json(&fixture("tokenizer/cases.json"));
        check_cases(&tok, &cases);
        let pair = &cases["pair"];
        let enc = tok
            .encode(
                (pair["a"].as_str().unwrap(), pair["b"].as_str().unwrap()),
                true,
            )
            .unwrap();
        let ids: Vec<u32> = serde_json::from_value(pair["ids"].clone()).unwrap();
        let type_ids: Vec<u32> = serde_json::from_value(pair["type_ids"].clone()).unwrap();
        assert_eq!(
            (enc.get_ids(), enc.get_type_ids()),
            (&ids[..], &type_ids[..])
        );
        let keys = [
            "added_tokens",
            "normalizer",
            "pre_tokenizer",
            "post_processor",
            "decoder",
        ];
        check_structure(&tok, &json(&fixture("tokenizer/tokenizer.json")), &keys);
    }

    /// SmolLM2's GGUF tokenizer gives transformers' ids, offsets and decodings, and carries the
    /// chat template transformers saved.
    #[test]
    fn smollm2_matches_transformers() {
        let Some(path) = smollm2_gguf() else {
            return;
        };
        let file = GgufFile::open(path).unwrap();
        assert_eq!(file.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
        let tok = file.tokenizer().unwrap();
        let cases = json(&fixture("smollm2-tokenizer/cases.json"));
        let required: Vec<u32> =
            serde_json::from_value(cases["required_check"]["ids"].clone()).unwrap();
        let text = cases["required_check"]["text"].as_str().unwrap();
        assert_eq!(
            tok.encode(text, true).unwrap().get_ids(),
            required.as_slice()
        );
        check_cases(&tok, &cases);
        let theirs = json(&fixture("smollm2-tokenizer/tokenizer.json"));
        check_structure(
            &tok,
            &theirs,
            &["added_tokens", "normalizer", "post_processor", "decoder"],
        );
        // transformers drops llama.cpp's digit split; no SmolLM2 merge contains a digit, so the
        // ids agree (checked above). Ours keeps it, as the original SmolLM2 tokenizer does.
        let ours: serde_json::Value = serde_json::from_str(&tok.to_string(false).unwrap()).unwrap();
        assert_eq!(
            ours["pre_tokenizer"]["pretokenizers"][1],
            theirs["pre_tokenizer"]
        );
        let template =
            std::fs::read_to_string(fixture("smollm2-tokenizer/chat_template.jinja")).unwrap();
        assert_eq!(file.chat_template(), Some(template.as_str()));
    }

    fn with_meta(edit: impl FnOnce(&mut Vec<(String, GgufValue)>)) -> GgufFile {
        GgufFile::from_bytes("edited.gguf", rewrite(&tiny(), edit)).unwrap()
    }

    fn set(key: &str, value: GgufValue) -> impl FnOnce(&mut Vec<(String, GgufValue)>) {
        let key = key.to_owned();
        move |meta| match meta.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => meta.push((key, value)),
        }
    }

    fn splits(tok: &Tokenizer, text: &str) -> Vec<String> {
        let mut p = PreTokenizedString::from(text);
        tok.get_pre_tokenizer()
            .unwrap()
            .pre_tokenize(&mut p)
            .unwrap();
        p.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(s, _, _)| s.to_owned())
            .collect()
    }

    /// Each supported `tokenizer.ggml.pre` splits like llama.cpp's regexes for it.
    #[test]
    fn pre_tokenizer_per_pre_type() {
        let cases: [(Option<&str>, &[&str]); 7] = [
            (Some("llama-bpe"), &["123", "45", "Ġabc", "'S"]),
            (Some("qwen2"), &["1", "2", "3", "4", "5", "Ġabc", "'S"]),
            (Some("smollm"), &["1", "2", "3", "4", "5", "Ġabc", "'", "S"]),
            (Some("gpt-2"), &["12345", "Ġabc", "'", "S"]),
            (Some("gpt2"), &["12345", "Ġabc", "'", "S"]),
            (Some("default"), &["123", "45", "Ġabc", "'", "S"]),
            (None, &["123", "45", "Ġabc", "'", "S"]),
        ];
        for (pre, want) in cases {
            let set_pre = |meta: &mut Vec<(String, GgufValue)>| match pre {
                Some(pre) => set("tokenizer.ggml.pre", GgufValue::String(pre.into()))(meta),
                None => meta.retain(|(k, _)| k != "tokenizer.ggml.pre"),
            };
            let tok = tokenizer_from_gguf(&with_meta(set_pre)).unwrap();
            assert_eq!(splits(&tok, "12345 abc'S"), want, "pre {pre:?}");
            // Llama 3 adds BOS unless the file says otherwise; the others do not by default.
            let file = with_meta(|meta| {
                set_pre(meta);
                meta.retain(|(k, _)| k != "tokenizer.ggml.add_bos_token");
            });
            let tok = tokenizer_from_gguf(&file).unwrap();
            let ids = tok.encode("a", true).unwrap().get_ids().to_vec();
            assert_eq!(
                ids.first() == Some(&0),
                pre == Some("llama-bpe"),
                "pre {pre:?}: {ids:?}"
            );
        }
        let qwen = with_meta(set("tokenizer.ggml.pre", GgufValue::String("qwen2".into())));
        let tok = tokenizer_from_gguf(&qwen).unwrap();
        assert_eq!(
            tok.encode("e\u{301}", false).unwrap().get_ids(),
            tok.encode("é", false).unwrap().get_ids()
        );
    }

    #[test]
    fn eos_and_user_defined_tokens() {
        let file = with_meta(|meta| {
            set("tokenizer.ggml.add_eos_token", GgufValue::Bool(true))(meta);
            let types = meta
                .iter_mut()
                .find(|(k, _)| k == "tokenizer.ggml.token_type")
                .unwrap();
            if let GgufValue::Array(t) = &mut types.1 {
                t[300] = GgufValue::I32(4);
            }
        });
        let tok = tokenizer_from_gguf(&file).unwrap();
        let word = tok.id_to_token(300).unwrap();
        let ids = tok
            .encode(format!("x{word}"), true)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(
            (ids[0], ids[ids.len() - 2], ids[ids.len() - 1]),
            (0, 300, 1),
            "{ids:?}"
        );
        // user-defined tokens are not special: decoding keeps them
        assert_eq!(
            tok.decode(&[300], true).unwrap(),
            tok.decode(&[300], false).unwrap()
        );
    }

    #[test]
    fn merges_from_scores_order_as_transformers() {
        // By score, then the longer left and right parts, the original order among equals.
        let tokens = ["a", "b", "c", "ab", "bc", "abc"];
        let scores = [0.0, 0.0, 0.0, -1.0, -1.0, -2.0];
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            merges_from_scores(&tokens, &scores),
            pairs(&[("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")])
        );
        // Pieces split on characters, not bytes.
        let tokens = ["\u{2581}", "日", "\u{2581}日"];
        assert_eq!(
            merges_from_scores(&tokens, &[0.0, 0.0, -1.0]),
            pairs(&[("\u{2581}", "日")])
        );
    }

    #[test]
    fn errors_are_typed() {
        let file = with_meta(set(
            "tokenizer.ggml.model",
            GgufValue::String("bert".into()),
        ));
        assert!(matches!(
            tokenizer_from_gguf(&file),
            Err(Error::Unsupported { what: "GGUF tokenizer model", ref value }) if value == "bert"
        ));
        // SentencePiece: merges come from the scores, which must be there, one per token.
        type Meta = Vec<(String, GgufValue)>;
        let spm = |edit: &dyn Fn(&mut Meta)| {
            with_meta(|m| {
                m.retain(|(k, _)| k != "tokenizer.ggml.merges" && k != "tokenizer.ggml.model");
                m.push((
                    "tokenizer.ggml.model".into(),
                    GgufValue::String("llama".into()),
                ));
                edit(m);
            })
        };
        assert!(matches!(
            tokenizer_from_gguf(&spm(&|_| {})),
            Err(Error::MissingField { ref field, .. }) if field == "tokenizer.ggml.scores"
        ));
        let short = spm(&|m| {
            m.push((
                "tokenizer.ggml.scores".into(),
                GgufValue::Array(vec![GgufValue::F32(0.0)]),
            ))
        });
        assert!(matches!(
            tokenizer_from_gguf(&short),
            Err(Error::Tokenizer(ref m)) if m.contains("scores for")
        ));
        let file = with_meta(set(
            "tokenizer.ggml.pre",
            GgufValue::String("tekken".into()),
        ));
        assert!(matches!(
            tokenizer_from_gguf(&file),
            Err(Error::Unsupported { what: "GGUF tokenizer model", ref value }) if value.contains("tekken")
        ));
        let file = with_meta(|m| m.retain(|(k, _)| k != "tokenizer.ggml.merges"));
        assert!(
            matches!(tokenizer_from_gguf(&file), Err(Error::MissingField { ref field, .. }) if field == "tokenizer.ggml.merges")
        );
        let bad_merge = GgufValue::Array(vec![GgufValue::String("a b c".into())]);
        let file = with_meta(set("tokenizer.ggml.merges", bad_merge));
        assert!(matches!(
            tokenizer_from_gguf(&file),
            Err(Error::Tokenizer(_))
        ));
        let unknown_merge = GgufValue::Array(vec![GgufValue::String("zzz qqq".into())]);
        let file = with_meta(set("tokenizer.ggml.merges", unknown_merge));
        assert!(matches!(
            tokenizer_from_gguf(&file),
            Err(Error::Tokenizer(_))
        ));
        let file = with_meta(set("tokenizer.ggml.bos_token_id", GgufValue::U32(768)));
        assert!(matches!(
            tokenizer_from_gguf(&file),
            Err(Error::TokenOutOfVocab {
                id: 768,
                vocab_size: 768
            })
        ));
        let file = with_meta(|m| m.retain(|(k, _)| k != "tokenizer.ggml.bos_token_id"));
        assert!(
            matches!(tokenizer_from_gguf(&file), Err(Error::MissingField { ref field, .. }) if field == "tokenizer.ggml.bos_token_id")
        );
        let file = with_meta(set(
            "tokenizer.ggml.token_type",
            GgufValue::Array(vec![GgufValue::I32(1)]),
        ));
        assert!(matches!(
            tokenizer_from_gguf(&file),
            Err(Error::Tokenizer(_))
        ));
        let file = with_meta(|m| m.retain(|(k, _)| k != "tokenizer.ggml.model"));
        assert!(matches!(
            tokenizer_from_gguf(&file),
            Err(Error::MissingField { .. })
        ));
    }

    /// Every `pre` slm rebuilds is recognised again from the tokenizer it builds, and a
    /// pre-tokenizer llama.cpp has no name for is refused by name, not exported wrongly.
    #[test]
    fn pre_names_round_trip_and_unknown_splits_are_refused() {
        for (name, pre) in [
            ("llama-bpe", Pre::Llama3),
            ("qwen2", Pre::Qwen2),
            ("smollm", Pre::SmolLm),
            ("gpt-2", Pre::Gpt2),
            ("default", Pre::Default),
        ] {
            let mut t = Tokenizer::new(BPE::default());
            if pre == Pre::Qwen2 {
                t.with_normalizer(Some(NFC)).unwrap();
            }
            t.with_pre_tokenizer(Some(pre_tokenizer(pre).unwrap()));
            assert_eq!(gguf_pre_name(&t).unwrap(), Some(name));
        }
        let fixture_tok =
            crate::tokenizer::Tokenizer::from_model_dir(&fixture("tokenizer")).unwrap();
        assert_eq!(
            gguf_pre_name(fixture_tok.inner()).unwrap(),
            Some("llama-bpe")
        );
        let mut inner = fixture_tok.inner().clone();
        inner.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
        let odd = crate::tokenizer::Tokenizer::new(inner);
        match tokenizer_metadata(&odd, 768, [None; 3]) {
            Err(Error::Unsupported { what, value }) => {
                assert!(what.contains("pre-tokenizer"), "{what}");
                assert!(value.contains("Whitespace"), "{value}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            tokenizer_metadata(&fixture_tok, 700, [None; 3]),
            Err(Error::Tokenizer(m)) if m.contains("outside the model's vocabulary of 700")
        ));
    }
}
