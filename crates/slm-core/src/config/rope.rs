//! Rotary position embedding frequencies, as transformers' `modeling_rope_utils.py` computes them
//! (and llama.cpp reads them from GGUF metadata): [`RopeScaling`] is the configured variant,
//! [`Rotary`] the frequencies and attention factor a decoder applies, shared by the burn decoder
//! and the CPU fast path.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::ModelConfig;
use crate::error::{Error, Result};

/// How RoPE frequencies are rescaled for long contexts (`rope_scaling` / `rope_parameters` of a
/// `config.json`, `rope.scaling.*` and the `rope_freqs` / `rope_factors_*` tensors of a GGUF).
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
    /// Position interpolation (`rope_type: "linear"`): every frequency divided by `factor`.
    Linear {
        /// The interpolation factor.
        factor: f64,
    },
    /// Dynamic NTK scaling (`rope_type: "dynamic"`): once a sequence is longer than
    /// `max_position_embeddings`, the base grows with its length.
    Dynamic {
        /// The scaling factor.
        factor: f64,
    },
    /// YaRN (`rope_type: "yarn"`, Qwen2.5's long-context setting): frequencies blended between
    /// interpolation and extrapolation by a ramp over the dimensions, cos/sin scaled by
    /// `attention_factor`.
    Yarn {
        /// The context extension factor.
        factor: f64,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: usize,
        /// Rotations below which dimensions are interpolated (32 by default).
        beta_fast: f64,
        /// Rotations above which dimensions are extrapolated (1 by default).
        beta_slow: f64,
        /// The cos/sin scale (resolved from `mscale`/`mscale_all_dim` or `0.1 ln(factor) + 1`).
        attention_factor: f64,
        /// Whether the correction range is rounded to whole dimensions (transformers' default).
        truncate: bool,
    },
    /// Phi-3's LongRoPE (`rope_type: "longrope"`, also `"su"`): per-frequency divisors, the short
    /// set for calls within `original_max_position_embeddings` positions and the long set past it,
    /// cos/sin scaled by `attention_factor`.
    #[serde(rename = "longrope")]
    LongRope {
        /// Divisors for short contexts (`head_dim * partial_rotary_factor / 2` of them).
        short_factor: Vec<f32>,
        /// Divisors for long contexts.
        long_factor: Vec<f32>,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: usize,
        /// The cos/sin scale (`sqrt(1 + ln(factor) / ln(original))` unless the config sets it).
        attention_factor: f64,
    },
    /// Per-frequency divisors as llama.cpp stores them in `rope_freqs.weight` (llama3 scaling of
    /// a GGUF whose parameters could not be recovered): `inv_freq[i] / factors[i]`.
    Factors {
        /// One divisor per frequency.
        factors: Vec<f32>,
    },
}

/// The default base frequencies `1 / theta^(2i/dim)` in f32, as transformers computes them
/// (`1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))`).
fn base_inv_freq(theta: f64, dim: usize) -> Vec<f32> {
    (0..dim / 2)
        .map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / dim as f32))
        .collect()
}

/// YaRN's `get_mscale` (modeling_rope_utils.py): `0.1 * m * ln(scale) + 1`, 1 when
/// `scale <= 1`; with `m = 1` it is YaRN's default attention factor.
pub(crate) fn yarn_mscale(scale: f64, m: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * m * scale.ln() + 1.0
    }
}

/// LongRoPE's default attention factor for a context extended `factor` times over `original`
/// positions: `sqrt(1 + ln(factor) / ln(original))`, 1 when `factor <= 1`.
pub(crate) fn longrope_attention_factor(factor: f64, original: usize) -> f64 {
    if factor <= 1.0 {
        1.0
    } else {
        (1.0 + factor.ln() / (original as f64).ln()).sqrt()
    }
}

/// YaRN's `find_correction_dim`, in f64 as transformers computes it.
fn correction_dim(rotations: f64, dim: usize, theta: f64, original: usize) -> f64 {
    (dim as f64 * (original as f64 / (rotations * 2.0 * std::f64::consts::PI)).ln())
        / (2.0 * theta.ln())
}

impl RopeScaling {
    /// Checks the parameters for `rotary_dim` rotated dimensions; the error names the rule the
    /// variant breaks and shows the values.
    pub(crate) fn validate(&self, rotary_dim: usize) -> Result<()> {
        let positive = |f: f64| f.is_finite() && f > 0.0;
        let factors_ok =
            |v: &[f32]| v.len() == rotary_dim / 2 && v.iter().all(|f| f.is_finite() && *f > 0.0);
        let (ok, rule) = match self {
            RopeScaling::Default => (true, ""),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => (
                positive(*factor)
                    && *low_freq_factor > 0.0
                    && high_freq_factor.is_finite()
                    && *high_freq_factor > *low_freq_factor
                    && *original_max_position_embeddings > 0,
                "llama3 rope scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0",
            ),
            RopeScaling::Linear { factor } => {
                (positive(*factor), "linear rope scaling needs factor > 0")
            }
            RopeScaling::Dynamic { factor } => (
                positive(*factor) && rotary_dim >= 4,
                "dynamic rope scaling needs factor > 0 and at least 4 rotated dimensions",
            ),
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                attention_factor,
                ..
            } => (
                positive(*factor)
                    && *original_max_position_embeddings > 0
                    && positive(*beta_fast)
                    && positive(*beta_slow)
                    && positive(*attention_factor),
                "yarn rope scaling needs factor, beta_fast, beta_slow and attention_factor > 0 and original_max_position_embeddings > 0",
            ),
            RopeScaling::LongRope {
                short_factor,
                long_factor,
                original_max_position_embeddings,
                attention_factor,
            } => (
                factors_ok(short_factor)
                    && factors_ok(long_factor)
                    && *original_max_position_embeddings > 0
                    && positive(*attention_factor),
                "longrope rope scaling needs rotary_dim / 2 positive short and long factors, attention_factor > 0 and original_max_position_embeddings > 0",
            ),
            RopeScaling::Factors { factors } => (
                factors_ok(factors),
                "rope_freqs needs rotary_dim / 2 positive factors",
            ),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidConfig(format!(
                "{rule} (rotary_dim {rotary_dim}), got {self:?}"
            )))
        }
    }

    /// The inverse frequencies for `dim` rotated dimensions (length `dim / 2`), in f32 as
    /// transformers computes them at initialisation: for `dynamic` the unscaled ones and for
    /// `longrope` the short set (see [`Rotary::inv_freq`] for the length-dependent ones).
    pub fn inv_freq(&self, theta: f64, dim: usize) -> Vec<f32> {
        let base = base_inv_freq(theta, dim);
        match self {
            RopeScaling::Default | RopeScaling::Dynamic { .. } => base,
            RopeScaling::Linear { factor } => base.iter().map(|f| f / *factor as f32).collect(),
            RopeScaling::Factors { factors } => {
                base.iter().zip(factors).map(|(f, d)| f / d).collect()
            }
            RopeScaling::LongRope { short_factor, .. } => longrope(theta, dim, short_factor),
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                truncate,
                ..
            } => {
                let (mut low, mut high) = (
                    correction_dim(*beta_fast, dim, theta, *original_max_position_embeddings),
                    correction_dim(*beta_slow, dim, theta, *original_max_position_embeddings),
                );
                if *truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let (low, mut high) = (low.max(0.0), high.min(dim as f64 - 1.0));
                if low == high {
                    high += 0.001;
                }
                let (low, high) = (low as f32, high as f32);
                let factor = *factor as f32;
                (0..dim / 2)
                    .map(|i| {
                        let pos_freq = (theta as f32).powf((2 * i) as f32 / dim as f32);
                        let extrapolation = 1.0 / pos_freq;
                        let interpolation = 1.0 / (factor * pos_freq);
                        let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
                        let keep = 1.0 - ramp;
                        interpolation * (1.0 - keep) + extrapolation * keep
                    })
                    .collect()
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let (factor, low, high) = (
                    *factor as f32,
                    *low_freq_factor as f32,
                    *high_freq_factor as f32,
                );
                let old_len = *original_max_position_embeddings as f32;
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

    /// The scale transformers applies to cos and sin (YaRN's and LongRoPE's attention factor;
    /// 1 for the others).
    pub fn attention_factor(&self) -> f64 {
        match self {
            RopeScaling::Yarn {
                attention_factor, ..
            }
            | RopeScaling::LongRope {
                attention_factor, ..
            } => *attention_factor,
            _ => 1.0,
        }
    }

    /// The Llama 3 parameters that reproduce llama.cpp's `rope_freqs.weight` factors (which a
    /// GGUF stores instead of them), tried over the settings Llama 3.x models ship with and
    /// every power-of-two original context; `None` when none reproduces them within 1e-6.
    pub fn llama3_from_factors(factors: &[f32], theta: f64, head_dim: usize) -> Option<Self> {
        let top = factors.iter().copied().fold(f32::NAN, f32::max);
        if !top.is_finite() {
            return None;
        }
        let mut originals: Vec<usize> = (4..=20).map(|p| 1usize << p).collect();
        originals.push(8192);
        for original in originals {
            for (low, high) in [(1.0, 4.0), (1.0, 2.0), (1.0, 8.0)] {
                let candidate = RopeScaling::Llama3 {
                    factor: f64::from(top),
                    low_freq_factor: low,
                    high_freq_factor: high,
                    original_max_position_embeddings: original,
                };
                let Some(made) = candidate.llama3_rope_factors(theta, head_dim) else {
                    continue;
                };
                if made.len() == factors.len()
                    && made
                        .iter()
                        .zip(factors)
                        .all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1.0))
                {
                    return Some(candidate);
                }
            }
        }
        None
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

/// LongRoPE's frequencies for one factor set: `1 / (factor[i] * theta^(2i/dim))` in f32.
fn longrope(theta: f64, dim: usize, factors: &[f32]) -> Vec<f32> {
    (0..dim / 2)
        .map(|i| {
            let ext = factors.get(i).copied().unwrap_or(1.0);
            1.0f32 / (ext * (theta as f32).powf((2 * i) as f32 / dim as f32))
        })
        .collect()
}

/// The rotary embedding a decoder applies, resolved from a [`ModelConfig`]: how many leading
/// dimensions of each head rotate (`partial_rotary_factor`), their frequencies, and the cos/sin
/// scale.
///
/// Frequencies may depend on how long the sequence is (`dynamic` grows its base past
/// `max_position_embeddings`, `longrope` switches to its long factors past
/// `original_max_position_embeddings`). transformers decides that per forward call from the
/// largest position in the call; slm decides it per sequence from the largest position of that
/// sequence's tokens in the call, so batching never changes a sequence's output (for one
/// sequence the two agree). Keys already cached keep the rotation they were stored with, as in
/// transformers.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotary {
    rotary_dim: usize,
    theta: f64,
    scaling: RopeScaling,
    /// The frequencies of calls the length does not affect.
    inv_freq: Vec<f32>,
    /// LongRoPE's long set.
    long_inv_freq: Option<Vec<f32>>,
    max_position_embeddings: usize,
    attention_factor: f32,
}

impl Rotary {
    /// The rotary embedding of `config`.
    pub fn new(config: &ModelConfig) -> Self {
        let dim = config.rotary_dim();
        let scaling = config.rope_scaling.clone();
        let long_inv_freq = match &scaling {
            RopeScaling::LongRope { long_factor, .. } => {
                Some(longrope(config.rope_theta, dim, long_factor))
            }
            _ => None,
        };
        Self {
            rotary_dim: dim,
            theta: config.rope_theta,
            inv_freq: scaling.inv_freq(config.rope_theta, dim),
            attention_factor: scaling.attention_factor() as f32,
            scaling,
            long_inv_freq,
            max_position_embeddings: config.max_position_embeddings,
        }
    }

    /// How many leading dimensions of each head rotate (the rest pass through).
    pub fn rotary_dim(&self) -> usize {
        self.rotary_dim
    }

    /// The scale applied to cos and sin (1 except for YaRN and LongRoPE).
    pub fn attention_factor(&self) -> f32 {
        self.attention_factor
    }

    /// Whether the frequencies depend on the sequence's length (`dynamic`, `longrope`).
    pub fn depends_on_length(&self) -> bool {
        matches!(
            self.scaling,
            RopeScaling::Dynamic { .. } | RopeScaling::LongRope { .. }
        )
    }

    /// Whether a sequence holding `past` positions that gets `new` more must be recomputed from
    /// its tokens instead of extending its cache: LongRoPE's switch to its long factors when the
    /// sequence first passes `original_max_position_embeddings` invalidates every key cached with
    /// the short ones (and the hidden states built on them), so transformers'
    /// `Phi3ForCausalLM.prepare_inputs_for_generation` drops the cache at that step and slm's
    /// decoders re-run the sequence. Never for other scalings (transformers keeps keys cached
    /// under a smaller dynamic-NTK base).
    pub fn recomputes(&self, past: usize, new: usize) -> bool {
        match &self.scaling {
            RopeScaling::LongRope {
                original_max_position_embeddings: orig,
                ..
            } => past > 0 && past <= *orig && past + new > *orig,
            _ => false,
        }
    }

    /// Whether [`recomputes`](Self::recomputes) can ever hold, so a decoder must keep each
    /// sequence's tokens (LongRoPE only).
    pub fn may_recompute(&self) -> bool {
        matches!(self.scaling, RopeScaling::LongRope { .. })
    }

    /// The `rotary_dim / 2` inverse frequencies for a call whose furthest token of this
    /// sequence sits at position `max_position` (so `max_position + 1` positions long).
    pub fn inv_freq(&self, max_position: usize) -> Cow<'_, [f32]> {
        let seq_len = max_position + 1;
        match (&self.scaling, &self.long_inv_freq) {
            (
                RopeScaling::LongRope {
                    original_max_position_embeddings,
                    ..
                },
                Some(long),
            ) if seq_len > *original_max_position_embeddings => Cow::Borrowed(long),
            (RopeScaling::Dynamic { factor }, _) if seq_len > self.max_position_embeddings => {
                // transformers, in f32 tensors: base * ((factor * seq_len / max_pos) - (factor - 1))
                // ** (dim / (dim - 2)), then the default frequencies of that base.
                let dim = self.rotary_dim as f32;
                let factor = *factor as f32;
                let grown =
                    factor * seq_len as f32 / self.max_position_embeddings as f32 - (factor - 1.0);
                let base = self.theta as f32 * grown.powf(dim / (dim - 2.0));
                Cow::Owned(
                    (0..self.rotary_dim / 2)
                        .map(|i| 1.0f32 / base.powf((2 * i) as f32 / dim))
                        .collect(),
                )
            }
            _ => Cow::Borrowed(&self.inv_freq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::hf::HfConfig;

    /// A plain Phi-3 config (head_dim 16, 64 positions).
    fn config() -> ModelConfig {
        let text = r#"{"architectures":["Phi3ForCausalLM"],"vocab_size":8,"hidden_size":64,
            "intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,
            "max_position_embeddings":64}"#;
        let cfg: HfConfig = serde_json::from_str(text).unwrap();
        cfg.resolve("c").unwrap()
    }

    #[test]
    fn llama3_parameters_are_recovered_from_rope_freqs_factors() {
        let scaling = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64,
        };
        let factors = scaling.llama3_rope_factors(500_000.0, 16).unwrap();
        assert_eq!(
            RopeScaling::llama3_from_factors(&factors, 500_000.0, 16),
            Some(scaling)
        );
        assert_eq!(
            RopeScaling::llama3_from_factors(&[1.0, 3.0, 2.0, 7.5], 500_000.0, 8),
            None
        );
    }

    #[test]
    fn length_dependent_frequencies_switch_where_transformers_does() {
        let mut c = config();
        let plain = Rotary::new(&c).inv_freq(0).into_owned();
        c.rope_scaling = RopeScaling::Dynamic { factor: 2.0 };
        let dynamic = Rotary::new(&c);
        assert!(dynamic.depends_on_length());
        assert_eq!(dynamic.inv_freq(63).as_ref(), plain.as_slice());
        let grown = dynamic.inv_freq(127);
        assert_eq!(grown[0], 1.0);
        assert!(grown[1..].iter().zip(&plain[1..]).all(|(g, p)| g < p));

        c.rope_scaling = RopeScaling::LongRope {
            short_factor: vec![1.0; 8],
            long_factor: vec![2.0; 8],
            original_max_position_embeddings: 4,
            attention_factor: 1.5,
        };
        let long = Rotary::new(&c);
        assert_eq!(long.attention_factor(), 1.5);
        assert_eq!(long.inv_freq(3).as_ref(), plain.as_slice());
        let after: Vec<f32> = plain.iter().map(|f| f / 2.0).collect();
        for (a, b) in long.inv_freq(4).iter().zip(&after) {
            assert!((a - b).abs() <= 1e-7 * b.abs());
        }
    }
}
