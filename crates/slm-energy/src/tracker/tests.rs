//! Tracker tests over replayed traces: exact energies, nesting, failures, threads.

use super::testing::Clocked;
use super::*;
use crate::energy::{EstimateModel, MeterSource, Method};
use crate::phase::Lifecycle;
use crate::trace::PowerTrace;
use proptest::prelude::*;

/// A meter that always fails.
struct Broken;

impl PowerMeter for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn component(&self) -> Component {
        Component::Gpu
    }
    fn read(&mut self) -> Result<EnergyReading> {
        Err(Error::EmptyTrace)
    }
}

fn rapl() -> Method {
    Method::Measured(MeterSource::Rapl)
}

fn flat(watts: f64, seconds: f64) -> Vec<(f64, f64)> {
    vec![(0.0, watts), (seconds, watts)]
}

fn quiet() -> TrackerConfig {
    TrackerConfig::default().with_sampling_interval(Duration::ZERO)
}

fn tracker(meters: &[&Clocked], config: TrackerConfig) -> EnergyTracker {
    let boxed = meters
        .iter()
        .map(|m| Box::new((*m).clone()) as Box<dyn PowerMeter>)
        .collect();
    EnergyTracker::new(boxed, config).unwrap()
}

#[test]
fn a_phase_over_a_constant_50_w_for_2_s_is_100_j() {
    let cpu = Clocked::new(flat(50.0, 10.0), rapl(), Component::Cpu);
    let t = tracker(&[&cpu], quiet());
    let guard = t.phase("training").unwrap();
    cpu.advance(2.0);
    let record = guard.end().unwrap();
    assert_eq!(record.path, "training");
    assert_eq!(record.energy().unwrap().joules(), 100.0);
    assert_eq!(record.energy().unwrap().method(), &rapl());
    assert_eq!(record.lifecycle(), Some(Lifecycle::Training));
    assert!(record.wall_seconds >= 0.0 && record.cpu_seconds >= 0.0);
    assert!(record.peak_rss_bytes > 0);
}

#[test]
fn nested_phases_and_components() {
    // CPU 40 W measured, RAM 10 W estimated, over 10 s.
    let cpu = Clocked::new(flat(40.0, 10.0), rapl(), Component::Cpu).named("rapl");
    let ram_model = EstimateModel::Other("RAM size model".into());
    let ram = Clocked::new(
        flat(10.0, 10.0),
        Method::Estimated(ram_model),
        Component::Ram,
    )
    .named("ram");
    let t = tracker(&[&cpu, &ram], quiet());
    let advance = |s| {
        cpu.advance(s);
        ram.advance(s);
    };
    {
        let training = t.phase("training").unwrap();
        advance(1.0);
        {
            let _epoch = training.child("epoch-1").unwrap();
            advance(3.0);
        }
        advance(1.0);
    }
    let report = t.stop().unwrap();
    let paths: Vec<_> = report.phases.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["training/epoch-1", "training"]);
    let (epoch, training) = (&report.phases[0], &report.phases[1]);
    assert_eq!(epoch.depth(), 1);
    assert_eq!(epoch.energy().unwrap().joules(), 150.0);
    assert_eq!(training.energy().unwrap().joules(), 250.0);
    assert_eq!(
        training.component_energy(Component::Cpu).unwrap().joules(),
        200.0
    );
    let ram = training.component_energy(Component::Ram).unwrap();
    assert_eq!(ram.joules(), 50.0);
    assert!(!ram.method().is_measured());
    assert!(
        !training.energy().unwrap().method().is_measured(),
        "an estimated part makes the total an estimate"
    );
    assert_eq!(training.components(), [Component::Cpu, Component::Ram]);
    assert!(training.component_energy(Component::Gpu).is_none());
    // The whole run: 5 s of 50 W.
    assert_eq!(report.total_energy().unwrap().joules(), 250.0);
}

#[test]
fn power_trace_follows_the_recording() {
    // 100 W for 2 s, then 20 W.
    let trace = vec![(0.0, 100.0), (2.0, 100.0), (2.0, 20.0), (10.0, 20.0)];
    let cpu = Clocked::new(trace, rapl(), Component::Cpu);
    let t = tracker(&[&cpu], quiet());
    cpu.advance(1.0);
    t.sample_now();
    cpu.advance(1.0);
    t.sample_now();
    cpu.advance(3.0);
    t.sample_now();
    t.sample_now(); // no time passed: no sample
    let report = t.report();
    let power = &report.meters[0].power;
    let got: Vec<_> = power
        .iter()
        .map(|p| (p.from_seconds, p.to_seconds, p.watts))
        .collect();
    assert_eq!(
        got,
        [(0.0, 1.0, 100.0), (1.0, 2.0, 100.0), (2.0, 5.0, 20.0)]
    );
    assert_eq!(report.meters[0].energy.as_ref().unwrap().joules(), 260.0);
    assert_eq!(report.meters[0].method, Some(rapl()));
}

#[test]
fn merging_samples_keeps_energy() {
    let samples: Vec<_> = (0..5)
        .map(|i| PowerSample {
            from_seconds: i as f64,
            to_seconds: i as f64 + 1.0,
            watts: i as f64 * 10.0,
        })
        .collect();
    let merged = merge_pairs(&samples);
    assert_eq!(merged.len(), 3);
    let total = |s: &[PowerSample]| s.iter().map(PowerSample::joules).sum::<f64>();
    assert_eq!(total(&merged), total(&samples));
    assert_eq!(merged[1].watts, 25.0);
}

#[test]
fn phase_errors_are_typed() {
    let cpu = Clocked::new(flat(1.0, 10.0), rapl(), Component::Cpu);
    let t = tracker(&[&cpu], quiet());
    assert!(matches!(
        t.start_phase("a//b"),
        Err(Error::InvalidPhaseName { .. })
    ));
    t.start_phase("serving").unwrap();
    assert!(matches!(
        t.start_phase("serving"),
        Err(Error::PhaseAlreadyOpen { .. })
    ));
    assert!(matches!(
        t.end_phase("training"),
        Err(Error::PhaseNotOpen { .. })
    ));
    let report = t.stop().unwrap();
    assert!(report.phases[0].ended_by_stop);
    assert!(report.open_phases.is_empty());
    assert!(matches!(t.start_phase("again"), Err(Error::TrackerStopped)));
    assert_eq!(t.stop().unwrap(), report, "stop is idempotent");
}

#[test]
fn meter_failures_are_issues_not_panics() {
    let cpu = Clocked::new(flat(10.0, 10.0), rapl(), Component::Cpu);
    let meters: Vec<Box<dyn PowerMeter>> = vec![Box::new(cpu.clone()), Box::new(Broken)];
    let t = EnergyTracker::new(
        meters,
        TrackerConfig::default().with_sampling_interval(Duration::from_millis(1)),
    )
    .unwrap();
    let guard = t.phase("evaluation").unwrap();
    cpu.advance(1.0);
    std::thread::sleep(Duration::from_millis(20));
    let record = guard.end().unwrap();
    assert_eq!(record.energy().unwrap().joules(), 10.0);
    assert_eq!(record.missing_meters, ["broken"]);
    let report = t.stop().unwrap();
    assert_eq!(report.issues.len(), 1, "repeats fold into one issue");
    let issue = &report.issues[0];
    assert_eq!(issue.source, "broken");
    assert!(
        issue.count > 3,
        "sampled in the background: {}",
        issue.count
    );
    assert!(report.meters[1].energy.is_none());
}

#[test]
fn observer_interface_reports_misuse_as_issues() {
    let cpu = Clocked::new(flat(30.0, 10.0), rapl(), Component::Cpu);
    let t = tracker(&[&cpu], quiet());
    let observer: Arc<dyn PhaseObserver> = Arc::new(t.clone());
    observer.phase_started("compression");
    cpu.advance(2.0);
    observer.phase_ended("compression");
    observer.phase_ended("compression");
    let report = t.stop().unwrap();
    assert_eq!(report.phases[0].energy().unwrap().joules(), 60.0);
    assert_eq!(report.issues[0].source, "tracker");
    assert!(report.issues[0].message.contains("compression"));
}

#[test]
fn works_across_threads() {
    let cpu = Clocked::new(flat(5.0, 100.0), rapl(), Component::Cpu);
    let t = tracker(&[&cpu], TrackerConfig::default());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let t = t.clone();
            std::thread::spawn(move || {
                let _g = t.phase(&format!("evaluation/shard-{i}")).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let report = t.stop().unwrap();
    assert_eq!(report.phases.len(), 4);
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<EnergyTracker>();
    assert_send_sync::<PhaseGuard>();
}

#[test]
fn dropping_the_last_handle_stops_the_thread() {
    let cpu = Clocked::new(flat(5.0, 100.0), rapl(), Component::Cpu);
    let t = tracker(&[&cpu], TrackerConfig::default());
    let weak = Arc::downgrade(&t.inner.shared);
    drop(t);
    assert!(
        weak.upgrade().is_none(),
        "the joined thread released its state"
    );
}

#[test]
fn config_is_validated() {
    assert!(matches!(
        TrackerConfig::default().with_pue(0.5),
        Err(Error::InvalidPue { .. })
    ));
    let bad = TrackerConfig {
        pue: f64::NAN,
        ..TrackerConfig::default()
    };
    assert!(matches!(
        EnergyTracker::new(Vec::new(), bad),
        Err(Error::InvalidPue { .. })
    ));
    let fr = TrackerConfig::for_region("FR").unwrap();
    assert_eq!(fr.region_code.as_deref(), Some("FRA"));
    assert_eq!(fr.carbon.grams_co2e_per_kwh, 56.039);
    assert!(TrackerConfig::for_region("ZZ").is_err());
}

proptest! {
    /// Phases that tile the run add up to the run's energy, whatever the trace and cuts.
    #[test]
    fn tiling_phases_sum_to_the_total(
        watts in prop::collection::vec(0.0f64..500.0, 2..8),
        cuts in prop::collection::vec(0.01f64..3.0, 1..6),
    ) {
        let step = 10.0;
        let trace: Vec<_> = watts.iter().enumerate().map(|(i, &w)| (i as f64 * step, w)).collect();
        let span = (watts.len() - 1) as f64 * step;
        let total_cut: f64 = cuts.iter().sum();
        let cpu = Clocked::new(trace.clone(), rapl(), Component::Cpu);
        let t = tracker(&[&cpu], quiet());
        for (i, cut) in cuts.iter().enumerate() {
            let _g = t.phase(&format!("phase-{i}")).unwrap();
            cpu.advance(cut / total_cut * span * 0.999);
        }
        let report = t.stop().unwrap();
        let phases: f64 = report.phases.iter().map(|p| p.energy().unwrap().joules()).sum();
        let total = report.total_energy().map_or(0.0, |e| e.joules());
        let exact = PowerTrace::new(trace).unwrap().joules_until(cpu.replay.lock().unwrap().now()).unwrap();
        prop_assert!((phases - total).abs() <= 1e-9 * total.max(1.0), "{phases} vs {total}");
        prop_assert!((total - exact).abs() <= 1e-9 * exact.max(1.0), "{total} vs {exact}");
    }
}

#[test]
fn concatenated_runs_keep_every_phase_and_add_the_energy() {
    let run = |watts: f64, seconds: f64, phase: &str| {
        let cpu = Clocked::new(flat(watts, 100.0), rapl(), Component::Cpu);
        let t = tracker(&[&cpu], quiet());
        let guard = t.phase(phase).unwrap();
        cpu.advance(seconds);
        guard.end().unwrap();
        t.stop().unwrap()
    };
    let mut first = run(50.0, 2.0, "training");
    let mut second = run(20.0, 3.0, "serving");
    first.started_unix_seconds = 1000.0;
    second.started_unix_seconds = 1010.0;
    let both = TrackerReport::concat(&[first.clone(), second.clone()]).unwrap();
    assert_eq!(both.phases.len(), 2);
    assert_eq!(both.phases[1].path, "serving");
    assert_eq!(
        both.phases[1].start_seconds,
        second.phases[0].start_seconds + 10.0
    );
    let total = both.total_energy().unwrap();
    assert_eq!(total.joules(), 100.0 + 60.0);
    assert!(total.method().is_measured());
    assert_eq!(both.meters.len(), 1);
    assert_eq!(
        both.meters[0].power.len(),
        first.meters[0].power.len() + second.meters[0].power.len()
    );
    assert!(both.wall_seconds >= 10.0 + second.wall_seconds);
    assert_eq!(
        TrackerReport::concat(&[first.clone()])
            .unwrap()
            .total_energy(),
        first.total_energy()
    );

    assert!(matches!(
        TrackerReport::concat(&[]),
        Err(Error::IncompatibleReports { .. })
    ));
    let mut elsewhere = second.clone();
    elsewhere.config = TrackerConfig::for_region("FR").unwrap();
    assert!(matches!(
        TrackerReport::concat(&[first, elsewhere]),
        Err(Error::IncompatibleReports { .. })
    ));
}
