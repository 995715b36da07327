//! Calibration statistics: what every projection's inputs look like on sample text, the data
//! activation-aware compression needs ([`InputStats`]: Wanda's input norms, the importance
//! matrix of weighted quantization).

use std::collections::HashMap;

use slm_core::model::{Decoder, NarrowImportance, capture_input_sq_norms};
use slm_core::tokenizer::Tokenizer;
use slm_core::{CausalLm, LogitsScope, TokenBatch};

use crate::error::{Error, Result};

/// Cuts `text` into at most `max_chunks` chunks of `ctx` tokens (the tokenizer's own special
/// tokens added, as llama.cpp's `llama-imatrix` and `llama-perplexity` do), the last one shorter.
///
/// # Errors
/// [`Error::InvalidCalibration`] when the text has no tokens or `ctx` is 0; tokenizer errors.
pub fn calibration_chunks(
    tokenizer: &Tokenizer,
    text: &str,
    ctx: usize,
    max_chunks: usize,
) -> Result<Vec<Vec<u32>>> {
    if ctx == 0 || max_chunks == 0 {
        return Err(Error::InvalidCalibration(format!(
            "chunks of {ctx} tokens, at most {max_chunks}: both must be positive"
        )));
    }
    let ids = tokenizer.encode(text, true)?;
    if ids.is_empty() {
        return Err(Error::InvalidCalibration(
            "the calibration text has no tokens".into(),
        ));
    }
    Ok(ids
        .chunks(ctx)
        .take(max_chunks)
        .map(<[u32]>::to_vec)
        .collect())
}

/// The sum of squares of every projection input channel over all calibration tokens, by Hugging
/// Face weight name (`model.layers.0.self_attn.q_proj.weight` -> `[in]`), and the token count.
#[derive(Debug, Clone, PartialEq)]
pub struct InputStats {
    /// Per projection weight, `sum over tokens of x_j²` for each input channel `j`.
    pub sq_sums: HashMap<String, Vec<f32>>,
    /// Calibration tokens the sums run over.
    pub tokens: usize,
    /// Calibration chunks (forward passes).
    pub chunks: usize,
}

impl InputStats {
    /// Runs `decoder` over each chunk (a fresh cache per chunk) with input capture on.
    ///
    /// # Errors
    /// [`Error::InvalidCalibration`] when there are no tokens or the capture does not match the
    /// model's projections; model errors as they come.
    pub fn collect(decoder: &Decoder, chunks: &[Vec<u32>]) -> Result<Self> {
        if chunks.iter().all(Vec::is_empty) {
            return Err(Error::InvalidCalibration(
                "activation-aware compression needs calibration text".into(),
            ));
        }
        let names: Vec<String> = decoder
            .projections()
            .into_iter()
            .map(|(n, _)| format!("{n}.weight"))
            .collect();
        let mut sums: Vec<Vec<f32>> = Vec::new();
        let (mut tokens, mut used) = (0, 0);
        for ids in chunks.iter().filter(|c| !c.is_empty()) {
            let batch = TokenBatch::single(ids.clone(), LogitsScope::Last);
            let (out, calls) =
                capture_input_sq_norms(|| decoder.forward(&batch, &mut decoder.new_cache()));
            out?;
            if calls.len() != names.len() {
                return Err(Error::InvalidCalibration(format!(
                    "captured {} projection inputs for a model of {} projections",
                    calls.len(),
                    names.len()
                )));
            }
            if sums.is_empty() {
                sums = calls;
            } else {
                for (s, c) in sums.iter_mut().zip(calls) {
                    for (a, b) in s.iter_mut().zip(c) {
                        *a += b;
                    }
                }
            }
            tokens += ids.len();
            used += 1;
        }
        Ok(Self {
            sq_sums: names.into_iter().zip(sums).collect(),
            tokens,
            chunks: used,
        })
    }

    /// Wanda's `||X_j||`: the L2 norm of each input channel.
    pub fn l2_norms(&self) -> HashMap<String, Vec<f32>> {
        self.sq_sums
            .iter()
            .map(|(n, s)| (n.clone(), s.iter().map(|v| v.sqrt()).collect()))
            .collect()
    }

    /// llama.cpp's importance: the mean squared activation of each input channel.
    pub fn mean_squares(&self) -> HashMap<String, Vec<f32>> {
        let n = self.tokens.max(1) as f32;
        self.sq_sums
            .iter()
            .map(|(name, s)| (name.clone(), s.iter().map(|v| v / n).collect()))
            .collect()
    }

    /// Activation-aware importance of every MLP neuron and query head of `decoder` (which the
    /// statistics were collected on), for structured pruning
    /// ([`NarrowImportance::from_activations`]: activation norm x output-weight norm).
    ///
    /// # Errors
    /// [`Error::Core`] when the statistics lack a layer's `down_proj`/`o_proj`.
    pub fn narrow_importance(&self, decoder: &Decoder) -> Result<NarrowImportance> {
        Ok(NarrowImportance::from_activations(decoder, &self.sq_sums)?)
    }
}
