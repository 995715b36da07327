//! GGUF export against llama.cpp's own converter: the tiny fixture models written by
//! `export_gguf` with the converter's output types are byte-identical to the files
//! `convert_hf_to_gguf.py` wrote (fixtures/quant/gguf, and tests/data/gguf_export made by its
//! `make_gguf_export.py`), and the real SmolLM2 vocabulary survives GGUF -> HF dir -> GGUF.

mod common;

use std::path::Path;

use common::fixture;
use slm_core::checkpoint::Checkpoint;
use slm_core::gguf::{GgufFile, GgufOutType, export_gguf};

fn export(model: &Path, out: GgufOutType) -> Vec<u8> {
    let ckpt = Checkpoint::open(model).unwrap();
    let writer = export_gguf(&ckpt, out.file_type(), &mut |t, v| out.encode(t, v)).unwrap();
    writer.to_bytes().unwrap()
}

/// Asserts two GGUF files are identical, naming the first differing metadata key or tensor.
fn assert_same_gguf(ours: &[u8], theirs: &[u8], what: &str) {
    if ours == theirs {
        return;
    }
    let a = GgufFile::from_bytes("ours", ours.to_vec()).unwrap();
    let b = GgufFile::from_bytes("theirs", theirs.to_vec()).unwrap();
    let keys = |f: &GgufFile| {
        f.metadata()
            .iter()
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&a), keys(&b), "{what}: metadata keys");
    for ((k, va), (_, vb)) in a.metadata().iter().zip(b.metadata()) {
        assert_eq!(va, vb, "{what}: metadata `{k}`");
    }
    let names = |f: &GgufFile| {
        f.tensors()
            .iter()
            .map(|t| t.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b), "{what}: tensor order");
    for (ta, tb) in a.tensors().iter().zip(b.tensors()) {
        assert_eq!(
            (&ta.dims, ta.ggml_type),
            (&tb.dims, tb.ggml_type),
            "{what}: {}",
            ta.name
        );
        assert!(
            a.tensor_bytes(&ta.name).unwrap() == b.tensor_bytes(&tb.name).unwrap(),
            "{what}: bytes of {}",
            ta.name
        );
    }
    panic!(
        "{what}: files differ ({} vs {} bytes) outside metadata and tensors",
        ours.len(),
        theirs.len()
    );
}

#[test]
fn llama_tiny_f32_and_q8_0_are_the_converters_bytes() {
    for (out, file) in [
        (GgufOutType::F32, "quant/gguf/llama-tiny.f32.gguf"),
        (GgufOutType::Q8_0, "quant/gguf/llama-tiny.q8_0.gguf"),
    ] {
        let ours = export(&fixture("models/llama-tiny"), out);
        let theirs = std::fs::read(fixture(file)).unwrap();
        assert_same_gguf(&ours, &theirs, file);
    }
}

#[test]
fn rope_freqs_f16_bf16_tied_and_sharded_are_the_converters_bytes() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf_export");
    for (model, out, file) in [
        (
            "llama3-rope-tiny",
            GgufOutType::F16,
            "llama3-rope-tiny.f16.gguf",
        ),
        ("smollm-tiny", GgufOutType::BF16, "smollm-tiny.bf16.gguf"),
        (
            "llama-tiny-sharded",
            GgufOutType::Q8_0,
            "llama-tiny-sharded.q8_0.gguf",
        ),
    ] {
        let ours = export(&fixture(&format!("models/{model}")), out);
        let theirs = std::fs::read(data.join(file)).unwrap();
        assert_same_gguf(&ours, &theirs, file);
    }
}

/// SmolLM2's real vocabulary (49152 tokens, 48900 merges, `smollm` digits split): the tokenizer
/// slm rebuilds from its GGUF, saved as a Hugging Face `tokenizer.json` (what `slm lora merge`
/// or `slm prune` write) and turned back into GGUF metadata, gives the source file's keys.
#[test]
fn smollm2_vocabulary_survives_gguf_to_hf_to_gguf() {
    let Some(path) = common::smollm2_gguf() else {
        return;
    };
    let source = GgufFile::open(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    slm_core::tokenizer::Tokenizer::from_gguf(&source)
        .unwrap()
        .save(dir.path())
        .unwrap();
    let tok = slm_core::tokenizer::Tokenizer::from_model_dir(dir.path()).unwrap();
    let meta = slm_core::gguf::tokenizer_metadata(&tok, 49152, [None, None, None]).unwrap();
    let ours = |k: &str| {
        meta.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no `{k}` written"))
    };
    for key in [
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.chat_template",
    ] {
        assert!(&ours(key) == source.get(key).unwrap(), "{key} differs");
    }
}
