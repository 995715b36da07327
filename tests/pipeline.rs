//! The end-to-end pipeline on SmolLM2 (`--quick`: a slice of every phase), asserting real
//! outcomes: the tuned teacher and the distilled student beat the zero-shot baseline and the
//! majority class on the test split; every quantized model stays within a stated margin of its
//! parent; `report.json`, `emissions.csv` and `index.html` exist, parse and agree; the exports
//! load; a second run resumes every phase instead of running it again; and the report renders
//! in headless Chromium with its plots (when Chromium is installed; required under
//! `SLM_REQUIRE_CHROMIUM=1`, as CI sets).
//!
//! Skipped without the cached SmolLM2 GGUF (`scripts/fetch-smollm2.sh`), a failure under
//! `SLM_REQUIRE_SMOLLM2=1`.

use std::path::{Path, PathBuf};

use slm::core::cache::smollm2_gguf_if_present;
use slm::pipeline::{PipelineConfig, PipelineReport, run};

/// How far (absolute accuracy) a quantized model may fall below the model it was quantized
/// from on this 53-email test split (one email is 1.9 points).
const QUANTIZED_MARGIN: f64 = 0.06;

fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .map(|name| Path::new("/usr/bin").join(name))
        .find(|p| p.is_file());
    if found.is_none() && std::env::var_os("SLM_REQUIRE_CHROMIUM").is_some_and(|v| v == "1") {
        panic!("SLM_REQUIRE_CHROMIUM=1 but no chromium in /usr/bin (apt-get install chromium)");
    }
    found
}

/// Renders `page` headless: its DOM after parsing, and a screenshot.
fn render(chromium: &Path, page: &Path, screenshot: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--allow-file-access-from-files",
    ];
    let url = format!("file://{}", page.display());
    let dom = std::process::Command::new(chromium)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", &url])
        .output()
        .expect("running chromium");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let shot = std::process::Command::new(chromium)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .args(["--window-size=1280,3000", &url])
        .output()
        .expect("running chromium");
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    String::from_utf8(dom.stdout).unwrap()
}

/// Runs `examples/serve` on the exported model and classifies two emails through its route.
/// The example is built by `cargo test --workspace` (skipped when only this test was built).
fn serve_example(e: &slm::pipeline::Exported, labels: &[String]) {
    use std::io::{BufRead, BufReader, Read, Write};
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/serve");
    if !bin.is_file() {
        eprintln!("examples/serve not built (run cargo test --workspace): skipped");
        return;
    }
    let mut child = std::process::Command::new(&bin)
        .args(["--model".as_ref(), e.gguf.as_os_str()])
        .args(["--task".as_ref(), e.task.as_os_str()])
        .args(["--port", "0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "examples/serve exited"
        );
    }
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    for text in [
        "Hi Bob, the meeting moved to 3pm, see you there.",
        "WIN a FREE cruise!!! Click here now to claim your prize, limited offer.",
    ] {
        let body = serde_json::json!({ "text": text }).to_string();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let json: serde_json::Value =
            serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert!(labels.iter().any(|l| json["label"] == l.as_str()), "{json}");
        let total: f64 = labels
            .iter()
            .map(|l| json["probs"][l].as_f64().unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-6, "{json}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `a` and `b` are the same JSON, numbers equal to a relative 1e-12.
fn same(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                "{at}: {x} vs {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                same(v, w, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (k, v) in x {
                same(v, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

#[test]
fn quick_pipeline_beats_the_baselines_and_reports_consistently() {
    let Some(base) = smollm2_gguf_if_present().unwrap() else {
        eprintln!("skipped: no cached SmolLM2 (scripts/fetch-smollm2.sh)");
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = PipelineConfig {
        out: out.path().to_path_buf(),
        data: root.join("data/spamassassin/curate.toml"),
        base: Some(base),
        ..PipelineConfig::default().quick()
    };
    let report = run(&config).unwrap();
    let acc = |stage: &str| {
        report
            .stage(stage)
            .unwrap_or_else(|| panic!("no stage {stage}"))
            .classification
            .accuracy
    };

    // Real outcomes on the test split.
    let zero_shot = report.stage("base-zero-shot").unwrap();
    let supports: Vec<usize> = zero_shot
        .classification
        .per_label
        .values()
        .map(|m| m.support)
        .collect();
    let majority = *supports.iter().max().unwrap() as f64 / supports.iter().sum::<usize>() as f64;
    for tuned in ["teacher", "student"] {
        assert!(
            acc(tuned) > acc("base-zero-shot") && acc(tuned) > majority,
            "{tuned} {:.3} vs zero-shot {:.3}, majority {majority:.3}",
            acc(tuned),
            acc("base-zero-shot")
        );
    }
    assert_eq!(report.student.layers * 2, report.teacher.layers);
    assert!((report.compressed.sparsity - config.compress.sparsity).abs() < 0.01);
    for (qtype, _, bits) in &report.compressed.quantized {
        let q = acc(&format!("quantized-{qtype}"));
        assert!(
            q >= acc("pruned") - QUANTIZED_MARGIN,
            "{qtype}: {q:.3} against the pruned parent's {:.3}",
            acc("pruned")
        );
        assert!(*bits < 9.0, "{qtype}: {bits} bits per weight");
    }
    for s in &report.stages {
        assert_eq!(s.predictions, zero_shot.predictions, "{}", s.stage);
        assert!(s.batched_predictions_per_second > 0.0 && s.latency_p50_ms > 0.0);
        assert!(s.latency_p50_ms <= s.latency_p99_ms);
        // Energy is always said with its method, never a bare number.
        assert_eq!(s.wh_per_1k.is_some(), s.energy_method.is_some());
    }

    // The three files agree with each other and with what run() returned.
    let dir = out.path().join("report");
    // report.json is the returned report (byte for byte as serde writes it) and parses back.
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    assert_eq!(text, serde_json::to_string_pretty(&report).unwrap());
    let json: PipelineReport = serde_json::from_str(&text).unwrap();
    assert_eq!(json.chosen, report.chosen);
    assert_eq!(json.stages.len(), report.stages.len());
    let mut csv = csv::Reader::from_path(dir.join("emissions.csv")).unwrap();
    let header = csv.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), report.phases.len());
    let pue = report.energy.config.pue;
    for (row, phase) in rows.iter().zip(&report.phases) {
        assert_eq!(&row[col("experiment_id")], phase.phase);
        let kwh: f64 = row[col("energy_consumed")].parse().unwrap();
        let wh = phase.wh.expect("every phase is metered") * pue;
        assert!(
            (kwh * 1000.0 - wh).abs() <= 1e-9 + 1e-6 * wh,
            "{}: {kwh} kWh vs {wh} Wh",
            phase.phase
        );
    }
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    for s in &report.stages {
        let row = format!(
            "<tr data-stage=\"{}\"><td>{}</td><td>{:.4}</td><td>{:.4}</td>",
            s.stage, s.stage, s.classification.accuracy, s.classification.macro_f1
        );
        assert!(html.contains(&row), "no row {row}");
    }
    assert!(html.contains(&format!("<b id=\"chosen\">{}</b>", report.chosen)));
    for plot in [
        "accuracy-vs-energy",
        "size-vs-accuracy",
        "latency-cdf",
        "losses",
        "energy-by-phase",
    ] {
        assert!(
            html.contains(&format!("<figure id=\"plot-{plot}\"><svg")),
            "{plot}"
        );
        assert!(dir.join(format!("{plot}.svg")).is_file());
    }
    assert!(!html.contains("src=\"http") && !html.contains("<script"));

    // The exports load where their users load them.
    let e = &report.exported;
    let gguf = slm::core::prelude::Checkpoint::open(&e.gguf).unwrap();
    assert!(gguf.tokenizer.is_some());
    let hf = slm::core::prelude::Checkpoint::open(&e.hf_dir).unwrap();
    assert_eq!(hf.config.num_hidden_layers, gguf.config.num_hidden_layers);
    assert!(e.hf_dir.join("task.json").is_file());
    let modelfile = std::fs::read_to_string(&e.modelfile).unwrap();
    assert!(modelfile.starts_with(&format!(
        "FROM ./{}",
        e.gguf.file_name().unwrap().to_string_lossy()
    )));

    // The exported model inside a user's own service (examples/serve), over HTTP.
    serve_example(e, &config.labels);

    // A second run resumes every phase from its artifacts: the same numbers, nothing re-run.
    let again = run(&config).unwrap();
    for phase in [
        "curate",
        "tokenizer",
        "teacher",
        "student",
        "compress",
        "export",
    ] {
        assert!(
            again.resumed.contains(&phase.to_string()),
            "{phase} ran again"
        );
    }
    // (serde_json's default float parsing may round the last bit: numbers compared to 1e-12.)
    same(
        &serde_json::to_value(&again.stages).unwrap(),
        &serde_json::to_value(&report.stages).unwrap(),
        "stages",
    );
    same(
        &serde_json::to_value(&again.phases).unwrap(),
        &serde_json::to_value(&report.phases).unwrap(),
        "phases",
    );

    // The report opens in a real browser, plots included.
    if let Some(chromium) = chromium() {
        let shot = out.path().join("report.png");
        let dom = render(&chromium, &dir.join("index.html"), &shot);
        assert!(
            dom.matches("<svg").count() >= 5,
            "plots missing from the rendered DOM"
        );
        assert!(dom.contains("id=\"stages\""));
        let png = std::fs::read(&shot).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
        if let Some(keep) = std::env::var_os("SLM_PIPELINE_SCREENSHOT") {
            std::fs::copy(&shot, keep).unwrap();
        }
    }
}
