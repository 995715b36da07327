//! The benchmark every stage's model goes through: its GGUF on the CPU fast path, driven by
//! slm-infer's continuous-batching engine. Accuracy and macro-F1 by label scoring over the test
//! split (every example submitted at once: the batched throughput and its energy), then a
//! single-stream run (one request at a time: latency as a user of a service sees it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use slm_core::fast::FastDecoderConfig;
use slm_core::prelude::*;
use slm_core::step::BatchedLm;
use slm_data::Example;
use slm_data::inputs::TaskSpec;
use slm_energy::{EnergyTracker, TrackerConfig};
use slm_infer::classify::ClassificationReport;
use slm_infer::engine::{Engine, EngineConfig};

use super::error::{Error, Result};

/// Key/value memory of the benchmark engine: every test prompt of 128-512 tokens at once.
const KV_BUDGET_BYTES: usize = 512 << 20;

/// One stage's model as benchmarked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageBench {
    /// The stage (`base-zero-shot`, `teacher`, `student`, `pruned`, `pruned-Q4_0`, ...).
    pub stage: String,
    /// The GGUF file run.
    pub model: PathBuf,
    /// Its size in bytes.
    pub model_bytes: u64,
    /// Decoder layers.
    pub layers: usize,
    /// Accuracy, macro-F1, per-label metrics and the confusion matrix on the test split.
    pub classification: ClassificationReport,
    /// Test examples scored together.
    pub predictions: usize,
    /// Wall seconds of the batched run.
    pub batched_seconds: f64,
    /// Predictions per second, every test example in flight at once.
    pub batched_predictions_per_second: f64,
    /// Predictions per second, one request at a time.
    pub single_predictions_per_second: f64,
    /// Single-stream time to the first scored token (the prompt's prefill), ms, p50.
    pub ttft_p50_ms: f64,
    /// Its p99.
    pub ttft_p99_ms: f64,
    /// Single-stream request latency (prompt and every label), ms, p50.
    pub latency_p50_ms: f64,
    /// Its p99.
    pub latency_p99_ms: f64,
    /// Every single-stream latency, ms (for the CDF plot).
    pub latencies_ms: Vec<f64>,
    /// Energy per 1,000 predictions of the batched run, Wh (`None` when no meter read).
    pub wh_per_1k: Option<f64>,
    /// gCO2e per 1,000 predictions at the run's grid.
    pub gco2e_per_1k: Option<f64>,
    /// Predictions per second per watt (= predictions per joule).
    pub predictions_per_second_per_watt: Option<f64>,
    /// How the energy was obtained (`measured (RAPL)`, `estimated (CPU TDP model)`, ...).
    pub energy_method: Option<String>,
    /// The largest resident set seen during the batched run (the whole process: the
    /// pipeline's own memory included).
    pub peak_rss_bytes: u64,
}

/// What a stage runs: its model and its prompt.
pub struct StageModel<'a> {
    /// Stage name.
    pub stage: &'a str,
    /// A GGUF file.
    pub model: &'a Path,
    /// The prompt template and labels (few-shot prompts differ from the tuned ones).
    pub task: &'a TaskSpec,
}

/// `q`-quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Benchmarks `stage` on `examples` under `tracker`: the batched run is phase
/// `serving/<stage>` (its energy is the per-prediction cost), the single-stream run
/// `evaluation/<stage>-latency`.
///
/// # Errors
/// Model, tokenizer and engine errors; [`Error::Invalid`] without examples or for a label
/// outside the task's.
pub fn bench_stage(
    stage: &StageModel<'_>,
    examples: &[Example],
    latency_examples: usize,
    threads: Option<usize>,
    tracker: &EnergyTracker,
    energy_config: &TrackerConfig,
) -> Result<StageBench> {
    let labels = stage
        .task
        .labels
        .clone()
        .ok_or_else(|| Error::Invalid("the task has no labels".into()))?;
    if examples.is_empty() {
        return Err(Error::Invalid("no test examples to benchmark".into()));
    }
    let ckpt = Checkpoint::open(stage.model)?;
    let tokenizer = ckpt
        .tokenizer
        .clone()
        .ok_or_else(|| Error::Invalid(format!("{}: no tokenizer", stage.model.display())))?;
    let model: Arc<dyn BatchedLm> = Arc::new(
        FastDecoderConfig {
            kv_budget_bytes: KV_BUDGET_BYTES,
            threads,
            ..Default::default()
        }
        .init(&ckpt.config, ckpt.weights.as_ref())?,
    );
    let mut prompts = Vec::with_capacity(examples.len());
    let mut gold = Vec::with_capacity(examples.len());
    for e in examples {
        let g = e
            .label
            .as_deref()
            .and_then(|l| labels.iter().position(|x| x == l))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "example {}: label {:?} is not one of {}",
                    e.id,
                    e.label,
                    labels.join(", ")
                ))
            })?;
        gold.push(g);
        prompts.push(slm_train::label_prompt(stage.task, &tokenizer, e, &labels)?);
    }
    let engine = Engine::start(
        model,
        Some(Arc::new(tokenizer)),
        EngineConfig {
            max_queue: examples.len().max(1),
            ..Default::default()
        },
    )?;

    // Batched: every example in flight, the engine fills each step.
    let phase = tracker.phase(&format!("serving/{}", stage.stage))?;
    let started = Instant::now();
    let streams = prompts
        .iter()
        .map(|(p, c)| engine.score(p.clone(), c.clone()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut pairs = Vec::with_capacity(streams.len());
    for (stream, g) in streams.into_iter().zip(&gold) {
        let done = stream.wait()?;
        let scores = done
            .scores
            .ok_or_else(|| Error::Invalid("a scoring request returned no scores".into()))?;
        pairs.push((*g, scores.best));
    }
    let batched_seconds = started.elapsed().as_secs_f64();
    let record = phase.end()?;

    // Single stream: one request at a time, as one user of a service (the prompts just
    // scored are dropped from the prefix cache, or they would cost nothing).
    engine.clear_prefix_cache();
    let latency_phase = tracker.phase(&format!("evaluation/{}-latency", stage.stage))?;
    let n = latency_examples.min(prompts.len());
    let started = Instant::now();
    let (mut latencies, mut ttfts) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (p, c) in prompts.iter().take(n) {
        let done = engine.score(p.clone(), c.clone())?.wait()?;
        latencies.push(done.metrics.e2e_s * 1e3);
        ttfts.push(done.metrics.ttft_s.unwrap_or(done.metrics.e2e_s) * 1e3);
    }
    let single_seconds = started.elapsed().as_secs_f64();
    latency_phase.end()?;
    engine.shutdown();
    latencies.sort_by(f64::total_cmp);
    ttfts.sort_by(f64::total_cmp);

    let predictions = examples.len();
    let energy = record.energy();
    let per_1k = |x: f64| x / predictions as f64 * 1000.0;
    let wh_per_1k = energy.as_ref().map(|e| per_1k(e.joules() / 3600.0));
    let gco2e_per_1k = match &energy {
        Some(e) => Some(per_1k(
            energy_config.carbon.emissions_grams(e, energy_config.pue)?,
        )),
        None => None,
    };
    Ok(StageBench {
        stage: stage.stage.to_string(),
        model: stage.model.to_path_buf(),
        model_bytes: std::fs::metadata(stage.model)
            .map_err(|e| Error::io(stage.model, e))?
            .len(),
        layers: ckpt.config.num_hidden_layers,
        classification: ClassificationReport::new(&labels, &pairs),
        predictions,
        batched_seconds,
        batched_predictions_per_second: predictions as f64 / batched_seconds.max(1e-9),
        single_predictions_per_second: n as f64 / single_seconds.max(1e-9),
        ttft_p50_ms: quantile(&ttfts, 0.5),
        ttft_p99_ms: quantile(&ttfts, 0.99),
        latency_p50_ms: quantile(&latencies, 0.5),
        latency_p99_ms: quantile(&latencies, 0.99),
        latencies_ms: latencies,
        predictions_per_second_per_watt: energy
            .as_ref()
            .filter(|e| e.joules() > 0.0)
            .map(|e| predictions as f64 / e.joules()),
        energy_method: energy.as_ref().map(|e| e.method().to_string()),
        wh_per_1k,
        gco2e_per_1k,
        peak_rss_bytes: record.peak_rss_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn nearest_rank_quantiles() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.0);
        assert_eq!(quantile(&v, 0.99), 4.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
