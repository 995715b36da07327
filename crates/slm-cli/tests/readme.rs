//! The README's command-line section runs as written, in order, from the clone's root: each
//! line of its `sh` block goes through bash with `set -euo pipefail`, `slm` being this test's
//! build of the binary. The `cargo` lines are the build this test already is and `export PATH`
//! only finds that build, so those two are the lines not run. Needs the cached SmolLM2 GGUF
//! (`scripts/fetch-smollm2.sh`); skipped without it unless `SLM_REQUIRE_SMOLLM2=1`.

mod common;

use common::{root, smollm2};
use std::process::Command;

/// The commands of the first `sh` block under `heading`, continuation lines joined.
fn commands(readme: &str, heading: &str) -> Vec<String> {
    let section = &readme[readme.find(heading).expect("heading in README")..];
    let block = &section[section.find("```sh\n").expect("an sh block") + 6..];
    let block = &block[..block.find("```").expect("the block ends")];
    block
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn readme_command_line_section_runs_as_written() {
    let Some(gguf) = smollm2() else { return };
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let all = commands(&readme, "## The `slm` command line");
    let (skipped, run): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|c| c.starts_with("cargo ") || c.starts_with("export PATH="));
    assert_eq!(skipped.len(), 2, "the build lines changed: {skipped:?}");
    assert!(run.len() >= 10, "too few commands: {run:?}");
    // `cargo build` made target/ for the user (here the build may live elsewhere:
    // CARGO_TARGET_DIR), and the commands write their outputs there.
    std::fs::create_dir_all(root().join("target")).unwrap();
    // One shell, as a user types them: MODEL set by one line is used by the next.
    let mut script = String::from("set -euo pipefail\nslm() { \"$SLM_BIN\" \"$@\"; }\n");
    for command in &run {
        script.push_str(&format!(
            "echo '+ {}' >&2\n{command}\n",
            command.replace('\'', "")
        ));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(root())
        .env("SLM_BIN", env!("CARGO_BIN_EXE_slm"))
        // The fetch script finds the cached copy there and checks its sha256; no network.
        .env("SLM_CACHE", gguf.parent().unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "a README command failed (the last `+` line):\n{stderr}"
    );
    let ran = stderr.lines().filter(|l| l.starts_with("+ ")).count();
    assert_eq!(ran, run.len(), "{stderr}");
    // What the commands promise exists where they say.
    let target = root().join("target");
    for made in [
        "logits.safetensors",
        "smollm2-hf/config.json",
        "curated/spamassassin/train.parquet",
        "curate.json",
        "tokenizer.json",
        "spam-lora/adapter/adapter_config.json",
        "spam-lora/metrics.jsonl",
        "spam-lora/predictions.jsonl",
        "spam-merged/model.safetensors",
    ] {
        assert!(target.join(made).exists(), "target/{made} was not written");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.join("curate.json")).unwrap()).unwrap();
    assert!(report["card"].is_object() && report["files"].is_array());
}
