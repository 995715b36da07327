//! `slm finetune` and `slm eval` end to end on the tiny fixture model: the output directory's
//! files, the JSON contracts, a run killed with SIGKILL that `--resume` continues on the
//! same loss curve as a run never interrupted, and a disk that fills up while a checkpoint is
//! written (a small tmpfs), which keeps the previous checkpoint whole.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn model() -> String {
    fixtures().join("models/llama-tiny").display().to_string()
}

/// A two-label dataset in the curated splits' layout (`id`, `input`, `label`).
fn data(dir: &Path) -> PathBuf {
    let words = [
        "printer", "invoice", "router", "refund", "password", "delivery",
    ];
    let lines: Vec<String> = (0..40)
        .map(|i| {
            let label = if i % 2 == 0 { "ham" } else { "spam" };
            let text = format!(
                "the {} about the {} {label}",
                words[i % 6],
                words[(i / 6) % 6]
            );
            serde_json::json!({"id": format!("r{i}"), "input": text, "label": label}).to_string()
        })
        .collect();
    let path = dir.join("train.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// `command` on the tiny model and the two-label data, with the training flags every test shares.
fn train_args(command: &str, data: &Path, out: &Path, steps: u64, extra: &[&str]) -> Vec<String> {
    let model_flag = if command == "distill" {
        "--teacher"
    } else {
        "--model"
    };
    let mut args: Vec<String> = [
        command,
        model_flag,
        &model(),
        "--data",
        &data.display().to_string(),
        "--labels",
        "ham,spam",
        "--seq-len",
        "96",
        "--batch-size",
        "2",
        "--lr",
        "3e-3",
        "--max-steps",
        &steps.to_string(),
        "--out",
        &out.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn finetune_args(data: &Path, out: &Path, steps: u64) -> Vec<String> {
    train_args(
        "finetune",
        data,
        out,
        steps,
        &["--lora-r", "4", "--save-every", "5"],
    )
}

fn slm(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_slm"))
        .args(args)
        .output()
        .unwrap()
}

fn losses(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v.get("loss").and_then(|l| l.as_f64()))
        .collect()
}

#[test]
fn finetune_writes_its_outputs_and_eval_reads_the_task_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path());
    let out = dir.path().join("out");
    let o = slm(&finetune_args(&data, &out, 12));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["steps"], 12);
    for f in [
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "adapter/task.json",
        "task.json",
        "metrics.jsonl",
        "energy.json",
        "checkpoints/latest",
        "checkpoints/step-000010/trainer_state.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let curve = losses(&out);
    assert_eq!(curve.len(), 12);
    assert!(curve[11] < curve[0], "{curve:?}");
    // The adapter's task.json gives eval its labels and prompt.
    let adapter = out.join("adapter").display().to_string();
    let o = slm(&[
        "eval".into(),
        "--model".into(),
        model(),
        "--adapter".into(),
        adapter,
        "--data".into(),
        data.display().to_string(),
        "--json".into(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in [
        "accuracy",
        "macro_f1",
        "confusion",
        "predictions_per_second",
        "per_label",
    ] {
        assert!(r.get(key).is_some(), "{key} missing from {r}");
    }
    assert_eq!(r["examples"], 40);
    assert!(out.join("predictions.jsonl").is_file());
    // generate on the adapter builds the task's prompt around the text: the same new tokens
    // as generating from the rendered prompt's ids.
    let task: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter/task.json")).unwrap())
            .unwrap();
    let instruction = task["template"]["instruction"].as_str().unwrap();
    let input = "the printer about the refund";
    let rendered = format!("{instruction}\n\n### Input:\n{input}\n\n### Response:\n");
    let tok = slm(&[
        "tokenize".into(),
        "--tokenizer".into(),
        model(),
        "--text".into(),
        rendered,
        "--add-special-tokens".into(),
    ]);
    let ids: serde_json::Value = serde_json::from_slice(&tok.stdout).unwrap();
    let ids: Vec<String> = ids["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.to_string())
        .collect();
    let adapter = out.join("adapter").display().to_string();
    let generate = |extra: &[String]| {
        let mut a: Vec<String> = [
            "generate",
            "--model",
            &model(),
            "--adapter",
            &adapter,
            "--max-new-tokens",
            "3",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend_from_slice(extra);
        let o = slm(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["ids"].clone()
    };
    let templated = generate(&["--prompt".into(), input.into()]);
    let by_ids = generate(&["--ids".into(), ids.join(",")]);
    assert_eq!(templated, by_ids, "the task template was not applied");
    // Labels outside --labels are a clear error, not a third class.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, r#"{"id":"x","input":"hello there","label":"maybe"}"#).unwrap();
    let o = slm(&finetune_args(&bad, &dir.path().join("o2"), 2));
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("`maybe` is not one of"), "{e}");
}

#[test]
fn dora_with_a_saved_head_finetunes_into_a_peft_adapter_that_eval_loads() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path());
    let out = dir.path().join("dora");
    let o = slm(&train_args(
        "finetune",
        &data,
        &out,
        6,
        &[
            "--lora-r",
            "4",
            "--dora",
            "--lora-targets",
            "q,v",
            "--modules-to-save",
            "lm_head",
        ],
    ));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["use_dora"], true);
    let bytes = std::fs::read(out.join("adapter/adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let magnitudes: Vec<_> = st
        .names()
        .into_iter()
        .filter(|n| n.ends_with(".lora_magnitude_vector"))
        .collect();
    assert_eq!(magnitudes.len(), 4, "q and v of 2 layers: {magnitudes:?}");
    assert!(st.names().contains(&"base_model.model.lm_head.weight"));
    assert_eq!(config["modules_to_save"], serde_json::json!(["lm_head"]));
    let l = losses(&out);
    assert_eq!(l.len(), 6);
    assert!(l[5] < l[0], "DoRA training lowers the loss: {l:?}");
    let o = slm(&[
        "eval".into(),
        "--model".into(),
        model(),
        "--adapter".into(),
        out.join("adapter").display().to_string(),
        "--data".into(),
        data.display().to_string(),
        "--json".into(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["accuracy"].as_f64().is_some(), "{v}");
}

#[test]
fn a_killed_run_resumes_on_the_same_loss_curve() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path());
    let steps = 400;
    // The reference: never interrupted.
    let whole = dir.path().join("whole");
    assert!(slm(&finetune_args(&data, &whole, steps)).status.success());
    // SIGKILL mid-run, once a few checkpoints exist.
    let cut = dir.path().join("cut");
    let mut child = Command::new(env!("CARGO_BIN_EXE_slm"))
        .args(finetune_args(&data, &cut, steps))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let latest = cut.join("checkpoints/latest");
    loop {
        let step = std::fs::read_to_string(&latest).unwrap_or_default();
        if step.trim() >= "step-000020" {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = losses(&cut).len();
    assert!(
        before < steps as usize,
        "killed after {before} of {steps} steps"
    );
    let mut args = finetune_args(&data, &cut, steps);
    args.push("--resume".into());
    let o = slm(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["resumed_from"].as_u64().unwrap() >= 20, "{v}");
    let (a, b) = (losses(&whole), losses(&cut));
    assert_eq!(a.len(), b.len());
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5,
            "step {}: {x} uninterrupted, {y} resumed",
            step + 1
        );
    }
}

#[test]
fn distill_caches_the_teacher_writes_a_smaller_student_and_refuses_another_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path());
    let out = dir.path().join("student");
    let common = |extra: &[&str], out: &Path| -> Vec<String> {
        let mut a = vec!["--top-k", "16"];
        a.extend_from_slice(extra);
        train_args("distill", &data, out, 6, &a)
    };
    let o = slm(&common(&["--student-layers", "1"], &out));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["steps"], 6);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("model/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["num_hidden_layers"], 1);
    assert!(out.join("model/task.json").is_file() && out.join("energy.json").is_file());
    // The teacher's soft labels were cached once; the online teacher gives the same curve.
    let cache = out.join("teacher_topk.safetensors");
    assert!(cache.is_file());
    assert!(String::from_utf8_lossy(&o.stderr).contains("caching the teacher"));
    let online = dir.path().join("online");
    let o = slm(&common(&["--student-layers", "1", "--online"], &online));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!online.join("teacher_topk.safetensors").exists());
    for (a, b) in losses(&out).iter().zip(losses(&online)) {
        assert!((a - b).abs() <= 1e-5, "cached {a} vs online {b}");
    }
    // Run again, the cache is reused; the whole vocabulary cannot be cached.
    let o = slm(&common(&["--student-layers", "1"], &out));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("caching the teacher"));
    let mut whole = train_args(
        "distill",
        &data,
        &dir.path().join("s3"),
        2,
        &["--top-k", "0"],
    );
    whole.extend(["--student-layers".to_string(), "1".to_string()]);
    let o = slm(&whole);
    assert!(String::from_utf8_lossy(&o.stderr).contains("add --online"));
    // A narrowed student: fewer MLP neurons and heads, from the teacher's weights.
    let narrow = dir.path().join("narrow");
    let o = slm(&common(
        &[
            "--student-layers",
            "2",
            "--student-intermediate-size",
            "64",
            "--student-heads",
            "2",
        ],
        &narrow,
    ));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(narrow.join("model/config.json")).unwrap())
            .unwrap();
    assert_eq!(
        (&config["intermediate_size"], &config["num_attention_heads"]),
        (&64.into(), &2.into())
    );
    let o = slm(&common(
        &["--student-layers", "2", "--student-heads", "3"],
        &narrow,
    ));
    assert!(String::from_utf8_lossy(&o.stderr).contains("multiple of the 2 key/value heads"));
    // A student config with another vocabulary names both sides.
    let mut other: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("models/llama-tiny/config.json")).unwrap(),
    )
    .unwrap();
    other["vocab_size"] = 500.into();
    for k in ["bos_token_id", "eos_token_id", "pad_token_id"] {
        other[k] = serde_json::Value::Null;
    }
    let cfg = dir.path().join("student.json");
    std::fs::write(&cfg, other.to_string()).unwrap();
    let o = slm(&common(
        &["--student-config", cfg.to_str().unwrap()],
        &dir.path().join("s2"),
    ));
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("share the tokenizer") && e.contains("768") && e.contains("500"),
        "{e}"
    );
}

/// A small tmpfs mounted for the test (unmounted on drop); `None` where mounting is not
/// permitted (not root, no CAP_SYS_ADMIN), which the test then says.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Option<SmallDisk> {
        let at = dir.join("disk");
        std::fs::create_dir_all(&at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(at))
    }

    fn available(&self) -> u64 {
        let o = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.0)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_while_checkpointing_keeps_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path());
    let Some(disk) = SmallDisk::mount(dir.path(), "2m") else {
        eprintln!("skipping: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return;
    };
    let out = disk.0.join("run");
    let o = slm(&finetune_args(&data, &out, 10));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let latest = out.join("checkpoints/latest");
    assert_eq!(std::fs::read_to_string(&latest).unwrap(), "step-000010");
    // Fill the disk but for 40 KB: less than one checkpoint (~124 KB), more than the metrics.
    let filler = disk.0.join("filler");
    let room = disk.available().saturating_sub(40 * 1024);
    std::fs::write(&filler, vec![0u8; room as usize]).unwrap();
    let mut args = finetune_args(&data, &out, 20);
    args.push("--resume".into());
    let o = slm(&args);
    assert_eq!(o.status.code(), Some(1), "the full disk went unnoticed");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("No space left on device"), "{e}");
    assert!(
        e.contains(".tmp-step-000015"),
        "it stopped while checkpointing: {e}"
    );
    // The previous checkpoint is whole, `latest` still names it, nothing half-written is one.
    assert_eq!(std::fs::read_to_string(&latest).unwrap(), "step-000010");
    assert!(!out.join("checkpoints/step-000015").exists());
    let o = slm(&[
        "eval".into(),
        "--model".into(),
        model(),
        "--adapter".into(),
        out.join("checkpoints/step-000010/adapter")
            .display()
            .to_string(),
        "--data".into(),
        data.display().to_string(),
        "--labels".into(),
        "ham,spam".into(),
        "--json".into(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // With room again, the run resumes from it and finishes.
    std::fs::remove_file(&filler).unwrap();
    let o = slm(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["resumed_from"].as_u64(), v["steps"].as_u64()),
        (Some(10), Some(20))
    );
    assert_eq!(losses(&out).len(), 20);
}
