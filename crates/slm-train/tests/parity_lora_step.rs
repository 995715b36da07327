//! One LoRA training step against peft + PyTorch (fixtures/lora/train_step): the loss, every
//! LoRA gradient at step 0, the losses of 3 AdamW steps and the factors after them.

mod common;

use burn::prelude::*;
use common::*;
use slm_core::peft::load_adapter;
use slm_core::prelude::*;
use slm_train::{Grads, batch_logits, causal_lm_loss};

#[test]
fn lora_step_matches_peft_and_torch() {
    let spec = json("lora/train_step/train_step.json");
    let device = Device::flex().autodiff();
    let base = Checkpoint::open(&fixture("models/llama-tiny"))
        .unwrap()
        .load_decoder(&device)
        .unwrap();
    let (mut model, _) = load_adapter(base, &fixture("lora/adapter_a")).unwrap();
    let batch = spec_batch(&spec);
    let mut optim = torch_adamw();
    let want_losses = f64s(&spec["loss_per_step"]);
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
