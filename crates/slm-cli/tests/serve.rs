//! `slm serve` on SmolLM2 driven by the official `openai` Python client
//! (`tests/data/openai_client.py`: chat, streaming, completions, a JSON-schema response, typed
//! errors, 32 concurrent clients), then a graceful shutdown on SIGTERM.
//!
//! Needs the SmolLM2 GGUF (`scripts/fetch-smollm2.sh`) and a python with `openai`
//! (`SLM_OPENAI_PYTHON`, from `scripts/openai-venv.sh`); skipped without them unless
//! `SLM_REQUIRE_OPENAI=1` (as `.ci/run` sets).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn python() -> Option<String> {
    match std::env::var("SLM_OPENAI_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var("SLM_REQUIRE_OPENAI").as_deref() != Ok("1"),
                "SLM_REQUIRE_OPENAI=1 but SLM_OPENAI_PYTHON is not set"
            );
            eprintln!("skipping: set SLM_OPENAI_PYTHON (scripts/openai-venv.sh)");
            None
        }
    }
}

#[test]
fn the_openai_python_client_talks_to_slm_serve() {
    let Some(python) = python() else { return };
    let Some(model) = common::smollm2() else {
        return;
    };
    let mut server = Command::new(env!("CARGO_BIN_EXE_slm"))
        .args(["serve", "--model"])
        .arg(&model)
        .args([
            "--port",
            "0",
            "--served-model-name",
            "smollm2",
            "--kv-memory",
            "256MiB",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("slm serve exited").unwrap();
        if let Some(url) = line.split(" on ").nth(1) {
            break url.trim().to_string();
        }
    };
    let out = Command::new(&python)
        .arg(common::root().join("crates/slm-cli/tests/data/openai_client.py"))
        .args([&base, "smollm2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(out.status.success(), "openai client failed:\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["concurrent"]["requests"], 64);

    // SIGTERM: the server finishes and exits cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut stopped = false;
    for line in lines.by_ref() {
        if line.unwrap().contains("slm serve: stopped") {
            stopped = true;
            break;
        }
    }
    assert!(stopped, "no graceful stop");
    for _ in 0..100 {
        if let Some(code) = server.try_wait().unwrap() {
            assert!(code.success(), "{code}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill().unwrap();
    panic!("slm serve did not exit after SIGTERM");
}
