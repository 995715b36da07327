//! Lying and corrupted model files through `slm logits`, as a hostile or broken download would
//! arrive: bit flips, truncations and integer smashes in GGUF and safetensors headers (model and
//! PEFT adapter weights), and config.json / tokenizer.json / adapter_config.json values of the
//! wrong type or an absurd size. Every case runs the
//! real binary under a 4 GiB address-space limit and a time limit, and must end in valid output
//! (exit 0) or one clean `error:` line (exit 1): never a panic, an abort, a hang or an
//! allocation beyond the limit.
//!
//! `SLM_FUZZ_CASES` sets the number of cases (default 320; a long run: 100000) and
//! `SLM_FUZZ_SEED` the seed; a failure names the case, its mutation and how to rerun it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The address-space limit of every run, in KiB (`ulimit -v`).
const MEMORY_LIMIT_KIB: u64 = 4 << 20;
/// A run slower than this is a hang (the tiny models load and run in well under a second).
const TIME_LIMIT: Duration = Duration::from_secs(60);

fn fixtures() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    assert!(p.is_dir(), "fixtures not found at {}", p.display());
    p
}

/// splitmix64: a small, seedable generator, so a failing case reruns exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// Integers that break parsers: zero, one, sign and width boundaries, 2^40.
const SMASH: [u64; 9] = [
    0,
    1,
    0xff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 40,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
    u64::MAX - 7,
];

/// Mutates a binary model file; `header` is the length of its header region, where most
/// mutations land (the tensor data behind it only changes values).
fn mutate_binary(rng: &mut Rng, bytes: &[u8], header: usize) -> (Vec<u8>, String) {
    let mut out = bytes.to_vec();
    let header = header.min(out.len());
    let at = |rng: &mut Rng, len: usize| {
        if rng.below(5) < 4 {
            rng.below(header)
        } else {
            rng.below(len)
        }
    };
    match rng.below(3) {
        0 => {
            let n = 1 + rng.below(8);
            let mut spots = Vec::new();
            for _ in 0..n {
                let i = at(rng, out.len());
                let bit = rng.below(8);
                out[i] ^= 1 << bit;
                spots.push(format!("{i}.{bit}"));
            }
            (out, format!("bit flips at {}", spots.join(",")))
        }
        1 => {
            let len = at(rng, out.len());
            out.truncate(len);
            (out, format!("truncated to {len} bytes"))
        }
        _ => {
            let value = *rng.pick(&SMASH);
            let width = *rng.pick(&[1usize, 4, 8]);
            let i = at(rng, out.len()).min(out.len().saturating_sub(width));
            out[i..i + width].copy_from_slice(&value.to_le_bytes()[..width]);
            (out, format!("{width}-byte smash of {value:#x} at {i}"))
        }
    }
}

/// JSON values of the wrong type or an absurd size.
fn absurd_value(rng: &mut Rng) -> Value {
    let choices = [
        "-1",
        "0",
        "7",
        "\"x\"",
        "\"\"",
        "1099511627776",
        "18446744073709551615",
        "1e308",
        "-1e308",
        "3.5",
        "null",
        "true",
        "[]",
        "{}",
        "[1099511627776]",
        "{\"rope_type\": 7}",
    ];
    serde_json::from_str(choices[rng.below(choices.len())]).unwrap()
}

/// Every path to a value in `v` (object keys and array indices), up to `limit` of them.
fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>, limit: usize) {
    if out.len() >= limit {
        return;
    }
    out.push(prefix.clone());
    match v {
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            prefix.push(Value::String(k.clone()));
            paths(x, prefix, out, limit);
            prefix.pop();
        }),
        Value::Array(a) => a.iter().enumerate().take(16).for_each(|(i, x)| {
            prefix.push(Value::from(i));
            paths(x, prefix, out, limit);
            prefix.pop();
        }),
        _ => {}
    }
}

fn at_path<'a>(v: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match k {
        Value::String(k) => &mut v[k.as_str()],
        k => &mut v[k.as_u64().unwrap() as usize],
    })
}

/// Mutates a JSON file: a value replaced or removed, or the text truncated.
fn mutate_json(rng: &mut Rng, text: &str) -> (Vec<u8>, String) {
    let mut v: Value = serde_json::from_str(text).unwrap();
    let mut all = Vec::new();
    paths(&v, &mut Vec::new(), &mut all, 4096);
    let path = all[1 + rng.below(all.len() - 1)].clone();
    let shown = path
        .iter()
        .map(|k| k.to_string().trim_matches('"').to_string())
        .collect::<Vec<_>>()
        .join(".");
    match rng.below(6) {
        0 => {
            let cut = rng.below(text.len());
            (
                text.as_bytes()[..cut].to_vec(),
                format!("truncated to {cut} bytes"),
            )
        }
        1 => {
            let (parent, last) = path.split_at(path.len() - 1);
            let what = match (at_path(&mut v, parent), &last[0]) {
                (Value::Object(m), Value::String(k)) => {
                    m.remove(k);
                    format!("removed {shown}")
                }
                (Value::Array(a), k) => {
                    a.remove(k.as_u64().unwrap() as usize);
                    format!("removed {shown}")
                }
                _ => unreachable!("paths lead through objects and arrays"),
            };
            (serde_json::to_vec(&v).unwrap(), what)
        }
        _ => {
            let new = absurd_value(rng);
            let what = format!("{shown} = {new}");
            *at_path(&mut v, &path) = new;
            (serde_json::to_vec(&v).unwrap(), what)
        }
    }
}

/// One mutated model on disk: the path to pass as `--model`, the `--adapter` if any, and what
/// was done.
fn make_case(rng: &mut Rng, dir: &Path) -> (PathBuf, Option<PathBuf>, String) {
    let fx = fixtures();
    let kind = rng.below(7);
    if kind >= 5 {
        // A PEFT adapter on the intact base.
        let src = fx.join("lora/adapter_a");
        let adapter = dir.join("adapter");
        std::fs::create_dir_all(&adapter).unwrap();
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            std::fs::copy(src.join(f), adapter.join(f)).unwrap();
        }
        let (file, (bytes, what)) = if kind == 5 {
            let text = std::fs::read_to_string(src.join("adapter_config.json")).unwrap();
            ("adapter_config.json", mutate_json(rng, &text))
        } else {
            let bytes = std::fs::read(src.join("adapter_model.safetensors")).unwrap();
            let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            (
                "adapter_model.safetensors",
                mutate_binary(rng, &bytes, header),
            )
        };
        std::fs::write(adapter.join(file), bytes).unwrap();
        return (
            fx.join("models/llama-tiny"),
            Some(adapter),
            format!("adapter_a/{file}: {what}"),
        );
    }
    if kind < 2 {
        let name = if kind == 0 {
            "llama-tiny.f32.gguf"
        } else {
            "llama-tiny.q8_0.gguf"
        };
        let bytes = std::fs::read(fx.join("quant/gguf").join(name)).unwrap();
        // Metadata (with the 768-token vocabulary) and tensor infos sit in the first ~24 KiB.
        let (bytes, what) = mutate_binary(rng, &bytes, 24 << 10);
        let path = dir.join("model.gguf");
        std::fs::write(&path, bytes).unwrap();
        return (path, None, format!("{name}: {what}"));
    }
    let src = fx.join("models/llama-tiny");
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(src.join(f), model.join(f)).unwrap();
    }
    let (file, (bytes, what)) = match kind {
        2 => {
            let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
            let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            ("model.safetensors", mutate_binary(rng, &bytes, header))
        }
        3 => {
            let text = std::fs::read_to_string(src.join("config.json")).unwrap();
            ("config.json", mutate_json(rng, &text))
        }
        _ => {
            let text = std::fs::read_to_string(src.join("tokenizer.json")).unwrap();
            ("tokenizer.json", mutate_json(rng, &text))
        }
    };
    std::fs::write(model.join(file), bytes).unwrap();
    (model, None, format!("llama-tiny/{file}: {what}"))
}

/// Runs `slm logits` on `model` (with `adapter`) under the limits; `Err` says what went wrong.
fn run_case(model: &Path, adapter: Option<&Path>, out: &Path) -> Result<(), String> {
    // stderr goes to a file: a pipe nobody drains would block a long message forever.
    let err_path = out.with_extension("stderr");
    let err_file = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -v {MEMORY_LIMIT_KIB}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_slm"))
        .args(["logits", "--model"])
        .arg(model)
        .args(["--ids", "0,5,9", "--out"])
        .arg(out)
        .args(
            adapter
                .map(|a| [Path::new("--adapter"), a])
                .into_iter()
                .flatten(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("hung for more than {TIME_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr =
        String::from_utf8_lossy(&std::fs::read(&err_path).unwrap_or_default()).into_owned();
    let lines: Vec<&str> = stderr.lines().collect();
    match status.code() {
        Some(0) if out.is_file() => Ok(()),
        Some(1)
            if lines.len() == 1
                && lines[0].starts_with("error: ")
                && !lines[0].starts_with("error: internal error")
                && lines[0].len() < 4096 =>
        {
            Ok(())
        }
        code => Err(format!(
            "exit {code:?} ({status}), stderr: {}",
            stderr.trim()
        )),
    }
}

#[test]
fn mutated_model_files_never_crash_the_process() {
    let cases: usize = std::env::var("SLM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(320);
    let seed: u64 = std::env::var("SLM_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    let mut failures = Vec::new();
                    for case in (w..cases).step_by(workers) {
                        let mut rng = Rng(seed ^ (case as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
                        let dir = tempfile::tempdir().unwrap();
                        let (model, adapter, what) = make_case(&mut rng, dir.path());
                        let out = dir.path().join("logits.safetensors");
                        if let Err(e) = run_case(&model, adapter.as_deref(), &out) {
                            failures.push(format!("case {case} ({what}): {e}"));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {cases} mutated models crashed `slm logits` (rerun with SLM_FUZZ_SEED={seed} \
         SLM_FUZZ_CASES={cases}):\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
