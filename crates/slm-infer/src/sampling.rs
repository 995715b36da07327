//! Choosing the next token from logits: greedy, or temperature with top-k / top-p filtering.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

/// How the next token is picked. Invalid combinations cannot be built: validate with
/// [`Sampling::validate`] before use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// The highest logit; ties go to the lower id (as `torch.argmax`).
    Greedy,
    /// Softmax at `temperature`, optionally restricted to the `top_k` best tokens and to the
    /// smallest set whose probability reaches `top_p`.
    Temperature {
        /// Softmax temperature (> 0).
        temperature: f32,
        /// Keep only this many best tokens (0 = all).
        top_k: usize,
        /// Nucleus threshold in (0, 1].
        top_p: f32,
    },
}

impl Sampling {
    /// Greedy for temperature 0, sampling otherwise (top-k off, top-p 1).
    pub fn from_temperature(temperature: f32) -> Self {
        if temperature == 0.0 {
            Sampling::Greedy
        } else {
            Sampling::Temperature {
                temperature,
                top_k: 0,
                top_p: 1.0,
            }
        }
    }

    /// Rejects negative or non-finite temperatures and `top_p` outside (0, 1].
    pub fn validate(&self) -> Result<()> {
        if let Sampling::Temperature {
            temperature, top_p, ..
        } = *self
        {
            if !(temperature > 0.0 && temperature.is_finite()) {
                return Err(Error::InvalidConfig(format!(
                    "temperature must be >= 0 and finite, got {temperature}"
                )));
            }
            if !(top_p > 0.0 && top_p <= 1.0) {
                return Err(Error::InvalidConfig(format!(
                    "top_p must be in (0, 1], got {top_p}"
                )));
            }
        }
        Ok(())
    }
}

/// The index of the largest value; the lowest index wins ties. `None` if any value is NaN.
pub fn argmax(logits: &[f32]) -> Option<u32> {
    let mut best = 0usize;
    for (i, &v) in logits.iter().enumerate() {
        if v.is_nan() {
            return None;
        }
        if v > logits[best] {
            best = i;
        }
    }
    (!logits.is_empty()).then_some(best as u32)
}

/// A seeded sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    sampling: Sampling,
    rng: StdRng,
}

impl Sampler {
    /// A sampler with a fixed seed (the same seed gives the same tokens).
    pub fn new(sampling: Sampling, seed: u64) -> Result<Self> {
        sampling.validate()?;
        Ok(Self {
            sampling,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// Picks a token; `None` if the logits are not finite.
    pub fn sample(&mut self, logits: &[f32]) -> Option<u32> {
        if logits.iter().any(|v| !v.is_finite()) {
            return None;
        }
        match self.sampling {
            Sampling::Greedy => argmax(logits),
            Sampling::Temperature {
                temperature,
                top_k,
                top_p,
            } => {
                let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
                idx.sort_by(|&a, &b| {
                    logits[b as usize]
                        .total_cmp(&logits[a as usize])
                        .then(a.cmp(&b))
                });
                if top_k > 0 {
                    idx.truncate(top_k);
                }
                let max = logits[idx[0] as usize];
                let mut probs: Vec<f32> = idx
                    .iter()
                    .map(|&i| ((logits[i as usize] - max) / temperature).exp())
                    .collect();
                let total: f32 = probs.iter().sum();
                probs.iter_mut().for_each(|p| *p /= total);
                if top_p < 1.0 {
                    let mut acc = 0.0;
                    let keep = probs
                        .iter()
                        .position(|p| {
                            acc += p;
                            acc >= top_p
                        })
                        .map_or(probs.len(), |i| i + 1);
                    probs.truncate(keep);
                    idx.truncate(keep);
                }
                let total: f32 = probs.iter().sum();
                let mut r = self.rng.random::<f32>() * total;
                for (p, &i) in probs.iter().zip(&idx) {
                    if r < *p {
                        return Some(i);
                    }
                    r -= p;
                }
                idx.last().copied()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn argmax_prefers_lower_id_on_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), Some(1));
        assert_eq!(argmax(&[f32::NAN, 1.0]), None);
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn invalid_settings_are_rejected() {
        assert!(Sampler::new(Sampling::from_temperature(-1.0), 0).is_err());
        let bad_p = Sampling::Temperature {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.0,
        };
        assert!(Sampler::new(bad_p, 0).is_err());
    }

    #[test]
    fn top_k_one_is_greedy() {
        let s = Sampling::Temperature {
            temperature: 5.0,
            top_k: 1,
            top_p: 1.0,
        };
        let mut sampler = Sampler::new(s, 7).unwrap();
        for _ in 0..20 {
            assert_eq!(sampler.sample(&[0.1, 2.0, 1.9]), Some(1));
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // p = softmax([0, ln 3]) = [0.25, 0.75]
        let mut sampler = Sampler::new(Sampling::from_temperature(1.0), 42).unwrap();
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| sampler.sample(&[0.0, 3f32.ln()]) == Some(1))
            .count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.02, "{frac}");
    }

    proptest! {
        #[test]
        fn samples_stay_in_the_nucleus(logits in proptest::collection::vec(-10f32..10.0, 1..50), seed: u64, top_p in 0.05f32..1.0) {
            let s = Sampling::Temperature { temperature: 0.7, top_k: 0, top_p };
            let mut sampler = Sampler::new(s, seed).unwrap();
            let id = sampler.sample(&logits).unwrap() as usize;
            prop_assert!(id < logits.len());
            // Every token with a strictly higher logit is also in the nucleus, so the mass
            // strictly above the chosen token is below top_p.
            let max = logits.iter().cloned().fold(f32::MIN, f32::max);
            let z: f32 = logits.iter().map(|l| ((l - max) / 0.7).exp()).sum();
            let above: f32 = logits.iter().filter(|&&l| l > logits[id]).map(|l| ((l - max) / 0.7).exp() / z).sum();
            prop_assert!(above < top_p + 1e-4);
        }
    }
}
