//! slm-compress's gradual pruning with slm-train's full fine-tuning as the recovery step: the
//! two crates compose through the public API (a `Decoder` in, a `Decoder` out), the trainer
//! keeps each round's pruned weights at zero, and the target sparsity holds at the end.

use std::path::Path;

use slm::compress::{IterativePruning, PruneMethod, SparsitySchedule};
use slm::data::inputs::TokenizedExample;
use slm::prelude::*;
use slm::train::{TrainConfig, Trainer, TuneMode};

fn tiny() -> Decoder {
    Checkpoint::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/llama-tiny"))
        .unwrap()
        .load_decoder(&Device::flex().autodiff())
        .unwrap()
}

/// After a fixed prompt, one of two answers.
fn examples() -> Vec<TokenizedExample> {
    (0..8)
        .map(|i| {
            let mut ids = vec![0u32, 592, 366, 328, 672 + (i % 5) as u32];
            ids.extend(if i % 2 == 0 { [262u32, 260] } else { [432, 72] });
            let mask = (0..ids.len()).map(|k| k >= 5).collect();
            TokenizedExample::new(format!("e{i}"), ids, mask).unwrap()
        })
        .collect()
}

#[test]
fn gradual_magnitude_pruning_with_full_tuning_between_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let data = examples();
    let plan = IterativePruning {
        method: PruneMethod::Magnitude,
        target: 0.5,
        rounds: 2,
        schedule: SparsitySchedule::Linear,
    };
    let mut kept = Vec::new();
    let (model, rounds) = plan
        .run(&tiny(), &[], &mut |pruned, round| {
            let config = TrainConfig {
                epochs: 2,
                batch_size: 4,
                seq_len: 16,
                lr: 5e-3,
                eval_every: None,
                save_every: None,
                ..TrainConfig::default()
            };
            let out = dir.path().join(format!("round-{}", round.round));
            let trainer = Trainer::new(config, TuneMode::Full, &out, "llama-tiny");
            let (tuned, report) = trainer
                .run(pruned, &data, None, false)
                .map_err(|e| slm::compress::Error::Recovery(e.into()))?;
            kept.push(report.kept_zeros);
            Ok(tuned)
        })
        .unwrap();
    let projection_params = rounds[0].pruned.projection_params;
    assert_eq!(kept[0], rounds[0].pruned.projection_zeros);
    assert_eq!(kept[1], rounds[1].pruned.projection_zeros);
    assert!(
        kept[1] > kept[0] && kept[1] * 2 == projection_params,
        "{kept:?} of {projection_params}"
    );
    for r in &rounds {
        assert_eq!(
            r.sparsity_after_recovery, r.pruned.projection_sparsity,
            "round {}",
            r.round
        );
    }
    assert_eq!(rounds[1].sparsity_after_recovery, 0.5);
    let out = model
        .forward(
            &TokenBatch::single(vec![0, 5, 9], LogitsScope::All),
            &mut model.new_cache(),
        )
        .unwrap();
    assert!(out.values.iter().all(|v| v.is_finite()));
}
