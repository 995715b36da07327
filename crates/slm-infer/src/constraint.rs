//! Constrained outputs: a grammar over the tokenizer's vocabulary that masks, at every step, the
//! tokens that cannot continue a valid output, so the output always matches.
//!
//! [`OutputConstraint`] says what the output must be: one of N strings (`choice`, the
//! classifier case), a regex, a JSON schema (OpenAI's `response_format: json_schema`), any JSON
//! object (`json_object`), or a Lark grammar. [`ConstraintCompiler`] compiles one with
//! [llguidance](https://github.com/guidance-ai/llguidance) (the engine llama.cpp and
//! mistral.rs use: masks computed incrementally by an Earley parser over a token trie) and
//! caches the compiled grammar per distinct constraint, so repeated requests pay only a clone.
//! Compilation fails closed: a constraint that cannot be compiled is
//! [`Error::InvalidConstraint`] naming what was wrong, never unconstrained text.
//!
//! A request's [`Grammar`] goes into its [`Decoding`](crate::Decoding), which asks it for a
//! [`TokenMask`] before sampling and feeds it each chosen token; when the grammar is complete
//! the sequence ends with [`FinishReason::Stop`](crate::FinishReason::Stop). An output cut by
//! `max_new_tokens` first ends by length and may be incomplete, as in OpenAI's API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory, TokenParser};
use serde::{Deserialize, Serialize};
use slm_core::tokenizer::Tokenizer;

use crate::error::{Error, Result};
use crate::sampling::TokenMask;

/// What an output must be.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputConstraint {
    /// Exactly one of these strings.
    Choice(Vec<String>),
    /// A match of this regular expression (the whole output).
    Regex(String),
    /// JSON valid under this schema (serialised JSON Schema).
    JsonSchema(String),
    /// Any JSON object.
    JsonObject,
    /// A Lark grammar (llguidance's dialect).
    Lark(String),
}

impl OutputConstraint {
    /// A JSON-schema constraint from a parsed schema.
    pub fn json_schema(schema: &serde_json::Value) -> Self {
        OutputConstraint::JsonSchema(schema.to_string())
    }

    fn grammar(&self) -> Result<TopLevelGrammar> {
        Ok(match self {
            OutputConstraint::Choice(options) => {
                if options.is_empty() {
                    return Err(Error::InvalidConstraint(
                        "choice: the list of options is empty".into(),
                    ));
                }
                let alternatives: Vec<String> = options.iter().map(|o| regex::escape(o)).collect();
                TopLevelGrammar::from_regex(&format!("(?:{})", alternatives.join("|")))
            }
            OutputConstraint::Regex(rx) => TopLevelGrammar::from_regex(rx),
            OutputConstraint::JsonSchema(schema) => {
                let value: serde_json::Value = serde_json::from_str(schema)
                    .map_err(|e| Error::InvalidConstraint(format!("json_schema: not JSON: {e}")))?;
                TopLevelGrammar::from_json_schema(compact(value))
            }
            OutputConstraint::JsonObject => {
                TopLevelGrammar::from_json_schema(compact(serde_json::json!({"type": "object"})))
            }
            OutputConstraint::Lark(g) => TopLevelGrammar::from_lark(g.clone()),
        })
    }

    fn kind(&self) -> &'static str {
        match self {
            OutputConstraint::Choice(_) => "choice",
            OutputConstraint::Regex(_) => "regex",
            OutputConstraint::JsonSchema(_) => "json_schema",
            OutputConstraint::JsonObject => "json_object",
            OutputConstraint::Lark(_) => "grammar",
        }
    }
}

/// JSON laid out as Python's `json.dumps` does (`", "` and `": "`, no other whitespace), so a
/// model cannot wander into unbounded whitespace; a schema's own `x-guidance` options win.
fn compact(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(|| {
            serde_json::json!({
                "whitespace_flexible": false,
                "item_separator": ", ",
                "key_separator": ": ",
            })
        });
    }
    schema
}

/// The tokenizer as llguidance sees it: every token's bytes in a trie, and encoding of bytes.
struct SlmTokEnv {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for SlmTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.tokenizer
            .encode(&String::from_utf8_lossy(s), false)
            .unwrap_or_default()
    }
}

/// Compiles [`OutputConstraint`]s for one tokenizer and caches them (see the module docs).
pub struct ConstraintCompiler {
    factory: ParserFactory,
    vocab: usize,
    cache: Mutex<HashMap<OutputConstraint, Arc<TokenParser>>>,
}

impl std::fmt::Debug for ConstraintCompiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintCompiler")
            .field("vocab", &self.vocab)
            .finish_non_exhaustive()
    }
}

/// Distinct constraints kept compiled at most (least recently inserted go first).
const CACHE_ENTRIES: usize = 256;

impl ConstraintCompiler {
    /// A compiler for `tokenizer`, whose outputs end with `eos` (the token the grammar allows
    /// once complete), for a model of `model_vocab` logits (at least the tokenizer's).
    pub fn new(tokenizer: &Tokenizer, eos: u32, model_vocab: usize) -> Result<Self> {
        let json: serde_json::Value = serde_json::from_str(
            &tokenizer
                .inner()
                .to_string(false)
                .map_err(|e| Error::InvalidConstraint(format!("tokenizer: {e}")))?,
        )
        .map_err(|e| Error::InvalidConstraint(format!("tokenizer: {e}")))?;
        let words = llguidance::token_bytes_from_tokenizer_json(&json)
            .map_err(|e| Error::InvalidConstraint(format!("tokenizer vocabulary: {e}")))?;
        let info = TokRxInfo::new(words.len() as u32, eos);
        let env = SlmTokEnv {
            trie: TokTrie::from(&info, &words),
            tokenizer: tokenizer.clone(),
        };
        let env: TokEnv = Arc::new(env);
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| Error::InvalidConstraint(format!("grammar engine: {e}")))?;
        factory.quiet();
        Ok(Self {
            factory,
            vocab: model_vocab.max(words.len()),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Compiles `constraint` (or takes it from the cache).
    ///
    /// # Errors
    /// [`Error::InvalidConstraint`] naming the kind and llguidance's reason (an unsupported
    /// schema keyword, a bad regex, ...).
    pub fn compile(&self, constraint: &OutputConstraint) -> Result<Grammar> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(constraint)
            .cloned();
        let parser = match cached {
            Some(p) => p,
            None => {
                let parser = self
                    .factory
                    .create_parser(constraint.grammar()?)
                    .map_err(|e| Error::InvalidConstraint(format!("{}: {e}", constraint.kind())))?;
                let parser = Arc::new(parser);
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(constraint.clone(), parser.clone());
                parser
            }
        };
        Ok(Grammar {
            parser,
            vocab: self.vocab,
        })
    }

    /// Distinct constraints compiled and kept.
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A compiled constraint, ready to start a sequence (cheap to clone).
#[derive(Clone)]
pub struct Grammar {
    parser: Arc<TokenParser>,
    vocab: usize,
}

impl std::fmt::Debug for Grammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Grammar")
    }
}

impl Grammar {
    /// A fresh matcher state for one sequence.
    pub fn start(&self) -> GrammarState {
        GrammarState {
            matcher: Matcher::new(Ok(self.parser.deep_clone())),
            vocab: self.vocab,
        }
    }
}

/// One sequence's position in its grammar.
pub struct GrammarState {
    matcher: Matcher,
    vocab: usize,
}

impl std::fmt::Debug for GrammarState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarState")
            .field("stopped", &self.matcher.is_stopped())
            .finish()
    }
}

impl Clone for GrammarState {
    fn clone(&self) -> Self {
        Self {
            matcher: self.matcher.deep_clone(),
            vocab: self.vocab,
        }
    }
}

impl GrammarState {
    /// The tokens allowed next.
    ///
    /// # Errors
    /// [`Error::InvalidConstraint`] when the grammar engine failed.
    pub fn allowed(&mut self) -> Result<TokenMask> {
        let vob = self
            .matcher
            .compute_mask()
            .map_err(|e| Error::InvalidConstraint(format!("grammar: {e}")))?;
        Ok(TokenMask::from_words(vob.as_slice(), self.vocab))
    }

    /// Advances past `token`.
    ///
    /// # Errors
    /// [`Error::InvalidConstraint`] when the token is not allowed (a bug upstream).
    pub fn accept(&mut self, token: u32) -> Result<()> {
        self.matcher
            .consume_token(token)
            .map_err(|e| Error::InvalidConstraint(format!("grammar: {e}")))
    }

    /// Whether the grammar is complete (nothing more may follow).
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }
}
