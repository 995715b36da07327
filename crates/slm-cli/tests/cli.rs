//! The `slm` binary end to end: its JSON contracts and its one-line errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    assert!(p.is_dir(), "fixtures not found at {}", p.display());
    p
}

fn slm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slm"))
        .args(args)
        .output()
        .unwrap()
}

fn ok_json(args: &[&str]) -> serde_json::Value {
    let out = slm(args);
    assert!(
        out.status.success(),
        "slm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Fails with status 1 and exactly one `error:` line on stderr, no panic, no backtrace.
fn one_line_error(args: &[&str]) -> String {
    let out = slm(args);
    assert_eq!(out.status.code(), Some(1), "slm {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "slm {args:?}: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    err
}

fn model(name: &str) -> String {
    fixtures().join("models").join(name).display().to_string()
}

fn ids_of(v: &serde_json::Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn info_prints_the_model_summary() {
    let v = ok_json(&["info", "--model", &model("llama-tiny")]);
    assert_eq!(v["architecture"], "LlamaForCausalLM");
    assert_eq!(v["layers"], 2);
    assert_eq!(v["hidden_size"], 64);
    assert_eq!(v["heads"], 4);
    assert_eq!(v["kv_heads"], 2);
    assert_eq!(v["vocab_size"], 768);
    assert_eq!(v["dtype"], "float32");
    // The index.json of the sharded copy states the same model's parameter count.
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            fixtures().join("models/llama-tiny-sharded/model.safetensors.index.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(v["parameters"], index["metadata"]["total_parameters"]);
    assert_eq!(
        v["bytes"],
        std::fs::metadata(fixtures().join("models/llama-tiny/model.safetensors"))
            .unwrap()
            .len()
    );
    let bf = ok_json(&["info", "--model", &model("llama-tiny-bf16")]);
    assert_eq!(bf["dtype"], "bfloat16");
}

/// `slm info` says what a file is and whether slm runs it: Phi-3 and Llama GGUFs with their
/// SentencePiece vocabularies and rope settings run; other architectures get the reason.
#[test]
fn info_says_what_a_file_is_and_whether_it_runs() {
    let coverage = Path::new(env!("CARGO_MANIFEST_DIR")).join("../slm-core/tests/data/coverage");
    let phi3 = coverage.join("gguf/phi3-longrope-tiny.f32.gguf");
    let v = ok_json(&["info", "--model", phi3.to_str().unwrap()]);
    assert_eq!(v["format"], "gguf");
    assert_eq!(v["declared_architecture"], "phi3");
    assert_eq!(v["architecture"], "Phi3ForCausalLM");
    assert_eq!(v["tokenizer"], "llama (SentencePiece)");
    assert_eq!(v["rope_scaling"], "longrope");
    assert_eq!(v["runnable"], true);
    assert!(v["reason"].is_null());
    let llama3 = coverage.join("gguf/llama3-rope-tiny.f32.gguf");
    let v = ok_json(&["info", "--model", llama3.to_str().unwrap()]);
    assert_eq!(v["rope_scaling"], "llama3");
    let hf = ok_json(&["info", "--model", &model("phi3-tiny")]);
    assert_eq!(
        (&hf["format"], &hf["runnable"]),
        (&"hf".into(), &true.into())
    );

    // Another architecture: the JSON still says what it is, with the reason, and status 1.
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&phi3).unwrap();
    let other = dir.path().join("phi4.gguf");
    // Same-length rename of `general.architecture` = "phi3" to "phi4" keeps the file valid.
    let at = bytes
        .windows(4)
        .position(|w| w == b"phi3")
        .expect("architecture string");
    let mut edited = bytes.clone();
    edited[at..at + 4].copy_from_slice(b"phi4");
    std::fs::write(&other, &edited).unwrap();
    let e = one_line_error(&["info", "--model", other.to_str().unwrap()]);
    assert!(
        e.contains("a GGUF (phi4") && e.contains("cannot run it"),
        "{e}"
    );
    let out = slm(&["info", "--model", other.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["runnable"], false);
    assert!(v["reason"].as_str().unwrap().contains("phi4"), "{v}");
}

#[test]
fn tokenize_prints_ids() {
    let tok = fixtures()
        .join("tokenizer/tokenizer.json")
        .display()
        .to_string();
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("tokenizer/cases.json")).unwrap(),
    )
    .unwrap();
    let case = &cases["cases"][3];
    let text = case["text"].as_str().unwrap();
    let v = ok_json(&["tokenize", "--tokenizer", &tok, "--text", text]);
    assert_eq!(ids_of(&v["ids"]), ids_of(&case["ids"]));
    let v = ok_json(&[
        "tokenize",
        "--tokenizer",
        &tok,
        "--text",
        text,
        "--add-special-tokens",
    ]);
    assert_eq!(ids_of(&v["ids"]), ids_of(&case["ids_with_special"]));
    // A model directory works too.
    let v = ok_json(&[
        "tokenize",
        "--tokenizer",
        &model("qwen2-tiny"),
        "--text",
        text,
    ]);
    assert_eq!(ids_of(&v["ids"]), ids_of(&case["ids"]));
}

/// `slm logits` on row 0 of the fixture batch (no padding) with `model_args`, against row 0 of
/// `expected` (a fixture logits file): the largest |diff|.
fn logits_row0_diff(model_args: &[&str], expected: &str) -> f32 {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("logits.safetensors");
    let ids = "0,592,366,328,672,262,260,432,72,15,497,354"; // row 0 of the fixture batch
    let mut args = vec!["logits"];
    args.extend_from_slice(model_args);
    args.extend(["--ids", ids, "--out", out.to_str().unwrap()]);
    let o = slm(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (shape, got) = f32_tensor(&out, "logits");
    assert_eq!(shape, vec![12, 768]);
    let (_, want) = f32_tensor(&fixtures().join(expected), "logits");
    got.iter()
        .zip(&want[..12 * 768])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
}

/// Shape and values of the F32 tensor `name` of a safetensors file.
fn f32_tensor(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    let values = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (t.shape().to_vec(), values)
}

#[test]
fn logits_writes_position_by_position() {
    let worst = logits_row0_diff(
        &["--model", &model("llama-tiny")],
        "models/llama-tiny/expected/logits.safetensors",
    );
    assert!(worst <= 1e-4, "{worst}");
}

#[test]
fn adapters_run_unmerged_and_merge_into_an_hf_dir() {
    let adapter = fixtures().join("lora/adapter_a").display().to_string();
    let base = model("llama-tiny");
    let worst = logits_row0_diff(
        &["--model", &base, "--adapter", &adapter],
        "lora/adapter_a/expected/logits.safetensors",
    );
    assert!(worst <= 1e-4, "adapter logits vs peft: {worst}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("merged");
    let v = ok_json(&[
        "lora",
        "merge",
        "--model",
        &base,
        "--adapter",
        &adapter,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(v["architecture"], "LlamaForCausalLM");
    let worst = logits_row0_diff(
        &["--model", out.to_str().unwrap()],
        "lora/merged_a/expected/logits.safetensors",
    );
    assert!(worst <= 1e-4, "merged dir logits vs peft: {worst}");
    // A directory without an adapter is one clear line naming the file.
    let e = one_line_error(&[
        "logits",
        "--model",
        &base,
        "--adapter",
        dir.path().to_str().unwrap(),
        "--ids",
        "1,2",
        "--out",
        dir.path().join("x.safetensors").to_str().unwrap(),
    ]);
    assert!(e.contains("adapter_config.json"), "{e}");
}

#[test]
fn devices_are_parsed_and_a_missing_backend_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.safetensors");
    let args = |device: &'static str| {
        vec![
            "logits".to_string(),
            "--model".into(),
            model("llama-tiny"),
            "--ids".into(),
            "1,2".into(),
            "--out".into(),
            out.display().to_string(),
            "--device".into(),
            device.into(),
        ]
    };
    let run = |device| {
        let a = args(device);
        slm(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    assert!(run("cpu").status.success());
    let bad = run("tpu:0");
    assert_eq!(bad.status.code(), Some(2), "clap rejects a bad --device");
    if !cfg!(feature = "cuda") {
        let a = args("cuda:0");
        let e = one_line_error(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(e.contains("without CUDA"), "{e}");
    }
}

#[test]
fn generate_greedy_json_matches_transformers() {
    let g: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("models/smollm-tiny/expected/generate.json"))
            .unwrap(),
    )
    .unwrap();
    let prompt: Vec<String> = ids_of(&g["prompt_ids"])
        .iter()
        .map(u64::to_string)
        .collect();
    let v = ok_json(&[
        "generate",
        "--model",
        &model("smollm-tiny"),
        "--ids",
        &prompt.join(","),
        "--max-new-tokens",
        "16",
        "--temperature",
        "0",
        "--ignore-eos",
        "--json",
    ]);
    assert_eq!(ids_of(&v["ids"]), ids_of(&g["new_ids"]));
    assert!(v["text"].is_string());
    // Text prompts go through the tokenizer (BOS added) and give the same continuation.
    let v = ok_json(&[
        "generate",
        "--model",
        &model("smollm-tiny"),
        "--prompt",
        g["prompt_text"].as_str().unwrap(),
        "--max-new-tokens",
        "16",
        "--ignore-eos",
        "--json",
    ]);
    assert_eq!(ids_of(&v["ids"]), ids_of(&g["new_ids"]));
}

#[test]
fn convert_writes_a_loadable_hf_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("phi3");
    let v = ok_json(&[
        "convert",
        "--model",
        &model("phi3-tiny"),
        "--out",
        out.to_str().unwrap(),
        "--dtype",
        "bf16",
    ]);
    assert_eq!(v["dtype"], "bfloat16");
    let info = ok_json(&["info", "--model", out.to_str().unwrap()]);
    assert_eq!(info["architecture"], "Phi3ForCausalLM");
    assert_eq!(info["dtype"], "bfloat16");
    // The converted llama3-rope GGUF-free path: the f32 GGUF fixture converts too.
    let gguf = fixtures().join("quant/gguf/llama-tiny.f32.gguf");
    let out2 = dir.path().join("from-gguf");
    ok_json(&[
        "convert",
        "--model",
        gguf.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
    ]);
    let info = ok_json(&["info", "--model", out2.to_str().unwrap()]);
    assert_eq!(info["architecture"], "LlamaForCausalLM");
    assert_eq!(info["dtype"], "float32");
    // Without --dtype an HF checkpoint keeps its own dtype.
    let out3 = dir.path().join("bf16");
    let v = ok_json(&[
        "convert",
        "--model",
        &model("llama-tiny-bf16"),
        "--out",
        out3.to_str().unwrap(),
    ]);
    assert_eq!(v["dtype"], "bfloat16");
    assert_eq!(
        info["parameters"],
        ok_json(&["info", "--model", &model("llama-tiny")])["parameters"]
    );
}

#[test]
fn bad_input_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let e = one_line_error(&["info", "--model", "/nonexistent/model"]);
    assert!(e.contains("/nonexistent/model"), "{e}");

    // Truncated safetensors.
    let bad = dir.path().join("truncated");
    std::fs::create_dir(&bad).unwrap();
    std::fs::copy(
        fixtures().join("models/llama-tiny/config.json"),
        bad.join("config.json"),
    )
    .unwrap();
    let st = std::fs::read(fixtures().join("models/llama-tiny/model.safetensors")).unwrap();
    std::fs::write(bad.join("model.safetensors"), &st[..st.len() / 2]).unwrap();
    one_line_error(&[
        "generate",
        "--model",
        bad.to_str().unwrap(),
        "--ids",
        "1,2",
        "--max-new-tokens",
        "2",
    ]);

    // Unknown architecture.
    let arch = dir.path().join("gpt2");
    std::fs::create_dir(&arch).unwrap();
    std::fs::write(
        arch.join("config.json"),
        r#"{"architectures":["GPT2LMHeadModel"]}"#,
    )
    .unwrap();
    let e = one_line_error(&["info", "--model", arch.to_str().unwrap()]);
    assert!(e.contains("GPT2LMHeadModel"), "{e}");

    // Ids outside the vocabulary.
    let e = one_line_error(&[
        "logits",
        "--model",
        &model("llama-tiny"),
        "--ids",
        "1,768",
        "--out",
        "/tmp/x.safetensors",
    ]);
    assert!(e.contains("768"), "{e}");

    // Not a GGUF file.
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    one_line_error(&["info", "--model", junk.to_str().unwrap()]);

    // Config/weights mismatch.
    let mism = dir.path().join("mismatch");
    std::fs::create_dir(&mism).unwrap();
    let cfg = std::fs::read_to_string(fixtures().join("models/llama-tiny/config.json")).unwrap();
    std::fs::write(
        mism.join("config.json"),
        cfg.replace("\"hidden_size\": 64", "\"hidden_size\": 32"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("models/llama-tiny/model.safetensors"),
        mism.join("model.safetensors"),
    )
    .unwrap();
    let e = one_line_error(&[
        "logits",
        "--model",
        mism.to_str().unwrap(),
        "--ids",
        "1",
        "--out",
        "/tmp/y.safetensors",
    ]);
    assert!(e.contains("shape"), "{e}");
}

#[test]
fn smollm2_gguf_info_tokenize_and_generate() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let m = path.to_str().unwrap();
    let info = ok_json(&["info", "--model", m]);
    assert_eq!(info["parameters"], 134_515_008);
    assert_eq!(info["dtype"], "Q4_1");
    assert_eq!(info["bytes"], 98_362_432);
    let story: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("smollm2/story.json")).unwrap(),
    )
    .unwrap();
    let v = ok_json(&[
        "tokenize",
        "--tokenizer",
        m,
        "--text",
        story["text"].as_str().unwrap(),
    ]);
    assert_eq!(ids_of(&v["ids"]), ids_of(&story["ids"]));
    let generate = |backend: &str| {
        ok_json(&[
            "generate",
            "--model",
            m,
            "--prompt",
            story["text"].as_str().unwrap(),
            "--max-new-tokens",
            "24",
            "--ignore-eos",
            "--json",
            "--backend",
            backend,
        ])
    };
    // burn computes in f32 as transformers does: the same 24 tokens.
    let v = generate("burn");
    assert_eq!(ids_of(&v["ids"]), ids_of(&story["greedy"]["new_ids"]));
    assert_eq!(v["text"], story["greedy"]["new_text"]);
    // The default for a GGUF on the CPU is the fast path, with llama.cpp's 8-bit activations:
    // the same first 12 tokens, then its own greedy text (as llama.cpp's own drifts).
    let fast = generate("auto");
    assert_eq!(
        ids_of(&fast["ids"])[..12],
        ids_of(&story["greedy"]["new_ids"])[..12]
    );
    // --chat renders the template and stops at <|im_end|>.
    let v = ok_json(&[
        "generate",
        "--model",
        m,
        "--prompt",
        "Hi!",
        "--chat",
        "--max-new-tokens",
        "64",
        "--json",
    ]);
    let ids = ids_of(&v["ids"]);
    assert!(ids.len() <= 64 && !ids.is_empty());
    if ids.len() < 64 {
        assert_eq!(*ids.last().unwrap(), 2, "stops at <|im_end|>");
    }
}

#[test]
fn energy_probe_lists_meters_with_their_method() {
    let v = ok_json(&["energy", "probe"]);
    let meters = v["meters"].as_array().unwrap();
    for m in meters {
        let method = m["method"].as_str().unwrap();
        assert!(
            method.starts_with("measured (") || method.starts_with("estimated ("),
            "{m}"
        );
        assert!(!m["detail"].as_str().unwrap().is_empty(), "{m}");
    }
    // Every machine gets a CPU and a memory figure: measured where it can, estimated otherwise.
    for component in ["cpu", "ram"] {
        let chosen = meters
            .iter()
            .filter(|m| m["selected"] == true && m["available"] == true);
        let dram_or_ram = |m: &serde_json::Value| {
            m["component"] == component || (component == "ram" && m["component"] == "dram")
        };
        assert!(
            chosen.clone().any(dram_or_ram),
            "no selected {component} meter: {v}"
        );
    }
}

#[test]
fn data_curate_runs_a_config_on_the_spamassassin_sample() {
    let dir = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/spamassassin/sample.jsonl");
    let config = format!(
        r#"
        name = "spamassassin"
        output_dir = "{out}"
        seed = 1
        [[inputs]]
        path = "{sample}"
        label_field = "label"
        id_field = "id"
        [stages]
        exact_dedup = true
        [stages.normalize]
        [stages.pii]
        [stages.length]
        min_words = 3
        [stages.near_dedup]
        [splits]
        val = 0.1
        test = 0.1
        "#,
        out = dir.path().join("out").display(),
        sample = sample.canonicalize().unwrap().display()
    );
    let cfg = dir.path().join("curate.toml");
    std::fs::write(&cfg, config).unwrap();
    // By default a short summary a person reads.
    let out = slm(&["data", "curate", "--config", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() < 20, "{text}");
    assert!(
        lines[0].starts_with("curated spamassassin: 604 rows read, "),
        "{text}"
    );
    for needle in [
        "near_dedup",
        "near_duplicate ",
        "splits: test ",
        "ham ",
        "spam ",
        "files: ",
        "dropped.jsonl",
        "energy.json",
        "energy: ",
        " J in ",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    // Not a terminal: no progress bars on stderr.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The machine JSON with --json, as before.
    let v = ok_json(&[
        "data",
        "curate",
        "--config",
        cfg.to_str().unwrap(),
        "--json",
    ]);
    let files: Vec<String> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    for name in [
        "train.jsonl",
        "val.jsonl",
        "test.jsonl",
        "card.json",
        "README.md",
        "dropped.jsonl",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(name)),
            "{name} missing from {files:?}"
        );
        assert!(dir.path().join("out").join(name).is_file(), "{name}");
    }
    // Each stage's energy, with how it was obtained, in the output and in energy.json.
    let phases: Vec<&str> = v["energy"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    for phase in [
        "curation",
        "curation/read",
        "curation/near_dedup",
        "curation/write",
    ] {
        assert!(phases.contains(&phase), "{phase} missing from {phases:?}");
    }
    assert!(!v["energy"]["meters"].as_array().unwrap().is_empty());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/energy.json")).unwrap())
            .unwrap();
    assert_eq!(saved["phases"], v["energy"]["phases"]);

    // A missing config is one clear line.
    let e = one_line_error(&["data", "curate", "--config", "/nonexistent/curate.toml"]);
    assert!(e.contains("/nonexistent/curate.toml"), "{e}");
}

#[test]
fn tokenizer_train_writes_a_loadable_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    let text: String = (0..200)
        .map(|i| format!("invoice {i} was paid by the customer on time\n"))
        .collect();
    std::fs::write(&corpus, text).unwrap();
    let out = dir.path().join("tokenizer.json");
    let v = ok_json(&[
        "tokenizer",
        "train",
        "--corpus",
        corpus.to_str().unwrap(),
        "--vocab-size",
        "300",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(v["vocab_size"].as_u64().unwrap() <= 300);
    let ids = ok_json(&[
        "tokenize",
        "--tokenizer",
        out.to_str().unwrap(),
        "--text",
        "invoice was paid",
    ]);
    assert!(!ids["ids"].as_array().unwrap().is_empty());
    // The shipped SpamAssassin sample as a dataset corpus: its `text` field, not JSON lines.
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/spamassassin/sample.jsonl");
    let spam_out = dir.path().join("spam.json");
    ok_json(&[
        "tokenizer",
        "train",
        "--corpus",
        sample.to_str().unwrap(),
        "--text-field",
        "text",
        "--vocab-size",
        "1000",
        "--out",
        spam_out.to_str().unwrap(),
    ]);
    // Fertility against a base tokenizer (the fixture's SmolLM tokenizer) on held-out text.
    let base = fixtures().join("models/smollm-tiny");
    let v = ok_json(&[
        "tokenizer",
        "train",
        "--corpus",
        sample.to_str().unwrap(),
        "--vocab-size",
        "1000",
        "--out",
        spam_out.to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
        "--eval",
        corpus.to_str().unwrap(),
    ]);
    let f = &v["fertility"];
    assert_eq!(f["base"]["texts"], 200, "{v}");
    assert!(
        f["retrained"]["tokens_per_word"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    assert!(f["token_reduction"].is_number(), "{v}");
    let vocab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&spam_out).unwrap()).unwrap();
    let vocab = vocab["model"]["vocab"].as_object().unwrap();
    assert!(
        !vocab.keys().any(|k| k.contains("\":\"")),
        "JSON syntax leaked into the vocabulary"
    );
    one_line_error(&[
        "tokenizer",
        "train",
        "--corpus",
        "/nonexistent.txt",
        "--vocab-size",
        "300",
        "--out",
        out.to_str().unwrap(),
    ]);
}

#[test]
fn perplexity_prints_the_llama_cpp_json_and_refuses_short_texts() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    let words = "the quick brown fox jumps over the lazy dog and then it rests in the sun ";
    std::fs::write(&text, words.repeat(20)).unwrap();
    let path = text.display().to_string();
    let m = model("llama-tiny");
    let v = ok_json(&[
        "perplexity",
        "--model",
        &m,
        "--text",
        &path,
        "--ctx",
        "32",
        "--json",
    ]);
    let (ppl, stderr) = (v["ppl"].as_f64().unwrap(), v["stderr"].as_f64().unwrap());
    assert!(ppl > 1.0 && ppl.is_finite() && stderr > 0.0, "{v}");
    let chunks = v["chunks"].as_u64().unwrap();
    assert!(chunks >= 2, "{v}");
    assert_eq!(v["tokens"].as_u64().unwrap(), chunks * (32 - 16 - 1));
    // At most two chunks: the same method on fewer tokens.
    let two = ok_json(&[
        "perplexity",
        "--model",
        &m,
        "--text",
        &path,
        "--ctx",
        "32",
        "--chunks",
        "2",
        "--json",
    ]);
    assert_eq!(two["chunks"], 2);
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "too short").unwrap();
    let e = one_line_error(&[
        "perplexity",
        "--model",
        &m,
        "--text",
        short.to_str().unwrap(),
        "--ctx",
        "32",
    ]);
    assert!(e.contains("needs at least 64 tokens"), "{e}");
}

#[test]
fn prune_writes_a_loadable_model_with_the_requested_sparsity() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("llama-tiny");
    for (method, sparsity, want) in [("magnitude", "0.5", 0.5), ("2:4", "0.5", 0.5)] {
        let out = dir.path().join(method.replace(':', "-"));
        let v = ok_json(&[
            "prune",
            "--model",
            &m,
            "--method",
            method,
            "--sparsity",
            sparsity,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            (v["projection_sparsity"].as_f64().unwrap() - want).abs() < 1e-9,
            "{v}"
        );
        assert_eq!(v["params_before"], v["params_after"]);
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("prune_report.json")).unwrap())
                .unwrap();
        assert_eq!(
            report["tensors"].as_array().unwrap().len(),
            14,
            "7 projections x 2 layers"
        );
        // The pruned directory loads and runs.
        let logits = out.join("logits.safetensors");
        let o = slm(&[
            "logits",
            "--model",
            out.to_str().unwrap(),
            "--ids",
            "0,5,9",
            "--out",
            logits.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let out = dir.path().join("structured");
    let v = ok_json(&[
        "prune",
        "--model",
        &m,
        "--method",
        "structured",
        "--sparsity",
        "0.25",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        v["params_after"].as_u64() < v["params_before"].as_u64(),
        "{v}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["intermediate_size"], 96,
        "128 neurons less a quarter"
    );
    ok_json(&["info", "--model", out.to_str().unwrap()]);
    let e = one_line_error(&[
        "prune",
        "--model",
        &m,
        "--method",
        "magnitude",
        "--sparsity",
        "1.5",
        "--out",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert!(e.contains("sparsity must be in [0, 1)"), "{e}");
}

#[test]
fn a_pruned_base_stays_sparse_through_a_merge_that_keeps_sparsity() {
    let dir = tempfile::tempdir().unwrap();
    let pruned = dir.path().join("pruned");
    ok_json(&[
        "prune",
        "--model",
        &model("llama-tiny"),
        "--method",
        "2:4",
        "--out",
        pruned.to_str().unwrap(),
    ]);
    let adapter = fixtures().join("lora/adapter_a").display().to_string();
    let zeros = |d: &std::path::Path, name: &str| -> (usize, Vec<f32>) {
        let (_, v) = f32_tensor(&d.join("model.safetensors"), name);
        (v.iter().filter(|x| **x == 0.0).count(), v)
    };
    let q = "model.layers.0.self_attn.q_proj.weight";
    let (base_zeros, base) = zeros(&pruned, q);
    assert_eq!(base_zeros, base.len() / 2);
    for (keep, out) in [(true, "kept"), (false, "dense")] {
        let out = dir.path().join(out);
        let mut args = vec![
            "lora",
            "merge",
            "--model",
            pruned.to_str().unwrap(),
            "--adapter",
            &adapter,
            "--out",
            out.to_str().unwrap(),
        ];
        if keep {
            args.push("--keep-sparsity");
        }
        ok_json(&args);
        let (n, merged) = zeros(&out, q);
        if keep {
            assert_eq!(n, base_zeros, "the pruned weights stay zero");
            for (b, m) in base.iter().zip(&merged) {
                assert_eq!(*b == 0.0, *m == 0.0);
            }
            assert_ne!(merged, base, "the adapter was merged");
        } else {
            assert!(
                n < base_zeros / 10,
                "a plain merge fills them: {n} zeros left"
            );
        }
    }
}

#[test]
fn quantize_writes_gguf_and_modelfile_with_and_without_an_importance_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("llama-tiny");
    let q8 = dir.path().join("tiny.q8_0.gguf");
    let v = ok_json(&[
        "quantize",
        "--model",
        &m,
        "--type",
        "q8_0",
        "--out",
        q8.to_str().unwrap(),
    ]);
    assert_eq!(
        (v["type"].as_str(), v["file_type"].as_u64()),
        (Some("Q8_0"), Some(7))
    );
    assert_eq!(v["tensor_types"]["Q8_0"], 16, "{v}");
    assert_eq!(v["tensor_types"]["F32"], 5, "{v}");
    assert!(v["imatrix"].is_null());
    // From the HF dir, Q8_0 is the converter's own file.
    let theirs = std::fs::read(fixtures().join("quant/gguf/llama-tiny.q8_0.gguf")).unwrap();
    assert!(
        std::fs::read(&q8).unwrap() == theirs,
        "not convert_hf_to_gguf's bytes"
    );
    let modelfile = std::fs::read_to_string(dir.path().join("Modelfile")).unwrap();
    assert_eq!(
        modelfile, "FROM ./tiny.q8_0.gguf\n",
        "no chat template, no TEMPLATE"
    );

    // Calibration text: an entry per projection and the LM head; the 4- and 5-bit tensors
    // weighted (Q8_0, here the LM head and the attn_v bumped to Q6_K that falls back, has no
    // weighted form), the 64-wide rows falling back from Q4_K to Q5_0.
    let calib = fixtures().join("README.md");
    let q4 = dir.path().join("tiny.q4_k_m.gguf");
    let v = ok_json(&[
        "quantize",
        "--model",
        &m,
        "--type",
        "q4_k_m",
        "--imatrix",
        calib.to_str().unwrap(),
        "--calib-ctx",
        "64",
        "--calib-chunks",
        "3",
        "--out",
        q4.to_str().unwrap(),
        "--modelfile",
        dir.path().join("tiny.Modelfile").to_str().unwrap(),
    ]);
    assert_eq!(v["imatrix"]["entries"], 15, "{v}");
    assert_eq!(v["imatrix"]["chunks"], 3, "{v}");
    assert_eq!(v["imatrix"]["weighted_tensors"], 12, "{v}");
    assert_eq!(v["tensor_types"]["Q8_0"], 3, "{v}");
    let plain = dir.path().join("plain.gguf");
    ok_json(&[
        "quantize",
        "--model",
        &m,
        "--type",
        "q4_k_m",
        "--out",
        plain.to_str().unwrap(),
        "--no-modelfile",
    ]);
    assert!(std::fs::read(&plain).unwrap() != std::fs::read(&q4).unwrap());
    // Both load and run.
    for file in [&q4, &plain] {
        let logits = dir.path().join("logits.safetensors");
        let o = slm(&[
            "logits",
            "--model",
            file.to_str().unwrap(),
            "--ids",
            "0,5,9",
            "--out",
            logits.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    let err = one_line_error(&[
        "quantize",
        "--model",
        &m,
        "--type",
        "f16",
        "--imatrix",
        calib.to_str().unwrap(),
        "--out",
        dir.path().join("x.gguf").to_str().unwrap(),
    ]);
    assert!(
        err.contains("--imatrix only affects quantized types"),
        "{err}"
    );
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF").unwrap();
    let err = one_line_error(&[
        "quantize",
        "--model",
        &m,
        "--type",
        "q4_0",
        "--imatrix",
        bad.to_str().unwrap(),
        "--out",
        dir.path().join("y.gguf").to_str().unwrap(),
    ]);
    assert!(err.contains("bad.gguf"), "{err}");
}

#[test]
fn prune_reports_perplexity_before_and_after_and_new_methods_run() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("llama-tiny");
    let text = fixtures().join("README.md");
    let out = dir.path().join("global");
    let v = ok_json(&[
        "prune",
        "--model",
        &m,
        "--method",
        "magnitude-global",
        "--sparsity",
        "0.5",
        "--eval",
        text.to_str().unwrap(),
        "--eval-ctx",
        "64",
        "--eval-chunks",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (before, after) = (&v["perplexity"]["before"], &v["perplexity"]["after"]);
    assert_eq!(before["chunks"], 4, "{v}");
    assert_eq!(before["tokens"], after["tokens"]);
    assert!(
        before["ppl"].as_f64().unwrap() != after["ppl"].as_f64().unwrap(),
        "{v}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("prune_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["perplexity"], v["perplexity"]);
    assert!(
        (v["projection_sparsity"].as_f64().unwrap() - 0.5).abs() < 1e-4,
        "{v}"
    );
    for (method, sparsity) in [("magnitude-layer", "0.3"), ("structured-heads", "0.5")] {
        let out = dir.path().join(method);
        let v = ok_json(&[
            "prune",
            "--model",
            &m,
            "--method",
            method,
            "--sparsity",
            sparsity,
            "--calib",
            text.to_str().unwrap(),
            "--calib-ctx",
            "64",
            "--calib-chunks",
            "2",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(v["perplexity"].is_null());
        assert!(out.join("config.json").is_file(), "{method}");
    }
}

#[test]
fn bench_reports_pp_tg_memory_and_the_roofline() {
    let q8 = fixtures().join("quant/gguf/llama-tiny.q8_0.gguf");
    let m = q8.to_str().unwrap();
    let args = [
        "bench",
        "--model",
        m,
        "--threads",
        "1",
        "--prompt-tokens",
        "8",
        "--gen-tokens",
        "4",
        "--repetitions",
        "1",
        "--json",
    ];
    let v = ok_json(&args);
    for key in [
        "pp",
        "tg",
        "roofline_tg",
        "read_bandwidth_gb_s",
        "roofline_fraction",
    ] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(v["batch"], 1);
    // The weights one decode step reads: every Q8_0 matrix once and one embedding row.
    let per_token = v["weight_bytes_per_token"].as_u64().unwrap();
    assert!(per_token > 100_000 && per_token < 204_576, "{per_token}");
    let batched = ok_json(&[&args[..], &["--batch", "3", "--backend", "burn"]].concat());
    assert_eq!(batched["batch"], 3);
    assert!(batched["tg"].as_f64().unwrap() > 0.0);
    // Multi-LoRA: 3 sequences per step over 2 adapters, unmerged.
    let a = fixtures().join("lora/adapter_a");
    let all = fixtures().join("lora/adapter_rslora_all");
    let f32_model = fixtures().join("models/llama-tiny");
    let mut lora = args.to_vec();
    lora[2] = f32_model.to_str().unwrap();
    let adapted = ok_json(
        &[
            &lora[..],
            &["--batch", "3", "--adapter", a.to_str().unwrap()],
            &["--adapter", all.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_eq!(adapted["adapters"], 2);
    assert!(adapted["tg"].as_f64().unwrap() > 0.0);
    // The fast path runs no adapter: a clear error, not silently the base model.
    let out = slm(&[
        "generate",
        "--model",
        m,
        "--ids",
        "1,2",
        "--backend",
        "fast",
        "--adapter",
        fixtures().join("lora/adapter_a").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("adapter"));
}
