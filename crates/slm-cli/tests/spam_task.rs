//! The real outcome, as a user runs it: curate the shipped SpamAssassin sample, LoRA-tune
//! SmolLM2-135M-Instruct as a ham/spam classifier within a bounded budget (60 steps of 4 x 128
//! tokens on the CPU), and check that it beats zero-shot label scoring of the same base model
//! on the test split. Needs the cached SmolLM2 GGUF (skipped without it unless
//! `SLM_REQUIRE_SMOLLM2=1`, as in CI).

mod common;

use common::{root, smollm2};
use std::process::Command;

fn slm_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_slm"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "slm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[test]
fn lora_tuned_smollm2_beats_zero_shot_on_spamassassin() {
    let Some(gguf) = smollm2() else { return };
    let model = gguf.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(root().join("data/spamassassin/curate.toml"))
        .unwrap()
        .replace(
            "../../target/curated/spamassassin",
            &dir.path().join("curated").display().to_string(),
        )
        .replace(
            "\"sample.jsonl\"",
            &format!("{:?}", root().join("data/spamassassin/sample.jsonl")),
        );
    let cfg = dir.path().join("curate.toml");
    std::fs::write(&cfg, config).unwrap();
    slm_json(&[
        "data",
        "curate",
        "--config",
        cfg.to_str().unwrap(),
        "--json",
    ]);
    let split = |s: &str| {
        dir.path()
            .join(format!("curated/{s}.jsonl"))
            .display()
            .to_string()
    };
    let out = dir.path().join("spam-lora");
    let tuned = slm_json(&[
        "finetune",
        "--model",
        &model,
        "--data",
        &split("train"),
        "--labels",
        "ham,spam",
        "--seq-len",
        "128",
        "--batch-size",
        "4",
        "--max-steps",
        "60",
        "--lr",
        "5e-4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(tuned["steps"], 60);
    let adapter = out.join("adapter").display().to_string();
    let after = slm_json(&[
        "eval",
        "--model",
        &model,
        "--adapter",
        &adapter,
        "--data",
        &split("test"),
        "--json",
    ]);
    let before = slm_json(&[
        "eval",
        "--model",
        &model,
        "--data",
        &split("test"),
        "--labels",
        "ham,spam",
        "--seq-len",
        "128",
        "--json",
    ]);
    let (acc0, f10) = (
        before["accuracy"].as_f64().unwrap(),
        before["macro_f1"].as_f64().unwrap(),
    );
    let (acc1, f11) = (
        after["accuracy"].as_f64().unwrap(),
        after["macro_f1"].as_f64().unwrap(),
    );
    eprintln!(
        "zero-shot accuracy {acc0:.4} macro-F1 {f10:.4}; LoRA accuracy {acc1:.4} macro-F1 {f11:.4}"
    );
    assert!(
        acc1 >= acc0 + 0.1 && f11 >= f10 + 0.1,
        "tuned {acc1}/{f11} vs zero-shot {acc0}/{f10}"
    );
}
