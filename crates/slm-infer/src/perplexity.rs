//! Perplexity as llama.cpp's `llama-perplexity` computes it, so the two can be compared on the
//! same model and text: the whole text tokenized once (with BOS only when the model adds one),
//! `floor(n / ctx)` chunks of `ctx` tokens, each evaluated with a fresh cache and its first
//! token replaced by BOS when the model adds one, and only the second half of each chunk
//! scored (`first = ctx / 2`: the logits at positions `first..ctx - 1` against the tokens after
//! them, so every scored token has at least `ctx / 2` tokens of context).
//!
//! `ppl = exp(mean NLL)`, and the uncertainty llama.cpp prints beside it:
//! `ppl * sqrt((mean(NLL^2) - mean(NLL)^2) / (count - 1))`.

use serde::{Deserialize, Serialize};
use slm_core::{CausalLm, LogitsScope, TokenBatch};

use crate::error::{Error, Result};

/// How [`perplexity`] chunks the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerplexityConfig {
    /// Tokens per chunk (llama.cpp's `--ctx-size`; 512 by default).
    pub ctx: usize,
    /// Evaluate at most this many chunks (llama.cpp's `--chunks`); all of them when `None`.
    pub max_chunks: Option<usize>,
}

impl Default for PerplexityConfig {
    fn default() -> Self {
        PerplexityConfig {
            ctx: 512,
            max_chunks: None,
        }
    }
}

/// What [`perplexity`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Perplexity {
    /// `exp(mean negative log-likelihood)` over the scored tokens.
    pub ppl: f64,
    /// Its uncertainty, as llama.cpp prints after `+/-`.
    pub stderr: f64,
    /// Tokens scored (`chunks * (ctx - ctx / 2 - 1)`).
    pub tokens: usize,
    /// Chunks evaluated.
    pub chunks: usize,
    /// Tokens per chunk.
    pub ctx: usize,
    /// Mean negative log-likelihood, in nats.
    pub nll: f64,
}

/// The perplexity of `model` on `tokens` (the whole text, tokenized as the model's tokenizer
/// does, BOS first when it adds one) by llama.cpp's method; `bos` is the id that starts each
/// chunk when the model adds BOS (`None` otherwise). `progress(done, total)` is called after
/// each chunk.
///
/// # Errors
/// [`Error::InvalidConfig`] for a context below 4 or above the model's positions, or a text of
/// fewer than `2 * ctx` tokens (llama.cpp's minimum); [`Error::NonFiniteLogits`] when the model
/// returns NaN or infinite logits; model errors as they come.
pub fn perplexity<M: CausalLm>(
    model: &M,
    tokens: &[u32],
    bos: Option<u32>,
    config: &PerplexityConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    let ctx = config.ctx;
    let max_positions = model.config().context_length();
    if ctx < 4 || ctx > max_positions {
        return Err(Error::InvalidConfig(format!(
            "perplexity context {ctx}: must be between 4 and the model's {max_positions} positions"
        )));
    }
    if tokens.len() < 2 * ctx {
        return Err(Error::InvalidConfig(format!(
            "perplexity with a context of {ctx} needs at least {} tokens; the text has {}",
            2 * ctx,
            tokens.len()
        )));
    }
    let chunks = (tokens.len() / ctx).min(config.max_chunks.unwrap_or(usize::MAX));
    let first = ctx / 2;
    let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0usize);
    for i in 0..chunks {
        let mut chunk = tokens[i * ctx..(i + 1) * ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        let batch = TokenBatch::single(chunk.clone(), LogitsScope::All);
        let logits = model.forward(&batch, &mut model.new_cache())?;
        for j in first..ctx - 1 {
            let row = logits.at(0, j);
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if !max.is_finite() {
                return Err(Error::NonFiniteLogits { step: i * ctx + j });
            }
            let sum: f64 = row.iter().map(|&z| ((z - max) as f64).exp()).sum();
            let target = tokens[i * ctx + j + 1] as usize;
            let v = max as f64 + sum.ln() - row[target] as f64;
            nll += v;
            nll2 += v * v;
            count += 1;
        }
        progress(i + 1, chunks);
    }
    let mean = nll / count as f64;
    let ppl = mean.exp();
    let var = nll2 / count as f64 - mean * mean;
    let stderr = if var > 0.0 && count > 1 {
        (var / (count - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    Ok(Perplexity {
        ppl,
        stderr,
        tokens: count,
        chunks,
        ctx,
        nll: mean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use slm_core::{Logits, ModelConfig};

    /// A model whose next-token distribution is uniform over the vocabulary: perplexity is
    /// the vocabulary size exactly.
    struct Uniform(ModelConfig);

    impl CausalLm for Uniform {
        type Cache = ();
        fn config(&self) -> &ModelConfig {
            &self.0
        }
        fn new_cache(&self) {}
        fn forward(&self, batch: &TokenBatch, _: &mut ()) -> slm_core::Result<Logits> {
            let (b, t) = (batch.ids.len(), batch.ids[0].len());
            let v = self.0.vocab_size;
            Ok(Logits {
                values: vec![0.5; b * t * v],
                batch: b,
                positions: t,
                vocab: v,
            })
        }
    }

    fn config(vocab: usize) -> ModelConfig {
        ModelConfig {
            vocab_size: vocab,
            ..crate::test_support::tiny_config()
        }
    }

    #[test]
    fn a_uniform_model_has_the_vocabulary_size_as_perplexity() {
        let m = Uniform(config(10));
        let tokens: Vec<u32> = (0..70).map(|i| i % 10).collect();
        let mut seen = Vec::new();
        let p = perplexity(
            &m,
            &tokens,
            Some(1),
            &PerplexityConfig {
                ctx: 16,
                max_chunks: None,
            },
            |d, n| seen.push((d, n)),
        )
        .unwrap();
        assert_eq!(p.chunks, 4);
        assert_eq!(p.tokens, 4 * (16 - 8 - 1));
        assert!((p.ppl - 10.0).abs() < 1e-9, "{p:?}");
        assert!(p.stderr < 1e-6, "{p:?}");
        assert_eq!(seen.last(), Some(&(4, 4)));
        let short = perplexity(
            &m,
            &tokens[..31],
            None,
            &PerplexityConfig {
                ctx: 16,
                max_chunks: None,
            },
            |_, _| {},
        );
        assert!(matches!(short, Err(Error::InvalidConfig(_))));
    }
}
