//! What the engine measures: per-request timings and counts ([`RequestMetrics`]) and
//! engine-wide counters and histograms ([`EngineStats`]) with vLLM's metric meanings, ready for
//! a Prometheus exporter.

use std::time::Duration;

use serde::Serialize;
use slm_core::step::KvUsage;

/// Timings and counts of one request.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RequestMetrics {
    /// From submission to its first scheduled step (seconds).
    pub queue_time_s: f64,
    /// From submission to its first token (seconds); `None` if none came.
    pub ttft_s: Option<f64>,
    /// Time between consecutive tokens (seconds), one entry per token after the first.
    pub inter_token_s: Vec<f64>,
    /// From submission to the end (seconds).
    pub e2e_s: f64,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values came from the prefix cache instead of a prefill.
    pub cached_prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Times it was preempted (its cache dropped and recomputed later).
    pub preemptions: u32,
    /// Its share of the energy of the steps it ran in (joules; see the engine's meters);
    /// `None` without meters or when one could not be read.
    pub energy_joules: Option<f64>,
    /// How that energy was obtained (`measured (RAPL)`, `estimated (CPU TDP model)`).
    pub energy_method: Option<String>,
}

/// A cumulative histogram (Prometheus semantics: `le` bucket bounds, a sum and a count).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// Upper bounds of the buckets (seconds), ascending; `+Inf` is implied.
    pub bounds: Vec<f64>,
    /// Observations at or below each bound (cumulative), then the total.
    pub counts: Vec<u64>,
    /// Sum of the observations.
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram over `bounds`.
    pub fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// vLLM's time-to-first-token buckets.
    pub fn ttft() -> Self {
        Self::new(&[
            0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
            10.0, 20.0, 40.0, 80.0,
        ])
    }

    /// vLLM's inter-token-latency buckets.
    pub fn inter_token() -> Self {
        Self::new(&[
            0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
        ])
    }

    /// vLLM's request-latency buckets (end to end, queue time).
    pub fn request() -> Self {
        Self::new(&[
            0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
        ])
    }

    /// Records one observation.
    pub fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&mut self.counts) {
            if v <= *b {
                *c += 1;
            }
        }
        *self.counts.last_mut().expect("total") += 1;
        self.sum += v;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        *self.counts.last().expect("total")
    }
}

/// Engine-wide state and counters since start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineStats {
    /// Sequences in the running batch.
    pub running: usize,
    /// Requests waiting (new or preempted).
    pub waiting: usize,
    /// The model's key/value pool.
    pub kv_block_size: usize,
    /// Blocks in the pool.
    pub kv_total_blocks: usize,
    /// Blocks free.
    pub kv_free_blocks: usize,
    /// Finished sequences kept for prefix sharing.
    pub prefix_cache_entries: usize,
    /// Prompt tokens looked up in the prefix cache.
    pub prefix_cache_queries: u64,
    /// Prompt tokens found there.
    pub prefix_cache_hits: u64,
    /// Preemptions.
    pub preemptions: u64,
    /// Model steps run.
    pub steps: u64,
    /// Prompt tokens processed (prefill, recomputation included).
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub generation_tokens: u64,
    /// Requests finished, by reason: stop, length, cancelled, error.
    pub finished: [u64; 4],
    /// Time to first token.
    pub ttft: Histogram,
    /// Time between tokens.
    pub inter_token: Histogram,
    /// Submission to end.
    pub e2e: Histogram,
    /// Submission to first step.
    pub queue_time: Histogram,
    /// Energy of all steps (joules) and how it was obtained; `None` without meters or after a
    /// failed reading.
    pub energy: Option<(f64, String)>,
}

impl EngineStats {
    pub(crate) fn new(kv: KvUsage) -> Self {
        Self {
            running: 0,
            waiting: 0,
            kv_block_size: kv.block_size,
            kv_total_blocks: kv.total_blocks,
            kv_free_blocks: kv.free_blocks,
            prefix_cache_entries: 0,
            prefix_cache_queries: 0,
            prefix_cache_hits: 0,
            preemptions: 0,
            steps: 0,
            prompt_tokens: 0,
            generation_tokens: 0,
            finished: [0; 4],
            ttft: Histogram::ttft(),
            inter_token: Histogram::inter_token(),
            e2e: Histogram::request(),
            queue_time: Histogram::request(),
            energy: None,
        }
    }

    /// Fraction of the key/value pool in use (vLLM's `kv_cache_usage_perc`, 0 to 1).
    pub fn kv_usage(&self) -> f64 {
        if self.kv_total_blocks == 0 {
            return 0.0;
        }
        1.0 - self.kv_free_blocks as f64 / self.kv_total_blocks as f64
    }
}

pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.5, 0.5, 3.0] {
            h.observe(v);
        }
        assert_eq!(h.counts, [1, 3, 4]);
        assert_eq!(h.count(), 4);
        assert!((h.sum - 4.05).abs() < 1e-12);
    }
}
