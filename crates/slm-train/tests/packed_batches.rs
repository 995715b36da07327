//! Packed rows attend only within their own example: a row holding two packed examples gives
//! the same loss as the two examples run alone (the mask is block-diagonal over `segment_ids`
//! and positions restart per example).

mod common;

use common::*;
use slm_core::prelude::*;
use slm_data::inputs::{Batch, IGNORE_INDEX};
use slm_train::{batch_logits, causal_lm_loss};

fn single(ids: &[u32]) -> Batch {
    let t = ids.len();
    Batch {
        input_ids: vec![ids.to_vec()],
        attention_mask: vec![vec![true; t]],
        labels: vec![ids.iter().map(|&i| i as i64).collect()],
        position_ids: vec![(0..t as u32).collect()],
        segment_ids: vec![vec![1; t]],
        example_indices: vec![vec![0]],
    }
}

#[test]
fn a_packed_row_computes_what_its_examples_compute_alone() {
    let model = Checkpoint::open(&fixture("models/llama-tiny"))
        .unwrap()
        .load_decoder(&Device::flex())
        .unwrap();
    let a = [0u32, 592, 366, 328, 672, 262, 260];
    let b = [0u32, 423, 481, 691, 354];
    let loss = |batch: &Batch| {
        let (l, n) = causal_lm_loss(batch_logits(&model, batch).unwrap(), &batch.labels).unwrap();
        (l.into_scalar::<f32>() as f64, n)
    };
    let (la, na) = loss(&single(&a));
    let (lb, nb) = loss(&single(&b));
    // [a b pad pad]: b's first token has no label (it would be predicted from a's last).
    let mut packed = single(&[&a[..], &b[..], &[2, 2]].concat());
    let t = packed.seq_len();
    packed.segment_ids[0] = (0..t)
        .map(|i| {
            if i < a.len() {
                1
            } else if i < a.len() + b.len() {
                2
            } else {
                0
            }
        })
        .collect();
    packed.position_ids[0] = (0..t)
        .map(|i| if i < a.len() { i } else if i < a.len() + b.len() { i - a.len() } else { 0 } as u32)
        .collect();
    packed.attention_mask[0] = packed.segment_ids[0].iter().map(|&s| s != 0).collect();
    for (i, label) in packed.labels[0].iter_mut().enumerate() {
        if i == a.len() || i >= a.len() + b.len() {
            *label = IGNORE_INDEX;
        }
    }
    let (lp, np) = loss(&packed);
    assert_eq!(np, na + nb);
    let alone = (la * na as f64 + lb * nb as f64) / (na + nb) as f64;
    eprintln!(
        "packed {lp} vs alone {alone}: diff {:e}",
        (lp - alone).abs()
    );
    assert!((lp - alone).abs() <= 1e-5, "packed {lp} vs alone {alone}");
    // Without the block-diagonal mask b would see a: the test can tell the difference.
    let mut leaky = packed.clone();
    leaky.segment_ids[0] = leaky.segment_ids[0].iter().map(|&s| s.min(1)).collect();
    let (ll, _) = loss(&leaky);
    assert!(
        (ll - alone).abs() > 1e-3,
        "cross-example attention must change the loss"
    );
}
