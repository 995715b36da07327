//! `slm serve` on SmolLM2 driven by the official `openai` Python client
//! (`tests/data/openai_client.py`: chat, streaming, completions, a JSON-schema response, typed
//! errors, 32 concurrent clients), then a graceful shutdown on SIGTERM; and `--adapter`
//! (multi-LoRA) on llama-tiny with peft's fixture adapters over raw HTTP.
//!
//! Needs the SmolLM2 GGUF (`scripts/fetch-smollm2.sh`) and a python with `openai`
//! (`SLM_OPENAI_PYTHON`, from `scripts/openai-venv.sh`); skipped without them unless
//! `SLM_REQUIRE_OPENAI=1` (as `.ci/run` sets).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
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
    let base = printed_url(&mut lines);
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

/// The `http://host:port/v1` a starting `slm serve` prints on stderr.
fn printed_url(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> String {
    loop {
        let line = lines.next().expect("slm serve exited").unwrap();
        if let Some(url) = line.split(" on ").nth(1) {
            return url.trim().to_string();
        }
    }
}

/// A child process killed when dropped (also when a test fails while it runs).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `slm serve` with `args`, and the `http://host:port/v1` it prints.
fn spawn_serve(args: &[&str]) -> (Killed, String) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_slm"))
        .arg("serve")
        .args(args)
        .args(["--port", "0", "--kv-memory", "16MiB"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let base = printed_url(&mut lines);
    // Keep reading its log: a closed pipe would fail the server's next line.
    std::thread::spawn(move || lines.for_each(drop));
    (Killed(server), base)
}

/// One HTTP/1.1 request (connection closed after it): status and body.
fn http(base: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    // `base` is the printed `http://host:port/v1`.
    let addr = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap())
}

#[test]
fn slm_serve_serves_lora_adapters_as_models() {
    let fixtures = common::root().join("fixtures");
    let model = fixtures.join("models/llama-tiny");
    let a = format!("a={}", fixtures.join("lora/adapter_a").display());
    let all = format!("all={}", fixtures.join("lora/adapter_rslora_all").display());
    let model = model.to_str().unwrap();
    let args = [
        "--model",
        model,
        "--backend",
        "fast",
        "--served-model-name",
        "tiny",
        "--adapter",
        &a,
        "--adapter",
        &all,
    ];
    let (server, base) = spawn_serve(&args);
    let (status, list) = http(&base, "GET", "/v1/models", "");
    assert_eq!(status, 200);
    let cards: Vec<(String, serde_json::Value)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_string(), m["parent"].clone()))
        .collect();
    assert_eq!(
        cards,
        [
            ("tiny".to_string(), serde_json::Value::Null),
            ("a".to_string(), "tiny".into()),
            ("all".to_string(), "tiny".into())
        ]
    );
    assert!(
        list["data"][1]["root"]
            .as_str()
            .unwrap()
            .ends_with("adapter_a")
    );
    let complete = |model: &str| {
        let body = serde_json::json!({"model": model, "prompt": [5, 17, 42], "max_tokens": 6,
            "temperature": 0, "ignore_eos": true});
        http(&base, "POST", "/v1/completions", &body.to_string())
    };
    let texts: Vec<String> = ["tiny", "a", "all"]
        .iter()
        .map(|m| {
            let (status, r) = complete(m);
            assert_eq!(status, 200, "{r}");
            assert_eq!(r["model"], *m);
            r["choices"][0]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(texts[0] != texts[1] && texts[1] != texts[2], "{texts:?}");
    let (status, e) = complete("b");
    assert_eq!(status, 400);
    assert_eq!(e["error"]["code"], "model_not_found");
    drop(server);

    // Refused before serving: no NAME=, a missing directory, the burn decoder.
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_slm"))
            .args(["serve", "--model", model, "--port", "0"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--backend", "fast", "--adapter", "adapter_a"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME=DIR"));
    let out = run(&["--backend", "fast", "--adapter", "x=/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loading adapter `x`"), "{err}");
    let out = run(&["--backend", "burn", "--adapter", &a]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fast path"));
}
