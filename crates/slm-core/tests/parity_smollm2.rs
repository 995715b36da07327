//! SmolLM2-135M-Instruct from its Q4_1 GGUF against transformers (which dequantizes the same
//! file): top-20 logits at every prompt position, the full last-position logits, and greedy
//! continuations. Runs when the GGUF is present (scripts/fetch-smollm2.sh); CI requires it.

mod common;

use common::*;
use slm_core::prelude::*;
use slm_core::weights::SafetensorsWeights;

fn check_prompt(model: &Decoder, case: &str) {
    let fx = json(&format!("smollm2/{case}.json"));
    let prompt = ids(&fx["ids"]);
    let logits = model
        .forward(
            &TokenBatch::single(prompt.clone(), LogitsScope::All),
            &mut model.new_cache(),
        )
        .unwrap();
    let mut worst = 0f32;
    for (t, top) in fx["top20_per_position"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let row = logits.at(0, t);
        let top = top.as_array().unwrap();
        for pair in top {
            let (id, want) = (
                pair[0].as_u64().unwrap() as usize,
                pair[1].as_f64().unwrap() as f32,
            );
            worst = worst.max((row[id] - want).abs());
        }
        let best = argmax(row);
        assert_eq!(
            best as u64,
            top[0][0].as_u64().unwrap(),
            "{case}: top-1 at position {t}"
        );
    }
    let (_, last) = read_tensor(
        &fixture(&format!("smollm2/{case}.last_logits.safetensors")),
        "last_logits",
    );
    let last_diff = max_abs_diff(logits.last(0), &last);
    eprintln!("{case}: top-20 max abs diff {worst:.3e}, last-position logits {last_diff:.3e}");
    assert!(worst <= SMOLLM2_LOGITS_ATOL, "{case}: top-20 diff {worst}");
    assert!(
        last_diff <= SMOLLM2_LOGITS_ATOL,
        "{case}: last logits diff {last_diff}"
    );

    // Greedy continuation through the KV cache, no EOS stop.
    let want = ids(&fx["greedy"]["new_ids"]);
    let (got, _) = greedy(model, &prompt, want.len());
    assert_eq!(got, want, "{case}: greedy continuation");
}

#[test]
fn smollm2_gguf_matches_transformers() {
    let Some(path) = smollm2_gguf() else { return };
    let ckpt = Checkpoint::open(&path).unwrap();
    let expected = &json("smollm2/source.json")["config"];
    let c = &ckpt.config;
    assert_eq!(
        c.hidden_size as u64,
        expected["hidden_size"].as_u64().unwrap()
    );
    assert_eq!(c.num_hidden_layers, 30);
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim),
        (9, 3, 64)
    );
    assert_eq!(c.vocab_size, 49152);
    assert!(c.tie_word_embeddings);
    assert_eq!(c.rms_norm_eps, expected["rms_norm_eps"].as_f64().unwrap());
    let model = ckpt.load_decoder(&Device::flex()).unwrap();
    check_prompt(&model, "story");
    check_prompt(&model, "chat");
}

#[test]
fn smollm2_converts_to_an_identical_hf_dir() {
    let Some(path) = smollm2_gguf() else { return };
    let ckpt = Checkpoint::open(&path).unwrap();
    let model = ckpt.load_decoder(&Device::flex()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_hf_dir(&model, ckpt.tokenizer.as_ref(), dir.path(), SaveDtype::F32).unwrap();
    let written = SafetensorsWeights::open(dir.path()).unwrap();
    // The GGUF's dequantized tensors, under transformers' names, bit for bit.
    assert_eq!(ckpt.weights.tensor_names(), written.tensor_names());
    for name in written.tensor_names() {
        assert!(
            ckpt.weights.read_f32(&name).unwrap() == written.read_f32(&name).unwrap(),
            "{name}"
        );
    }
    let back = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(back.config.hidden_size, 576);
    // tokenizer.json + chat template written as transformers reads them.
    let tok = back.tokenizer.unwrap();
    let chat = json("smollm2/chat.json");
    let messages: Vec<ChatMessage> = serde_json::from_value(chat["messages"].clone()).unwrap();
    assert_eq!(
        tok.apply_chat_template(&messages, true).unwrap(),
        chat["rendered"].as_str().unwrap()
    );
    assert_eq!(
        tok.encode(chat["rendered"].as_str().unwrap(), false)
            .unwrap(),
        ids(&chat["ids"])
    );
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["eos_token"], "<|im_end|>");
    assert!(
        cfg["chat_template"]
            .as_str()
            .unwrap()
            .contains("<|im_start|>")
    );
    let generation: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("generation_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(generation["eos_token_id"], 2);
}
