//! The LM head at target positions only ([`target_logits`]) gives what the whole batch's
//! logits give: the same loss and gradients for plain fine-tuning, and the same distillation
//! loss from an online teacher or its cache, on padded and packed batches.

mod common;

use common::*;
use slm_core::prelude::*;
use slm_data::inputs::{
    Batch, Batcher, BatcherConfig, BucketBatcher, PackedBatcher, TokenizedExample,
};
use slm_train::{
    DistillConfig, DistillLoss, Grads, TeacherCache, TeacherRows, batch_logits, causal_lm_loss,
    target_logits, target_loss,
};

fn tiny(device: &Device) -> Decoder {
    Checkpoint::open(&fixture("models/llama-tiny"))
        .unwrap()
        .load_decoder(device)
        .unwrap()
}

fn examples() -> Vec<TokenizedExample> {
    (0..9)
        .map(|i| {
            let mut ids = vec![0u32, 592, 366 + i as u32, 328, 672];
            ids.extend((0..(i % 3 + 1)).map(|k| 260 + (i + k) as u32));
            let mask = (0..ids.len()).map(|k| k >= 4).collect();
            TokenizedExample::new(format!("e{i}"), ids, mask).unwrap()
        })
        .collect()
}

fn batches(packed: bool) -> Vec<Batch> {
    let config = BatcherConfig::new(3, 20, 2).with_seed(3);
    let data = examples();
    let mut b: Box<dyn Batcher> = if packed {
        Box::new(PackedBatcher::new(data, &config).unwrap())
    } else {
        Box::new(BucketBatcher::new(data, &config, 2).unwrap())
    };
    std::iter::from_fn(|| b.next_batch().map(|r| r.unwrap())).collect()
}

fn close(a: f32, b: f32, what: &str) {
    assert!(
        (a - b).abs() <= 1e-5 * a.abs().max(1.0),
        "{what}: {a} vs {b}"
    );
}

#[test]
fn target_rows_give_the_full_batch_loss_and_gradients() {
    let device = Device::flex().autodiff();
    let model = tiny(&device);
    for packed in [false, true] {
        for batch in batches(packed) {
            let (full, n) =
                causal_lm_loss(batch_logits(&model, &batch).unwrap(), &batch.labels).unwrap();
            let targets = target_logits(&model, &batch).unwrap();
            assert_eq!(targets.labels.len(), n);
            let sparse = target_loss(&targets).unwrap();
            let (gf, gs) = (
                Grads::from_backward(&full, &model),
                Grads::from_backward(&sparse, &model),
            );
            close(
                full.into_scalar::<f32>(),
                sparse.into_scalar::<f32>(),
                "loss",
            );
            close(
                gf.norm().unwrap() as f32,
                gs.norm().unwrap() as f32,
                "gradient norm",
            );
            assert_eq!(gf.len(), gs.len());
        }
    }
}

#[test]
fn distillation_at_target_rows_matches_the_whole_batch() {
    let teacher = tiny(&Device::flex());
    let device = Device::flex().autodiff();
    let student = tiny(&device).keep_layers(&[0]).unwrap();
    let d = DistillConfig {
        loss: DistillLoss::ForwardKl,
        temperature: 2.0,
        alpha: 0.6,
        top_k: Some(8),
    };
    let cache = TeacherCache::build(&teacher, &examples(), &d, 4, 20, "t").unwrap();
    for packed in [false, true] {
        for batch in batches(packed) {
            let whole = d
                .loss(
                    batch_logits(&student, &batch).unwrap(),
                    batch_logits(&teacher, &batch).unwrap(),
                    &batch.labels,
                )
                .unwrap()
                .into_scalar::<f32>();
            let s = target_logits(&student, &batch).unwrap();
            let t = target_logits(&teacher, &batch).unwrap();
            let online = d
                .loss_at_targets(&s, TeacherRows::Logits(t.logits))
                .unwrap()
                .into_scalar::<f32>();
            let (ids, logprobs) = cache.target_rows(&batch, &s.rows, &device).unwrap();
            let cached = d
                .loss_at_targets(&s, TeacherRows::TopK { ids, logprobs })
                .unwrap()
                .into_scalar::<f32>();
            close(whole, online, "online teacher at the targets");
            close(whole, cached, "cached teacher at the targets");
        }
    }
}
