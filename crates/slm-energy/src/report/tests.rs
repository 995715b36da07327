//! End-to-end: a tracker over replayed traces, then every report output.

use std::time::Duration;

use super::*;
use crate::energy::{EstimateModel, MeterSource, Method};
use crate::meter::Component;
use crate::tracker::testing::Clocked;
use crate::tracker::{EnergyTracker, TrackerConfig, TrackerReport};

/// curation 10 s, training 100 s (with two epochs), compression 10 s, serving 20 s; CPU at a
/// measured 100 W, RAM at an estimated 10 W.
fn run() -> TrackerReport {
    let cpu = Clocked::new(
        vec![(0.0, 100.0), (1000.0, 100.0)],
        Method::Measured(MeterSource::Rapl),
        Component::Cpu,
    )
    .named("rapl");
    let ram = Clocked::new(
        vec![(0.0, 10.0), (1000.0, 10.0)],
        Method::Estimated(EstimateModel::Other("RAM size model".into())),
        Component::Ram,
    )
    .named("ram");
    let meters: Vec<Box<dyn crate::PowerMeter>> =
        vec![Box::new(cpu.clone()), Box::new(ram.clone())];
    let config = TrackerConfig::for_region("FR")
        .unwrap()
        .with_sampling_interval(Duration::ZERO);
    let tracker = EnergyTracker::new(meters, config).unwrap();
    let advance = |s| {
        cpu.advance(s);
        ram.advance(s);
        tracker.sample_now();
    };
    for (phase, seconds) in [
        ("curation", 10.0),
        ("training", 100.0),
        ("compression", 10.0),
        ("serving", 20.0),
    ] {
        let guard = tracker.phase(phase).unwrap();
        if phase == "training" {
            for epoch in ["epoch-1", "epoch-2"] {
                let _e = guard.child(epoch).unwrap();
                advance(seconds / 2.0);
            }
        } else {
            advance(seconds);
        }
    }
    tracker.stop().unwrap()
}

#[test]
fn e2s_from_a_tracked_run() {
    let report = run();
    let inputs = E2sInputs::from_report(&report, "serving", 2000, 1_000_000).unwrap();
    let names: Vec<_> = inputs.one_off.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["curation", "training", "compression"],
        "epochs are inside training"
    );
    // One-off: 120 s × 110 W = 13200 J; serving: 20 s × 110 W = 2200 J for 2000 predictions.
    let one_off: f64 = inputs.one_off.iter().map(|(_, e)| e.joules()).sum();
    assert_eq!(one_off, 13_200.0);
    assert_eq!(inputs.inference.energy.joules(), 2200.0);
    let e2s = inputs.compute().unwrap();
    let per_query_j = 13_200.0 / 1e6 + 2200.0 / 2000.0;
    assert!((e2s.wh_per_query.value - per_query_j / 3600.0).abs() < 1e-12);
    assert!(!e2s.wh_per_query.method.is_measured(), "RAM is estimated");
    assert!(e2s.carbon.source.contains("France"));
    assert!(matches!(
        E2sInputs::from_report(&report, "inference", 1, 1),
        Err(Error::PhaseNotFound { .. })
    ));
}

#[test]
fn emissions_csv_has_codecarbons_columns_and_one_row_per_phase() {
    let report = run();
    let info = CsvRunInfo::detect("slm-test");
    let text = emissions_csv(&report, &info).unwrap();
    let mut reader = ::csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, EMISSIONS_CSV_COLUMNS);
    let rows: Vec<::csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), report.phases.len());
    let col = |name: &str| {
        EMISSIONS_CSV_COLUMNS
            .iter()
            .position(|c| *c == name)
            .unwrap()
    };
    let curation = rows
        .iter()
        .find(|r| &r[col("experiment_id")] == "curation")
        .unwrap();
    let num = |r: &::csv::StringRecord, c: &str| r[col(c)].parse::<f64>().unwrap();
    // 10 s × 100 W = 1000 J of CPU, 100 J of RAM.
    assert!((num(curation, "cpu_energy") - 1000.0 / 3.6e6).abs() < 1e-15);
    assert!((num(curation, "ram_energy") - 100.0 / 3.6e6).abs() < 1e-15);
    assert!((num(curation, "energy_consumed") - 1100.0 / 3.6e6).abs() < 1e-15);
    // France, 56.039 g/kWh: kg = kWh × 0.056039.
    let kg = 1100.0 / 3.6e6 * 0.056039;
    assert!((num(curation, "emissions") - kg).abs() < 1e-15);
    assert_eq!(&curation[col("country_iso_code")], "FRA");
    assert_eq!(&curation[col("country_name")], "France");
    assert_eq!(&curation[col("on_cloud")], "N");
    assert_eq!(num(curation, "pue"), 1.0);
    assert_eq!(curation[col("timestamp")].len(), 19);
}

#[test]
fn markdown_and_html_carry_every_phase_and_method() {
    let report = run();
    let e2s = E2sInputs::from_report(&report, "serving", 2000, 1_000_000)
        .unwrap()
        .compute()
        .unwrap();
    let md = markdown_section(&report, Some(&e2s));
    assert!(md.starts_with("## Energy\n"));
    for phase in ["curation", "training/epoch-1", "serving"] {
        assert!(md.contains(&format!("| {phase} |")), "{phase}");
    }
    assert!(md.contains("measured (RAPL)"));
    assert!(md.contains("estimated (RAM size model)"));
    assert!(md.contains("energy to solution per query"));
    let html = html_page("E2S <test>", &report, Some(&e2s)).unwrap();
    assert!(html.contains("<title>E2S &lt;test&gt;</title>"));
    assert_eq!(html.matches("<svg").count(), 2, "two inline plots");
    assert!(!html.contains("src=\"http"), "self-contained");
}

#[test]
fn plots_draw_each_meter() {
    let report = run();
    let svg = power_svg(&report).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.contains("rapl (CPU), measured (RAPL)"));
    assert!(svg.contains("ram (RAM), estimated (RAM size model)"));
    let bars = phase_energy_svg(&report).unwrap();
    assert!(bars.contains("training/epoch-2"));
}

#[test]
fn files_are_written_atomically_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let report = run();
    let json = dir.path().join("energy.json");
    write_json(&json, &report).unwrap();
    let back: TrackerReport =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // serde_json may parse a float one ulp off (without its `float_roundtrip` feature), so
    // compare what is exact: paths, energies, methods.
    let summary = |r: &TrackerReport| -> Vec<_> {
        r.phases
            .iter()
            .map(|p| (p.path.clone(), p.energy()))
            .collect()
    };
    assert_eq!(summary(&back), summary(&report));
    assert_eq!(back.meters, report.meters);
    let csv_path = dir.path().join("emissions.csv");
    write_emissions_csv(&csv_path, &report, &CsvRunInfo::detect("p")).unwrap();
    write_atomic(
        &dir.path().join("energy.md"),
        markdown_section(&report, None).as_bytes(),
    )
    .unwrap();
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["emissions.csv", "energy.json", "energy.md"],
        "no temporary files left"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&json).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }
    let text = std::fs::read_to_string(&csv_path).unwrap();
    assert!(!text.contains(",-0,"), "no negative zeros");
    let missing = dir.path().join("no/such/dir/x.json");
    assert!(matches!(
        write_json(&missing, &report),
        Err(Error::WriteFile { path, .. }) if path == missing
    ));
}
