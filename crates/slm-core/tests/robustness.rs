//! Bad files give typed errors, never panics: random, truncated and corrupted safetensors and
//! config bytes, lying headers, and config/weights mismatches.

mod common;

use std::path::Path;

use common::*;
use proptest::prelude::*;
use slm_core::config::hf::HfConfig;
use slm_core::prelude::*;
use slm_core::weights::SafetensorsWeights;

/// Copies the llama-tiny model dir, replacing `file` with `bytes`.
fn model_dir_with(file: &str, bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("models/llama-tiny");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join(file), bytes).unwrap();
    dir
}

/// Opening and loading must return (Ok or) Err; a panic fails the test.
fn open_and_load(dir: &Path) -> Result<()> {
    let ckpt = Checkpoint::open(dir)?;
    ckpt.load_decoder(&Device::flex())?;
    Ok(())
}

fn real_safetensors() -> Vec<u8> {
    std::fs::read(fixture("models/llama-tiny/model.safetensors")).unwrap()
}

#[test]
fn lying_header_offsets_are_format_errors() {
    let mut bytes = real_safetensors();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    // Point the first tensor's data past the end of the file, keeping the header length.
    let v: serde_json::Value = serde_json::from_str(&header).unwrap();
    let (name, t) = v
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| *k != "__metadata__")
        .unwrap();
    let end = t["data_offsets"][1].as_u64().unwrap();
    let lied = header.replacen(
        &format!("[{},{}]", t["data_offsets"][0], end),
        &format!("[{},{}]", t["data_offsets"][0], end + 1_000_000),
        1,
    );
    if lied.len() == header.len() {
        bytes[8..8 + n].copy_from_slice(lied.as_bytes());
    } else {
        bytes.truncate(8);
        bytes[..8].copy_from_slice(&(lied.len() as u64).to_le_bytes());
        bytes.extend_from_slice(lied.as_bytes());
    }
    let dir = model_dir_with("model.safetensors", &bytes);
    let err = open_and_load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{name}: {err}");
}

#[test]
fn truncated_safetensors_is_a_format_error() {
    let bytes = real_safetensors();
    let dir = model_dir_with("model.safetensors", &bytes[..bytes.len() - 100]);
    assert!(matches!(
        open_and_load(dir.path()),
        Err(Error::Format { .. })
    ));
}

#[test]
fn config_and_weights_mismatch_names_the_tensor() {
    let cfg = std::fs::read_to_string(fixture("models/llama-tiny/config.json")).unwrap();
    let dir = model_dir_with(
        "config.json",
        cfg.replace("\"intermediate_size\": 128", "\"intermediate_size\": 96")
            .as_bytes(),
    );
    match open_and_load(dir.path()) {
        Err(Error::ShapeMismatch {
            name,
            got,
            expected,
            ..
        }) => {
            assert!(name.contains("mlp"), "{name}");
            assert_ne!(got, expected);
        }
        other => panic!("expected a shape mismatch, got {other:?}"),
    }
    // Layer counts are compared with the weights before anything is built from them.
    for layers in [1, 3, 4000] {
        let dir = model_dir_with(
            "config.json",
            cfg.replace(
                "\"num_hidden_layers\": 2",
                &format!("\"num_hidden_layers\": {layers}"),
            )
            .as_bytes(),
        );
        match open_and_load(dir.path()) {
            Err(Error::ConfigMismatch {
                field: "num_hidden_layers",
                config,
                weights: 2,
                ..
            }) => assert_eq!(config, layers),
            other => panic!("{layers} layers: expected a config mismatch, got {other:?}"),
        }
    }
}

#[test]
fn absurd_sizes_are_refused_before_any_allocation() {
    let cfg = std::fs::read_to_string(fixture("models/llama-tiny/config.json")).unwrap();
    for (field, from) in [
        ("num_hidden_layers", "\"num_hidden_layers\": 2"),
        ("intermediate_size", "\"intermediate_size\": 128"),
        ("vocab_size", "\"vocab_size\": 768"),
    ] {
        let text = cfg.replace(from, &format!("\"{field}\": 1099511627776"));
        assert_ne!(text, cfg, "{field} not in the fixture config");
        let dir = model_dir_with("config.json", text.as_bytes());
        match open_and_load(dir.path()) {
            Err(Error::InvalidConfig(msg)) => assert!(msg.contains(field), "{msg}"),
            other => panic!("{field}: expected an invalid config, got {other:?}"),
        }
    }
}

#[test]
fn missing_files_are_io_errors() {
    assert!(matches!(
        Checkpoint::open(Path::new("/nonexistent/model")),
        Err(Error::Io { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Checkpoint::open(dir.path()),
        Err(Error::Io { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        let _ = SafetensorsWeights::open(&p);
    }

    #[test]
    fn truncations_never_panic(cut in 0usize..689_500) {
        let bytes = real_safetensors();
        let dir = model_dir_with("model.safetensors", &bytes[..cut.min(bytes.len())]);
        let r = open_and_load(dir.path());
        prop_assert!(cut >= bytes.len() || r.is_err());
    }

    #[test]
    fn corrupted_headers_never_panic(pos in 0usize..2048, byte: u8) {
        let mut bytes = real_safetensors();
        let p = pos.min(bytes.len() - 1);
        bytes[p] = byte;
        let dir = model_dir_with("model.safetensors", &bytes);
        let _ = open_and_load(dir.path());
    }

    #[test]
    fn corrupted_configs_never_panic(pos in 0usize..900, byte in 0x20u8..0x7f) {
        let mut cfg = std::fs::read(fixture("models/llama-tiny/config.json")).unwrap();
        let p = pos.min(cfg.len() - 1);
        cfg[p] = byte;
        if let Ok(text) = std::str::from_utf8(&cfg) {
            let _ = HfConfig::from_json_str(text, "config.json");
        }
        let dir = model_dir_with("config.json", &cfg);
        let _ = open_and_load(dir.path());
    }

    #[test]
    fn arbitrary_numbers_in_configs_never_panic(hidden in 0usize..4096, heads in 0usize..64, kv in 0usize..64, vocab in 0usize..100_000) {
        let text = format!(r#"{{"architectures":["LlamaForCausalLM"],"vocab_size":{vocab},"hidden_size":{hidden},
            "intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":{heads},"num_key_value_heads":{kv}}}"#);
        let _ = HfConfig::from_json_str(&text, "c");
    }
}

#[test]
fn truncated_tokenizer_json_is_a_json_error_not_a_panic() {
    // tokenizers' own parser panics when the file ends inside the decoder object.
    let text = std::fs::read_to_string(fixture("models/llama-tiny/tokenizer.json")).unwrap();
    let inside_decoder = text.find("\"decoder\"").expect("a decoder") + 20;
    let dir = model_dir_with("tokenizer.json", &text.as_bytes()[..inside_decoder]);
    assert!(matches!(
        Checkpoint::open(dir.path()),
        Err(Error::Json { .. })
    ));
}
