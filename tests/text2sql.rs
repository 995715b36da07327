//! `examples/text2sql.rs` end to end on SmolLM2 with a short training budget (`--quick
//! --steps 12`): the gold queries run, paraphrases are written and filtered, the LoRA adapter
//! trains and is served unmerged, and its execution accuracy beats the zero-shot base model's
//! by a wide margin on questions phrased as training never phrased them.
//!
//! Skipped without the cached SmolLM2 GGUF (`scripts/fetch-smollm2.sh`), a failure under
//! `SLM_REQUIRE_SMOLLM2=1`.

use slm::core::cache::smollm2_gguf_if_present;

#[test]
fn the_tuned_adapter_beats_the_base_model_on_execution_accuracy() {
    let Some(_) = smollm2_gguf_if_present().unwrap() else {
        eprintln!("skipping: SmolLM2 GGUF not found (scripts/fetch-smollm2.sh)");
        return;
    };
    // cargo builds the examples beside the tests: target/<profile>/examples/text2sql.
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/text2sql");
    assert!(example.is_file(), "{} not built", example.display());
    let out = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(&example)
        .args(["--quick", "--steps", "12", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    let acc = |k: &str| results[k]["accuracy"].as_f64().unwrap();
    assert_eq!(results["test"], 24, "{results}");
    assert!(
        acc("tuned") >= acc("base") + 0.25 && acc("tuned") >= 0.5,
        "tuned {} vs base {}\n{stdout}",
        acc("tuned"),
        acc("base")
    );
    assert!(out.path().join("adapter/adapter_config.json").is_file());
    assert!(
        stdout.contains("estimated") || stdout.contains("measured"),
        "{stdout}"
    );
}
