//! Choosing the next token from logits: the one sampler of the workspace.
//!
//! [`SamplingParams`] carries the knobs OpenAI's API and vLLM name (temperature, top-k, top-p,
//! min-p, repetition / presence / frequency penalties, logit bias, seed); a [`Sampler`] applies
//! them to one sequence's logits step by step, with its own seeded generator, so the same seed
//! and logits give the same tokens whatever else runs beside it.
//!
//! Order of the transforms, as transformers and vLLM apply them: logit bias, then the penalties
//! (repetition over prompt and output tokens; presence and frequency over output tokens), then an
//! optional mask of allowed tokens (constrained decoding), then greedy choice (temperature 0) or
//! temperature, top-k, top-p, min-p and a draw. Nothing sorts the whole vocabulary: top-k is a
//! selection, top-p sorts only as many of the best tokens as its mass needs.

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Settings of a [`Sampler`]. The defaults change nothing: greedy, no filtering, no penalties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Softmax temperature; 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of best tokens whose probability reaches `top_p` (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the best one (0: none).
    pub min_p: f32,
    /// Divides positive and multiplies negative logits of every token already in the prompt or
    /// output (transformers' and vLLM's `repetition_penalty`; 1: off).
    pub repetition_penalty: f32,
    /// Subtracted once from the logit of every token already in the output (OpenAI's
    /// `presence_penalty`, -2 to 2).
    pub presence_penalty: f32,
    /// Subtracted per occurrence from the logit of every token in the output (OpenAI's
    /// `frequency_penalty`, -2 to 2).
    pub frequency_penalty: f32,
    /// Added to the logits of these tokens (OpenAI's `logit_bias`, -100 to 100; -100 bans).
    pub logit_bias: BTreeMap<u32, f32>,
    /// Seed of the sampler's generator: the same seed gives the same tokens.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: BTreeMap::new(),
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding (the default).
    pub fn greedy() -> Self {
        Self::default()
    }

    /// Plain sampling at `temperature` (0: greedy) with `seed`.
    pub fn with_temperature(temperature: f32, seed: u64) -> Self {
        Self {
            temperature,
            seed,
            ..Self::default()
        }
    }

    /// Whether the token is picked greedily (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Rejects what no sampler can honour, naming the field: negative or non-finite
    /// temperatures and penalties, `top_p` outside (0, 1], `min_p` outside [0, 1], a repetition
    /// penalty that is not positive, non-finite biases.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidConfig(what));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "temperature must be >= 0 and finite, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!(
                "repetition_penalty must be > 0 and finite, got {}",
                self.repetition_penalty
            ));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !v.is_finite() {
                return bad(format!("{name} must be finite, got {v}"));
            }
        }
        if let Some((id, b)) = self.logit_bias.iter().find(|(_, b)| !b.is_finite()) {
            return bad(format!("logit_bias of token {id} must be finite, got {b}"));
        }
        Ok(())
    }

    fn has_penalties(&self) -> bool {
        self.repetition_penalty != 1.0
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
    }
}

/// The index of the largest value; the lowest index wins ties. `None` if empty or any value is
/// NaN.
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

/// A token's log-probability and the most likely alternatives at its position, from the raw
/// logits (before bias, penalties and filters, as vLLM reports them by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The chosen token.
    pub token: u32,
    /// Its natural-log probability.
    pub logprob: f32,
    /// The `n` most likely tokens with their log-probabilities, best first (ties: lower id).
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprob {
    /// Log-probabilities of `token` and the `top_n` best tokens under `softmax(logits)`.
    pub fn from_logits(logits: &[f32], token: u32, top_n: usize) -> Self {
        let lse = crate::classify::log_sum_exp(logits) as f32;
        let mut top = best_n(logits, top_n);
        top.iter_mut().for_each(|(_, l)| *l -= lse);
        Self {
            token,
            logprob: logits[token as usize] - lse,
            top,
        }
    }
}

/// The `n` largest values with their indices, best first, lower index first on ties.
fn best_n(values: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut all: Vec<(u32, f32)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as u32, v))
        .collect();
    select_best(&mut all, n);
    all
}

/// Larger value first, lower id first among equals.
fn best_first(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Keeps the `n` best of `items` (by value, then lower id), sorted best first.
fn select_best(items: &mut Vec<(u32, f32)>, n: usize) {
    let order = best_first;
    if n == 0 {
        items.clear();
        return;
    }
    if n < items.len() {
        items.select_nth_unstable_by(n - 1, order);
        items.truncate(n);
    }
    items.sort_unstable_by(order);
}

/// Which tokens a constraint allows at a step: a bit per vocabulary id (32 per word, lowest
/// id in the lowest bit, the layout of llguidance's masks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMask {
    bits: Vec<u32>,
    len: usize,
}

impl TokenMask {
    /// A mask over `vocab` tokens allowing none.
    pub fn none(vocab: usize) -> Self {
        Self {
            bits: vec![0; vocab.div_ceil(32)],
            len: vocab,
        }
    }

    /// A mask over `vocab` tokens from 32-bit words (ids past the words are not allowed).
    pub fn from_words(words: &[u32], vocab: usize) -> Self {
        let mut m = Self::none(vocab);
        let n = words.len().min(m.bits.len());
        m.bits[..n].copy_from_slice(&words[..n]);
        if !vocab.is_multiple_of(32)
            && let Some(last) = m.bits.last_mut()
        {
            *last &= (1u32 << (vocab % 32)) - 1;
        }
        m
    }

    /// Allows `id` (ids past the vocabulary are ignored).
    pub fn allow(&mut self, id: u32) {
        if (id as usize) < self.len {
            self.bits[id as usize / 32] |= 1 << (id % 32);
        }
    }

    /// Whether `id` is allowed.
    pub fn allows(&self, id: u32) -> bool {
        (id as usize) < self.len && self.bits[id as usize / 32] >> (id % 32) & 1 == 1
    }

    /// Whether any token is allowed.
    pub fn any(&self) -> bool {
        self.bits.iter().any(|&w| w != 0)
    }
}

/// A seeded sampler for one sequence (see the module docs for what it applies, in which order).
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Output tokens and their counts (presence and frequency penalties).
    output_counts: HashMap<u32, u32>,
    /// Prompt and output tokens (repetition penalty).
    seen: HashSet<u32>,
    /// Reused buffers: processed logits and candidates.
    logits: Vec<f32>,
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler with `params` (validated), seeded by `params.seed`.
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            rng: StdRng::seed_from_u64(params.seed),
            params,
            output_counts: HashMap::new(),
            seen: HashSet::new(),
            logits: Vec::new(),
            candidates: Vec::new(),
        })
    }

    /// The settings.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Records the prompt, which the repetition penalty covers.
    pub fn observe_prompt(&mut self, prompt: &[u32]) {
        if self.params.repetition_penalty != 1.0 {
            self.seen.extend(prompt);
        }
    }

    /// Picks the next token from `logits` and records it as output. `allowed` restricts the
    /// choice (constrained decoding). `None` when the logits are not finite or nothing allowed
    /// remains.
    pub fn sample(&mut self, logits: &[f32], allowed: Option<&TokenMask>) -> Option<u32> {
        if logits.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let id = self.choose(logits, allowed)?;
        *self.output_counts.entry(id).or_insert(0) += 1;
        if self.params.repetition_penalty != 1.0 {
            self.seen.insert(id);
        }
        Some(id)
    }

    fn choose(&mut self, raw: &[f32], allowed: Option<&TokenMask>) -> Option<u32> {
        let p = &self.params;
        let processed = !p.logit_bias.is_empty() || p.has_penalties();
        if processed {
            self.logits.clear();
            self.logits.extend_from_slice(raw);
            for (&id, &b) in &p.logit_bias {
                if let Some(l) = self.logits.get_mut(id as usize) {
                    *l += b;
                }
            }
            if p.repetition_penalty != 1.0 {
                for &id in &self.seen {
                    if let Some(l) = self.logits.get_mut(id as usize) {
                        *l = if *l > 0.0 {
                            *l / p.repetition_penalty
                        } else {
                            *l * p.repetition_penalty
                        };
                    }
                }
            }
            for (&id, &n) in &self.output_counts {
                if let Some(l) = self.logits.get_mut(id as usize) {
                    *l -= p.presence_penalty + p.frequency_penalty * n as f32;
                }
            }
        }
        let logits: &[f32] = if processed { &self.logits } else { raw };
        let allowed_ok = |i: usize| allowed.is_none_or(|m| m.allows(i as u32));

        if p.is_greedy() {
            let mut best: Option<usize> = None;
            for (i, &l) in logits.iter().enumerate() {
                if allowed_ok(i) && best.is_none_or(|b| l > logits[b]) {
                    best = Some(i);
                }
            }
            return best.map(|b| b as u32);
        }

        // Candidates after the mask and top-k, best first when top-k selected them.
        let c = &mut self.candidates;
        c.clear();
        c.extend(
            logits
                .iter()
                .enumerate()
                .filter(|&(i, _)| allowed_ok(i))
                .map(|(i, &l)| (i as u32, l)),
        );
        if c.is_empty() {
            return None;
        }
        let mut sorted = false;
        if p.top_k > 0 && p.top_k < c.len() {
            select_best(c, p.top_k);
            sorted = true;
        }
        // Softmax at the temperature, as unnormalised weights w = exp((l - max) / T).
        let max = c.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
        let inv_t = 1.0 / p.temperature;
        // Through slm-ggml's vectorised exp, a run of candidates at a time (the whole
        // vocabulary when no top-k: one exp per token id per step).
        let mut run = [0f32; 256];
        for part in c.chunks_mut(run.len()) {
            let run = &mut run[..part.len()];
            run.iter_mut()
                .zip(&*part)
                .for_each(|(w, x)| *w = (x.1 - max) * inv_t);
            slm_ggml::dot::exp_minus(run, 0.0);
            part.iter_mut().zip(&*run).for_each(|(x, &w)| x.1 = w);
        }
        let total: f64 = c.iter().map(|x| x.1 as f64).sum();
        if p.top_p < 1.0 {
            // Sort as many of the best as the nucleus needs (doubling), then cut.
            let target = p.top_p as f64 * total;
            let mut n = if sorted { c.len() } else { 64.min(c.len()) };
            loop {
                if !sorted {
                    if n < c.len() {
                        c.select_nth_unstable_by(n - 1, best_first);
                    }
                    c[..n].sort_unstable_by(best_first);
                }
                let mut acc = 0f64;
                if let Some(k) = c[..n].iter().position(|x| {
                    acc += x.1 as f64;
                    acc >= target
                }) {
                    c.truncate(k + 1);
                    break;
                }
                if n == c.len() {
                    break;
                }
                n = (n * 2).min(c.len());
            }
        }
        if p.min_p > 0.0 {
            // The best weight is exp(0) = 1 whatever top-k and top-p kept.
            let floor = p.min_p;
            c.retain(|x| x.1 >= floor);
        }
        let total: f64 = c.iter().map(|x| x.1 as f64).sum();
        let mut r = self.rng.random::<f64>() * total;
        for &(id, w) in c.iter() {
            if r < w as f64 {
                return Some(id);
            }
            r -= w as f64;
        }
        c.last().map(|x| x.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sampler(params: SamplingParams) -> Sampler {
        Sampler::new(params).unwrap()
    }

    fn hot(t: f32) -> SamplingParams {
        SamplingParams::with_temperature(t, 42)
    }

    #[test]
    fn argmax_prefers_lower_id_on_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), Some(1));
        assert_eq!(argmax(&[f32::NAN, 1.0]), None);
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn invalid_settings_are_rejected_by_name() {
        let cases = [
            (
                SamplingParams {
                    temperature: -1.0,
                    ..hot(1.0)
                },
                "temperature",
            ),
            (
                SamplingParams {
                    top_p: 0.0,
                    ..hot(1.0)
                },
                "top_p",
            ),
            (
                SamplingParams {
                    min_p: 1.5,
                    ..hot(1.0)
                },
                "min_p",
            ),
            (
                SamplingParams {
                    repetition_penalty: 0.0,
                    ..hot(1.0)
                },
                "repetition_penalty",
            ),
            (
                SamplingParams {
                    frequency_penalty: f32::NAN,
                    ..hot(1.0)
                },
                "frequency_penalty",
            ),
        ];
        for (params, name) in cases {
            let err = Sampler::new(params).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn greedy_and_top_k_one_take_the_best() {
        let mut g = sampler(SamplingParams::greedy());
        assert_eq!(g.sample(&[0.1, 2.0, 2.0, 1.9], None), Some(1));
        let mut k = sampler(SamplingParams {
            top_k: 1,
            ..hot(5.0)
        });
        for _ in 0..20 {
            assert_eq!(k.sample(&[0.1, 2.0, 1.9], None), Some(1));
        }
        assert_eq!(g.sample(&[0.0, f32::NAN], None), None);
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // p = softmax([0, ln 3]) = [0.25, 0.75]
        let mut s = sampler(hot(1.0));
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| s.sample(&[0.0, 3f32.ln()], None) == Some(1))
            .count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.02, "{frac}");
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens() {
        let logits: Vec<f32> = (0..500).map(|i| ((i * 7919) % 101) as f32 / 17.0).collect();
        let params = SamplingParams {
            top_p: 0.9,
            top_k: 50,
            ..hot(0.8)
        };
        let run = |p: &SamplingParams| {
            let mut s = sampler(p.clone());
            (0..50)
                .map(|_| s.sample(&logits, None).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(&params), run(&params));
        assert_ne!(
            run(&params),
            run(&SamplingParams {
                seed: 7,
                ..params.clone()
            })
        );
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        // softmax([ln 10, ln 1, ln 0.5]): best 10/11.5; min_p 0.2 keeps only weights >= 2.
        let logits = [10f32.ln(), 0.0, 0.5f32.ln()];
        let mut s = sampler(SamplingParams {
            min_p: 0.2,
            ..hot(1.0)
        });
        assert!((0..200).all(|_| s.sample(&logits, None) == Some(0)));
        let mut s = sampler(SamplingParams {
            min_p: 0.04,
            ..hot(1.0)
        });
        let picks: HashSet<u32> = (0..500).filter_map(|_| s.sample(&logits, None)).collect();
        assert_eq!(picks.len(), 3);
    }

    #[test]
    fn bias_and_penalties_move_the_choice() {
        let logits = [1.0, 2.0, 1.5];
        let mut s = sampler(SamplingParams {
            logit_bias: [(1, -100.0)].into(),
            ..SamplingParams::greedy()
        });
        assert_eq!(s.sample(&logits, None), Some(2));

        // Presence: once token 1 is out, 2.0 - 1.0 < 1.5.
        let mut s = sampler(SamplingParams {
            presence_penalty: 1.0,
            ..SamplingParams::greedy()
        });
        assert_eq!(s.sample(&logits, None), Some(1));
        assert_eq!(s.sample(&logits, None), Some(2));

        // Frequency grows with each use: 2.0 - 0.3 n falls below 1.5 after two.
        let mut s = sampler(SamplingParams {
            frequency_penalty: 0.3,
            ..SamplingParams::greedy()
        });
        let ids: Vec<u32> = (0..3).map(|_| s.sample(&logits, None).unwrap()).collect();
        assert_eq!(ids, [1, 1, 2]);

        // Repetition covers the prompt: 2.0 / 2 < 1.5; negative logits are multiplied.
        let mut s = sampler(SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::greedy()
        });
        s.observe_prompt(&[1]);
        assert_eq!(s.sample(&logits, None), Some(2));
        let mut s = sampler(SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::greedy()
        });
        s.observe_prompt(&[0]);
        assert_eq!(s.sample(&[-1.0, -1.5], None), Some(1));
    }

    #[test]
    fn the_mask_restricts_greedy_and_sampled_choices() {
        let logits = [5.0, 1.0, 0.0, 2.0];
        let mut mask = TokenMask::none(4);
        mask.allow(2);
        mask.allow(3);
        let mut g = sampler(SamplingParams::greedy());
        assert_eq!(g.sample(&logits, Some(&mask)), Some(3));
        let mut s = sampler(hot(2.0));
        assert!((0..100).all(|_| matches!(s.sample(&logits, Some(&mask)), Some(2 | 3))));
        assert_eq!(g.sample(&logits, Some(&TokenMask::none(4))), None);
    }

    #[test]
    fn logprobs_are_normalised_and_ranked() {
        let logits = [1.0f32, 3.0, 2.0, 3.0];
        let lp = TokenLogprob::from_logits(&logits, 2, 3);
        let total: f32 = logits.iter().map(|l| (l - 3.0).exp()).sum();
        assert!((lp.logprob - (2.0 - 3.0 - total.ln())).abs() < 1e-6);
        let ids: Vec<u32> = lp.top.iter().map(|x| x.0).collect();
        assert_eq!(ids, [1, 3, 2]);
    }

    /// The reference: a full sort, the filters in order, the kept set as a set.
    fn kept_reference(logits: &[f32], t: f32, top_k: usize, top_p: f32, min_p: f32) -> Vec<u32> {
        let mut c: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        c.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if top_k > 0 {
            c.truncate(top_k);
        }
        let max = c[0].1;
        let w: Vec<f64> = c.iter().map(|x| ((x.1 - max) / t).exp() as f64).collect();
        let total: f64 = w.iter().sum();
        let mut keep = c.len();
        let mut acc = 0.0;
        if top_p < 1.0 {
            for (i, wi) in w.iter().enumerate() {
                acc += wi;
                if acc >= top_p as f64 * total {
                    keep = i + 1;
                    break;
                }
            }
        }
        c.truncate(keep);
        c.iter()
            .zip(&w)
            .filter(|(_, wi)| **wi >= min_p as f64)
            .map(|(x, _)| x.0)
            .collect()
    }

    proptest! {
        #[test]
        fn samples_stay_in_the_filtered_set(
            logits in proptest::collection::vec(-10f32..10.0, 1..300),
            seed: u64,
            top_p in 0.05f32..1.0,
            top_k in 0usize..80,
            min_p in 0f32..0.5,
        ) {
            let params = SamplingParams { temperature: 0.7, top_k, top_p, min_p, seed, ..Default::default() };
            let mut s = Sampler::new(params).unwrap();
            let kept = kept_reference(&logits, 0.7, top_k, top_p, min_p);
            for _ in 0..4 {
                let id = s.sample(&logits, None).unwrap();
                prop_assert!(kept.contains(&id), "{id} not in {kept:?}");
            }
        }
    }
}
