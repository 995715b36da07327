//! Tokenizers: Hugging Face `tokenizer.json` through the `tokenizers` crate, or one rebuilt
//! from GGUF metadata, together with the model's chat template and special tokens.

mod chat_template;

pub use chat_template::{ChatMessage, ChatTemplate};

use std::path::Path;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::gguf::GgufFile;

/// A tokenizer with its special tokens and (optional) chat template.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    chat_template: Option<ChatTemplate>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    pad_token: Option<String>,
    unk_token: Option<String>,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

/// A special token in `tokenizer_config.json`: a string, or an object with `content`.
fn special(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// Reads a `tokenizer.json`, checking that it is well-formed JSON before the tokenizers crate
/// sees it: its streaming parser panics (`expect("Helper")` in the decoder's deserializer) on
/// JSON that ends inside the `decoder` object, where a typed error is due.
fn read_tokenizer_json(path: &Path) -> Result<tokenizers::Tokenizer> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        source: e,
    })?;
    text.parse()
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))
}

impl Tokenizer {
    /// Wraps a `tokenizers::Tokenizer` without special-token names or template.
    pub fn new(inner: tokenizers::Tokenizer) -> Self {
        Self {
            inner,
            chat_template: None,
            bos_token: None,
            eos_token: None,
            pad_token: None,
            unk_token: None,
        }
    }

    /// Loads `tokenizer.json`, a model directory (with `tokenizer_config.json` and
    /// `chat_template.jinja` when present), or a `.gguf` file.
    pub fn from_path(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Self::from_model_dir(path);
        }
        if path.extension().is_some_and(|e| e == "gguf") {
            return Self::from_gguf(&GgufFile::open(path)?);
        }
        if !path.is_file() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        let inner = read_tokenizer_json(path)?;
        // A tokenizer_config.json beside the file adds the template and special tokens.
        match path.parent().map(|d| d.join("tokenizer_config.json")) {
            Some(cfg) if cfg.is_file() => {
                Self::with_config_dir(inner, path.parent().unwrap_or(Path::new(".")))
            }
            _ => Ok(Self::new(inner)),
        }
    }

    /// Loads `dir/tokenizer.json` plus `tokenizer_config.json` and `chat_template.jinja`.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        let inner = read_tokenizer_json(&dir.join("tokenizer.json"))?;
        Self::with_config_dir(inner, dir)
    }

    fn with_config_dir(inner: tokenizers::Tokenizer, dir: &Path) -> Result<Self> {
        let mut tok = Self::new(inner);
        let cfg_path = dir.join("tokenizer_config.json");
        if cfg_path.is_file() {
            let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
            let cfg: Value = serde_json::from_str(&text).map_err(|e| Error::Json {
                path: cfg_path.clone(),
                source: e,
            })?;
            tok.bos_token = special(cfg.get("bos_token"));
            tok.eos_token = special(cfg.get("eos_token"));
            tok.pad_token = special(cfg.get("pad_token"));
            tok.unk_token = special(cfg.get("unk_token"));
            if let Some(t) = cfg.get("chat_template").and_then(Value::as_str) {
                tok.chat_template = Some(ChatTemplate::new(t)?);
            }
        }
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            let text = std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?;
            tok.chat_template = Some(ChatTemplate::new(text)?);
        }
        Ok(tok)
    }

    /// Rebuilds the tokenizer stored in a GGUF file (`tokenizer.ggml.*`), with its chat
    /// template and special tokens.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let inner = crate::gguf::tokenizer_from_gguf(file)?;
        let name = |key: &str| file.get_u32(key).ok().and_then(|id| inner.id_to_token(id));
        let mut tok = Self::new(inner.clone());
        tok.bos_token = name("tokenizer.ggml.bos_token_id");
        tok.eos_token = name("tokenizer.ggml.eos_token_id");
        tok.pad_token = name("tokenizer.ggml.padding_token_id");
        tok.unk_token = name("tokenizer.ggml.unknown_token_id");
        if let Some(t) = file.chat_template() {
            tok.chat_template = Some(ChatTemplate::new(t)?);
        }
        Ok(tok)
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The chat template, if the model has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// Replaces the chat template.
    pub fn set_chat_template(&mut self, template: Option<ChatTemplate>) {
        self.chat_template = template;
    }

    /// Beginning-of-sequence token text.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// End-of-sequence token text.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// Padding token text.
    pub fn pad_token(&self) -> Option<&str> {
        self.pad_token.as_deref()
    }

    /// Unknown-token text.
    pub fn unk_token(&self) -> Option<&str> {
        self.unk_token.as_deref()
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token's text.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encodes `text`; `add_special_tokens` applies the post-processor (BOS for Llama 3).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, add_special_tokens)
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }

    /// Decodes ids to text; unknown ids are an error, not silently dropped.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let vocab = self.vocab_size();
        if let Some(&id) = ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            return Err(Error::TokenOutOfVocab {
                id,
                vocab_size: vocab,
            });
        }
        self.inner.decode(ids, skip_special_tokens).map_err(tok_err)
    }

    /// Renders `messages` with the chat template (transformers' `apply_chat_template(...,
    /// tokenize=False)`).
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let t = self
            .chat_template
            .as_ref()
            .ok_or_else(|| Error::ChatTemplate("this tokenizer has no chat template".into()))?;
        t.render(
            messages,
            add_generation_prompt,
            self.bos_token(),
            self.eos_token(),
        )
    }

    /// Writes `tokenizer.json`, `tokenizer_config.json` and (with a template)
    /// `chat_template.jinja` into `dir`, atomically, as transformers' `save_pretrained` does.
    /// The template is also embedded in `tokenizer_config.json` for readers older than
    /// transformers 4.43.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = self.inner.to_string(true).map_err(tok_err)?;
        crate::io::write_atomic(&dir.join("tokenizer.json"), json.as_bytes())?;
        let mut cfg = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "clean_up_tokenization_spaces": false,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "pad_token": self.pad_token,
            "unk_token": self.unk_token,
        });
        let mut added = serde_json::Map::new();
        for (id, t) in self.inner.get_added_tokens_decoder() {
            added.insert(
                id.to_string(),
                json!({"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized,
                       "rstrip": t.rstrip, "single_word": t.single_word, "special": t.special}),
            );
        }
        cfg["added_tokens_decoder"] = Value::Object(added);
        if let Some(t) = &self.chat_template {
            cfg["chat_template"] = json!(t.source());
            crate::io::write_atomic(&dir.join("chat_template.jinja"), t.source().as_bytes())?;
        }
        let text =
            serde_json::to_string_pretty(&cfg).map_err(|e| Error::Tokenizer(e.to_string()))?;
        crate::io::write_atomic(&dir.join("tokenizer_config.json"), text.as_bytes())
    }
}
