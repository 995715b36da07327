//! A teacher [`CausalLm`] as a generator (few-shot prompting plus slm-infer's sampler and
//! generation loop) and as a label scorer (log-likelihood of each label after a classification
//! prompt).

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use slm_core::tokenizer::Tokenizer;
use slm_core::{CausalLm, LogitsScope, TokenBatch};
use slm_infer::classify::log_softmax_at;
use slm_infer::{GenerationConfig, SamplingParams, generate_text};

use super::{GenerationRequest, Generator, LabelScorer};
use crate::error::{Error, Result};
use crate::example::Example;

/// Settings of a [`TeacherGenerator`].
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherConfig {
    /// The line that opens every prompt (the task, in words).
    pub instruction: String,
    /// Seed examples shown per prompt.
    pub shots: usize,
    /// Longest generated text, in tokens (generation also stops at a newline or EOS).
    pub max_new_tokens: usize,
    /// How tokens are picked (slm-infer's sampler; its `seed` is replaced per example by one
    /// drawn from `seed` below).
    pub sampling: SamplingParams,
    /// Seed of the shot selection and the sampler.
    pub seed: u64,
}

impl TeacherConfig {
    /// 3 shots, 64 new tokens, top-40 sampling at temperature 0.8, seed 0.
    pub fn new(instruction: impl Into<String>) -> Self {
        Self {
            instruction: instruction.into(),
            shots: 3,
            max_new_tokens: 64,
            sampling: SamplingParams {
                temperature: 0.8,
                top_k: 40,
                ..SamplingParams::default()
            },
            seed: 0,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |name, reason: &str| {
            Err(Error::InvalidOption {
                name,
                reason: reason.into(),
            })
        };
        if self.shots == 0 {
            return bad("shots", "must be positive");
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens", "must be positive");
        }
        if let Err(e) = self.sampling.validate() {
            return bad("sampling", &e.to_string());
        }
        Ok(())
    }
}

/// The few-shot prompt: the instruction, then `Text: ..` / `Label: ..` pairs separated by
/// blank lines, then an open `Text:` for the teacher to complete.
pub fn few_shot_prompt(instruction: &str, label: &str, shots: &[&Example]) -> String {
    let mut p = format!("{instruction}\n\n");
    for ex in shots {
        p.push_str(&format!(
            "Label: {label}\nText: {}\n\n",
            one_line(&ex.input)
        ));
    }
    p.push_str(&format!("Label: {label}\nText:"));
    p
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Writes new examples of a class by prompting a teacher model with a few examples of it.
///
/// Each example comes from its own prompt with `shots` seeds drawn at random (seeded), and
/// slm-infer's generation loop ([`generate_text`]) that stops at a newline, an
/// end-of-sequence token or `max_new_tokens`. The same seed, request and model give the
/// same output.
#[derive(Debug)]
pub struct TeacherGenerator<'a, M: CausalLm> {
    model: &'a M,
    tokenizer: &'a Tokenizer,
    config: TeacherConfig,
    rng: StdRng,
}

impl<'a, M: CausalLm> TeacherGenerator<'a, M> {
    /// A generator over `model` and its `tokenizer`.
    pub fn new(model: &'a M, tokenizer: &'a Tokenizer, config: TeacherConfig) -> Result<Self> {
        config.validate()?;
        let rng = StdRng::seed_from_u64(config.seed);
        Ok(Self {
            model,
            tokenizer,
            config,
            rng,
        })
    }

    /// Continues `prompt` until a newline, EOS or the token limit; returns the new text.
    fn complete(&mut self, prompt: &str) -> Result<String> {
        let ids = self.tokenizer.encode(prompt, true)?;
        let limit = self.model.config().max_position_embeddings;
        if ids.len() + self.config.max_new_tokens > limit {
            return Err(Error::InvalidOption {
                name: "shots",
                reason: format!(
                    "prompt of {} tokens + {} new tokens exceeds the model's {limit} positions",
                    ids.len(),
                    self.config.max_new_tokens
                ),
            });
        }
        let config = GenerationConfig {
            max_new_tokens: self.config.max_new_tokens,
            sampling: SamplingParams {
                seed: self.rng.random(),
                ..self.config.sampling.clone()
            },
            stop_tokens: self.model.config().eos_token_ids.clone(),
            stop_strings: vec!["\n".into()],
            logprobs: None,
        };
        let out =
            generate_text(self.model, self.tokenizer, &ids, &config).map_err(|e| match e {
                slm_infer::Error::Core(e) => Error::Core(e),
                e => Error::InvalidOption {
                    name: "sampling",
                    reason: e.to_string(),
                },
            })?;
        Ok(out.text.trim().to_string())
    }
}

impl<M: CausalLm> Generator for TeacherGenerator<'_, M> {
    fn generate(&mut self, request: &GenerationRequest<'_>) -> Result<Vec<Example>> {
        if request.seeds.is_empty() {
            return Err(Error::InvalidOption {
                name: "seeds",
                reason: format!("no seed examples of class `{}`", request.label),
            });
        }
        let mut out = Vec::with_capacity(request.count);
        for i in 0..request.count {
            let k = self.config.shots.min(request.seeds.len());
            let shots: Vec<&Example> = request.seeds.choose_multiple(&mut self.rng, k).collect();
            let prompt = few_shot_prompt(&self.config.instruction, request.label, &shots);
            let text = self.complete(&prompt)?;
            out.push(
                Example::new(format!("synth-{}-{i}", request.label), text)
                    .with_label(request.label)
                    .with_meta("synthetic", true)
                    .with_meta("seed", self.config.seed),
            );
        }
        Ok(out)
    }
}

/// Scores labels with a teacher model: the log-likelihood (sum of token log-probabilities) of
/// ` {label}` after `{instruction}\n\nText: {text}\nLabel:`.
#[derive(Debug)]
pub struct TeacherScorer<'a, M: CausalLm> {
    model: &'a M,
    tokenizer: &'a Tokenizer,
    instruction: String,
}

impl<'a, M: CausalLm> TeacherScorer<'a, M> {
    /// A scorer over `model` and its `tokenizer`, with `instruction` opening the prompt.
    pub fn new(model: &'a M, tokenizer: &'a Tokenizer, instruction: impl Into<String>) -> Self {
        Self {
            model,
            tokenizer,
            instruction: instruction.into(),
        }
    }
}

impl<M: CausalLm> LabelScorer for TeacherScorer<'_, M> {
    fn label_scores(&self, text: &str, labels: &[String]) -> Result<Vec<f64>> {
        let prompt = format!("{}\n\nText: {}\nLabel:", self.instruction, one_line(text));
        let prompt_ids = self.tokenizer.encode(&prompt, true)?;
        let mut scores = Vec::with_capacity(labels.len());
        for label in labels {
            let label_ids = self.tokenizer.encode(&format!(" {label}"), false)?;
            let ids: Vec<u32> = prompt_ids.iter().chain(&label_ids).copied().collect();
            let mut cache = self.model.new_cache();
            let logits = self
                .model
                .forward(&TokenBatch::single(ids, LogitsScope::All), &mut cache)?;
            let mut ll = 0f64;
            for (j, &id) in label_ids.iter().enumerate() {
                // The logits at position p predict the token at p + 1.
                let row = logits.at(0, prompt_ids.len() + j - 1);
                ll += log_softmax_at(row, id);
            }
            scores.push(ll);
        }
        Ok(scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_lists_shots_then_an_open_text() {
        let a = Example::new("a", "win  a\nprize");
        let p = few_shot_prompt("Write spam.", "spam", &[&a]);
        assert_eq!(
            p,
            "Write spam.\n\nLabel: spam\nText: win a prize\n\nLabel: spam\nText:"
        );
    }
}
