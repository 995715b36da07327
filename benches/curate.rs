//! The whole `slm data curate` run on the SpamAssassin corpus: MB/s of input JSONL and the
//! peak resident memory of one run.
//!
//! ```text
//! scripts/import-spamassassin.sh ~/.cache/slm/spamassassin   # the full corpus (optional)
//! cargo bench --bench curate --profile dev
//! ```
//! Runs `data/spamassassin/curate.toml` (read, a label filter, NFKC + HTML normalisation,
//! length bounds, PII scrubbing, exact and MinHash dedup, label audit, stratified and
//! live-like splits, JSONL + Parquet + card + dropped.jsonl) with its input swapped for the
//! full corpus when there is one (see `common::spamassassin_jsonl`), into a temporary folder.
//! Peak RSS: Linux's VmHWM after resetting it (`/proc/self/clear_refs` = 5) just before one
//! run, so it is that run's peak, including the process's baseline (printed beside it).

mod common;

use std::sync::Mutex;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use slm::data::{CurateConfig, StageRegistry, curate, curate_with};
use slm::energy::PhaseObserver;

/// Wall time of each curation phase (read, every stage, split, write).
#[derive(Default)]
struct PhaseTimer {
    open: Mutex<Vec<(String, Instant)>>,
    done: Mutex<Vec<(String, f64)>>,
}

impl slm::data::CurateObserver for PhaseTimer {}

impl PhaseObserver for PhaseTimer {
    fn phase_started(&self, name: &str) {
        self.open
            .lock()
            .unwrap()
            .push((name.to_string(), Instant::now()));
    }
    fn phase_ended(&self, name: &str) {
        let mut open = self.open.lock().unwrap();
        if let Some(i) = open.iter().rposition(|(n, _)| n == name) {
            let (name, start) = open.remove(i);
            self.done
                .lock()
                .unwrap()
                .push((name, start.elapsed().as_secs_f64()));
        }
    }
}

/// `VmHWM` / `VmRSS` from /proc/self/status, in MiB.
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn bench_curate(c: &mut Criterion) {
    let (name, corpus) = common::spamassassin_jsonl();
    let config_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/spamassassin/curate.toml");
    let mut config = CurateConfig::from_path(&config_path).expect("data/spamassassin/curate.toml");
    config.inputs[0].path = corpus.clone();
    let out = tempfile::tempdir().expect("a temporary folder");
    config.output_dir = out.path().join("curated");
    let bytes = std::fs::metadata(&corpus).expect("the corpus").len();

    let before = status_mib("VmRSS:");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let timer = PhaseTimer::default();
    let report = curate_with(&config, &StageRegistry::default(), &timer).expect("curate");
    let peak = status_mib("VmHWM:");
    let phases: Vec<String> = timer
        .done
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|(name, s)| format!("{} {:.0} ms", name.trim_start_matches("curation/"), s * 1e3))
        .collect();
    let stages: Vec<String> = report
        .card
        .stages
        .iter()
        .map(|s| format!("{} {}->{}", s.stage, s.input, s.output))
        .collect();
    eprintln!(
        "{name}: {} ({:.1} MB), {} rows read, {} kept, {} dropped; {}",
        corpus.display(),
        bytes as f64 / 1e6,
        report.card.rows_read,
        report.card.splits.values().map(|s| s.count).sum::<usize>(),
        report.dropped,
        stages.join(", ")
    );
    match (peak, before) {
        (Some(peak), Some(before)) if reset => eprintln!(
            "peak RSS of one curate run: {peak:.1} MiB (the process held {before:.1} MiB before it)"
        ),
        (Some(peak), _) => eprintln!(
            "peak RSS of the process so far: {peak:.1} MiB (could not reset VmHWM, so this includes set-up)"
        ),
        _ => eprintln!("peak RSS: /proc/self/status is not available here"),
    }
    eprintln!("phases of that run: {}", phases.join(", "));

    let mut group = c.benchmark_group(format!("curate/{name}"));
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    group.bench_function("curate_toml", |b| {
        b.iter(|| curate(&config).expect("curate"))
    });
    group.finish();
}

criterion_group!(benches, bench_curate);
criterion_main!(benches);
