//! Run a fixed CPU workload under an `EnergyTracker` with this machine's default meters and print
//! the tracker's JSON report: the Rust side of `benches/codecarbon_compare.py`, and a small
//! tour of slm-energy (phases, per-component energy, carbon, report files).
//!
//! Run with:
//! ```text
//! cargo run --example energy_workload -- --seconds 10 --country FRA
//! cargo run --example energy_workload -- --seconds 10 --out-dir /tmp/energy   # + CSV, Markdown, HTML
//! ```
//! The JSON report goes to stdout; a one-line summary per meter goes to stderr.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use slm::energy::report::{self, CsvRunInfo};
use slm::energy::{EnergyTracker, TrackerConfig, meters};

#[derive(Parser)]
struct Args {
    /// How long the workload runs, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Worker threads spinning on the CPU (default: every logical CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Grid region for carbon figures: ISO 3166 alpha-2/alpha-3 (FR, FRA) or a US state (US-CA).
    #[arg(long)]
    country: Option<String>,
    /// How often the tracker reads its meters, in seconds.
    #[arg(long, default_value_t = 1.0)]
    sampling_seconds: f64,
    /// Also write energy.json, emissions.csv, energy.md and energy.html here.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

/// Integer and floating-point work that keeps one core busy until `deadline`.
fn spin(deadline: Instant) -> u64 {
    let (mut x, mut y, mut n) = (0x9E37_79B9_7F4A_7C15_u64, 1.0_f64, 0_u64);
    while Instant::now() < deadline {
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            y = (y * 1.000_000_1 + (x >> 40) as f64 * 1e-12).sqrt() + 0.5;
        }
        n += 1;
    }
    std::hint::black_box(x ^ y.to_bits()) ^ n
}

fn main() -> Result<()> {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    // Meters: RAPL / perf events / NVML where readable, CodeCarbon-style estimates otherwise.
    let config = match &args.country {
        Some(code) => TrackerConfig::for_region(code)?,
        None => TrackerConfig::default(),
    }
    .with_sampling_interval(Duration::from_secs_f64(args.sampling_seconds));
    let tracker = EnergyTracker::new(meters::default_meters(), config)?;

    // The workload: every thread spins for `seconds`.
    {
        let _phase = tracker.phase("workload")?;
        let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
        let workers: Vec<_> = (0..threads)
            .map(|_| std::thread::spawn(move || spin(deadline)))
            .collect();
        for w in workers {
            std::hint::black_box(w.join().expect("a worker panicked"));
        }
    }

    // Report.
    let report = tracker.stop()?;
    for m in &report.meters {
        let joules = m.energy.as_ref().map_or(f64::NAN, |e| e.joules());
        let method = m
            .method
            .as_ref()
            .map_or("no reading".into(), |x| x.to_string());
        eprintln!("{} ({}): {joules:.1} J, {method}", m.name, m.component);
    }
    for issue in &report.issues {
        eprintln!(
            "issue: {}: {} ({}x)",
            issue.source, issue.message, issue.count
        );
    }
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        report::write_json(&dir.join("energy.json"), &report)?;
        let info = CsvRunInfo::detect("energy_workload");
        report::write_emissions_csv(&dir.join("emissions.csv"), &report, &info)?;
        let md = report::markdown_section(&report, None);
        report::write_atomic(&dir.join("energy.md"), md.as_bytes())?;
        let html = report::html_page("energy_workload", &report, None)?;
        report::write_atomic(&dir.join("energy.html"), html.as_bytes())?;
        eprintln!(
            "wrote {}/{{energy.json,emissions.csv,energy.md,energy.html}}",
            dir.display()
        );
    }
    println!("{}", report::to_json(&report)?);
    Ok(())
}
