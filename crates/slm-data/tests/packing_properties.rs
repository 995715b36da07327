//! Properties of packing and bucketing (issue 3): the loss never crosses an example boundary,
//! and every target token is trained on exactly once per epoch.

use proptest::prelude::*;
use slm_data::inputs::{
    Batch, Batcher, BatcherConfig, BucketBatcher, IGNORE_INDEX, PackedBatcher, TokenizedExample,
};

/// Example `i` with `prompt` then `target` tokens; every token id is unique (`i * 1000 + j`),
/// so a label identifies its example and offset.
fn example(i: usize, prompt: usize, target: usize) -> TokenizedExample {
    let n = prompt + target;
    TokenizedExample::new(
        format!("e{i}"),
        (0..n).map(|j| (i * 1000 + j) as u32).collect(),
        (0..n).map(|j| j >= prompt).collect(),
    )
    .unwrap()
}

fn drain(b: &mut dyn Batcher) -> Vec<Batch> {
    std::iter::from_fn(|| b.next_batch())
        .map(Result::unwrap)
        .collect()
}

/// (prompt, target) lengths: prompts are never empty (a template always has one).
fn shapes() -> impl Strategy<Value = Vec<(usize, usize)>> {
    prop::collection::vec((1usize..8, 0usize..8), 0..40)
}

fn check(batches: &[Batch], examples: &[TokenizedExample], max_seq_len: usize) {
    let mut seen: Vec<i64> = Vec::new();
    for b in batches {
        assert!(b.seq_len() <= max_seq_len);
        for r in 0..b.rows() {
            let (labels, seg) = (&b.labels[r], &b.segment_ids[r]);
            for p in 0..labels.len() {
                if labels[p] == IGNORE_INDEX {
                    continue;
                }
                // The logit that predicts position p is at p - 1: same example, not padding.
                assert!(p > 0, "label at a row's first position");
                assert!(
                    seg[p] != 0 && seg[p - 1] == seg[p],
                    "label crosses a boundary"
                );
                assert_eq!(labels[p], b.input_ids[r][p] as i64);
                // Its example is the one the segment names.
                let ex = b.example_indices[r][seg[p] as usize - 1];
                assert_eq!(labels[p] as usize / 1000, ex);
                assert_eq!(b.position_ids[r][p] as usize, labels[p] as usize % 1000);
                seen.push(labels[p]);
            }
        }
    }
    seen.sort_unstable();
    let mut expected: Vec<i64> = examples
        .iter()
        .flat_map(|e| e.labels())
        .filter(|&l| l != IGNORE_INDEX)
        .collect();
    expected.sort_unstable();
    assert_eq!(seen, expected, "every target token exactly once");
}

proptest! {
    #[test]
    fn packing_never_crosses_boundaries(
        shapes in shapes(), batch_size in 1usize..5, extra in 0usize..20, seed in any::<u64>()
    ) {
        let examples: Vec<_> =
            shapes.iter().enumerate().map(|(i, &(p, t))| example(i, p, t)).collect();
        let max_seq_len = 15 + extra;
        let cfg = BatcherConfig::new(batch_size, max_seq_len, 7).with_seed(seed);
        let batches = drain(&mut PackedBatcher::new(examples.clone(), &cfg).unwrap());
        check(&batches, &examples, max_seq_len);
        for b in &batches {
            prop_assert!(b.rows() <= batch_size);
        }
        // Deterministic for a seed.
        prop_assert_eq!(&batches, &drain(&mut PackedBatcher::new(examples, &cfg).unwrap()));
    }

    #[test]
    fn buckets_cover_every_target_once(
        shapes in shapes(), batch_size in 1usize..5, buckets in 1usize..4, seed in any::<u64>()
    ) {
        let examples: Vec<_> =
            shapes.iter().enumerate().map(|(i, &(p, t))| example(i, p, t)).collect();
        let cfg = BatcherConfig::new(batch_size, 15, 7).with_seed(seed);
        let batches = drain(&mut BucketBatcher::new(examples.clone(), &cfg, buckets).unwrap());
        check(&batches, &examples, 15);
        prop_assert_eq!(batches.iter().map(Batch::rows).sum::<usize>(), examples.len());
    }
}
