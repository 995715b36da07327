//! Pruning the tiny fixture model: the calibration statistics line up with the projections
//! (q, k and v see the same input, as do gate and up), Wanda keeps the requested sparsity, and
//! the pruned model still runs.

use std::path::Path;

use slm_compress::prune::input_norms;
use slm_compress::{PruneMethod, prune};
use slm_core::prelude::*;

fn tiny() -> Decoder {
    Checkpoint::open(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/llama-tiny"),
    )
    .unwrap()
    .load_decoder(&Device::flex())
    .unwrap()
}

#[test]
fn calibration_norms_follow_the_projections_inputs() {
    let model = tiny();
    let calib = vec![
        vec![0u32, 592, 366, 328, 672, 262, 260, 432],
        vec![0, 423, 481, 691],
    ];
    let norms = input_norms(&model, &calib).unwrap();
    assert_eq!(
        norms.len(),
        15,
        "7 projections x 2 layers and the untied LM head"
    );
    for l in 0..2 {
        let n = |p: &str| norms[&format!("model.layers.{l}.{p}.weight")].clone();
        assert_eq!(n("self_attn.q_proj"), n("self_attn.k_proj"));
        assert_eq!(n("self_attn.q_proj"), n("self_attn.v_proj"));
        assert_eq!(n("mlp.gate_proj"), n("mlp.up_proj"));
        assert_ne!(n("self_attn.q_proj"), n("self_attn.o_proj"));
        assert_eq!(n("mlp.down_proj").len(), 128);
        assert!(
            n("mlp.down_proj")
                .iter()
                .all(|x| x.is_finite() && *x >= 0.0)
        );
    }
    let (pruned, report) = prune(&model, PruneMethod::Wanda, 0.25, &calib).unwrap();
    assert!((report.projection_sparsity - 0.25).abs() < 1e-9);
    let out = pruned
        .forward(
            &TokenBatch::single(vec![0, 5, 9], LogitsScope::All),
            &mut pruned.new_cache(),
        )
        .unwrap();
    assert!(out.values.iter().all(|v| v.is_finite()));
    assert!(prune(&model, PruneMethod::Wanda, 0.25, &[]).is_err());
    // 2:4 by Wanda's score: the pattern holds in every group of every projection.
    let (pruned, report) =
        prune(&model, PruneMethod::WandaNofM { n: 2, m: 4 }, 0.5, &calib).unwrap();
    assert!((report.requested - 0.5).abs() < 1e-12);
    for (name, shape, values) in pruned.named_parameters().unwrap() {
        if name.ends_with("_proj.weight") && name.starts_with("model.layers.") {
            for g in values.chunks_exact(4) {
                assert!(
                    g.iter().filter(|v| **v != 0.0).count() <= 2,
                    "{name} {shape:?}"
                );
            }
        }
    }
}

/// Per-layer magnitude prunes each projection to the fraction; global magnitude prunes the
/// fraction of all projection weights with one threshold (layers end up unequal), keeping every
/// weight larger than every pruned one.
#[test]
fn per_layer_and_global_magnitude() {
    let model = tiny();
    let (pruned, report) = prune(&model, PruneMethod::MagnitudeLayer, 0.3, &[]).unwrap();
    for t in &report.tensors {
        let want = (0.3 * t.params as f64).round() as usize;
        assert_eq!(t.zeros, want, "{}", t.name);
    }
    let _ = pruned;
    let (pruned, report) = prune(&model, PruneMethod::MagnitudeGlobal, 0.6, &[]).unwrap();
    let total: usize = report.tensors.iter().map(|t| t.params).sum();
    assert_eq!(
        report.projection_zeros,
        (0.6 * total as f64).round() as usize
    );
    let sparsities: Vec<f64> = report.tensors.iter().map(|t| t.sparsity).collect();
    let spread = sparsities.iter().cloned().fold(0.0, f64::max)
        - sparsities.iter().cloned().fold(1.0, f64::min);
    assert!(
        spread > 0.01,
        "one threshold gives layers different sparsities: {sparsities:?}"
    );
    let (mut kept_min, mut pruned_max) = (f32::INFINITY, 0.0f32);
    let before = model.named_parameters().unwrap();
    for ((name, _, after), (_, _, orig)) in pruned.named_parameters().unwrap().iter().zip(&before) {
        if !(name.starts_with("model.layers.") && name.ends_with("_proj.weight")) {
            continue;
        }
        for (a, o) in after.iter().zip(orig) {
            if *a == 0.0 {
                pruned_max = pruned_max.max(o.abs());
            } else {
                kept_min = kept_min.min(o.abs());
            }
        }
    }
    assert!(
        pruned_max <= kept_min,
        "{pruned_max} pruned, {kept_min} kept"
    );
}

/// Gradual pruning with a fake recovery step: the schedule's sparsity each round, the callback
/// once per round on the pruned model, masks that only grow, and the target reached.
#[test]
fn iterative_pruning_calls_recovery_between_rounds() {
    use slm_compress::{IterativePruning, SparsitySchedule};
    let model = tiny();
    let plan = IterativePruning {
        method: PruneMethod::Magnitude,
        target: 0.6,
        rounds: 3,
        schedule: SparsitySchedule::Cubic,
    };
    let mut seen = Vec::new();
    let mut previous_zeros: Option<Vec<bool>> = None;
    let (model, rounds) = plan
        .run(&model, &[], &mut |m, round| {
            seen.push((round.round, round.pruned.projection_sparsity));
            // The fake "fine-tune": scale every weight by 1.01 (zeros stay zero).
            let params: Vec<_> = m
                .named_parameters()?
                .into_iter()
                .map(|(n, s, v)| (n, s, v.into_iter().map(|x| x * 1.01).collect()))
                .collect();
            let zeros: Vec<bool> = params
                .iter()
                .filter(|(n, _, _)| n.ends_with("_proj.weight"))
                .flat_map(|(_, _, v): &(String, Vec<usize>, Vec<f32>)| v.iter().map(|x| *x == 0.0))
                .collect();
            if let Some(prev) = &previous_zeros {
                assert!(
                    prev.iter().zip(&zeros).all(|(p, z)| !p || *z),
                    "a pruned weight came back"
                );
            }
            previous_zeros = Some(zeros);
            Ok(Decoder::from_named_parameters(
                m.config(),
                params,
                "fake",
                &m.device(),
            )?)
        })
        .unwrap();
    assert_eq!(seen.len(), 3);
    for (i, (round, sparsity)) in seen.iter().enumerate() {
        assert_eq!(*round, i + 1);
        assert!(
            (sparsity - plan.sparsity_at(i + 1)).abs() < 0.01,
            "{seen:?}"
        );
    }
    assert!((rounds[2].sparsity_after_recovery - 0.6).abs() < 0.01);
    let out = model
        .forward(
            &TokenBatch::single(vec![0, 5, 9], LogitsScope::All),
            &mut model.new_cache(),
        )
        .unwrap();
    assert!(out.values.iter().all(|v| v.is_finite()));
    let bad = IterativePruning { rounds: 0, ..plan };
    assert!(bad.run(&tiny(), &[], &mut |m, _| Ok(m)).is_err());
    let bad = IterativePruning {
        method: PruneMethod::NofM { n: 2, m: 4 },
        ..plan
    };
    assert!(bad.run(&tiny(), &[], &mut |m, _| Ok(m)).is_err());
}

/// Structured pruning ranks by activations when given calibration text: a neuron whose gate
/// row is zero never fires (silu(0) = 0), so it goes first even with a huge down_proj column
/// that weight magnitude alone would keep. Heads are removed per KV group.
#[test]
fn structured_pruning_is_activation_aware_with_calibration() {
    let model = tiny();
    let (inter, hidden) = (128, 64);
    let params: Vec<_> = model
        .named_parameters()
        .unwrap()
        .into_iter()
        .map(|(n, s, mut v)| {
            if n == "model.layers.0.mlp.gate_proj.weight" {
                v[7 * hidden..8 * hidden].iter_mut().for_each(|x| *x = 0.0);
            }
            if n == "model.layers.0.mlp.down_proj.weight" {
                v.iter_mut()
                    .skip(7)
                    .step_by(inter)
                    .for_each(|x| *x *= 100.0);
            }
            (n, s, v)
        })
        .collect();
    let model =
        Decoder::from_named_parameters(model.config(), params.clone(), "t", &model.device())
            .unwrap();
    let marker: Vec<f32> = params
        .iter()
        .find(|(n, _, _)| n == "model.layers.0.mlp.down_proj.weight")
        .unwrap()
        .2
        .iter()
        .skip(7)
        .step_by(inter)
        .copied()
        .collect();
    let has_marker = |m: &Decoder| {
        let (_, shape, down) = m
            .named_parameters()
            .unwrap()
            .into_iter()
            .find(|(n, _, _)| n == "model.layers.0.mlp.down_proj.weight")
            .unwrap();
        (0..shape[1]).any(|j| {
            down.iter()
                .skip(j)
                .step_by(shape[1])
                .copied()
                .collect::<Vec<_>>()
                == marker
        })
    };
    let calib = vec![vec![
        0u32, 592, 366, 328, 672, 262, 260, 432, 72, 481, 691, 423,
    ]];
    let (by_weights, report) = prune(&model, PruneMethod::Structured, 0.25, &[]).unwrap();
    assert_eq!(
        report.params_after,
        report.params_before - 2 * 32 * 3 * hidden
    );
    assert!(
        has_marker(&by_weights),
        "weight magnitude keeps the loud but silent neuron"
    );
    let (by_activations, _) = prune(&model, PruneMethod::Structured, 0.25, &calib).unwrap();
    assert!(
        !has_marker(&by_activations),
        "activations drop the neuron that never fires"
    );

    let (heads, report) = prune(&model, PruneMethod::StructuredHeads, 0.5, &calib).unwrap();
    assert_eq!(
        heads.config().num_attention_heads,
        2,
        "one of the two heads per KV group"
    );
    assert_eq!(heads.config().num_key_value_heads, 2);
    assert!(report.params_after < report.params_before);
    let out = heads
        .forward(
            &TokenBatch::single(vec![0, 5, 9], LogitsScope::All),
            &mut heads.new_cache(),
        )
        .unwrap();
    assert!(out.values.iter().all(|v| v.is_finite()));
}
