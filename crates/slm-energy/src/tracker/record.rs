//! What a tracker records: per-phase records, per-meter power traces and totals, issues, and the
//! [`TrackerReport`] that gathers them.

use serde::{Deserialize, Serialize};

use crate::energy::{Energy, Method};
use crate::error::{Error, Result};
use crate::meter::Component;
use crate::phase::Lifecycle;

use super::TrackerConfig;

/// The energy one meter counted over a phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterEnergy {
    /// The meter's [name](crate::PowerMeter::name).
    pub meter: String,
    /// The component it covers.
    pub component: Component,
    /// Joules between the phase's first and last reading, with their method.
    pub energy: Energy,
}

/// One finished phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecord {
    /// The phase path (`training/epoch-1`).
    pub path: String,
    /// When it started, in seconds since the tracker started.
    pub start_seconds: f64,
    /// Wall-clock duration in seconds.
    pub wall_seconds: f64,
    /// CPU seconds (user + system, all threads) the process used meanwhile.
    pub cpu_seconds: f64,
    /// The largest resident set size seen during the phase, in bytes: sampled at its start,
    /// its end and every background sample in between, so a spike shorter than the sampling
    /// interval can be missed (the process-wide `VmHWM` is [`TrackerReport::peak_rss_bytes`]).
    pub peak_rss_bytes: u64,
    /// Energy per meter, for the meters read successfully at both ends.
    pub meters: Vec<MeterEnergy>,
    /// Meters that failed at the start or end of the phase, whose energy is missing from
    /// [`meters`](Self::meters) (the errors are in [`TrackerReport::issues`]).
    pub missing_meters: Vec<String>,
    /// Whether the phase was still open when the tracker stopped and was ended by it.
    pub ended_by_stop: bool,
}

impl PhaseRecord {
    /// The energy of every meter together; `None` when no meter was read.
    pub fn energy(&self) -> Option<Energy> {
        sum(self.meters.iter().map(|m| m.energy.clone()))
    }

    /// The energy of the meters covering `component`; `None` when there are none.
    pub fn component_energy(&self, component: Component) -> Option<Energy> {
        sum(self
            .meters
            .iter()
            .filter(|m| m.component == component)
            .map(|m| m.energy.clone()))
    }

    /// The components with energy in this phase, each once, in [`Component`] order.
    pub fn components(&self) -> Vec<Component> {
        let mut c: Vec<Component> = self.meters.iter().map(|m| m.component).collect();
        c.sort();
        c.dedup();
        c
    }

    /// Mean power over the phase in watts (energy over wall time; 0 for an instant phase).
    pub fn mean_watts(&self) -> Option<f64> {
        let e = self.energy()?;
        Some(if self.wall_seconds > 0.0 {
            e.joules() / self.wall_seconds
        } else {
            0.0
        })
    }

    /// The lifecycle phase of the path's first segment, if it is one.
    pub fn lifecycle(&self) -> Option<Lifecycle> {
        Lifecycle::of_path(&self.path)
    }

    /// How deep the phase is nested: 0 for `training`, 1 for `training/epoch-1`.
    pub fn depth(&self) -> usize {
        self.path.matches(crate::phase::PHASE_SEPARATOR).count()
    }
}

/// The sum of energies (methods combined); `None` for none.
pub(crate) fn sum(energies: impl IntoIterator<Item = Energy>) -> Option<Energy> {
    energies.into_iter().reduce(|a, b| a + b)
}

/// Mean power over one interval between two readings of a meter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerSample {
    /// Start of the interval, in seconds since the meter's first reading (on its own clock).
    pub from_seconds: f64,
    /// End of the interval.
    pub to_seconds: f64,
    /// Mean power over the interval in watts.
    pub watts: f64,
}

impl PowerSample {
    pub(crate) fn joules(&self) -> f64 {
        self.watts * (self.to_seconds - self.from_seconds)
    }
}

/// What the tracker knows about one meter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterSummary {
    /// Its [name](crate::PowerMeter::name).
    pub name: String,
    /// The component it covers.
    pub component: Component,
    /// How its readings were obtained (from its latest reading; `None` if it never read).
    pub method: Option<Method>,
    /// Energy from its first to its latest reading; `None` with fewer than two readings.
    pub energy: Option<Energy>,
    /// Its power over time, one sample per pair of consecutive readings (merged in pairs past
    /// 20,000).
    pub power: Vec<PowerSample>,
}

/// A problem the tracker met and kept going: a meter that failed to read, a phase ended twice
/// through the [`PhaseObserver`](crate::PhaseObserver) interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerIssue {
    /// When it first happened, in seconds since the tracker started.
    pub seconds: f64,
    /// The meter's name, or `tracker`.
    pub source: String,
    /// The error, as text.
    pub message: String,
    /// How many times in a row the same source reported the same message.
    pub count: u64,
}

/// Everything an [`EnergyTracker`](crate::EnergyTracker) recorded: phases, per-meter totals and power traces, issues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerReport {
    /// When the tracker started, in seconds since the Unix epoch.
    pub started_unix_seconds: f64,
    /// Wall-clock seconds from the tracker's start to this report.
    pub wall_seconds: f64,
    /// CPU seconds the process used over the same time.
    pub cpu_seconds: f64,
    /// The process's peak resident set size (`VmHWM`) in bytes.
    pub peak_rss_bytes: u64,
    /// The configuration, with the grid intensity and PUE emissions are charged at.
    pub config: TrackerConfig,
    /// Per-meter totals and power traces.
    pub meters: Vec<MeterSummary>,
    /// Finished phases, in the order they ended.
    pub phases: Vec<PhaseRecord>,
    /// Phases still open when the report was taken (none after [`EnergyTracker::stop`](crate::EnergyTracker::stop)).
    pub open_phases: Vec<String>,
    /// Problems met along the way.
    pub issues: Vec<TrackerIssue>,
    /// Issues not kept past 1,000.
    pub issues_dropped: u64,
}

impl TrackerReport {
    /// The energy of every meter from the tracker's start to this report; `None` when no meter
    /// was read twice.
    pub fn total_energy(&self) -> Option<Energy> {
        sum(self.meters.iter().filter_map(|m| m.energy.clone()))
    }

    /// The energy of the meters covering `component` over the whole run.
    pub fn component_energy(&self, component: Component) -> Option<Energy> {
        sum(self
            .meters
            .iter()
            .filter(|m| m.component == component)
            .filter_map(|m| m.energy.clone()))
    }

    /// The finished phases with this exact path, in the order they ended.
    pub fn phases_named<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a PhaseRecord> {
        self.phases.iter().filter(move |p| p.path == path)
    }

    /// Reports of consecutive runs as one, in the order given: a lifecycle recorded across
    /// several processes (a pipeline resumed from its finished phases). Phases and power
    /// samples keep their place on one clock, counted from the first report's start (a gap
    /// between runs stays a gap); each meter's energy is the sum over the reports that read it,
    /// and its method is an estimate whenever one of them estimated; CPU seconds add up, the
    /// peak RSS is the largest, issues are kept in order.
    ///
    /// # Errors
    /// [`Error::IncompatibleReports`] for no reports, or reports charged at different grids,
    /// PUEs or regions (their emissions could not be added).
    pub fn concat(parts: &[TrackerReport]) -> Result<TrackerReport> {
        let first = parts.first().ok_or_else(|| Error::IncompatibleReports {
            reason: "no reports".into(),
        })?;
        let mut out = TrackerReport {
            started_unix_seconds: first.started_unix_seconds,
            wall_seconds: 0.0,
            cpu_seconds: 0.0,
            peak_rss_bytes: 0,
            config: first.config.clone(),
            meters: Vec::new(),
            phases: Vec::new(),
            open_phases: Vec::new(),
            issues: Vec::new(),
            issues_dropped: 0,
        };
        for part in parts {
            if part.config.carbon != first.config.carbon
                || part.config.pue != first.config.pue
                || part.config.region_code != first.config.region_code
            {
                return Err(Error::IncompatibleReports {
                    reason: format!(
                        "grid {:?} at PUE {} against {:?} at PUE {}",
                        part.config.region_code,
                        part.config.pue,
                        first.config.region_code,
                        first.config.pue
                    ),
                });
            }
            let offset = part.started_unix_seconds - first.started_unix_seconds;
            out.wall_seconds = out.wall_seconds.max(offset + part.wall_seconds);
            out.cpu_seconds += part.cpu_seconds;
            out.peak_rss_bytes = out.peak_rss_bytes.max(part.peak_rss_bytes);
            out.phases.extend(part.phases.iter().map(|p| PhaseRecord {
                start_seconds: p.start_seconds + offset,
                ..p.clone()
            }));
            out.open_phases.extend(part.open_phases.iter().cloned());
            out.issues.extend(part.issues.iter().map(|i| TrackerIssue {
                seconds: i.seconds + offset,
                ..i.clone()
            }));
            out.issues_dropped += part.issues_dropped;
            for m in &part.meters {
                let shifted = m.power.iter().map(|s| PowerSample {
                    from_seconds: s.from_seconds + offset,
                    to_seconds: s.to_seconds + offset,
                    watts: s.watts,
                });
                match out
                    .meters
                    .iter_mut()
                    .find(|o| o.name == m.name && o.component == m.component)
                {
                    Some(o) => {
                        o.energy = match (o.energy.take(), m.energy.clone()) {
                            (Some(a), Some(b)) => Some(a + b),
                            (a, b) => a.or(b),
                        };
                        if m.method.as_ref().is_some_and(|x| !x.is_measured()) || o.method.is_none()
                        {
                            o.method = m.method.clone().or(o.method.take());
                        }
                        o.power.extend(shifted);
                    }
                    None => out.meters.push(MeterSummary {
                        power: shifted.collect(),
                        ..m.clone()
                    }),
                }
            }
        }
        Ok(out)
    }

    /// Grams of CO2e for `energy` at this report's grid and PUE.
    pub fn emissions_grams(&self, energy: &Energy) -> Result<f64> {
        self.config.carbon.emissions_grams(energy, self.config.pue)
    }
}
