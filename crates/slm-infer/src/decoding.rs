//! One sequence's decoding state, shared by every generation loop: [`generate`](crate::generate)
//! over a [`CausalLm`](slm_core::CausalLm) and the serving [`Engine`](crate::engine::Engine)
//! over a [`BatchedLm`](slm_core::step::BatchedLm) both feed logits to a [`Decoding`], which
//! samples, streams text, matches stops and decides when the sequence ends.

use serde::{Deserialize, Serialize};
use slm_core::tokenizer::Tokenizer;

use crate::constraint::GrammarState;
use crate::detokenize::TextStream;
use crate::error::{Error, Result};
use crate::sampling::{Sampler, SamplingParams, TokenLogprob};
use crate::stop::{StopMatch, StopStrings};

/// The default budget of new tokens: room for a whole chat answer of a small model (which ends
/// earlier, at its end-of-turn token), as Ollama and llama.cpp give by default.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 512;

/// Settings of one generation (one request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    /// Upper bound on new tokens ([`DEFAULT_MAX_NEW_TOKENS`] by default).
    pub max_new_tokens: usize,
    /// How tokens are picked (and the seed).
    pub sampling: SamplingParams,
    /// Generation stops after producing any of these (the token is kept in the ids, as
    /// transformers does, and is not part of the text). Usually the model's EOS ids.
    pub stop_tokens: Vec<u32>,
    /// Generation stops before any of these strings (needs a tokenizer); the text ends before it.
    pub stop_strings: Vec<String>,
    /// Log-probabilities of each chosen token and of this many alternatives (`None`: none).
    pub logprobs: Option<usize>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            sampling: SamplingParams::default(),
            stop_tokens: Vec::new(),
            stop_strings: Vec::new(),
            logprobs: None,
        }
    }
}

/// Why a sequence ended (OpenAI's `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token or stop string.
    Stop,
    /// `max_new_tokens`, or the end of the model's context.
    Length,
    /// The caller cancelled the request.
    Cancelled,
}

/// What one step of a [`Decoding`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// The chosen token.
    pub token: u32,
    /// Text completed by it, safe to show (may be empty: a partial character, a held-back
    /// possible stop string, a special token).
    pub text: String,
    /// Its log-probabilities, when the config asks for them.
    pub logprob: Option<TokenLogprob>,
    /// Set when this token ends the sequence.
    pub finish: Option<FinishReason>,
}

/// One sequence's decoding state (see the module docs).
#[derive(Debug, Clone)]
pub struct Decoding {
    sampler: Sampler,
    stop_tokens: Vec<u32>,
    max_new_tokens: usize,
    logprobs: Option<usize>,
    stream: TextStream,
    stops: StopStrings,
    ids: Vec<u32>,
    finish: Option<FinishReason>,
    grammar: Option<GrammarState>,
}

impl Decoding {
    /// Starts decoding after `prompt` with `config` (validated).
    pub fn new(config: &GenerationConfig, prompt: &[u32]) -> Result<Self> {
        let mut sampler = Sampler::new(config.sampling.clone())?;
        sampler.observe_prompt(prompt);
        Ok(Self {
            sampler,
            stop_tokens: config.stop_tokens.clone(),
            max_new_tokens: config.max_new_tokens,
            logprobs: config.logprobs,
            stream: TextStream::new(),
            stops: StopStrings::new(config.stop_strings.iter().cloned()),
            ids: Vec::new(),
            finish: (config.max_new_tokens == 0).then_some(FinishReason::Length),
            grammar: None,
        })
    }

    /// Constrains every token to `grammar` (see [`crate::constraint`]); the sequence ends when
    /// the grammar is complete.
    pub fn with_grammar(mut self, grammar: GrammarState) -> Self {
        self.grammar = Some(grammar);
        self
    }

    /// Whether the text needs a tokenizer (stop strings).
    pub fn needs_tokenizer(&self) -> bool {
        !self.stops.is_empty()
    }

    /// The tokens chosen so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Set once the sequence has ended.
    pub fn finish(&self) -> Option<FinishReason> {
        self.finish
    }

    /// Marks the sequence ended (cancellation, the context's end).
    pub fn end(&mut self, reason: FinishReason) {
        self.finish.get_or_insert(reason);
    }

    /// Chooses the next token from `logits` (the row after the last fed token). With a
    /// tokenizer the text delta is computed and stop strings are matched.
    ///
    /// # Errors
    /// [`Error::NonFiniteLogits`]; tokenizer failures; [`Error::InvalidConfig`] when called
    /// after the sequence ended.
    pub fn advance(&mut self, logits: &[f32], tokenizer: Option<&Tokenizer>) -> Result<Emitted> {
        if self.finish.is_some() {
            return Err(Error::InvalidConfig(
                "the sequence has already finished".into(),
            ));
        }
        let step = self.ids.len();
        let mask = match &mut self.grammar {
            Some(g) => Some(g.allowed()?),
            None => None,
        };
        let token = match self.sampler.sample(logits, mask.as_ref()) {
            Some(t) => t,
            None if mask.as_ref().is_some_and(|m| !m.any()) => {
                return Err(Error::InvalidConstraint(
                    "the grammar allows no token here".into(),
                ));
            }
            None => return Err(Error::NonFiniteLogits { step }),
        };
        let stop_token = self.stop_tokens.contains(&token);
        if let Some(g) = &mut self.grammar
            && !stop_token
        {
            g.accept(token)?;
        }
        self.ids.push(token);
        let logprob = self
            .logprobs
            .map(|n| TokenLogprob::from_logits(logits, token, n));
        let mut text = String::new();
        if stop_token {
            self.finish = Some(FinishReason::Stop);
        } else if let Some(tk) = tokenizer {
            let delta = self.stream.push(tk, token)?;
            match self.stops.push(&delta) {
                StopMatch::Continue(t) => text = t,
                StopMatch::Stopped { text: t, .. } => {
                    text = t;
                    self.finish = Some(FinishReason::Stop);
                    return Ok(Emitted {
                        token,
                        text,
                        logprob,
                        finish: self.finish,
                    });
                }
            }
        }
        if self.finish.is_none() && self.grammar.as_ref().is_some_and(|g| g.is_finished()) {
            self.finish = Some(FinishReason::Stop);
        }
        if self.finish.is_none() && self.ids.len() >= self.max_new_tokens {
            self.finish = Some(FinishReason::Length);
        }
        if self.finish.is_some()
            && let Some(tk) = tokenizer
        {
            let rest = self.stream.flush(tk)?;
            match self.stops.push(&rest) {
                StopMatch::Continue(t) => {
                    text.push_str(&t);
                    text.push_str(&self.stops.flush());
                }
                StopMatch::Stopped { text: t, .. } => {
                    text.push_str(&t);
                    self.finish = Some(FinishReason::Stop);
                }
            }
        }
        Ok(Emitted {
            token,
            text,
            logprob,
            finish: self.finish,
        })
    }
}
