//! Writing Hugging Face directories and reading them back.

mod common;

use common::*;
use slm_core::prelude::*;
use slm_core::weights::{SafetensorsWeights, StorageDtype};

/// Every tensor of `a` equals the tensor of the same name in `b` (names, shapes, values).
fn same_tensors(a: &dyn WeightSource, b: &dyn WeightSource, exact: bool) {
    assert_eq!(a.tensor_names(), b.tensor_names());
    for name in a.tensor_names() {
        let (ia, ib) = (a.tensor_info(&name).unwrap(), b.tensor_info(&name).unwrap());
        assert_eq!(ia.shape, ib.shape, "{name}");
        let (va, vb) = (a.read_f32(&name).unwrap(), b.read_f32(&name).unwrap());
        if exact {
            assert!(va == vb, "{name} differs");
        } else {
            assert!(max_abs_diff(&va, &vb) < 1e-2, "{name}");
        }
    }
}

#[test]
fn every_architecture_round_trips_through_save_hf_dir() {
    for name in [
        "llama-tiny",
        "phi3-tiny",
        "qwen2-tiny",
        "smollm-tiny",
        "llama3-rope-tiny",
        "llama-tiny-sharded",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = Checkpoint::open(&fixture(&format!("models/{name}"))).unwrap();
        let model = ckpt.load_decoder(&Device::flex()).unwrap();
        save_hf_dir(&model, ckpt.tokenizer.as_ref(), dir.path(), SaveDtype::F32).unwrap();
        // Same names, shapes and values as transformers wrote (fused Phi-3 tensors included).
        let written = SafetensorsWeights::open(dir.path()).unwrap();
        same_tensors(ckpt.weights.as_ref(), &written, true);
        // The config resolves to the same model and the tokenizer files are complete.
        let back = Checkpoint::open(dir.path()).unwrap();
        assert_eq!(back.config, ckpt.config, "{name}");
        let tok = back.tokenizer.as_ref().unwrap();
        assert_eq!(
            tok.encode("The little robot", true).unwrap(),
            ckpt.tokenizer
                .as_ref()
                .unwrap()
                .encode("The little robot", true)
                .unwrap()
        );
        for f in [
            "config.json",
            "generation_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "model.safetensors",
        ] {
            assert!(dir.path().join(f).is_file(), "{name}: {f}");
        }
        assert!(
            !std::fs::read_dir(dir.path()).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp"))
        );
    }
}

#[test]
fn config_json_holds_what_transformers_needs() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = Checkpoint::open(&fixture("models/llama3-rope-tiny")).unwrap();
    let model = ckpt.load_decoder(&Device::flex()).unwrap();
    save_hf_dir(&model, ckpt.tokenizer.as_ref(), dir.path(), SaveDtype::BF16).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    let orig = json("models/llama3-rope-tiny/config.json");
    for key in [
        "architectures",
        "model_type",
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "rms_norm_eps",
        "rope_theta",
        "rope_scaling",
        "max_position_embeddings",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "hidden_act",
    ] {
        assert_eq!(cfg[key], orig[key], "{key}");
    }
    assert_eq!(cfg["torch_dtype"], "bfloat16");
    let written = SafetensorsWeights::open(dir.path()).unwrap();
    let info = written
        .tensor_info("model.layers.0.self_attn.q_proj.weight")
        .unwrap();
    assert_eq!(info.dtype, StorageDtype::BF16);
    // bf16 storage of f32 weights: within bf16 rounding of the originals.
    same_tensors(ckpt.weights.as_ref(), &written, false);
}

#[test]
fn bf16_checkpoint_reads_as_its_upcast_values() {
    let bf = Checkpoint::open(&fixture("models/llama-tiny-bf16")).unwrap();
    assert_eq!(bf.info().unwrap().dtype, "bfloat16");
    let dir = tempfile::tempdir().unwrap();
    let model = bf.load_decoder(&Device::flex()).unwrap();
    save_hf_dir(&model, None, dir.path(), SaveDtype::BF16).unwrap();
    // bf16 -> f32 -> bf16 is lossless.
    let written = SafetensorsWeights::open(dir.path()).unwrap();
    for name in bf.weights.tensor_names() {
        assert_eq!(
            bf.weights.read_f32(&name).unwrap(),
            written.read_f32(&name).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn f16_checkpoints_round_trip_within_half_precision() {
    let ckpt = Checkpoint::open(&fixture("models/qwen2-tiny")).unwrap();
    let model = ckpt.load_decoder(&Device::flex()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_hf_dir(&model, ckpt.tokenizer.as_ref(), dir.path(), SaveDtype::F16).unwrap();
    let back = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(back.info().unwrap().dtype, "float16");
    for name in ckpt.weights.tensor_names() {
        let (a, b) = (
            ckpt.weights.read_f32(&name).unwrap(),
            back.weights.read_f32(&name).unwrap(),
        );
        for (x, y) in a.iter().zip(&b) {
            // f16 keeps 11 significant bits: relative error <= 2^-11 for normal values.
            assert!(
                (x - y).abs() <= x.abs() * 4.9e-4 + 6e-8,
                "{name}: {x} vs {y}"
            );
        }
    }
    // The f16 model still loads and runs.
    let m16 = back.load_decoder(&Device::flex()).unwrap();
    let l = m16
        .forward(
            &TokenBatch::single(vec![0, 5, 9], LogitsScope::Last),
            &mut m16.new_cache(),
        )
        .unwrap();
    assert!(l.values.iter().all(|v| v.is_finite()));
}
