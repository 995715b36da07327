//! Training checkpoints: `OUT/checkpoints/step-000042/` holds the weights (`adapter/`, a PEFT
//! adapter, or `model/`, a Hugging Face directory), `optimizer.safetensors` (AdamW moments by
//! parameter name: `<name>.exp_avg`, `<name>.exp_avg_sq`) and `trainer_state.json` (step,
//! epoch, micro-batches done in the epoch, evaluations, best step). A checkpoint is written
//! into a hidden temporary folder and renamed into place, then `checkpoints/latest` names it
//! (itself written atomically): a crash or a full disk at any moment leaves the previous
//! checkpoint whole and `latest` pointing at it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use slm_core::checkpoint::{SaveDtype, save_hf_dir, write_safetensors};
use slm_core::model::Decoder;
use slm_core::model::hf_names::parameter_names;
use slm_core::peft::{load_adapter, save_adapter};
use slm_core::prelude::Checkpoint;
use slm_core::tokenizer::Tokenizer;
use slm_core::weights::{SafetensorsWeights, WeightSource};

use crate::error::{Error, Result};
use crate::optim::{OptimizerState, ParamMoments, TensorAdamW};
use crate::trainer::{EvalMetrics, TuneMode, io};

/// The file naming the newest complete checkpoint.
pub const LATEST: &str = "latest";
const STATE: &str = "trainer_state.json";
const OPTIMIZER: &str = "optimizer.safetensors";

/// The best evaluation so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// Its step.
    pub step: u64,
    /// Its eval loss.
    pub eval_loss: f64,
}

/// Where a run is: what `trainer_state.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps taken.
    pub step: u64,
    /// The epoch in progress.
    pub epoch: u64,
    /// Micro-batches of that epoch already trained on (skipped on resume).
    pub micro_batches_done: u64,
    /// Every evaluation so far.
    pub evals: Vec<EvalMetrics>,
    /// The best one.
    pub best: Option<Best>,
    /// Evaluations since the best (for early stopping).
    pub evals_without_improvement: usize,
}

fn step_dir(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("step-{step:06}"))
}

/// The newest complete checkpoint in `dir`, if any.
///
/// # Errors
/// I/O errors, and a `latest` that names a missing folder.
pub fn latest(dir: &Path) -> Result<Option<PathBuf>> {
    let pointer = dir.join(LATEST);
    if !pointer.is_file() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer).map_err(|e| io(&pointer, e))?;
    let path = dir.join(name.trim());
    if !path.join(STATE).is_file() {
        return Err(Error::Core(slm_core::Error::format(
            &pointer,
            format!("names {}, which holds no {STATE}", path.display()),
        )));
    }
    Ok(Some(path))
}

/// Writes the final or checkpoint weights of `model` into `dir`: a PEFT adapter for LoRA, a
/// Hugging Face directory (f32, with `tokenizer`) for full fine-tuning.
pub fn save_weights(
    model: &Decoder,
    mode: &TuneMode,
    base_name: &str,
    tokenizer: Option<&Tokenizer>,
    dir: &Path,
) -> Result<()> {
    match mode {
        TuneMode::Lora(lora) => save_adapter(model, lora, base_name, dir)?,
        TuneMode::Full => save_hf_dir(model, tokenizer, dir, SaveDtype::F32)?,
    }
    Ok(())
}

/// Saves a checkpoint of step `state.step` into `dir` and keeps the `keep` newest (and the
/// best).
#[allow(clippy::too_many_arguments)]
pub fn save(
    dir: &Path,
    model: &Decoder,
    mode: &TuneMode,
    base_name: &str,
    tokenizer: Option<&Tokenizer>,
    state: &TrainerState,
    optim: &TensorAdamW,
    keep: usize,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let final_dir = step_dir(dir, state.step);
    let tmp = dir.join(format!(".tmp-step-{:06}", state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    let weights = match mode {
        TuneMode::Lora(_) => tmp.join("adapter"),
        TuneMode::Full => tmp.join("model"),
    };
    save_weights(model, mode, base_name, tokenizer, &weights)?;
    // Moments by parameter name: ids are new in every process.
    let names: HashMap<_, _> = parameter_names(model).into_iter().collect();
    let moments = optim.state()?;
    let mut tensors = Vec::new();
    for m in moments.moments {
        let name = names.get(&m.id).ok_or_else(|| {
            Error::Backend("optimizer state for a parameter the model does not have".into())
        })?;
        let n = m.exp_avg.len();
        tensors.push((format!("{name}.exp_avg"), vec![n], m.exp_avg));
        tensors.push((format!("{name}.exp_avg_sq"), vec![n], m.exp_avg_sq));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    if !tensors.is_empty() {
        write_safetensors(&tmp.join(OPTIMIZER), &tensors, SaveDtype::F32)?;
    }
    let state = TrainerState {
        step: moments.step,
        ..state.clone()
    };
    let text = serde_json::to_string_pretty(&state).map_err(|e| io(&tmp, e.into()))?;
    slm_core::io::write_atomic(&tmp.join(STATE), text.as_bytes())?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| io(&final_dir, e))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| io(&final_dir, e))?;
    let name = final_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    slm_core::io::write_atomic(&dir.join(LATEST), name.as_bytes())?;
    prune(dir, keep, state.best.as_ref().map(|b| b.step), state.step)
}

/// Removes all but the `keep` newest checkpoints, never the best nor the newest.
fn prune(dir: &Path, keep: usize, best: Option<u64>, newest: u64) -> Result<()> {
    let mut steps: Vec<u64> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
        .collect();
    steps.sort_unstable();
    let cut = steps.len().saturating_sub(keep);
    for &step in &steps[..cut] {
        if Some(step) != best && step != newest {
            let d = step_dir(dir, step);
            std::fs::remove_dir_all(&d).map_err(|e| io(&d, e))?;
        }
    }
    Ok(())
}

/// Loads checkpoint `dir` for a run in `mode` on `base`'s device: the model (base plus the
/// saved adapter, or the saved full weights), the trainer state and the optimizer moments.
pub fn load(
    dir: &Path,
    base: Decoder,
    mode: &TuneMode,
) -> Result<(Decoder, TrainerState, OptimizerState)> {
    let state_path = dir.join(STATE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| io(&state_path, e))?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| {
        Error::Core(slm_core::Error::Json {
            path: state_path.clone(),
            source: e,
        })
    })?;
    let model = match mode {
        TuneMode::Lora(_) => load_adapter(base, &dir.join("adapter"))?.0,
        TuneMode::Full => {
            let device = base.device();
            Checkpoint::open(&dir.join("model"))?.load_decoder(&device)?
        }
    };
    let mut moments = Vec::new();
    let opt_path = dir.join(OPTIMIZER);
    if opt_path.is_file() {
        let w = SafetensorsWeights::open(&opt_path)?;
        for (id, name) in parameter_names(&model) {
            let m = format!("{name}.exp_avg");
            if w.tensor_info(&m).is_some() {
                moments.push(ParamMoments {
                    id,
                    exp_avg: w.read_f32(&m)?,
                    exp_avg_sq: w.read_f32(&format!("{name}.exp_avg_sq"))?,
                });
            }
        }
    }
    Ok((
        model,
        state.clone(),
        OptimizerState {
            step: state.step,
            moments,
        },
    ))
}

/// Drops the lines of `metrics.jsonl` past `step` (an interrupted run's tail), atomically.
pub fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    slm_core::io::write_atomic(path, kept.as_bytes())?;
    Ok(())
}
