//! PEFT LoRA adapters against peft 0.21 (fixtures/lora): adapter logits, rsLoRA on every
//! projection, merged weights and logits, and a save/load round trip that keeps peft's files.

mod common;

use common::*;
use slm_core::peft::{ADAPTER_WEIGHTS, LoraConfig, TargetModules, load_adapter, save_adapter};
use slm_core::prelude::*;

fn base() -> Decoder {
    Checkpoint::open(&fixture("models/llama-tiny"))
        .unwrap()
        .load_decoder(&Device::flex())
        .unwrap()
}

#[test]
fn peft_adapter_logits_match() {
    for (name, r, scaling, adapted) in [
        ("adapter_a", 8, 2.0, 4),
        ("adapter_rslora_all", 16, 4.0, 14),
    ] {
        let (model, config) = load_adapter(base(), &fixture(&format!("lora/{name}"))).unwrap();
        assert_eq!((config.r, config.scaling()), (r, scaling), "{name}");
        let with = model
            .projections()
            .iter()
            .filter(|(_, p)| p.lora().is_some())
            .count();
        assert_eq!(with, adapted, "{name}: adapted projections");
        let worst = padded_batch_diff(&model, &format!("lora/{name}"));
        eprintln!("{name}: logits max abs diff vs peft {worst:e}");
        assert!(worst <= TINY_LOGITS_ATOL, "{name}: max abs diff {worst}");
        // The adapter really changes the model (by ~2 and ~4.4 logits, adapters.json).
        assert!(padded_batch_diff(&base(), &format!("lora/{name}")) > 1.0);
    }
}

#[test]
fn merge_matches_peft_merge_and_unload() {
    let (model, _) = load_adapter(base(), &fixture("lora/adapter_a")).unwrap();
    let merged = model.merge_adapters();
    assert!(merged.projections().iter().all(|(_, p)| p.lora().is_none()));
    let worst = padded_batch_diff(&merged, "lora/merged_a");
    eprintln!("merged_a: logits max abs diff vs peft {worst:e}");
    assert!(
        worst <= TINY_LOGITS_ATOL,
        "merged logits: max abs diff {worst}"
    );
    // Every merged tensor equals peft's merged checkpoint.
    let file = fixture("lora/merged_a/model.safetensors");
    for (name, shape, values) in merged.named_parameters().unwrap() {
        let (want_shape, want) = read_tensor(&file, &name);
        assert_eq!(shape, want_shape, "{name}");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let d = max_abs_diff(&values, &want);
        assert!(
            d / scale <= 1e-5,
            "{name}: max abs diff {d} (scale {scale})"
        );
    }
}

#[test]
fn save_then_load_keeps_peft_names_shapes_and_values() {
    let src = fixture("lora/adapter_a");
    let (model, config) = load_adapter(base(), &src).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_adapter(&model, &config, "models/llama-tiny", dir.path()).unwrap();
    let ours = dir.path().join(ADAPTER_WEIGHTS);
    let theirs = src.join(ADAPTER_WEIGHTS);
    let names = |p: &std::path::Path| {
        let w = slm_core::weights::SafetensorsWeights::open(p).unwrap();
        let mut n = w.tensor_names();
        n.sort();
        n
    };
    assert_eq!(names(&ours), names(&theirs));
    for name in names(&theirs) {
        assert_eq!(
            read_tensor(&ours, &name),
            read_tensor(&theirs, &name),
            "{name}"
        );
    }
    let (again, read) = load_adapter(base(), dir.path()).unwrap();
    assert_eq!(read, config);
    assert_eq!(
        padded_batch_diff(&again, "lora/adapter_a"),
        padded_batch_diff(&model, "lora/adapter_a")
    );
}

#[test]
fn adapters_that_do_not_fit_are_named_errors() {
    let src = fixture("lora/adapter_a");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join(ADAPTER_WEIGHTS), dir.path().join(ADAPTER_WEIGHTS)).unwrap();
    let config = std::fs::read_to_string(src.join("adapter_config.json")).unwrap();
    let with = |text: String| {
        std::fs::write(dir.path().join("adapter_config.json"), text).unwrap();
        load_adapter(base(), dir.path()).map(|_| ()).unwrap_err()
    };
    // A rank that disagrees with the factors.
    let e = with(config.replace("\"r\": 8", "\"r\": 4"));
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    // Targets without factors in the file.
    let e = with(config.replace("\"v_proj\"", "\"k_proj\""));
    assert!(matches!(e, Error::MissingTensor { .. }), "{e}");
    // Factors the config does not explain.
    let e = with(
        config
            .replace("\"v_proj\"\n", "\"v_proj\", \"nope\"\n")
            .replace("\"q_proj\",", ""),
    );
    assert!(matches!(e, Error::UnexpectedTensors { .. }), "{e}");
    // DoRA without its magnitude vectors in the file.
    let e = with(config.replace("\"use_dora\": false", "\"use_dora\": true"));
    assert!(
        matches!(&e, Error::MissingTensor { name, .. } if name.ends_with("lora_magnitude_vector")),
        "{e}"
    );
    // Settings that change the math are refused by name, never ignored.
    let e = with(config.replace("\"rank_pattern\": {}", "\"rank_pattern\": {\"q_proj\": 4}"));
    assert!(e.to_string().contains("rank_pattern"), "{e}");
    let e = with(config.replace("\"lora_alpha\": 16", "\"lora_alpha\": \"x\""));
    assert!(e.to_string().contains("lora_alpha"), "{e}");
}

#[test]
fn fresh_adapters_leave_the_model_unchanged_and_match_targets() {
    let lora = LoraConfig::new(4, 8.0).with_rslora(true);
    let model = lora.init(base(), 7).unwrap();
    assert_eq!(lora.scaling(), 4.0);
    let adapted = model
        .projections()
        .iter()
        .filter(|(_, p)| p.lora().is_some())
        .count();
    assert_eq!(adapted, 14, "7 projections x 2 layers, not the LM head");
    let d = padded_batch_diff(&model, "models/llama-tiny");
    assert!(d <= TINY_LOGITS_ATOL, "B = 0 keeps the base model: {d}");
    let regex = LoraConfig {
        target_modules: TargetModules::Regex(r".*\.layers\.1\..*(q|v)_proj".into()),
        ..lora.clone()
    };
    assert!(regex.matches("model.layers.1.self_attn.q_proj"));
    assert!(!regex.matches("model.layers.0.self_attn.q_proj"));
    let none = lora.clone().with_targets(&["qkv"]);
    assert!(matches!(none.init(base(), 0), Err(Error::InvalidConfig(_))));
}

/// `tests/data/modules_to_save/<model>` (made by the script there with peft 0.21).
fn saved_modules_dir(model: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/modules_to_save")
        .join(model)
}

fn logits_on_step_batch(model: &Decoder) -> Vec<f32> {
    let batch = TokenBatch {
        ids: train_step_rows(),
        attention_mask: None,
        scope: LogitsScope::All,
    };
    model
        .forward(&batch, &mut model.new_cache())
        .unwrap()
        .values
}

#[test]
fn modules_to_save_load_save_and_merge_as_peft_does() {
    for name in ["llama-tiny", "smollm-tiny"] {
        let open = || {
            Checkpoint::open(&fixture(&format!("models/{name}")))
                .unwrap()
                .load_decoder(&Device::flex())
                .unwrap()
        };
        let dir = saved_modules_dir(name);
        let (model, config) = load_adapter(open(), &dir).unwrap();
        assert_eq!(config.modules_to_save, vec!["lm_head", "norm"]);
        // peft's suffix rule: `norm` is the final norm and every *_layernorm.
        for module in [
            "model.norm",
            "model.layers.1.post_attention_layernorm",
            "lm_head",
        ] {
            assert!(config.saves(&format!("{module}.weight")), "{module}");
        }
        assert!(!config.saves("model.embed_tokens.weight"));
        assert!(
            !model.config().tie_word_embeddings,
            "{name}: the head is its own"
        );
        let file = dir.join("logits.safetensors");
        let (_, want) = read_tensor(&file, "logits");
        let d = max_abs_diff(&logits_on_step_batch(&model), &want);
        eprintln!("{name}: modules_to_save adapter logits vs peft {d:e}");
        assert!(d <= TINY_LOGITS_ATOL, "{name}: {d}");
        // Without the saved modules the logits differ: they were really read.
        let plain = LoraConfig::new(4, 8.0).with_targets(&["q_proj", "v_proj"]);
        assert!(
            max_abs_diff(
                &logits_on_step_batch(&plain.init(open(), 0).unwrap()),
                &want
            ) > 0.01
        );

        // Saved again, the file holds what peft wrote.
        let out = tempfile::tempdir().unwrap();
        save_adapter(&model, &config, name, out.path()).unwrap();
        let original = dir.join(ADAPTER_WEIGHTS);
        let written = out.path().join(ADAPTER_WEIGHTS);
        let names = |p: &std::path::Path| {
            let bytes = std::fs::read(p).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let mut n: Vec<String> = st.names().into_iter().map(String::from).collect();
            n.sort();
            n
        };
        assert_eq!(names(&written), names(&original), "{name}");
        for key in names(&original) {
            let (_, a) = read_tensor(&original, &key);
            let (_, b) = read_tensor(&written, &key);
            assert!(max_abs_diff(&a, &b) <= 1e-7, "{name}: {key}");
        }

        let (_, want) = read_tensor(&file, "merged_logits");
        let merged = model.merge_adapters();
        let d = max_abs_diff(&logits_on_step_batch(&merged), &want);
        eprintln!("{name}: merged vs peft merge_and_unload {d:e}");
        assert!(d <= TINY_LOGITS_ATOL, "{name} merged: {d}");
    }
}

#[test]
fn a_tied_head_in_modules_to_save_starts_as_the_embedding_and_trains_apart() {
    let base = || {
        Checkpoint::open(&fixture("models/smollm-tiny"))
            .unwrap()
            .load_decoder(&Device::flex())
            .unwrap()
    };
    assert!(base().config().tie_word_embeddings);
    let lora = LoraConfig::new(4, 8.0).with_modules_to_save(&["lm_head"]);
    let model = lora.init(base(), 1).unwrap();
    assert!(!model.config().tie_word_embeddings);
    // Unchanged outputs until it trains.
    let d = max_abs_diff(
        &logits_on_step_batch(&model),
        &logits_on_step_batch(&base()),
    );
    assert!(d <= 1e-5, "{d}");
    let bad = LoraConfig::new(4, 8.0).with_modules_to_save(&["nothing_here"]);
    let e = bad.init(base(), 1).unwrap_err();
    assert!(e.to_string().contains("match no module"), "{e}");
    let overlap = LoraConfig::new(4, 8.0).with_modules_to_save(&["mlp"]);
    let e = overlap.init(base(), 1).unwrap_err();
    assert!(e.to_string().contains("both a LoRA target"), "{e}");
}
