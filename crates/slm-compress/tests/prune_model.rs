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
