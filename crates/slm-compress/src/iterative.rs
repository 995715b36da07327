//! Iterative pruning: reach the target sparsity in rounds, with a recovery step (a fine-tune)
//! between them, as gradual magnitude pruning does (Zhu & Gupta 2017, "To prune, or not to
//! prune"): pruning a little, letting the survivors adapt, and pruning again loses less than
//! pruning everything at once.
//!
//! [`IterativePruning::run`] calls [`prune`] once per round, at the schedule's sparsity for
//! that round, and hands the pruned model to a recovery callback: slm-train's trainer (full
//! fine-tuning keeps pruned weights at zero through its sparsity mask; a LoRA adapter merges
//! back with `merge_adapters_keeping_zeros`), or anything else that returns a model of the
//! same shape. Row-wise pruning re-prunes the zeros a recovery kept first, so the masks only
//! grow from round to round.

use serde::Serialize;
use slm_core::model::Decoder;

use crate::error::{Error, Result};
use crate::prune::{PruneMethod, PruneReport, prune};

/// How the sparsity grows over the rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SparsitySchedule {
    /// Equal steps: round `t` of `n` prunes to `target * t / n`.
    Linear,
    /// Zhu & Gupta's cubic ramp: `target * (1 - (1 - t/n)^3)`, large steps first while many
    /// redundant weights remain, small ones near the target.
    Cubic,
}

/// Gradual pruning to `target` in `rounds` rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IterativePruning {
    /// An unstructured method (magnitude or Wanda; N:M and structured pruning are one-shot).
    pub method: PruneMethod,
    /// The final sparsity, in `[0, 1)`.
    pub target: f64,
    /// Rounds, at least 1 (1 is one-shot pruning followed by one recovery).
    pub rounds: usize,
    /// How the sparsity grows.
    pub schedule: SparsitySchedule,
}

/// One round of [`IterativePruning::run`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PruneRound {
    /// 1-based.
    pub round: usize,
    /// What [`prune`] reported for this round.
    pub pruned: PruneReport,
    /// Projection sparsity after the recovery step (below `pruned.projection_sparsity` when the
    /// recovery refilled pruned weights; the next round prunes them again).
    pub sparsity_after_recovery: f64,
}

impl IterativePruning {
    /// The sparsity round `round` (1-based) prunes to.
    pub fn sparsity_at(&self, round: usize) -> f64 {
        let t = (round.min(self.rounds) as f64) / self.rounds.max(1) as f64;
        match self.schedule {
            SparsitySchedule::Linear => self.target * t,
            SparsitySchedule::Cubic => self.target * (1.0 - (1.0 - t).powi(3)),
        }
    }

    /// Prunes `decoder` round by round, calling `recover(model, round)` after each (the last
    /// round too); `calibration` feeds Wanda (its activations are re-measured each round, on
    /// the recovered model).
    ///
    /// # Errors
    /// [`Error::InvalidPruning`] for zero rounds or a method that is not unstructured; the
    /// errors of [`prune`] and of `recover`.
    pub fn run(
        &self,
        decoder: &Decoder,
        calibration: &[Vec<u32>],
        recover: &mut dyn FnMut(Decoder, &PruneRound) -> Result<Decoder>,
    ) -> Result<(Decoder, Vec<PruneRound>)> {
        if self.rounds == 0 {
            return Err(Error::InvalidPruning(
                "iterative pruning needs at least one round".into(),
            ));
        }
        if !matches!(self.method, PruneMethod::Magnitude | PruneMethod::Wanda) {
            return Err(Error::InvalidPruning(format!(
                "iterative pruning grows an unstructured sparsity (magnitude, wanda), not {:?}",
                self.method
            )));
        }
        let mut model = decoder.clone();
        let mut rounds = Vec::with_capacity(self.rounds);
        for round in 1..=self.rounds {
            let (pruned, report) =
                prune(&model, self.method, self.sparsity_at(round), calibration)?;
            let mut record = PruneRound {
                round,
                sparsity_after_recovery: report.projection_sparsity,
                pruned: report,
            };
            model = recover(pruned, &record)?;
            record.sparsity_after_recovery = projection_sparsity(&model)?;
            rounds.push(record);
        }
        Ok((model, rounds))
    }
}

/// Zeros among the projection weights, as a fraction.
fn projection_sparsity(decoder: &Decoder) -> Result<f64> {
    let (mut zeros, mut total) = (0usize, 0usize);
    for (name, _, values) in decoder.named_parameters()? {
        if crate::prune::is_projection(&name) {
            zeros += values.iter().filter(|v| **v == 0.0).count();
            total += values.len();
        }
    }
    Ok(zeros as f64 / total.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_reach_the_target() {
        let p = |schedule| IterativePruning {
            method: PruneMethod::Magnitude,
            target: 0.8,
            rounds: 4,
            schedule,
        };
        let lin: Vec<f64> = (1..=4)
            .map(|r| p(SparsitySchedule::Linear).sparsity_at(r))
            .collect();
        assert_eq!(lin, [0.2, 0.4, 0.6000000000000001, 0.8]);
        let cub: Vec<f64> = (1..=4)
            .map(|r| p(SparsitySchedule::Cubic).sparsity_at(r))
            .collect();
        assert!((cub[0] - 0.8 * (1.0 - 0.75f64.powi(3))).abs() < 1e-12);
        assert!(cub.windows(2).all(|w| w[1] > w[0]) && cub[3] == 0.8);
        assert!(cub[0] > lin[0], "cubic front-loads");
    }
}
