//! The on-disk teacher cache: distilling from it gives the losses and gradients of the online
//! top-k teacher (padded and packed batches), it survives a save/load round trip, refuses data,
//! settings or vocabularies it was not built for, never panics on a damaged file, and a
//! training run from it follows the online run's loss curve.

mod common;

use common::*;
use proptest::prelude::*;
use slm_core::prelude::*;
use slm_data::inputs::{
    Batch, Batcher, BatcherConfig, BucketBatcher, PackedBatcher, TokenizedExample,
};
use slm_train::{
    DistillConfig, DistillLoss, Grads, TeacherCache, TrainConfig, Trainer, TuneMode, batch_logits,
};

fn tiny(device: &Device) -> Decoder {
    Checkpoint::open(&fixture("models/llama-tiny"))
        .unwrap()
        .load_decoder(device)
        .unwrap()
}

/// Prompt then a two-token answer; the loss is on the answer.
fn examples(n: usize) -> Vec<TokenizedExample> {
    (0..n)
        .map(|i| {
            let mut ids = vec![0u32, 592, 366 + (i % 3) as u32, 328, 672 + (i % 5) as u32];
            ids.extend(if i % 2 == 0 { [262u32, 260] } else { [432, 72] });
            ids.truncate(5 + 2 - (i % 4 == 3) as usize);
            let mask = (0..ids.len()).map(|k| k >= 5).collect();
            TokenizedExample::new(format!("e{i}"), ids, mask).unwrap()
        })
        .collect()
}

fn distill(loss: DistillLoss) -> DistillConfig {
    DistillConfig {
        loss,
        temperature: 2.0,
        alpha: 0.7,
        top_k: Some(16),
    }
}

fn batches(examples: &[TokenizedExample], packed: bool) -> Vec<Batch> {
    let config = BatcherConfig::new(3, 24, 2).with_seed(5);
    let mut b: Box<dyn Batcher> = if packed {
        Box::new(PackedBatcher::new(examples.to_vec(), &config).unwrap())
    } else {
        Box::new(BucketBatcher::new(examples.to_vec(), &config, 2).unwrap())
    };
    std::iter::from_fn(|| b.next_batch().map(|r| r.unwrap())).collect()
}

#[test]
fn cached_soft_labels_give_the_online_top_k_loss_and_gradients() {
    let data = examples(10);
    let teacher = tiny(&Device::flex());
    let device = Device::flex().autodiff();
    let student = tiny(&device).keep_layers(&[1]).unwrap();
    for loss in [
        DistillLoss::ForwardKl,
        DistillLoss::ReverseKl,
        DistillLoss::Jsd { beta: 0.3 },
    ] {
        let d = distill(loss);
        let cache = TeacherCache::build(&teacher, &data, &d, 4, 24, "llama-tiny").unwrap();
        assert_eq!(cache.examples(), 10);
        // Two or one answer token, each predicted from the position before it.
        let targets: usize = data
            .iter()
            .map(|e| e.loss_mask.iter().filter(|&&m| m).count())
            .sum();
        assert_eq!(cache.positions(), targets);
        for packed in [false, true] {
            for batch in batches(&data, packed) {
                // One forward per loss: burn's tape is consumed by a backward.
                let online = d
                    .loss(
                        batch_logits(&student, &batch).unwrap(),
                        batch_logits(&teacher, &batch).unwrap(),
                        &batch.labels,
                    )
                    .unwrap();
                let (ids, lp) = cache.targets(&batch, &device).unwrap();
                let logits = batch_logits(&student, &batch).unwrap();
                let cached = d.loss_top_k(logits, ids, lp, &batch.labels).unwrap();
                let (a, b) = (
                    online.clone().into_scalar::<f32>(),
                    cached.clone().into_scalar::<f32>(),
                );
                assert!(
                    (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                    "{loss:?} packed {packed}: {a} vs {b}"
                );
                let (ga, gb) = (
                    Grads::from_backward(&online, &student),
                    Grads::from_backward(&cached, &student),
                );
                assert_eq!(ga.len(), gb.len());
                let (na, nb) = (ga.norm().unwrap(), gb.norm().unwrap());
                assert!(
                    (na - nb).abs() <= 1e-5 * na.max(1.0),
                    "{loss:?}: grad norm {na} vs {nb}"
                );
            }
        }
    }
}

#[test]
fn the_cache_round_trips_and_refuses_what_it_was_not_built_for() {
    let data = examples(8);
    let d = distill(DistillLoss::ForwardKl);
    let cache =
        TeacherCache::build(&tiny(&Device::flex()), &data, &d, 4, 24, "llama-tiny").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/teacher_topk.safetensors");
    cache.save(&path).unwrap();
    let back = TeacherCache::load(&path).unwrap();
    assert_eq!(
        (
            back.top_k(),
            back.temperature(),
            back.vocab_size(),
            back.teacher()
        ),
        (16, 2.0, 768, "llama-tiny")
    );
    back.check(&data, &d, 768).unwrap();
    let device = Device::flex();
    for batch in batches(&data, true) {
        let (i1, l1) = cache.targets(&batch, &device).unwrap();
        let (i2, l2) = back.targets(&batch, &device).unwrap();
        assert_eq!(i1.to_data(), i2.to_data());
        assert_eq!(l1.to_data(), l2.to_data());
    }
    // Other data, other settings, another vocabulary: named errors.
    let e = back.check(&examples(9), &d, 768).unwrap_err();
    assert!(e.to_string().contains("other examples"), "{e}");
    let other_k = DistillConfig {
        top_k: Some(8),
        ..d
    };
    let e = back.check(&data, &other_k, 768).unwrap_err();
    assert!(e.to_string().contains("top-16"), "{e}");
    let e = back.check(&data, &d, 500).unwrap_err();
    assert!(e.to_string().contains("share the tokenizer"), "{e}");
    // The trainer checks before training.
    let trainer = Trainer::new(
        TrainConfig::default(),
        TuneMode::Full,
        dir.path().join("r"),
        "t",
    )
    .with_teacher_cache(&back, d);
    let student = tiny(&Device::flex().autodiff());
    let e = trainer.run(student, &examples(5), None, false).unwrap_err();
    assert!(e.to_string().contains("other examples"), "{e}");
    // The whole vocabulary cannot be cached.
    let all = DistillConfig { top_k: None, ..d };
    assert!(TeacherCache::build(&tiny(&Device::flex()), &data, &all, 4, 24, "t").is_err());
}

#[test]
fn distilling_from_the_cache_follows_the_online_curve() {
    let data = examples(12);
    let d = distill(DistillLoss::ForwardKl);
    let teacher = tiny(&Device::flex());
    let cache = TeacherCache::build(&teacher, &data, &d, 4, 24, "llama-tiny").unwrap();
    let config = TrainConfig {
        epochs: 3,
        batch_size: 4,
        seq_len: 24,
        lr: 5e-3,
        eval_every: None,
        save_every: None,
        ..TrainConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let curve = |trainer: Trainer| {
        let student = tiny(&Device::flex().autodiff()).keep_layers(&[0]).unwrap();
        let (_, report) = trainer.run(student, &data, None, false).unwrap();
        let text = std::fs::read_to_string(report.output.join("../metrics.jsonl")).unwrap();
        text.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect::<Vec<f64>>()
    };
    let online = curve(
        Trainer::new(
            config.clone(),
            TuneMode::Full,
            dir.path().join("online"),
            "t",
        )
        .with_teacher(&teacher, d),
    );
    let cached = curve(
        Trainer::new(config, TuneMode::Full, dir.path().join("cached"), "t")
            .with_teacher_cache(&cache, d),
    );
    assert_eq!(online.len(), cached.len());
    assert!(online.last() < online.first(), "{online:?}");
    for (s, (a, b)) in online.iter().zip(&cached).enumerate() {
        assert!((a - b).abs() <= 1e-5, "step {s}: online {a}, cached {b}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Truncations and byte flips of a cache file are errors, never panics.
    #[test]
    fn a_damaged_cache_is_an_error_not_a_panic(cut in 0usize..4000, flips in proptest::collection::vec((0usize..4000, any::<u8>()), 0..4)) {
        let bytes = damaged_source();
        let mut b = bytes[..cut.min(bytes.len())].to_vec();
        for (at, v) in flips {
            if !b.is_empty() {
                let i = at % b.len();
                b[i] ^= v;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        std::fs::write(&path, &b).unwrap();
        let _ = TeacherCache::load(&path);
    }
}

fn damaged_source() -> Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES
        .get_or_init(|| {
            let d = distill(DistillLoss::ForwardKl);
            let cache =
                TeacherCache::build(&tiny(&Device::flex()), &examples(3), &d, 4, 24, "t").unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c.safetensors");
            cache.save(&path).unwrap();
            std::fs::read(path).unwrap()
        })
        .clone()
}

#[test]
fn a_cache_built_through_the_step_api_is_the_cache_of_the_decoder() {
    let data = examples(10);
    let d = distill(DistillLoss::ForwardKl);
    let direct =
        TeacherCache::build(&tiny(&Device::flex()), &data, &d, 4, 24, "llama-tiny").unwrap();
    // The same decoder behind the batched step API, three examples per step.
    let stepped_model = slm_core::step::PerSequence::new(tiny(&Device::flex()), 16, 64);
    let stepped = TeacherCache::build_stepped(&stepped_model, &data, &d, 3, "llama-tiny").unwrap();
    assert_eq!(stepped.examples(), direct.examples());
    assert_eq!(stepped.positions(), direct.positions());
    stepped.check(&data, &d, 768).unwrap();
    // Every sequence went back to the pool.
    let kv = slm_core::step::BatchedLm::kv_usage(&stepped_model);
    assert_eq!(kv.free_blocks, kv.total_blocks);
    let device = Device::flex();
    for batch in batches(&data, false) {
        let (i1, l1) = direct.targets(&batch, &device).unwrap();
        let (i2, l2) = stepped.targets(&batch, &device).unwrap();
        assert_eq!(i1.to_data(), i2.to_data());
        let (l1, l2) = (
            l1.into_data().try_to_vec::<f32>().unwrap(),
            l2.into_data().try_to_vec::<f32>().unwrap(),
        );
        for (a, b) in l1.iter().zip(&l2) {
            assert!((a - b).abs() <= 1e-4, "{a} vs {b}");
        }
    }
    assert!(matches!(
        TeacherCache::build_stepped(&stepped_model, &[], &d, 3, "t"),
        Err(slm_train::Error::InvalidBatch(_))
    ));
}
