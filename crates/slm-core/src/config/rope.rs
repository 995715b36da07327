//! Rotary position embedding frequencies, as transformers' `modeling_rope_utils.py` computes them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How RoPE frequencies are rescaled for long contexts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "lowercase")]
pub enum RopeScaling {
    /// Plain RoPE: `inv_freq[i] = theta^(-2i/d)`.
    Default,
    /// Llama 3.1's piecewise scaling (`rope_type: "llama3"`).
    Llama3 {
        /// Overall factor applied to low frequencies.
        factor: f64,
        /// Wavelength boundary (as a fraction of the original context) below which nothing is scaled.
        low_freq_factor: f64,
        /// Wavelength boundary above which everything is scaled by `factor`.
        high_freq_factor: f64,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: usize,
    },
}

impl RopeScaling {
    pub(crate) fn validate(&self) -> Result<()> {
        if let RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } = self
            && !(factor.is_finite()
                && *factor > 0.0
                && *low_freq_factor > 0.0
                && high_freq_factor.is_finite()
                && *high_freq_factor > *low_freq_factor
                && *original_max_position_embeddings > 0)
        {
            return Err(Error::InvalidConfig(format!(
                "llama3 rope scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0, got {self:?}"
            )));
        }
        Ok(())
    }

    /// The inverse frequencies for a head of width `head_dim` (length `head_dim / 2`), in f32 as
    /// transformers computes them.
    pub fn inv_freq(&self, theta: f64, head_dim: usize) -> Vec<f32> {
        // transformers: 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)),
        // evaluated in float32.
        let base: Vec<f32> = (0..head_dim / 2)
            .map(|i| {
                let exponent = (2 * i) as f32 / head_dim as f32;
                1.0f32 / (theta as f32).powf(exponent)
            })
            .collect();
        match *self {
            RopeScaling::Default => base,
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let (factor, low, high) = (
                    factor as f32,
                    low_freq_factor as f32,
                    high_freq_factor as f32,
                );
                let old_len = original_max_position_embeddings as f32;
                let low_freq_wavelen = old_len / low;
                let high_freq_wavelen = old_len / high;
                base.into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        if wavelen > low_freq_wavelen {
                            f / factor
                        } else if wavelen < high_freq_wavelen {
                            f
                        } else {
                            let smooth = (old_len / wavelen - low) / (high - low);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }

    /// The per-frequency factors llama.cpp stores as `rope_freqs.weight` for llama3 scaling
    /// (`None` for other scalings), computed in f32 as `convert_hf_to_gguf.py` computes them
    /// with torch: 1 for short wavelengths, `factor` for long ones, the smooth blend between.
    pub fn llama3_rope_factors(&self, theta: f64, head_dim: usize) -> Option<Vec<f32>> {
        let RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old,
        } = *self
        else {
            return None;
        };
        let low_wavelen = old as f64 / low_freq_factor;
        let high_wavelen = old as f64 / high_freq_factor;
        let two_pi = (2.0 * std::f64::consts::PI) as f32;
        Some(
            (0..head_dim / 2)
                .map(|i| {
                    let exponent = (2 * i) as f32 / head_dim as f32;
                    let freq = 1.0f32 / (theta as f32).powf(exponent);
                    // torch: `2 * math.pi / freq` is `freq.reciprocal() * 2pi`.
                    let wavelen = (1.0f32 / freq) * two_pi;
                    if f64::from(wavelen) < high_wavelen {
                        1.0
                    } else if f64::from(wavelen) > low_wavelen {
                        factor as f32
                    } else {
                        let smooth = ((1.0f32 / wavelen) * old as f32 - low_freq_factor as f32)
                            / (high_freq_factor - low_freq_factor) as f32;
                        1.0f32 / ((1.0f32 - smooth) / factor as f32 + smooth)
                    }
                })
                .collect(),
        )
    }
}
