//! DoRA (peft's `use_dora=True`) against peft + PyTorch, with references made by
//! `tests/data/dora/make_dora.py` (no shared fixture covers DoRA): a peft DoRA adapter's logits
//! unmerged and merged, its loss, every gradient (A, B and the magnitude vectors) at step 0,
//! 3 AdamW steps, the parameters after them, and a save/load round trip in peft's format.
//! Tolerances as fixtures/README.md gives them for LoRA.

mod common;

use std::collections::HashMap;

use burn::tensor::Tensor;
use common::*;
use slm_core::model::LoraAdapter;
use slm_core::model::hf_names::parameter_names;
use slm_core::peft::{LoraConfig, load_adapter, save_adapter};
use slm_core::prelude::*;
use slm_train::{Grads, batch_logits, causal_lm_loss};

const LOGITS_ATOL: f32 = 1e-4;
const TENSOR_RTOL: f32 = 1e-4;
const LOSS_ATOL: f64 = 1e-5;

fn reference() -> serde_json::Value {
    let p = data("dora/reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn base(device: &Device) -> Decoder {
    Checkpoint::open(&fixture("models/llama-tiny"))
        .unwrap()
        .load_decoder(device)
        .unwrap()
}

fn logits_diff(model: &Decoder, spec: &serde_json::Value, key: &str) -> f32 {
    let ids = rows(&spec["input_ids"], |x| x.as_u64().unwrap() as u32);
    let batch = TokenBatch {
        ids,
        attention_mask: None,
        scope: LogitsScope::All,
    };
    let got = model.forward(&batch, &mut model.new_cache()).unwrap();
    let want = tensors_at(&data("dora/logits.safetensors"));
    let (shape, want) = &want[key];
    assert_eq!(shape, &vec![got.batch, got.positions, got.vocab]);
    max_abs_diff(&got.values, want)
}

/// Every trainable parameter of `model` by its peft key, with its values.
fn peft_params(model: &Decoder) -> HashMap<String, (burn::module::ParamId, Vec<f32>)> {
    let mut out = HashMap::new();
    for (name, proj) in model.projections() {
        let Some(lora) = proj.lora() else { continue };
        let (a, b) = lora.param_ids();
        let m = lora.magnitude_id().expect("a DoRA adapter has a magnitude");
        let key = |part: &str| format!("base_model.model.{name}.{part}");
        let v = |t: Tensor<2>| t.try_into_vec_as::<f32>().unwrap();
        out.insert(key("lora_A.weight"), (a, v(lora.lora_a())));
        out.insert(key("lora_B.weight"), (b, v(lora.lora_b())));
        let mag = lora.magnitude().unwrap().try_into_vec_as::<f32>().unwrap();
        out.insert(key("lora_magnitude_vector"), (m, mag));
    }
    out
}

/// The CPU fast path serves the DoRA adapter unmerged (gain `m / |W + s B A|` computed at
/// load) beside the base model in one step: peft's logits for each.
#[test]
fn fast_path_serves_the_dora_adapter_unmerged() {
    use slm_core::fast::FastDecoderConfig;
    use slm_core::step::{BatchedLm, SeqChunk};
    let spec = reference();
    let ckpt = Checkpoint::open(&fixture("models/llama-tiny")).unwrap();
    let mut fast = FastDecoderConfig::default()
        .init(&ckpt.config, ckpt.weights.as_ref())
        .unwrap();
    let dora = fast.load_adapter("dora", &data("dora/adapter")).unwrap();
    let ids = rows(&spec["input_ids"], |x| x.as_u64().unwrap() as u32);
    let want = tensors_at(&data("dora/logits.safetensors"));
    let (shape, want) = &want["logits"];
    let plain = base(&Device::flex());
    let mut chunks = Vec::new();
    for row in &ids {
        for adapter in [Some(dora), None] {
            chunks.push(SeqChunk {
                seq: fast.add_sequence_with(adapter).unwrap(),
                tokens: row,
                logits: Some(LogitsScope::All),
            });
        }
    }
    let out = fast.step(&chunks).unwrap();
    let per_row = shape[1] * shape[2];
    for (b, row) in ids.iter().enumerate() {
        let d = max_abs_diff(out.chunk(2 * b), &want[b * per_row..(b + 1) * per_row]);
        eprintln!("fast path DoRA row {b}: max abs diff vs peft {d:e}");
        assert!(d <= LOGITS_ATOL, "row {b}: {d}");
        let batch = TokenBatch::single(row.clone(), LogitsScope::All);
        let base_logits = plain.forward(&batch, &mut plain.new_cache()).unwrap();
        let d = max_abs_diff(out.chunk(2 * b + 1), &base_logits.values);
        assert!(d <= LOGITS_ATOL, "base row {b} beside DoRA: {d}");
    }
}

#[test]
fn peft_dora_adapter_logits_and_merge_match() {
    let spec = reference();
    let (model, config) = load_adapter(base(&Device::flex()), &data("dora/adapter")).unwrap();
    assert!(config.dora);
    let with = model
        .projections()
        .iter()
        .filter(|(_, p)| p.lora().is_some_and(|l| l.magnitude().is_some()))
        .count();
    assert_eq!(with, 6, "q, v and down of 2 layers carry DoRA");
    let d = logits_diff(&model, &spec, "logits");
    eprintln!("DoRA adapter logits: max abs diff vs peft {d:e}");
    assert!(d <= LOGITS_ATOL, "adapter logits: {d}");
    // The magnitude matters: the same factors as plain LoRA give other logits.
    let factors: HashMap<String, (Tensor<2>, Tensor<2>, f64)> = model
        .projections()
        .into_iter()
        .filter_map(|(name, p)| {
            let l = p.lora()?;
            Some((
                name,
                (l.lora_a().transpose(), l.lora_b().transpose(), l.scaling()),
            ))
        })
        .collect();
    let plain = base(&Device::flex())
        .map_projections(|name, p| {
            Ok::<_, slm_core::Error>(match factors.get(name) {
                Some((a, b, s)) => p.with_lora(LoraAdapter::new(a.clone(), b.clone(), *s, 0.0)),
                None => p,
            })
        })
        .unwrap();
    assert!(logits_diff(&plain, &spec, "logits") > 0.01);

    let merged = model.merge_adapters();
    let d = logits_diff(&merged, &spec, "merged_logits");
    eprintln!("DoRA merged logits: max abs diff vs peft merge_and_unload {d:e}");
    assert!(d <= LOGITS_ATOL, "merged logits: {d}");
}

#[test]
fn dora_training_steps_match_peft_and_torch() {
    let spec = reference();
    let device = Device::flex().autodiff();
    let (mut model, _) = load_adapter(base(&device), &data("dora/adapter")).unwrap();
    let batch = spec_batch(&spec);
    let mut optim = torch_adamw();
    let want_losses = f64s(&spec["loss_per_step"]);
    let want_grads = tensors_at(&data("dora/grads_step0.safetensors"));
    for (step, want) in want_losses.iter().enumerate() {
        let (loss, _) =
            causal_lm_loss(batch_logits(&model, &batch).unwrap(), &batch.labels).unwrap();
        let value = loss.clone().into_scalar::<f32>() as f64;
        eprintln!("step {step}: loss {value} (peft {want})");
        assert!((value - want).abs() <= LOSS_ATOL, "step {step}: {value}");
        let grads = Grads::from_backward(&loss, &model);
        if step == 0 {
            let params = peft_params(&model);
            assert_eq!(params.len(), want_grads.len(), "the same trainable set");
            assert_eq!(grads.len(), want_grads.len(), "only DoRA parameters train");
            let shapes: HashMap<_, _> = parameter_names(&model).into_iter().collect();
            for (key, (want_shape, want)) in &want_grads {
                let (id, _) = params.get(key).unwrap_or_else(|| panic!("{key} missing"));
                assert!(shapes.contains_key(id));
                let g = grads.get(*id).expect("a gradient").clone();
                // burn keeps A as [in, r] and B as [r, out]; peft the transposes.
                let g = match want_shape.as_slice() {
                    [r0, r1] => g.reshape([*r1, *r0]).transpose().try_into_vec_as::<f32>(),
                    _ => g.try_into_vec_as::<f32>(),
                }
                .unwrap();
                let d = rel_diff(&g, want);
                eprintln!("{key}: grad rel diff {d:e}");
                assert!(d <= TENSOR_RTOL, "{key}: gradient rel diff {d}");
            }
        }
        model = optim.step(1e-3, model, grads);
    }
    let (loss, _) = causal_lm_loss(batch_logits(&model, &batch).unwrap(), &batch.labels).unwrap();
    let after = loss.into_scalar::<f32>() as f64;
    let want = spec["loss_after_steps"].as_f64().unwrap();
    assert!((after - want).abs() <= LOSS_ATOL, "after 3 steps: {after}");
    let want_params = tensors_at(&data("dora/params_after.safetensors"));
    for (key, (_, got)) in peft_params(&model) {
        let d = rel_diff(&got, &want_params[&key].1);
        eprintln!("{key}: after 3 steps rel diff {d:e}");
        assert!(d <= TENSOR_RTOL, "{key}: after 3 steps rel diff {d}");
    }
}

#[test]
fn dora_adapters_save_as_peft_and_load_back() {
    let device = Device::flex();
    let lora = LoraConfig::new(4, 8.0)
        .with_targets(&["q_proj", "up_proj"])
        .with_dora(true);
    let fresh = lora.init(base(&device), 7).unwrap();
    // A fresh DoRA adapter leaves the model unchanged: m = |W|, B = 0.
    let spec = reference();
    let base_logits = logits_diff(&base(&device), &spec, "logits");
    assert!((logits_diff(&fresh, &spec, "logits") - base_logits).abs() < 1e-5);

    let (peft_model, _) = load_adapter(base(&device), &data("dora/adapter")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = LoraConfig::new(8, 16.0)
        .with_targets(&["q_proj", "v_proj", "down_proj"])
        .with_dora(true);
    save_adapter(
        &peft_model,
        &config,
        "fixtures/models/llama-tiny",
        dir.path(),
    )
    .unwrap();
    let written = tensors_at(&dir.path().join("adapter_model.safetensors"));
    let original = tensors_at(&data("dora/adapter/adapter_model.safetensors"));
    assert_eq!(written.len(), original.len());
    for (key, (shape, values)) in &original {
        let (s, v) = &written[key];
        assert_eq!((s, v), (shape, values), "{key} written as peft wrote it");
    }
    let text = std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap();
    assert!(text.contains("\"use_dora\": true"));
    let (again, read) = load_adapter(base(&device), dir.path()).unwrap();
    assert!(read.dora);
    assert!(logits_diff(&again, &spec, "logits") <= LOGITS_ATOL);
}
