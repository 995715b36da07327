//! Autoregressive generation over any [`CausalLm`]: prefill the prompt once, then decode one
//! token at a time through the model's cache.

use slm_core::{CausalLm, LogitsScope, TokenBatch};

use crate::error::{Error, Result};
use crate::sampling::{Sampler, Sampling};

/// The default budget of new tokens: room for a whole chat answer of a small model (which ends
/// earlier, at its end-of-turn token), as Ollama and llama.cpp give by default.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 512;

/// Settings of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Upper bound on new tokens ([`DEFAULT_MAX_NEW_TOKENS`] by default).
    pub max_new_tokens: usize,
    /// How tokens are picked.
    pub sampling: Sampling,
    /// Seed of the sampler.
    pub seed: u64,
    /// Generation stops after producing any of these (the stop token is included in the
    /// output, as transformers does). Empty: never stop early.
    pub stop_tokens: Vec<u32>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            sampling: Sampling::Greedy,
            seed: 0,
            stop_tokens: Vec::new(),
        }
    }
}

/// The result of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The new token ids (without the prompt).
    pub ids: Vec<u32>,
    /// Whether a stop token ended generation.
    pub stopped: bool,
    /// Logits that chose each new token, when asked for with `keep_logits`.
    pub step_logits: Vec<Vec<f32>>,
}

/// Generates up to `config.max_new_tokens` tokens after `prompt`. With `keep_logits` the raw
/// logits of each step are returned too (for parity checks and scoring).
pub fn generate<M: CausalLm>(
    model: &M,
    prompt: &[u32],
    config: &GenerationConfig,
    keep_logits: bool,
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(Error::InvalidConfig("the prompt is empty".into()));
    }
    let mut sampler = Sampler::new(config.sampling, config.seed)?;
    let mut cache = model.new_cache();
    let mut out = Generation {
        ids: Vec::new(),
        stopped: false,
        step_logits: Vec::new(),
    };
    let mut input = prompt.to_vec();
    for step in 0..config.max_new_tokens {
        let logits = model.forward(&TokenBatch::single(input, LogitsScope::Last), &mut cache)?;
        let row = logits.last(0);
        let next = sampler.sample(row).ok_or(Error::NonFiniteLogits { step })?;
        if keep_logits {
            out.step_logits.push(row.to_vec());
        }
        out.ids.push(next);
        if config.stop_tokens.contains(&next) {
            out.stopped = true;
            break;
        }
        input = vec![next];
    }
    Ok(out)
}
