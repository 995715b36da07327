//! Model coverage against transformers: the rope and attention variants of
//! `tests/data/coverage/models` (tiny checkpoints saved by transformers, see its `generate.py`)
//! through the burn decoder and the CPU fast path, on the fixtures' padded batch and greedy run.

mod common;

use common::*;
use slm_core::fast::{FastDecoderConfig, Precision};
use slm_core::prelude::*;

/// Every variant: linear, dynamic NTK, YaRN and LongRoPE frequencies, partial rotary, and
/// sliding windows on every layer (Mistral) or from `max_window_layers` on (Qwen2).
const VARIANTS: [&str; 7] = [
    "llama-linear-tiny",
    "llama-dynamic-tiny",
    "qwen2-yarn-tiny",
    "phi3-longrope-tiny",
    "phi3-partial-tiny",
    "mistral-swa-tiny",
    "qwen2-swa-tiny",
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
    for name in VARIANTS {
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
fn variants_round_trip_through_config_json() {
    // What slm writes as config.json (for transformers and vLLM) resolves to the same config.
    for name in VARIANTS {
        let ckpt = Checkpoint::open(&fixture(&format!("coverage/models/{name}"))).unwrap();
        let back = ckpt.config.to_hf_json("float32").unwrap().to_string();
        let again = slm_core::config::hf::HfConfig::from_json_str(&back, name).unwrap();
        assert_eq!(again, ckpt.config, "{name}");
    }
}
