//! Generation of one sequence over any [`CausalLm`]: prefill the prompt once, then decode one
//! token at a time through the model's cache, each step through the shared [`Decoding`].
//! Many sequences at once, with continuous batching, go through the
//! [`Engine`](crate::engine::Engine) instead.

use slm_core::tokenizer::Tokenizer;
use slm_core::{CausalLm, LogitsScope, TokenBatch};

use crate::decoding::{Decoding, FinishReason, GenerationConfig};
use crate::error::{Error, Result};
use crate::sampling::TokenLogprob;

/// The result of [`generate`] and [`generate_text`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The new token ids (without the prompt; a stop token is included).
    pub ids: Vec<u32>,
    /// The new text (stop strings and special tokens excluded); empty without a tokenizer.
    pub text: String,
    /// Why generation ended.
    pub finish: FinishReason,
    /// Log-probabilities of each new token, when the config asks for them.
    pub logprobs: Vec<TokenLogprob>,
    /// Logits that chose each new token, when asked for with `keep_logits`.
    pub step_logits: Vec<Vec<f32>>,
}

impl Generation {
    /// Whether a stop token or string ended generation.
    pub fn stopped(&self) -> bool {
        self.finish == FinishReason::Stop
    }
}

/// Generates up to `config.max_new_tokens` tokens after `prompt`, ids only (stop strings need
/// [`generate_text`]). With `keep_logits` the raw logits of each step are returned too (for
/// parity checks and scoring).
pub fn generate<M: CausalLm>(
    model: &M,
    prompt: &[u32],
    config: &GenerationConfig,
    keep_logits: bool,
) -> Result<Generation> {
    if !config.stop_strings.is_empty() {
        return Err(Error::InvalidConfig(
            "stop strings need a tokenizer: use generate_text".into(),
        ));
    }
    run(model, None, prompt, config, keep_logits)
}

/// Generates as [`generate`] does, also decoding the text and stopping at stop strings.
pub fn generate_text<M: CausalLm>(
    model: &M,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    config: &GenerationConfig,
) -> Result<Generation> {
    run(model, Some(tokenizer), prompt, config, false)
}

fn run<M: CausalLm>(
    model: &M,
    tokenizer: Option<&Tokenizer>,
    prompt: &[u32],
    config: &GenerationConfig,
    keep_logits: bool,
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(Error::InvalidConfig("the prompt is empty".into()));
    }
    let max = model.config().context_length();
    if prompt.len() > max {
        return Err(Error::Core(slm_core::Error::ContextOverflow {
            tokens: prompt.len(),
            max,
        }));
    }
    let mut decoding = Decoding::new(config, prompt)?;
    let mut cache = model.new_cache();
    let mut out = Generation {
        ids: Vec::new(),
        text: String::new(),
        finish: FinishReason::Length,
        logprobs: Vec::new(),
        step_logits: Vec::new(),
    };
    let mut input = prompt.to_vec();
    let mut fed = 0;
    while decoding.finish().is_none() {
        if fed + input.len() > max {
            // The context is full: the answer ends here, as if by length.
            decoding.end(FinishReason::Length);
            break;
        }
        fed += input.len();
        let logits = model.forward(&TokenBatch::single(input, LogitsScope::Last), &mut cache)?;
        let row = logits.last(0);
        let step = decoding.advance(row, tokenizer)?;
        if keep_logits {
            out.step_logits.push(row.to_vec());
        }
        out.text.push_str(&step.text);
        out.logprobs.extend(step.logprob);
        input = vec![step.token];
    }
    out.ids = decoding.ids().to_vec();
    out.finish = decoding.finish().unwrap_or(FinishReason::Length);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::SamplingParams;
    use crate::test_support::tiny_config;
    use slm_core::prelude::Device;

    #[test]
    fn greedy_generation_is_the_argmax_chain_and_stops_on_a_stop_token() {
        let model = tiny_config().init(&Device::flex());
        let config = GenerationConfig {
            max_new_tokens: 6,
            ..Default::default()
        };
        let out = generate(&model, &[0, 5, 9], &config, true).unwrap();
        assert_eq!(out.ids.len(), 6);
        assert_eq!(out.finish, FinishReason::Length);
        for (id, row) in out.ids.iter().zip(&out.step_logits) {
            assert_eq!(Some(*id), crate::sampling::argmax(row));
        }
        let stop = GenerationConfig {
            stop_tokens: vec![out.ids[2]],
            ..config.clone()
        };
        let stopped = generate(&model, &[0, 5, 9], &stop, false).unwrap();
        let first = out.ids.iter().position(|&t| t == out.ids[2]).unwrap();
        assert_eq!(stopped.ids, out.ids[..=first]);
        assert!(stopped.stopped());
    }

    #[test]
    fn seeded_sampling_repeats_and_logprobs_come_back() {
        let model = tiny_config().init(&Device::flex());
        let config = GenerationConfig {
            max_new_tokens: 8,
            sampling: SamplingParams::with_temperature(1.5, 11),
            logprobs: Some(2),
            ..Default::default()
        };
        let a = generate(&model, &[0, 3], &config, false).unwrap();
        let b = generate(&model, &[0, 3], &config, false).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.logprobs.len(), 8);
        assert!(
            a.logprobs
                .iter()
                .zip(&a.ids)
                .all(|(l, &id)| l.token == id && l.top.len() == 2 && l.logprob <= 0.0)
        );
    }

    #[test]
    fn stops_at_the_end_of_the_context_and_refuses_bad_prompts() {
        let model = tiny_config().init(&Device::flex());
        let max = model.config().context_length();
        let config = GenerationConfig {
            max_new_tokens: 1000,
            ..Default::default()
        };
        let out = generate(&model, &vec![2; max - 3], &config, false).unwrap();
        assert_eq!(
            out.ids.len(),
            4,
            "3 free positions feed 3 tokens, +1 chosen last"
        );
        assert_eq!(out.finish, FinishReason::Length);
        assert!(generate(&model, &[], &config, false).is_err());
        assert!(generate(&model, &vec![2; max + 1], &config, false).is_err());
        let strings = GenerationConfig {
            stop_strings: vec!["x".into()],
            ..config
        };
        assert!(generate(&model, &[1], &strings, false).is_err());
    }
}
