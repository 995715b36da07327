//! Multi-LoRA on the CPU fast path against peft 0.21: adapters applied unmerged per sequence,
//! sequences of different adapters (and of none) in one step, each getting peft's logits for
//! its adapter (fixtures/lora: LoRA on q/v, rsLoRA on every projection; `tests/data/
//! modules_to_save`: saved LM head and norms, on an untied and a tied model), through an HF dir
//! and through llama.cpp's GGUF (q/k rows in rotary order); and batch invariance: a sequence's
//! logits are bitwise the same alone and beside other adapters' sequences.

mod common;

use common::*;
use slm_core::fast::{FastDecoder, FastDecoderConfig};
use slm_core::prelude::*;
use slm_core::step::{AdapterId, BatchedLm, SeqChunk};

fn fast(path: &std::path::Path) -> FastDecoder {
    let ckpt = Checkpoint::open(path).unwrap();
    FastDecoderConfig {
        kv_budget_bytes: 64 << 20,
        ..Default::default()
    }
    .init(&ckpt.config, ckpt.weights.as_ref())
    .unwrap()
}

/// A fixture's rows as (real tokens, their expected logits), from its padded inputs.
fn cases(inputs: &str, logits: &std::path::Path) -> Vec<(Vec<u32>, Vec<f32>)> {
    let inputs = json(inputs);
    let (shape, expected) = read_tensor(logits, "logits");
    let rows = inputs["input_ids"].as_array().unwrap();
    let masks = inputs.get("attention_mask").and_then(|m| m.as_array());
    let (t, vocab) = (shape[1], shape[2]);
    rows.iter()
        .enumerate()
        .map(|(b, row)| {
            let all = ids(row);
            let mask = masks.map_or_else(|| vec![1; all.len()], |m| ids(&m[b]));
            let (mut tokens, mut want) = (Vec::new(), Vec::new());
            for (j, (&id, &m)) in all.iter().zip(&mask).enumerate() {
                if m == 1 {
                    tokens.push(id);
                    let at = (b * t + j) * vocab;
                    want.extend_from_slice(&expected[at..at + vocab]);
                }
            }
            (tokens, want)
        })
        .collect()
}

/// Runs every (adapter, tokens) in one step; all-position logits per case.
fn one_step(model: &FastDecoder, runs: &[(Option<AdapterId>, &[u32])]) -> Vec<Vec<f32>> {
    let seqs: Vec<_> = runs
        .iter()
        .map(|(a, _)| model.add_sequence_with(*a).unwrap())
        .collect();
    let chunks: Vec<SeqChunk<'_>> = seqs
        .iter()
        .zip(runs)
        .map(|(&seq, (_, tokens))| SeqChunk {
            seq,
            tokens,
            logits: Some(LogitsScope::All),
        })
        .collect();
    let out = model.step(&chunks).unwrap();
    let got = (0..runs.len()).map(|i| out.chunk(i).to_vec()).collect();
    seqs.into_iter().for_each(|s| model.release(s));
    got
}

#[test]
fn peft_adapters_and_the_base_share_one_step() {
    for source in ["models/llama-tiny", "quant/gguf/llama-tiny.f32.gguf"] {
        let mut model = fast(&fixture(source));
        let a = model.load_adapter("a", &fixture("lora/adapter_a")).unwrap();
        let all = model
            .load_adapter("all", &fixture("lora/adapter_rslora_all"))
            .unwrap();
        assert_eq!(model.adapters(), vec!["a".to_string(), "all".to_string()]);
        let base_logits = if source.ends_with(".gguf") {
            fixture("quant/gguf/llama-tiny.f32.logits.safetensors")
        } else {
            fixture("models/llama-tiny/expected/logits.safetensors")
        };
        let groups = [
            (
                None,
                cases("models/llama-tiny/expected/inputs.json", &base_logits),
            ),
            (
                Some(a),
                cases(
                    "lora/adapter_a/expected/inputs.json",
                    &fixture("lora/adapter_a/expected/logits.safetensors"),
                ),
            ),
            (
                Some(all),
                cases(
                    "lora/adapter_rslora_all/expected/inputs.json",
                    &fixture("lora/adapter_rslora_all/expected/logits.safetensors"),
                ),
            ),
        ];
        // Interleaved: base row 0, adapter a row 0, rslora row 0, base row 1, ...
        let mut runs = Vec::new();
        let mut want = Vec::new();
        for row in 0..groups[0].1.len() {
            for (adapter, cases) in &groups {
                runs.push((*adapter, &cases[row].0[..]));
                want.push((*adapter, &cases[row].1));
            }
        }
        let got = one_step(&model, &runs);
        for ((adapter, want), got) in want.iter().zip(&got) {
            let d = max_abs_diff(got, want);
            eprintln!("{source} {adapter:?}: max abs diff vs peft {d:.3e}");
            assert!(d <= TINY_LOGITS_ATOL, "{source} {adapter:?}: {d}");
        }
        // Batch invariance: each sequence alone gets bitwise what it got beside the others.
        for (run, together) in runs.iter().zip(&got) {
            assert_eq!(
                &one_step(&model, &[*run])[0],
                together,
                "{source} {:?}",
                run.0
            );
        }
        // Forks keep their adapter: a fork of an adapted prompt continues as peft does.
        let (tokens, expected) = &groups[1].1[0];
        let seq = model.add_sequence_with(Some(a)).unwrap();
        let head = tokens.len() / 2;
        let step = |seq, tokens: &[u32]| {
            let chunk = SeqChunk {
                seq,
                tokens,
                logits: Some(LogitsScope::All),
            };
            model.step(&[chunk]).unwrap().values
        };
        step(seq, &tokens[..head]);
        let child = model.fork(seq, head).unwrap();
        let tail = step(child, &tokens[head..]);
        let vocab = model.config().vocab_size;
        let d = max_abs_diff(&tail, &expected[head * vocab..]);
        assert!(
            d <= TINY_LOGITS_ATOL,
            "{source}: fork of an adapted sequence: {d}"
        );
        model.release(seq);
        model.release(child);
        assert_eq!(model.kv_usage().free_blocks, model.kv_usage().total_blocks);
    }
}

#[test]
fn saved_modules_apply_to_their_sequences_only() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/modules_to_save");
    let rows = train_step_rows();
    // The untied llama-tiny and the tied smollm-tiny (peft unties a saved `lm_head`).
    for name in ["llama-tiny", "smollm-tiny"] {
        let mut model = fast(&fixture(&format!("models/{name}")));
        let plain = fast(&fixture(&format!("models/{name}")));
        let saved = model.load_adapter("saved", &data.join(name)).unwrap();
        let (shape, want) = read_tensor(&data.join(name).join("logits.safetensors"), "logits");
        let mut runs = Vec::new();
        for row in &rows {
            runs.push((Some(saved), &row[..]));
            runs.push((None, &row[..]));
        }
        let got = one_step(&model, &runs);
        let per_row = shape[1] * shape[2];
        for (i, row) in rows.iter().enumerate() {
            let d = max_abs_diff(&got[2 * i], &want[i * per_row..(i + 1) * per_row]);
            eprintln!("{name} row {i}: modules_to_save vs peft {d:.3e}");
            assert!(d <= TINY_LOGITS_ATOL, "{name} row {i}: {d}");
            // The base sequence beside it is the plain model, bitwise.
            assert_eq!(
                got[2 * i + 1],
                one_step(&plain, &[(None, row)])[0],
                "{name}"
            );
        }
    }
}

#[test]
fn bad_adapters_are_typed_errors() {
    let mut model = fast(&fixture("models/llama-tiny"));
    let err = model.add_sequence_with(Some(AdapterId(0))).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    model.load_adapter("a", &fixture("lora/adapter_a")).unwrap();
    let err = model
        .load_adapter("a", &fixture("lora/adapter_rslora_all"))
        .unwrap_err();
    assert!(err.to_string().contains("already loaded"), "{err}");
    // A config whose rank does not fit its factors.
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("lora/adapter_a");
    let config = std::fs::read_to_string(src.join("adapter_config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    let mut lying = config.clone();
    lying["r"] = 4.into();
    std::fs::write(dir.path().join("adapter_config.json"), lying.to_string()).unwrap();
    std::fs::copy(
        src.join("adapter_model.safetensors"),
        dir.path().join("adapter_model.safetensors"),
    )
    .unwrap();
    let err = model.load_adapter("lying", dir.path()).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let err = model
        .load_adapter("missing", std::path::Path::new("/nonexistent"))
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}
