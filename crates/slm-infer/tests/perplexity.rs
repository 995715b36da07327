//! Perplexity against transformers' logits: on fixtures/models/llama-tiny, one chunk of the
//! fixture's unpadded row scores what `-log_softmax` of transformers' logits (the fixture's
//! expected output) gives at the same positions, within the tiny-model logits tolerance.

mod common;

use common::fixture;
use slm_core::prelude::*;
use slm_infer::{PerplexityConfig, perplexity};

#[test]
fn one_chunk_scores_what_transformers_logits_give() {
    let inputs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("models/llama-tiny/expected/inputs.json")).unwrap(),
    )
    .unwrap();
    let row: Vec<u32> = inputs["input_ids"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let ctx = row.len();
    let bytes = std::fs::read(fixture("models/llama-tiny/expected/logits.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("logits").unwrap();
    let vocab = t.shape()[2];
    let logits: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // llama.cpp's method on one chunk: positions ctx/2 .. ctx-1 predict the token after them.
    let mut nll = Vec::new();
    for j in ctx / 2..ctx - 1 {
        let z = &logits[j * vocab..(j + 1) * vocab];
        let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max + z.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
        nll.push(lse - z[row[j + 1] as usize] as f64);
    }
    let mean = nll.iter().sum::<f64>() / nll.len() as f64;

    let model = Checkpoint::open(&fixture("models/llama-tiny"))
        .unwrap()
        .load_decoder(&Device::flex())
        .unwrap();
    // Two chunks' worth of tokens (llama.cpp's minimum), only the first scored.
    let tokens = [row.clone(), row.clone()].concat();
    let config = PerplexityConfig {
        ctx,
        max_chunks: Some(1),
    };
    let p = perplexity(&model, &tokens, Some(row[0]), &config, |_, _| {}).unwrap();
    assert_eq!((p.chunks, p.tokens), (1, nll.len()));
    eprintln!("mean NLL {} vs transformers {mean}", p.nll);
    assert!((p.nll - mean).abs() <= 1e-4, "{} vs {mean}", p.nll);
    assert!((p.ppl - mean.exp()).abs() <= 1e-3 * mean.exp());
    // Both chunks: the second is evaluated alone (fresh cache), so it scores the same tokens
    // with the same context and the mean is unchanged.
    let both = PerplexityConfig {
        ctx,
        max_chunks: None,
    };
    let p2 = perplexity(&model, &tokens, Some(row[0]), &both, |_, _| {}).unwrap();
    assert_eq!(p2.chunks, 2);
    assert!((p2.nll - p.nll).abs() <= 1e-6);
}
