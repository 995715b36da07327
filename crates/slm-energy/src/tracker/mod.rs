//! [`EnergyTracker`]: charges the energy of a set of [`PowerMeter`]s to named, nested phases,
//! sampling every meter in a background thread.
//!
//! A phase's energy is the difference of two readings of each meter's cumulative counter, one
//! when it starts and one when it ends, so it is exact for any meter whose counter is (a
//! [`ReplayMeter`](crate::ReplayMeter) in tests). The background thread reads every meter at
//! [`TrackerConfig::sampling_interval`] so that hardware counters never wrap between two
//! readings unobserved, and so that the report has a power-over-time trace per meter. Phases
//! are named by paths (`training`, `training/epoch-1`); several may be open at once, from any
//! thread or async task, since the tracker is a cheap `Clone` over shared state.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::carbon::{CarbonIntensity, DEFAULT_PUE};
use crate::error::{Error, Result};
use crate::grid;
use crate::meter::{Component, EnergyReading, PowerMeter};
use crate::phase::{PhaseObserver, child_path, validate_phase_path};
use crate::process;

mod record;

pub(crate) use record::sum;
pub use record::{
    MeterEnergy, MeterSummary, PhaseRecord, PowerSample, TrackerIssue, TrackerReport,
};

/// The sampling interval [`TrackerConfig::default`] uses: one second, fine enough for plots and
/// far below the fastest RAPL wrap-around (about a minute at 1 kW).
pub const DEFAULT_SAMPLING_INTERVAL: Duration = Duration::from_secs(1);

/// At most this many power samples are kept per meter; past it, neighbours are merged in pairs
/// (energy-weighted), so a week-long run keeps a bounded, exact-energy trace.
pub const MAX_POWER_SAMPLES: usize = 20_000;

/// At most this many distinct issues are kept; later ones only bump
/// [`TrackerReport::issues_dropped`].
pub const MAX_ISSUES: usize = 1_000;

/// How an [`EnergyTracker`] samples and what electricity it charges emissions at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerConfig {
    /// How often the background thread reads every meter. [`Duration::ZERO`] starts no thread:
    /// meters are then read only at phase boundaries and on [`EnergyTracker::sample_now`].
    pub sampling_interval: Duration,
    /// The grid's carbon intensity.
    pub carbon: CarbonIntensity,
    /// The facility's power usage effectiveness (`>= 1`; 1 counts the IT equipment only).
    pub pue: f64,
    /// The grid table code the intensity came from (`FRA`, `US-CA`), if any.
    pub region_code: Option<String>,
}

impl Default for TrackerConfig {
    /// One-second sampling, the world-average intensity, PUE 1 (CodeCarbon's defaults).
    fn default() -> Self {
        TrackerConfig {
            sampling_interval: DEFAULT_SAMPLING_INTERVAL,
            carbon: CarbonIntensity::WORLD_DEFAULT,
            pue: DEFAULT_PUE,
            region_code: None,
        }
    }
}

impl TrackerConfig {
    /// The default config charging emissions at the grid of `code` (see [`grid::lookup`]).
    ///
    /// # Errors
    /// [`Error::UnknownRegion`] for a code the table does not hold.
    pub fn for_region(code: &str) -> Result<Self> {
        let region = grid::lookup(code)?;
        Ok(TrackerConfig {
            carbon: region.intensity(),
            region_code: Some(region.code.to_string()),
            ..TrackerConfig::default()
        })
    }

    /// The same config with another sampling interval.
    pub fn with_sampling_interval(mut self, interval: Duration) -> Self {
        self.sampling_interval = interval;
        self
    }

    /// The same config with power usage effectiveness `pue`.
    ///
    /// # Errors
    /// [`Error::InvalidPue`] unless `pue` is finite and `>= 1`.
    pub fn with_pue(mut self, pue: f64) -> Result<Self> {
        grid::check_pue(pue)?;
        self.pue = pue;
        Ok(self)
    }

    /// [`Error::InvalidPue`] or [`Error::InvalidIntensity`] for values set directly.
    pub fn validate(&self) -> Result<()> {
        grid::check_pue(self.pue)?;
        self.carbon.validate()
    }
}

/// A phase being measured.
struct OpenPhase {
    path: String,
    started: Instant,
    cpu_start: f64,
    /// One per meter: its reading at the start, if it read.
    readings: Vec<Option<EnergyReading>>,
    peak_rss_bytes: u64,
}

/// A meter and what the tracker remembers of it.
struct MeterSlot {
    meter: Box<dyn PowerMeter>,
    name: String,
    component: Component,
    first: Option<EnergyReading>,
    last: Option<EnergyReading>,
    power: Vec<PowerSample>,
}

struct State {
    meters: Vec<MeterSlot>,
    open: Vec<OpenPhase>,
    finished: Vec<PhaseRecord>,
    issues: Vec<TrackerIssue>,
    issues_dropped: u64,
    /// The final report, once stopped.
    stopped: Option<TrackerReport>,
}

/// What the tracker and its sampling thread share.
struct Shared {
    config: TrackerConfig,
    epoch: Instant,
    started_unix_seconds: f64,
    cpu_at_start: f64,
    state: Mutex<State>,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// Owned by the tracker handles only (not the thread), so dropping the last handle stops it.
struct Inner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Charges the energy of a set of [`PowerMeter`]s to named, nested phases.
///
/// Cloning is cheap and every clone drives the same tracker, so it can be moved into threads and
/// async tasks (`Send + Sync`). Phases open with [`phase`](Self::phase) (an RAII
/// [`PhaseGuard`] that ends the phase when dropped) or [`start_phase`](Self::start_phase) /
/// [`end_phase`](Self::end_phase), and through the [`PhaseObserver`] trait for crates that know
/// nothing about meters. [`stop`](Self::stop) ends open phases, joins the sampling thread and
/// returns the [`TrackerReport`]; dropping the last clone stops the thread too.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use slm_energy::prelude::*;
/// use slm_energy::{Component, EnergyTracker, TrackerConfig};
///
/// # fn main() -> slm_energy::Result<()> {
/// // A meter whose clock the test moves: 50 W for as long as the trace lasts.
/// struct Clocked(Arc<Mutex<ReplayMeter>>);
/// impl PowerMeter for Clocked {
///     fn name(&self) -> &str { "replay" }
///     fn component(&self) -> Component { Component::Cpu }
///     fn read(&mut self) -> slm_energy::Result<EnergyReading> { self.0.lock().unwrap().read() }
/// }
/// let trace = PowerTrace::new(vec![(0.0, 50.0), (100.0, 50.0)])?;
/// let replay = Arc::new(Mutex::new(ReplayMeter::new(trace, Method::Measured(MeterSource::Rapl))));
///
/// let tracker = EnergyTracker::new(vec![Box::new(Clocked(replay.clone()))], TrackerConfig::default())?;
/// {
///     let _training = tracker.phase("training")?;
///     replay.lock().unwrap().advance(2.0)?; // the work: 2 s at 50 W
/// }
/// let report = tracker.stop()?;
/// assert_eq!(report.phases[0].energy().unwrap().joules(), 100.0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EnergyTracker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EnergyTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnergyTracker")
            .field("config", &self.inner.shared.config)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the tracker's state
/// stays consistent between statements, so it is still meaningful).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EnergyTracker {
    /// Starts tracking `meters`: reads each once (its origin) and, unless the sampling interval
    /// is zero, starts the sampling thread.
    ///
    /// # Errors
    /// [`Error::InvalidPue`] or [`Error::InvalidIntensity`] for a bad config,
    /// [`Error::SamplerThread`] when the thread cannot be spawned. A meter that fails to read
    /// is not an error: the failure is listed in the report's issues.
    pub fn new(meters: Vec<Box<dyn PowerMeter>>, config: TrackerConfig) -> Result<Self> {
        config.validate()?;
        let meters = meters
            .into_iter()
            .map(|meter| MeterSlot {
                name: meter.name().to_string(),
                component: meter.component(),
                meter,
                first: None,
                last: None,
                power: Vec::new(),
            })
            .collect();
        let started_unix_seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let interval = config.sampling_interval;
        let shared = Arc::new(Shared {
            config,
            epoch: Instant::now(),
            started_unix_seconds,
            cpu_at_start: process::cpu_seconds(),
            state: Mutex::new(State {
                meters,
                open: Vec::new(),
                finished: Vec::new(),
                issues: Vec::new(),
                issues_dropped: 0,
                stopped: None,
            }),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        // The origin reading of every meter.
        shared.read_all(&mut lock(&shared.state));
        let thread = if interval.is_zero() {
            None
        } else {
            let worker = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name("slm-energy-sampler".into())
                .spawn(move || worker.run(interval))
                .map_err(Error::SamplerThread)?;
            Some(handle)
        };
        Ok(EnergyTracker {
            inner: Arc::new(Inner {
                shared,
                thread: Mutex::new(thread),
            }),
        })
    }

    /// The configuration the tracker runs with.
    pub fn config(&self) -> &TrackerConfig {
        &self.inner.shared.config
    }

    /// Starts phase `path` and returns a guard that ends it when dropped (or explicitly with
    /// [`PhaseGuard::end`]).
    ///
    /// # Errors
    /// As [`start_phase`](Self::start_phase).
    pub fn phase(&self, path: &str) -> Result<PhaseGuard> {
        self.start_phase(path)?;
        Ok(PhaseGuard {
            tracker: self.clone(),
            path: path.to_string(),
            ended: false,
        })
    }

    /// Starts phase `path` (`training`, or `training/epoch-1` for a phase nested in another;
    /// the parent need not be open).
    ///
    /// # Errors
    /// [`Error::InvalidPhaseName`], [`Error::PhaseAlreadyOpen`] when a phase with this path is
    /// open, [`Error::TrackerStopped`] after [`stop`](Self::stop).
    pub fn start_phase(&self, path: &str) -> Result<()> {
        validate_phase_path(path)?;
        let shared = &self.inner.shared;
        let mut state = lock(&shared.state);
        if state.stopped.is_some() {
            return Err(Error::TrackerStopped);
        }
        if state.open.iter().any(|p| p.path == path) {
            return Err(Error::PhaseAlreadyOpen {
                path: path.to_string(),
            });
        }
        let readings = shared.read_all(&mut state);
        state.open.push(OpenPhase {
            path: path.to_string(),
            started: Instant::now(),
            cpu_start: process::cpu_seconds(),
            readings,
            peak_rss_bytes: process::rss_bytes().unwrap_or(0),
        });
        Ok(())
    }

    /// Ends phase `path` and returns its record (also kept for the report).
    ///
    /// # Errors
    /// [`Error::PhaseNotOpen`] when no phase with this path is open (including after
    /// [`stop`](Self::stop), which ends every open phase).
    pub fn end_phase(&self, path: &str) -> Result<PhaseRecord> {
        let shared = &self.inner.shared;
        let mut state = lock(&shared.state);
        let Some(index) = state.open.iter().position(|p| p.path == path) else {
            return Err(Error::PhaseNotOpen {
                path: path.to_string(),
            });
        };
        let readings = shared.read_all(&mut state);
        let phase = state.open.remove(index);
        let record = shared.finish(&mut state, phase, &readings, false);
        state.finished.push(record.clone());
        Ok(record)
    }

    /// Reads every meter now, as the sampling thread does at each interval (useful with a zero
    /// interval, and in tests).
    pub fn sample_now(&self) {
        let shared = &self.inner.shared;
        let mut state = lock(&shared.state);
        if state.stopped.is_none() {
            shared.read_all(&mut state);
        }
    }

    /// A report of everything so far, after reading every meter once more. Open phases are
    /// listed by path only. After [`stop`](Self::stop), the final report.
    pub fn report(&self) -> TrackerReport {
        let shared = &self.inner.shared;
        let mut state = lock(&shared.state);
        if let Some(report) = &state.stopped {
            return report.clone();
        }
        shared.read_all(&mut state);
        shared.report(&state)
    }

    /// Ends every open phase (marked [`ended_by_stop`](PhaseRecord::ended_by_stop), innermost
    /// first), takes a last reading, stops and joins the sampling thread, and returns the final
    /// report. Calling it again returns the same report.
    ///
    /// # Errors
    /// [`Error::SamplerPanicked`] if the sampling thread panicked (a meter that panics rather
    /// than returning an error); the phases are still ended.
    pub fn stop(&self) -> Result<TrackerReport> {
        let joined = self.inner.stop_thread();
        let shared = &self.inner.shared;
        let mut state = lock(&shared.state);
        if state.stopped.is_none() {
            let readings = shared.read_all(&mut state);
            // Innermost (latest-started) first, so children end before their parents.
            while let Some(phase) = state.open.pop() {
                let record = shared.finish(&mut state, phase, &readings, true);
                state.finished.push(record);
            }
            let report = shared.report(&state);
            state.stopped = Some(report);
        }
        joined?;
        Ok(state.stopped.clone().expect("set above"))
    }
}

impl Inner {
    /// Signals the sampling thread and joins it (once).
    fn stop_thread(&self) -> Result<()> {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        let handle = lock(&self.thread).take();
        match handle {
            Some(h) => h.join().map_err(|_| Error::SamplerPanicked),
            None => Ok(()),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A panic in the sampler was a meter's; there is no one left to tell.
        let _ = self.stop_thread();
    }
}

impl Shared {
    /// The sampling thread's loop: read every meter each `interval` until stopped.
    fn run(&self, interval: Duration) {
        loop {
            let stop = lock(&self.stop);
            let (stop, _) = self
                .wake
                .wait_timeout_while(stop, interval, |stopped| !*stopped)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if *stop {
                return;
            }
            drop(stop);
            let mut state = lock(&self.state);
            if state.stopped.is_some() {
                return;
            }
            self.read_all(&mut state);
        }
    }

    fn now_seconds(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// Reads every meter once and the resident set size: records power samples, issues, open
    /// phases' RSS peaks; returns each meter's reading (`None` where it failed).
    fn read_all(&self, state: &mut State) -> Vec<Option<EnergyReading>> {
        if let Some(rss) = process::rss_bytes() {
            for phase in &mut state.open {
                phase.peak_rss_bytes = phase.peak_rss_bytes.max(rss);
            }
        }
        let mut readings = Vec::with_capacity(state.meters.len());
        let mut failures = Vec::new();
        for slot in &mut state.meters {
            match slot.meter.read() {
                Ok(reading) => {
                    match slot.record(&reading) {
                        Ok(()) => readings.push(Some(reading)),
                        Err(e) => {
                            failures.push((slot.name.clone(), e));
                            readings.push(None);
                        }
                    };
                }
                Err(e) => {
                    failures.push((slot.name.clone(), e));
                    readings.push(None);
                }
            }
        }
        for (source, e) in failures {
            self.issue(state, source, &e);
        }
        readings
    }

    /// Records a problem, folding a repeat of the same source's last message into its count.
    fn issue(&self, state: &mut State, source: String, error: &Error) {
        let message = error.to_string();
        if let Some(same) = state
            .issues
            .iter_mut()
            .rev()
            .find(|i| i.source == source)
            .filter(|i| i.message == message)
        {
            same.count += 1;
            return;
        }
        if state.issues.len() >= MAX_ISSUES {
            state.issues_dropped += 1;
            return;
        }
        let seconds = self.now_seconds();
        state.issues.push(TrackerIssue {
            seconds,
            source,
            message,
            count: 1,
        });
    }

    /// The record of `phase`, ended with `end` readings.
    fn finish(
        &self,
        state: &mut State,
        phase: OpenPhase,
        end: &[Option<EnergyReading>],
        ended_by_stop: bool,
    ) -> PhaseRecord {
        let mut meters = Vec::new();
        let mut missing_meters = Vec::new();
        let mut failures = Vec::new();
        for ((slot, start), end) in state.meters.iter().zip(&phase.readings).zip(end) {
            let energy = match (start, end) {
                (Some(start), Some(end)) => end.energy_since(start).map_err(Some),
                _ => Err(None),
            };
            match energy {
                Ok(energy) => meters.push(MeterEnergy {
                    meter: slot.name.clone(),
                    component: slot.component,
                    energy,
                }),
                Err(e) => {
                    missing_meters.push(slot.name.clone());
                    if let Some(e) = e {
                        failures.push((slot.name.clone(), e));
                    }
                }
            }
        }
        for (source, e) in failures {
            self.issue(state, source, &e);
        }
        let rss = process::rss_bytes().unwrap_or(0);
        PhaseRecord {
            start_seconds: phase.started.duration_since(self.epoch).as_secs_f64(),
            wall_seconds: phase.started.elapsed().as_secs_f64(),
            cpu_seconds: (process::cpu_seconds() - phase.cpu_start).max(0.0),
            peak_rss_bytes: phase.peak_rss_bytes.max(rss),
            path: phase.path,
            meters,
            missing_meters,
            ended_by_stop,
        }
    }

    fn report(&self, state: &State) -> TrackerReport {
        TrackerReport {
            started_unix_seconds: self.started_unix_seconds,
            wall_seconds: self.now_seconds(),
            cpu_seconds: (process::cpu_seconds() - self.cpu_at_start).max(0.0),
            peak_rss_bytes: process::peak_rss_bytes(),
            config: self.config.clone(),
            meters: state.meters.iter().map(MeterSlot::summary).collect(),
            phases: state.finished.clone(),
            open_phases: state.open.iter().map(|p| p.path.clone()).collect(),
            issues: state.issues.clone(),
            issues_dropped: state.issues_dropped,
        }
    }
}

impl MeterSlot {
    /// Takes `reading` as the latest: checks it follows the previous one and adds a power
    /// sample for the interval between them.
    fn record(&mut self, reading: &EnergyReading) -> Result<()> {
        let Some(first) = &self.first else {
            self.first = Some(reading.clone());
            self.last = Some(reading.clone());
            return Ok(());
        };
        let last = self.last.as_ref().unwrap_or(first);
        let joules = reading.energy_since(last)?.joules();
        let (from, to) = (
            last.seconds - first.seconds,
            reading.seconds - first.seconds,
        );
        if to > from {
            self.power.push(PowerSample {
                from_seconds: from,
                to_seconds: to,
                watts: joules / (to - from),
            });
            if self.power.len() > MAX_POWER_SAMPLES {
                self.power = merge_pairs(&self.power);
            }
        }
        self.last = Some(reading.clone());
        Ok(())
    }

    fn summary(&self) -> MeterSummary {
        let energy = match (&self.first, &self.last) {
            (Some(first), Some(last)) if last.seconds > first.seconds => {
                last.energy_since(first).ok()
            }
            _ => None,
        };
        MeterSummary {
            name: self.name.clone(),
            component: self.component,
            method: self.last.as_ref().map(|r| r.energy.method().clone()),
            energy,
            power: self.power.clone(),
        }
    }
}

/// Neighbouring samples merged in pairs, keeping each pair's energy.
fn merge_pairs(samples: &[PowerSample]) -> Vec<PowerSample> {
    samples
        .chunks(2)
        .map(|pair| {
            let (a, b) = (pair[0], pair[pair.len() - 1]);
            let joules: f64 = pair.iter().map(PowerSample::joules).sum();
            let seconds = b.to_seconds - a.from_seconds;
            PowerSample {
                from_seconds: a.from_seconds,
                to_seconds: b.to_seconds,
                watts: if seconds > 0.0 { joules / seconds } else { 0.0 },
            }
        })
        .collect()
}

/// Ends its phase when dropped; [`end`](Self::end) ends it explicitly and returns the record.
///
/// An error while ending from `drop` (the tracker was stopped meanwhile, or the phase was
/// ended by [`EnergyTracker::end_phase`]) is listed in the report's issues unless the tracker
/// has stopped.
#[derive(Debug)]
#[must_use = "the phase ends when the guard is dropped"]
pub struct PhaseGuard {
    tracker: EnergyTracker,
    path: String,
    ended: bool,
}

impl PhaseGuard {
    /// The phase path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Starts a phase nested in this one: `training` → `training/epoch-1`.
    ///
    /// # Errors
    /// As [`EnergyTracker::start_phase`].
    pub fn child(&self, name: &str) -> Result<PhaseGuard> {
        self.tracker.phase(&child_path(&self.path, name))
    }

    /// Ends the phase now and returns its record.
    ///
    /// # Errors
    /// As [`EnergyTracker::end_phase`].
    pub fn end(mut self) -> Result<PhaseRecord> {
        self.ended = true;
        self.tracker.end_phase(&self.path)
    }
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        if !self.ended {
            self.tracker.observe_end(&self.path);
        }
    }
}

impl EnergyTracker {
    /// Ends `path`, recording a failure as an issue (unless stopped, which ended it already).
    fn observe_end(&self, path: &str) {
        if let Err(e) = self.end_phase(path) {
            self.record_issue(&e);
        }
    }

    fn record_issue(&self, error: &Error) {
        let shared = &self.inner.shared;
        let mut state = lock(&shared.state);
        if state.stopped.is_none() {
            shared.issue(&mut state, "tracker".to_string(), error);
        }
    }
}

impl PhaseObserver for EnergyTracker {
    /// [`start_phase`](EnergyTracker::start_phase); a failure becomes an issue in the report.
    fn phase_started(&self, name: &str) {
        if let Err(e) = self.start_phase(name) {
            self.record_issue(&e);
        }
    }

    /// [`end_phase`](EnergyTracker::end_phase); a failure becomes an issue in the report.
    fn phase_ended(&self, name: &str) {
        self.observe_end(name);
    }
}

/// Test meters shared by this crate's tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::energy::Method;
    use crate::replay::ReplayMeter;
    use crate::trace::PowerTrace;

    /// A replay meter whose clock the test moves while the tracker owns the meter.
    #[derive(Clone)]
    pub(crate) struct Clocked {
        pub(crate) replay: Arc<Mutex<ReplayMeter>>,
        name: &'static str,
        component: Component,
    }

    impl Clocked {
        pub(crate) fn new(trace: Vec<(f64, f64)>, method: Method, component: Component) -> Self {
            let trace = PowerTrace::new(trace).unwrap();
            Clocked {
                replay: Arc::new(Mutex::new(ReplayMeter::new(trace, method))),
                name: "replay",
                component,
            }
        }

        pub(crate) fn named(mut self, name: &'static str) -> Self {
            self.name = name;
            self
        }

        pub(crate) fn advance(&self, seconds: f64) {
            self.replay.lock().unwrap().advance(seconds).unwrap();
        }
    }

    impl PowerMeter for Clocked {
        fn name(&self) -> &str {
            self.name
        }
        fn component(&self) -> Component {
            self.component
        }
        fn read(&mut self) -> Result<EnergyReading> {
            self.replay.lock().unwrap().read()
        }
    }
}

#[cfg(test)]
mod tests;
