//! Pruning the decoder's projections: [`prune`] with a [`PruneMethod`] returns the pruned model
//! and a [`PruneReport`] (per tensor and in total: parameters, zeros, sparsity, and the bytes
//! the dense f32 weights take).
//!
//! - [`PruneMethod::Magnitude`]: in every output row of every projection (`q, k, v, o, gate,
//!   up, down`; not the embedding, the norms nor the LM head, as Wanda and SparseGPT leave them),
//!   the `round(sparsity * in)` weights of smallest magnitude become zero, so every row has the
//!   requested sparsity exactly (the per-output comparison group Wanda uses).
//! - [`PruneMethod::Wanda`] (Sun et al. 2023, "A Simple and Effective Pruning Approach for
//!   LLMs"): the same per-row comparison on `|W_ij| * ||X_j||`, the weight times the L2 norm of
//!   its input channel over calibration tokens ([`InputStats`], captured during forwards of
//!   the calibration chunks), so weights that meet large activations are kept.
//! - [`PruneMethod::NofM`]: semi-structured N:M (2:4 is what sparse tensor cores run): in every
//!   group of `m` consecutive input weights of a row, only the `n` largest in magnitude stay.
//! - [`PruneMethod::WandaNofM`]: N:M by Wanda's score (the paper's 2:4 setting).
//! - [`PruneMethod::Magnitude`] per output row, [`PruneMethod::MagnitudeLayer`] per projection,
//!   [`PruneMethod::MagnitudeGlobal`] with one threshold over all projections.
//! - [`PruneMethod::Structured`]: removes `round(sparsity * intermediate_size)` MLP neurons in
//!   every layer, [`PruneMethod::StructuredHeads`] `round(sparsity * heads per KV group)` query
//!   heads of every group ([`slm_core::model::narrow`]), the least important by their
//!   activations over calibration text (or by weight magnitude without it), so the matrices
//!   really shrink and the result is a smaller valid checkpoint (same count in every layer).
//!
//! Ties between equal magnitudes keep the earlier weight, so results are deterministic.

use serde::Serialize;
use slm_core::model::{Decoder, NarrowImportance, Narrowing, narrow};

use crate::calibration::InputStats;

use crate::error::{Error, Result};

/// How to prune.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneMethod {
    /// Smallest magnitudes per output row.
    Magnitude,
    /// Smallest magnitudes per projection tensor ("per layer").
    MagnitudeLayer,
    /// Smallest magnitudes over all projections together (one global threshold).
    MagnitudeGlobal,
    /// Smallest `|W| * ||X||` per output row, from calibration activations.
    Wanda,
    /// `n` of every `m` consecutive input weights kept by Wanda's score (2:4 as the Wanda
    /// paper runs it).
    WandaNofM {
        /// Weights kept per group.
        n: usize,
        /// Group size.
        m: usize,
    },
    /// `n` of every `m` consecutive input weights kept (2:4).
    NofM {
        /// Weights kept per group.
        n: usize,
        /// Group size.
        m: usize,
    },
    /// Whole MLP neurons removed (the same number in every layer).
    Structured,
    /// Whole query heads removed (the same number from every KV group of every layer).
    StructuredHeads,
}

/// One pruned tensor's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorSparsity {
    /// Hugging Face name.
    pub name: String,
    /// Parameters after pruning.
    pub params: usize,
    /// Zeros among them.
    pub zeros: usize,
    /// `zeros / params`.
    pub sparsity: f64,
    /// Bytes of the dense f32 tensor (a sparse or quantized format stores the zeros for less).
    pub f32_bytes: usize,
}

/// What [`prune`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PruneReport {
    /// The method.
    pub method: PruneMethod,
    /// The sparsity asked for.
    pub requested: f64,
    /// Every projection weight, in model order.
    pub tensors: Vec<TensorSparsity>,
    /// Parameters of the projection weights after pruning.
    pub projection_params: usize,
    /// Zeros among them.
    pub projection_zeros: usize,
    /// `projection_zeros / projection_params`.
    pub projection_sparsity: f64,
    /// Every parameter of the model before and after.
    pub params_before: usize,
    /// After.
    pub params_after: usize,
    /// Bytes of the dense f32 weights before and after (structured pruning shrinks them; the
    /// others only zero weights, which a sparse or quantized format can exploit).
    pub f32_bytes_before: usize,
    /// After.
    pub f32_bytes_after: usize,
}

/// Whether `name` is a projection weight that pruning touches.
pub(crate) fn is_projection(name: &str) -> bool {
    name.starts_with("model.layers.")
        && name.ends_with("_proj.weight")
        && ["self_attn.", "mlp."].iter().any(|p| name.contains(p))
}

/// Zeros the `k` smallest-magnitude values of `row` (ties keep the earlier value).
pub fn prune_row_magnitude(row: &mut [f32], k: usize) {
    let scores: Vec<f32> = row.iter().map(|v| v.abs()).collect();
    prune_row_by_score(row, &scores, k);
}

/// Zeros the `k` values of `row` with the smallest `scores` (ties keep the earlier value).
pub fn prune_row_by_score(row: &mut [f32], scores: &[f32], k: usize) {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)));
    for &i in order.iter().take(k) {
        row[i] = 0.0;
    }
}

/// The L2 norm of every projection's input channels over `calibration` (token sequences run
/// through `decoder` one at a time), by Hugging Face weight name ([`InputStats::l2_norms`]).
///
/// # Errors
/// [`Error::InvalidCalibration`] for no calibration tokens; model errors as they come.
pub fn input_norms(
    decoder: &Decoder,
    calibration: &[Vec<u32>],
) -> Result<std::collections::HashMap<String, Vec<f32>>> {
    Ok(InputStats::collect(decoder, calibration)?.l2_norms())
}

/// The magnitude below which values are pruned to reach `sparsity` of `magnitudes` (which it
/// reorders), and how many values equal to it are pruned too; `None` prunes nothing.
fn global_threshold(magnitudes: &mut [f32], sparsity: f64) -> Option<(f32, usize)> {
    let k = (sparsity * magnitudes.len() as f64).round() as usize;
    if k == 0 {
        return Some((f32::NEG_INFINITY, 0));
    }
    let (below, t, _) = magnitudes.select_nth_unstable_by(k - 1, f32::total_cmp);
    let t = *t;
    let strictly_below = below.iter().filter(|&&a| a < t).count();
    Some((t, k - strictly_below))
}

/// Keeps the `n` largest-magnitude values of every group of `m` consecutive values of `row`
/// (a row whose length is not a multiple of `m` keeps its last, partial group whole).
pub fn prune_row_n_of_m(row: &mut [f32], n: usize, m: usize) {
    let scores: Vec<f32> = row.iter().map(|v| v.abs()).collect();
    prune_row_n_of_m_by_score(row, &scores, n, m);
}

/// Keeps the `n` values with the largest `scores` of every group of `m` consecutive values.
pub fn prune_row_n_of_m_by_score(row: &mut [f32], scores: &[f32], n: usize, m: usize) {
    for (group, s) in row.chunks_exact_mut(m).zip(scores.chunks_exact(m)) {
        prune_row_by_score(group, s, m - n);
    }
}

/// `decoder` pruned by `method` to `sparsity` (a fraction in `[0, 1)`; 2:4 is sparsity 0.5 by
/// construction and takes `n/m` from the method), on the same device, with its report.
/// `calibration` (token sequences, e.g. chunks of a text) feeds [`PruneMethod::Wanda`] and makes
/// the structured methods activation-aware ([`InputStats::narrow_importance`]; weight magnitude
/// without it); the other methods ignore it.
///
/// # Errors
/// [`Error::InvalidPruning`] for a sparsity outside `[0, 1)`, an N:M with `n == 0` or
/// `n >= m`, input widths that are not a multiple of `m`, or Wanda without calibration
/// tokens; model errors as they come.
pub fn prune(
    decoder: &Decoder,
    method: PruneMethod,
    sparsity: f64,
    calibration: &[Vec<u32>],
) -> Result<(Decoder, PruneReport)> {
    if !(0.0..1.0).contains(&sparsity) {
        return Err(Error::InvalidPruning(format!(
            "sparsity must be in [0, 1), got {sparsity}"
        )));
    }
    let before = decoder.parameter_shapes();
    let count = |shapes: &[(String, Vec<usize>)]| -> usize {
        shapes
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    };
    let params_before = count(&before);
    let config = decoder.config().clone();
    let pruned = match method {
        PruneMethod::Structured | PruneMethod::StructuredHeads => {
            let to = if method == PruneMethod::Structured {
                let keep = config.intermediate_size
                    - (sparsity * config.intermediate_size as f64).round() as usize;
                Narrowing {
                    intermediate_size: Some(keep.max(1)),
                    heads_per_group: None,
                }
            } else {
                let group = config.num_attention_heads / config.num_key_value_heads.max(1);
                let keep = group - (sparsity * group as f64).round() as usize;
                Narrowing {
                    intermediate_size: None,
                    heads_per_group: Some(keep.max(1)),
                }
            };
            // Activation-aware with calibration text, by weight magnitude without.
            let importance = if calibration.iter().any(|c| !c.is_empty()) {
                InputStats::collect(decoder, calibration)?.narrow_importance(decoder)?
            } else {
                NarrowImportance::from_weights(decoder)?
            };
            narrow(decoder, &to, &importance)?
        }
        PruneMethod::MagnitudeLayer | PruneMethod::MagnitudeGlobal => {
            let mut params = decoder.named_parameters()?;
            let projections = || params.iter().filter(|(n, _, _)| is_projection(n));
            let threshold = match method {
                PruneMethod::MagnitudeGlobal => {
                    let mut all: Vec<f32> = projections()
                        .flat_map(|(_, _, v)| v.iter().map(|x| x.abs()))
                        .collect();
                    global_threshold(&mut all, sparsity)
                }
                _ => None,
            };
            // Ties at the global threshold are cut in model order until the count is met.
            let mut ties_left = threshold.map_or(0, |(_, ties)| ties);
            for (name, _, values) in params.iter_mut() {
                if !is_projection(name) {
                    continue;
                }
                match threshold {
                    Some((t, _)) => {
                        for v in values.iter_mut() {
                            let a = v.abs();
                            if a < t {
                                *v = 0.0;
                            } else if a == t && ties_left > 0 {
                                *v = 0.0;
                                ties_left -= 1;
                            }
                        }
                    }
                    None => {
                        let k = (sparsity * values.len() as f64).round() as usize;
                        prune_row_magnitude(values, k);
                    }
                }
            }
            Decoder::from_named_parameters(
                &config,
                params,
                "pruned weights (in memory)",
                &decoder.device(),
            )?
        }
        PruneMethod::Magnitude
        | PruneMethod::Wanda
        | PruneMethod::NofM { .. }
        | PruneMethod::WandaNofM { .. } => {
            if let PruneMethod::NofM { n, m } | PruneMethod::WandaNofM { n, m } = method
                && (n == 0 || n >= m)
            {
                return Err(Error::InvalidPruning(format!(
                    "{n}:{m} keeps {n} of every {m} weights: need 0 < n < m"
                )));
            }
            let norms = match method {
                PruneMethod::Wanda | PruneMethod::WandaNofM { .. } => {
                    input_norms(decoder, calibration)?
                }
                _ => Default::default(),
            };
            let mut params = decoder.named_parameters()?;
            for (name, shape, values) in params.iter_mut() {
                if !is_projection(name) {
                    continue;
                }
                let cols = shape[1];
                let norm = || {
                    norms
                        .get(name.as_str())
                        .filter(|n| n.len() == cols)
                        .ok_or_else(|| {
                            Error::InvalidPruning(format!("no input statistics for {name}"))
                        })
                };
                let wanda = |row: &[f32], norm: &[f32]| -> Vec<f32> {
                    row.iter().zip(norm).map(|(w, x)| w.abs() * x).collect()
                };
                if let PruneMethod::NofM { m, .. } | PruneMethod::WandaNofM { m, .. } = method
                    && cols % m != 0
                {
                    return Err(Error::InvalidPruning(format!(
                        "{name}: {cols} inputs per row are not groups of {m}"
                    )));
                }
                match method {
                    PruneMethod::WandaNofM { n, m } => {
                        let norm = norm()?.clone();
                        for row in values.chunks_exact_mut(cols) {
                            let scores = wanda(row, &norm);
                            prune_row_n_of_m_by_score(row, &scores, n, m);
                        }
                    }
                    PruneMethod::NofM { n, m } => {
                        for row in values.chunks_exact_mut(cols) {
                            prune_row_n_of_m(row, n, m);
                        }
                    }
                    PruneMethod::Wanda => {
                        let k = (sparsity * cols as f64).round() as usize;
                        let norm = norms
                            .get(name.as_str())
                            .filter(|n| n.len() == cols)
                            .ok_or_else(|| {
                                Error::InvalidPruning(format!("no input statistics for {name}"))
                            })?;
                        for row in values.chunks_exact_mut(cols) {
                            let scores: Vec<f32> =
                                row.iter().zip(norm).map(|(w, x)| w.abs() * x).collect();
                            prune_row_by_score(row, &scores, k);
                        }
                    }
                    _ => {
                        let k = (sparsity * cols as f64).round() as usize;
                        for row in values.chunks_exact_mut(cols) {
                            prune_row_magnitude(row, k);
                        }
                    }
                }
            }
            Decoder::from_named_parameters(
                &config,
                params,
                "pruned weights (in memory)",
                &decoder.device(),
            )?
        }
    };
    let mut tensors = Vec::new();
    for (name, shape, values) in pruned.named_parameters()? {
        if !is_projection(&name) {
            continue;
        }
        let zeros = values.iter().filter(|v| **v == 0.0).count();
        let params: usize = shape.iter().product();
        tensors.push(TensorSparsity {
            name,
            params,
            zeros,
            sparsity: zeros as f64 / params.max(1) as f64,
            f32_bytes: params * 4,
        });
    }
    let projection_params: usize = tensors.iter().map(|t| t.params).sum();
    let projection_zeros: usize = tensors.iter().map(|t| t.zeros).sum();
    let params_after = count(&pruned.parameter_shapes());
    let report = PruneReport {
        method,
        requested: match method {
            PruneMethod::NofM { n, m } | PruneMethod::WandaNofM { n, m } => {
                1.0 - n as f64 / m as f64
            }
            _ => sparsity,
        },
        tensors,
        projection_params,
        projection_zeros,
        projection_sparsity: projection_zeros as f64 / projection_params.max(1) as f64,
        params_before,
        params_after,
        f32_bytes_before: params_before * 4,
        f32_bytes_after: params_after * 4,
    };
    Ok((pruned, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wanda_scores_weigh_magnitudes_by_their_inputs() {
        // |w| alone would cut 0.1 and -0.2; with input norms (10, 10, 0.1, 0.1) the weights that
        // meet the large inputs stay.
        let mut row = vec![0.1, -0.2, 3.0, 2.0];
        let x = [10.0, 10.0, 0.1, 0.1];
        let scores: Vec<f32> = row.iter().zip(&x).map(|(w, x)| f32::abs(*w) * x).collect();
        prune_row_by_score(&mut row, &scores, 2);
        assert_eq!(row, vec![0.1, -0.2, 0.0, 0.0]);
    }

    #[test]
    fn magnitude_zeros_the_smallest_and_two_of_four_keeps_the_largest() {
        let mut row = vec![0.5, -3.0, 0.1, 2.0, -0.2, 1.0, 4.0, -0.05];
        prune_row_magnitude(&mut row, 3);
        assert_eq!(row, vec![0.5, -3.0, 0.0, 2.0, 0.0, 1.0, 4.0, 0.0]);
        let mut row = vec![0.5, -3.0, 0.1, 2.0, -0.2, 1.0, 4.0, -0.05];
        prune_row_n_of_m(&mut row, 2, 4);
        assert_eq!(row, vec![0.0, -3.0, 0.0, 2.0, 0.0, 1.0, 4.0, 0.0]);
    }

    proptest! {
        /// Every row gets exactly round(s * len) new zeros, and the survivors are the largest.
        #[test]
        fn magnitude_sparsity_is_exact(
            row in proptest::collection::vec(
                prop_oneof![-100.0f32..-1e-3, 1e-3f32..100.0], 1..200),
            s in 0.0f64..1.0,
        ) {
            let k = (s * row.len() as f64).round() as usize;
            let mut pruned = row.clone();
            prune_row_magnitude(&mut pruned, k);
            prop_assert_eq!(pruned.iter().filter(|v| **v == 0.0).count(), k);
            let smallest_kept = pruned.iter().filter(|v| **v != 0.0).map(|v| v.abs()).fold(f32::INFINITY, f32::min);
            let largest_cut = row.iter().zip(&pruned).filter(|(_, p)| **p == 0.0).map(|(v, _)| v.abs()).fold(0.0f32, f32::max);
            prop_assert!(k == 0 || k == row.len() || largest_cut <= smallest_kept);
            for (a, b) in row.iter().zip(&pruned) {
                prop_assert!(*b == 0.0 || a == b);
            }
        }

        /// The 2:4 pattern holds in every group of 4.
        #[test]
        fn two_of_four_holds_in_every_group(
            groups in proptest::collection::vec(
                proptest::collection::vec(prop_oneof![-10.0f32..-1e-3, 1e-3f32..10.0], 4), 1..50),
        ) {
            let mut row: Vec<f32> = groups.concat();
            prune_row_n_of_m(&mut row, 2, 4);
            for g in row.chunks_exact(4) {
                prop_assert_eq!(g.iter().filter(|v| **v != 0.0).count(), 2);
            }
        }
    }
}
