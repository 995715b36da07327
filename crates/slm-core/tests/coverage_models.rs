//! Model coverage against transformers: the rope and attention variants of
//! `tests/data/coverage/models` (tiny checkpoints saved by transformers, see its `generate.py`)
//! through the burn decoder and the CPU fast path, on the fixtures' padded batch and greedy run.

mod common;

use common::*;
use slm_core::fast::{FastDecoderConfig, Precision};
use slm_core::prelude::*;

/// Variants both decoders run: linear position interpolation, Mistral's sliding window.
const RUNNABLE: [&str; 2] = ["llama-linear-tiny", "mistral-swa-tiny"];

/// Variants the config layer reads but the decoders do not apply yet: a typed refusal, never
/// silently different logits.
const REFUSED: [(&str, &str); 5] = [
    ("llama-dynamic-tiny", "dynamic"),
    ("qwen2-yarn-tiny", "yarn"),
    ("phi3-longrope-tiny", "longrope"),
    ("phi3-partial-tiny", "0.75"),
    ("qwen2-swa-tiny", "max_window_layers = Some(1)"),
];

fn check<M: CausalLm>(model: &M, name: &str, what: &str) {
    let dir = format!("coverage/models/{name}");
    let worst = padded_batch_diff(model, &dir);
    assert!(
        worst <= TINY_LOGITS_ATOL,
        "{name} ({what}): batch diff {worst}"
    );
    let g = json(&format!("{dir}/expected/generate.json"));
    let want = ids(&g["new_ids"]);
    let (got, steps) = greedy(model, &ids(&g["prompt_ids"]), want.len());
    assert_eq!(got, want, "{name} ({what}): greedy ids");
    let (shape, expected) = read_tensor(
        &fixture(&format!("{dir}/expected/generate_logits.safetensors")),
        "step_logits",
    );
    for (k, row) in steps.iter().enumerate() {
        let d = max_abs_diff(row, &expected[k * shape[1]..(k + 1) * shape[1]]);
        assert!(d <= TINY_LOGITS_ATOL, "{name} ({what}): step {k} diff {d}");
    }
    eprintln!("{name} ({what}): batch max abs diff {worst:.3e}");
}

#[test]
fn rope_and_window_variants_match_transformers_on_both_decoders() {
    for name in RUNNABLE {
        let ckpt = Checkpoint::open(&fixture(&format!("coverage/models/{name}"))).unwrap();
        check(&ckpt.load_decoder(&Device::flex()).unwrap(), name, "burn");
        let fast = FastDecoderConfig {
            precision: Precision::Quantized,
            kv_budget_bytes: 16 << 20,
            ..Default::default()
        }
        .init(&ckpt.config, ckpt.weights.as_ref())
        .unwrap();
        check(&fast, name, "fast");
    }
}

#[test]
fn variants_not_applied_yet_are_typed_refusals() {
    for (name, value) in REFUSED {
        let err = Checkpoint::open(&fixture(&format!("coverage/models/{name}"))).unwrap_err();
        match err {
            Error::Unsupported { value: v, .. } => assert_eq!(v, value, "{name}"),
            other => panic!("{name}: {other}"),
        }
    }
}

#[test]
fn runnable_variants_round_trip_through_config_json() {
    // What slm writes as config.json (for transformers and vLLM) resolves to the same config.
    for name in RUNNABLE {
        let ckpt = Checkpoint::open(&fixture(&format!("coverage/models/{name}"))).unwrap();
        let back = ckpt.config.to_hf_json("float32").unwrap().to_string();
        let again = slm_core::config::hf::HfConfig::from_json_str(&back, name).unwrap();
        assert_eq!(again, ckpt.config, "{name}");
    }
}
