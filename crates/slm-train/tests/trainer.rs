//! The training loop on the tiny fixture model: LoRA and full fine-tuning lower the loss,
//! `metrics.jsonl` and checkpoints are written, a resumed run continues the same loss curve,
//! and a NaN loss is a typed error naming the step.

mod common;

use common::*;
use slm_core::peft::LoraConfig;
use slm_core::prelude::*;
use slm_data::inputs::TokenizedExample;
use slm_train::{TrainConfig, Trainer, TuneMode};

fn base() -> Decoder {
    Checkpoint::open(&fixture("models/llama-tiny"))
        .unwrap()
        .load_decoder(&Device::flex().autodiff())
        .unwrap()
}

/// A task a tiny model can learn: after a fixed prompt, one of two answers.
fn examples(n: usize) -> Vec<TokenizedExample> {
    (0..n)
        .map(|i| {
            let mut ids = vec![0u32, 592, 366, 328, 672 + (i % 5) as u32];
            let answer = if i % 2 == 0 { [262u32, 260] } else { [432, 72] };
            ids.extend(answer);
            let mask = (0..ids.len()).map(|k| k >= 5).collect();
            TokenizedExample::new(format!("e{i}"), ids, mask).unwrap()
        })
        .collect()
}

fn config() -> TrainConfig {
    TrainConfig {
        epochs: 3,
        batch_size: 4,
        seq_len: 16,
        lr: 5e-3,
        warmup: 0.1,
        save_every: Some(2),
        save_total_limit: 10,
        eval_every: Some(3),
        ..TrainConfig::default()
    }
}

fn losses(path: &std::path::Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("loss").is_some())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

#[test]
fn lora_training_lowers_the_loss_and_resumes_on_the_same_curve() {
    let dir = tempfile::tempdir().unwrap();
    let (train, eval) = (examples(24), examples(8));
    let lora = TuneMode::Lora(LoraConfig::new(4, 8.0));
    let trainer = Trainer::new(config(), lora.clone(), dir.path(), "llama-tiny");
    let (_, report) = trainer.run(base(), &train, Some(&eval), false).unwrap();
    assert_eq!(report.steps, 18, "3 epochs x 6 batches");
    assert_eq!(report.output_step, 18, "the last step's weights");
    let curve = losses(&dir.path().join("metrics.jsonl"));
    assert_eq!(curve.len(), 18);
    let (first, last) = (curve[0].1, curve[curve.len() - 1].1);
    assert!(last < first * 0.7, "loss {first} -> {last}");
    assert_eq!(report.evals.len(), 6);
    assert!(report.evals.last().unwrap().eval_loss < report.evals[0].eval_loss);
    assert!(dir.path().join("adapter/adapter_config.json").is_file());
    assert!(
        dir.path()
            .join("checkpoints/step-000010/optimizer.safetensors")
            .is_file()
    );

    // As if the process had died after step 10: later checkpoints never happened.
    let ckpts = dir.path().join("checkpoints");
    for step in [12, 14, 16, 18] {
        std::fs::remove_dir_all(ckpts.join(format!("step-{step:06}"))).unwrap();
    }
    std::fs::write(ckpts.join("latest"), "step-000010").unwrap();
    let (_, resumed) = trainer.run(base(), &train, Some(&eval), true).unwrap();
    assert_eq!((resumed.resumed_from, resumed.steps), (10, 18));
    let again = losses(&dir.path().join("metrics.jsonl"));
    assert_eq!(
        again.len(),
        18,
        "the interrupted tail is replaced, not appended"
    );
    for ((s, a), (_, b)) in curve.iter().zip(&again) {
        assert!(
            (a - b).abs() <= 1e-5,
            "step {s}: {a} then {b} after resuming"
        );
    }
}

#[test]
fn the_best_evaluated_weights_are_the_output_even_the_starting_ones() {
    let dir = tempfile::tempdir().unwrap();
    let settings = TrainConfig {
        epochs: 2,
        lr: 5e-3,
        eval_every: Some(2),
        save_every: None,
        load_best_at_end: true,
        ..config()
    };
    // Eval answers training never shows: every step makes them less likely.
    let eval: Vec<TokenizedExample> = (0..8u32)
        .map(|i| {
            let ids = vec![0u32, 592, 366, 328, 672 + i % 5, 500, 501];
            let mask = (0..ids.len()).map(|k| k >= 5).collect();
            TokenizedExample::new(format!("v{i}"), ids, mask).unwrap()
        })
        .collect();
    let trainer = Trainer::new(settings, TuneMode::Full, dir.path(), "llama-tiny");
    let (_, report) = trainer
        .run(base(), &examples(16), Some(&eval), false)
        .unwrap();
    assert_eq!(report.steps, 8);
    assert_eq!(report.evals[0].step, 0, "evaluated before the first step");
    let (first, last) = (
        report.evals[0].eval_loss,
        report.evals.last().unwrap().eval_loss,
    );
    assert!(last > first, "eval loss {first} -> {last}");
    assert_eq!((report.best_step, report.output_step), (Some(0), 0));
    // The saved model is the one it started from.
    let saved = Checkpoint::open(&report.output)
        .unwrap()
        .load_decoder(&Device::flex())
        .unwrap();
    let before = Checkpoint::open(&fixture("models/llama-tiny"))
        .unwrap()
        .load_decoder(&Device::flex())
        .unwrap();
    for (a, b) in saved
        .named_parameters()
        .unwrap()
        .iter()
        .zip(before.named_parameters().unwrap())
    {
        assert!(max_abs_diff(&a.2, &b.2) <= 1e-6, "{} changed", a.0);
    }

    // Where training helps, the output is the best step's (here the last: the loss falls).
    let dir = tempfile::tempdir().unwrap();
    let settings = TrainConfig {
        load_best_at_end: true,
        save_every: None,
        ..config()
    };
    let trainer = Trainer::new(settings, TuneMode::Full, dir.path(), "llama-tiny");
    let (_, report) = trainer
        .run(base(), &examples(16), Some(&examples(8)), false)
        .unwrap();
    let best = report
        .evals
        .iter()
        .min_by(|a, b| a.eval_loss.total_cmp(&b.eval_loss))
        .unwrap();
    assert_eq!(report.best_step, Some(best.step));
    assert_eq!(report.output_step, best.step);
    assert!(best.step > 0);
}

#[test]
fn full_fine_tuning_trains_every_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        epochs: 2,
        lr: 1e-3,
        eval_every: None,
        save_every: None,
        ..config()
    };
    let trainer = Trainer::new(config, TuneMode::Full, dir.path(), "llama-tiny");
    let (_, report) = trainer.run(base(), &examples(16), None, false).unwrap();
    let curve = losses(&dir.path().join("metrics.jsonl"));
    assert!(curve.last().unwrap().1 < curve[0].1, "{curve:?}");
    // The saved directory is a model slm (and transformers) loads.
    let saved = Checkpoint::open(&report.output).unwrap();
    let tuned = saved.load_decoder(&Device::flex()).unwrap();
    let before = Checkpoint::open(&fixture("models/llama-tiny"))
        .unwrap()
        .load_decoder(&Device::flex())
        .unwrap();
    let changed = tuned
        .named_parameters()
        .unwrap()
        .iter()
        .zip(before.named_parameters().unwrap())
        .filter(|(a, b)| max_abs_diff(&a.2, &b.2) > 0.0)
        .count();
    assert!(changed > 10, "only {changed} tensors changed");
}

#[test]
fn a_nan_loss_names_its_step() {
    // A model whose final norm holds a NaN: every loss is NaN.
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("models/llama-tiny");
    let model_dir = dir.path().join("broken");
    std::fs::create_dir_all(&model_dir).unwrap();
    std::fs::copy(src.join("config.json"), model_dir.join("config.json")).unwrap();
    let mut params = base().named_parameters().unwrap();
    params
        .iter_mut()
        .find(|p| p.0 == "model.norm.weight")
        .unwrap()
        .2[0] = f32::NAN;
    slm_core::checkpoint::write_safetensors(
        &model_dir.join("model.safetensors"),
        &params,
        slm_core::checkpoint::SaveDtype::F32,
    )
    .unwrap();
    let broken = Checkpoint::open(&model_dir)
        .unwrap()
        .load_decoder(&Device::flex().autodiff())
        .unwrap();
    let trainer = Trainer::new(
        config(),
        TuneMode::Lora(LoraConfig::new(2, 4.0)),
        dir.path().join("out"),
        "x",
    );
    match trainer.run(broken, &examples(8), None, false) {
        Err(slm_train::Error::NonFiniteLoss { step: 1, loss }) => assert!(loss.is_nan()),
        other => panic!("expected a NaN loss at step 1, got {other:?}"),
    }
}

#[test]
fn a_truncated_student_learns_from_its_teacher() {
    use slm_train::{DistillConfig, DistillLoss};
    let dir = tempfile::tempdir().unwrap();
    let teacher = Checkpoint::open(&fixture("models/llama-tiny"))
        .unwrap()
        .load_decoder(&Device::flex())
        .unwrap();
    let student = base().keep_layers(&[0]).unwrap();
    assert_eq!(student.config().num_hidden_layers, 1);
    let config = TrainConfig {
        epochs: 4,
        lr: 5e-3,
        eval_every: None,
        save_every: None,
        ..config()
    };
    for top_k in [None, Some(16)] {
        let distill = DistillConfig {
            loss: DistillLoss::ForwardKl,
            temperature: 2.0,
            alpha: 1.0,
            top_k,
        };
        let out = dir.path().join(format!("{top_k:?}"));
        let trainer = Trainer::new(config.clone(), TuneMode::Full, &out, "llama-tiny")
            .with_teacher(&teacher, distill);
        let (_, report) = trainer
            .run(student.clone(), &examples(16), None, false)
            .unwrap();
        let curve = losses(&out.join("metrics.jsonl"));
        let (first, last) = (curve[0].1, curve[curve.len() - 1].1);
        assert!(last < first * 0.8, "{top_k:?}: KL {first} -> {last}");
        let saved = Checkpoint::open(&report.output).unwrap();
        assert_eq!(saved.config.num_hidden_layers, 1);
    }
    // A student with another vocabulary is refused by name.
    let mut other = Checkpoint::open(&fixture("models/llama-tiny"))
        .unwrap()
        .config
        .clone();
    other.vocab_size = 500;
    other.bos_token_id = None;
    other.eos_token_ids.clear();
    other.pad_token_id = None;
    let wrong = other.init(&Device::flex().autodiff());
    let trainer = Trainer::new(config, TuneMode::Full, dir.path().join("x"), "t")
        .with_teacher(&teacher, DistillConfig::default());
    let e = trainer.run(wrong, &examples(4), None, false).unwrap_err();
    assert!(e.to_string().contains("share the tokenizer"), "{e}");
}

#[test]
fn max_steps_runs_past_one_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        epochs: 1,
        max_steps: Some(9),
        eval_every: None,
        save_every: None,
        ..config()
    };
    // 8 examples in batches of 4: 2 steps an epoch, so 9 steps take 5 epochs.
    let trainer = Trainer::new(
        config,
        TuneMode::Lora(LoraConfig::new(2, 4.0)),
        dir.path(),
        "t",
    );
    let (_, report) = trainer.run(base(), &examples(8), None, false).unwrap();
    assert_eq!(report.steps, 9);
}

#[test]
fn modules_to_save_train_beside_the_adapters_and_resume() {
    // SmolLM's head is tied to the embedding: modules_to_save gives it a copy that trains.
    let tiny = || {
        Checkpoint::open(&fixture("models/smollm-tiny"))
            .unwrap()
            .load_decoder(&Device::flex().autodiff())
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let lora = LoraConfig::new(4, 8.0)
        .with_targets(&["q_proj", "v_proj"])
        .with_modules_to_save(&["lm_head"]);
    let config = TrainConfig {
        eval_every: None,
        ..config()
    };
    let trainer = Trainer::new(config, TuneMode::Lora(lora), dir.path(), "smollm-tiny");
    let (_, report) = trainer.run(tiny(), &examples(16), None, false).unwrap();
    let saved = tensors_at(&report.output.join("adapter_model.safetensors"));
    let (shape, head) = &saved["base_model.model.lm_head.weight"];
    let embed = tensors_at(&fixture("models/smollm-tiny/model.safetensors"));
    let (_, embedding) = &embed["model.embed_tokens.weight"];
    assert_eq!(shape, &vec![768, 64]);
    let moved = max_abs_diff(head, embedding);
    assert!(moved > 1e-3, "the head did not train: {moved}");
    let opt = tensors_at(
        &dir.path()
            .join("checkpoints/step-000012/optimizer.safetensors"),
    );
    assert!(
        opt.contains_key("lm_head.weight.exp_avg"),
        "{:?}",
        opt.keys()
    );

    // Resumed from step 10, the curve (head included) is the same.
    let curve = losses(&dir.path().join("metrics.jsonl"));
    let ckpts = dir.path().join("checkpoints");
    std::fs::remove_dir_all(ckpts.join("step-000012")).unwrap();
    std::fs::write(ckpts.join("latest"), "step-000010").unwrap();
    let (_, resumed) = trainer.run(tiny(), &examples(16), None, true).unwrap();
    assert_eq!(resumed.resumed_from, 10);
    let again = losses(&dir.path().join("metrics.jsonl"));
    assert_eq!(curve.len(), again.len());
    for ((s, a), (_, b)) in curve.iter().zip(&again) {
        assert!((a - b).abs() <= 1e-5, "step {s}: {a} then {b}");
    }
}

/// Full fine-tuning of a pruned model keeps every pruned weight at exactly zero (the gradient
/// mask keeps AdamW's moments at zero too) while the other weights train.
#[test]
fn full_tuning_keeps_pruned_weights_zero() {
    let dir = tempfile::tempdir().unwrap();
    // Zero every other weight of the first layer's q_proj and all of layer 1's down_proj rows 0..8.
    let model = base();
    let params: Vec<_> = model
        .named_parameters()
        .unwrap()
        .into_iter()
        .map(|(n, s, mut v)| {
            if n == "model.layers.0.self_attn.q_proj.weight" {
                v.iter_mut().step_by(2).for_each(|x| *x = 0.0);
            }
            if n == "model.layers.1.mlp.down_proj.weight" {
                v[..8 * s[1]].iter_mut().for_each(|x| *x = 0.0);
            }
            (n, s, v)
        })
        .collect();
    let pruned =
        Decoder::from_named_parameters(model.config(), params.clone(), "pruned", &model.device())
            .unwrap();
    let config = TrainConfig {
        epochs: 1,
        lr: 1e-2,
        weight_decay: 0.1,
        eval_every: None,
        save_every: None,
        ..config()
    };
    let trainer = Trainer::new(config, TuneMode::Full, dir.path(), "llama-tiny");
    let (tuned, report) = trainer.run(pruned, &examples(8), None, false).unwrap();
    assert_eq!(report.kept_zeros, 64 * 64 / 2 + 8 * 128);
    for ((name, _, after), (_, _, before)) in tuned.named_parameters().unwrap().iter().zip(&params)
    {
        if name.ends_with("q_proj.weight") || name.ends_with("down_proj.weight") {
            let zeros_kept = before
                .iter()
                .zip(after)
                .filter(|(b, _)| **b == 0.0)
                .all(|(_, a)| *a == 0.0);
            assert!(zeros_kept, "{name}: a pruned weight moved");
            assert!(max_abs_diff(before, after) > 0.0, "{name} did not train");
        }
    }
}
