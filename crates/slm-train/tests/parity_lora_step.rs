//! One LoRA training step against peft + PyTorch (fixtures/lora/train_step): the loss, every
//! LoRA gradient at step 0, the losses of 3 AdamW steps and the factors after them.

mod common;

use burn::prelude::*;
use common::*;
use slm_core::peft::load_adapter;
use slm_core::prelude::*;
use slm_data::inputs::Batch;
use slm_train::{AdamWConfig, Grads, TensorAdamW, batch_logits, causal_lm_loss};

fn rows<T: Copy>(v: &serde_json::Value, f: impl Fn(&serde_json::Value) -> T) -> Vec<Vec<T>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(&f).collect())
        .collect()
}

fn fixture_batch(spec: &serde_json::Value) -> Batch {
    let input_ids = rows(&spec["input_ids"], |x| x.as_u64().unwrap() as u32);
    let labels = rows(&spec["labels"], |x| x.as_i64().unwrap());
    let t = input_ids[0].len();
    Batch {
        attention_mask: vec![vec![true; t]; input_ids.len()],
        position_ids: vec![(0..t as u32).collect(); input_ids.len()],
        segment_ids: vec![vec![1; t]; input_ids.len()],
        example_indices: (0..input_ids.len()).map(|i| vec![i]).collect(),
        input_ids,
        labels,
    }
}

fn rel_diff(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
        / scale
}

#[test]
fn lora_step_matches_peft_and_torch() {
    let spec = json("lora/train_step/train_step.json");
    let device = Device::flex().autodiff();
    let base = Checkpoint::open(&fixture("models/llama-tiny"))
        .unwrap()
        .load_decoder(&device)
        .unwrap();
    let (mut model, _) = load_adapter(base, &fixture("lora/adapter_a")).unwrap();
    let batch = fixture_batch(&spec);
    let mut optim = TensorAdamW::new(AdamWConfig {
        lr: 1e-3,
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: 0.0,
    })
    .unwrap();
    let want_losses: Vec<f64> = spec["loss_per_step"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let want_grads = tensors("lora/train_step/grads_step0.safetensors");
    for (step, want) in want_losses.iter().enumerate() {
        let (loss, n) =
            causal_lm_loss(batch_logits(&model, &batch).unwrap(), &batch.labels).unwrap();
        let shifted: usize = batch
            .labels
            .iter()
            .map(|r| r[1..].iter().filter(|&&l| l != -100).count())
            .sum();
        assert_eq!(n, shifted, "targets after the shift");
        let value = loss.clone().into_scalar::<f32>() as f64;
        eprintln!(
            "step {step}: loss {value} (peft {want}, diff {:e})",
            (value - want).abs()
        );
        assert!(
            (value - want).abs() <= 1e-5,
            "step {step}: loss {value} vs {want}"
        );
        let grads = Grads::from_backward(&loss, &model);
        if step == 0 {
            let mut checked = 0;
            for (name, proj) in model.projections() {
                let Some(lora) = proj.lora() else { continue };
                let (a, b) = lora.param_ids();
                for (id, factor) in [(a, "lora_A"), (b, "lora_B")] {
                    let g = grads.get(id).expect("a LoRA factor has a gradient");
                    let [d0, d1] = if factor == "lora_A" {
                        [proj.dims()[0], lora.rank()]
                    } else {
                        [lora.rank(), proj.dims()[1]]
                    };
                    let g = g
                        .clone()
                        .reshape([d0, d1])
                        .transpose()
                        .try_into_vec_as::<f32>()
                        .unwrap();
                    let key = format!("base_model.model.{name}.{factor}.weight");
                    let (_, want) = &want_grads[&key];
                    let d = rel_diff(&g, want);
                    eprintln!("{key}: grad rel diff {d:e}");
                    assert!(d <= 1e-4, "{key}: gradient rel diff {d}");
                    checked += 1;
                }
            }
            assert_eq!(checked, 8, "q and v of 2 layers, A and B");
            // The base is frozen: no gradient for it.
            assert_eq!(grads.len(), 8, "only LoRA factors get gradients");
        }
        model = optim.step(1e-3, model, grads);
    }
    let (loss, _) = causal_lm_loss(batch_logits(&model, &batch).unwrap(), &batch.labels).unwrap();
    let after = loss.into_scalar::<f32>() as f64;
    let want = spec["loss_after_steps"].as_f64().unwrap();
    assert!(
        (after - want).abs() <= 1e-5,
        "after 3 steps: {after} vs {want}"
    );
    let want_params = tensors("lora/train_step/lora_after_steps.safetensors");
    for (name, proj) in model.projections() {
        let Some(lora) = proj.lora() else { continue };
        for (t, factor) in [(lora.lora_a(), "lora_A"), (lora.lora_b(), "lora_B")] {
            let key = format!("base_model.model.{name}.{factor}.weight");
            let (_, want) = &want_params[&key];
            let d = rel_diff(&t.try_into_vec_as::<f32>().unwrap(), want);
            eprintln!("{key}: after 3 steps rel diff {d:e}");
            assert!(d <= 1e-4, "{key}: after 3 steps rel diff {d}");
        }
    }
}
