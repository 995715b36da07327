//! # slm-energy
//!
//! Energy and carbon accounting for `slm`, with provenance: every figure is an [`Energy`] that
//! says whether it was *measured* by a hardware counter or *estimated* by a model, and an
//! estimate can never be displayed as a measurement (the sum of a measured and an estimated
//! energy is an estimate). [`CarbonIntensity`] turns energy into grams of CO2e, the
//! [`PowerMeter`] trait is what every meter implements, and [`ReplayMeter`] replays a
//! recorded [`PowerTrace`] with exact trapezoidal integration, so tests of anything that
//! meters energy know the right answer. This crate is a leaf: no burn, no model types.
//!
//! ```
//! use slm_energy::prelude::*;
//!
//! # fn main() -> slm_energy::Result<()> {
//! // A recorded GPU power trace: 200 W for 60 s, then ramping down to 50 W over 30 s.
//! let trace = PowerTrace::new(vec![(0.0, 200.0), (60.0, 200.0), (90.0, 50.0)])?;
//! let mut meter = ReplayMeter::new(trace, Method::Measured(MeterSource::Nvml));
//!
//! // Bracket a phase with two readings of the cumulative counter.
//! let start = meter.read()?;
//! meter.advance(90.0)?;
//! let end = meter.read()?;
//! let gpu = end.energy_since(&start)?;
//! assert_eq!(gpu.joules(), 200.0 * 60.0 + 30.0 * (200.0 + 50.0) / 2.0);
//! assert_eq!(gpu.method().to_string(), "measured (NVML)");
//!
//! // The CPU had no counter: an estimate, and so is the total.
//! let cpu = Energy::estimated(65.0 * 0.5 * 90.0, EstimateModel::CpuTdp { tdp_watts: 65.0, load_fraction: 0.5 })?;
//! let total = gpu + cpu;
//! assert_eq!(format!("{total:.0}"), "18675 J, estimated (CPU TDP model)");
//!
//! // Grams of CO2e at the world-average grid intensity, counting the equipment only (PUE 1).
//! let grams = CarbonIntensity::WORLD_DEFAULT.emissions_grams(&total, 1.0)?;
//! assert!((grams - total.kwh() * 475.0).abs() < 1e-12);
//! # Ok(()) }
//! ```
//!
//! ## Tracking a lifecycle
//! [`EnergyTracker`] reads a set of meters (by default the best this machine has: RAPL or
//! `perf_event` counters, NVML for NVIDIA GPUs, CodeCarbon's CPU-TDP and RAM-size models
//! otherwise; `slm energy probe` lists them and says why the others are missing) at phase
//! boundaries and on a background thread, charges the energy to named, nested phases, and
//! produces a [`TrackerReport`]. [`report`] turns that into Energy-to-Solution figures
//! ([`report::E2sInputs`]), JSON, a CodeCarbon-compatible `emissions.csv`, and a Markdown or
//! HTML section with SVG plots. Other crates report phases through the small
//! [`PhaseObserver`] trait without depending on meters.
//!
//! ```
//! use slm_energy::prelude::*;
//!
//! # fn main() -> slm_energy::Result<()> {
//! let tracker = EnergyTracker::new(slm_energy::default_meters(), TrackerConfig::for_region("FR")?)?;
//! {
//!     let _training = tracker.phase("training")?; // ends when dropped
//!     std::hint::black_box((0..100_000u64).sum::<u64>());
//! }
//! {
//!     let _serving = tracker.phase("serving")?;
//!     std::hint::black_box((0..10_000u64).sum::<u64>());
//! }
//! let report = tracker.stop()?;
//! let e2s = slm_energy::report::E2sInputs::from_report(&report, "serving", 10, 1_000_000)?.compute()?;
//! // Every figure says how it was obtained; on a machine without counters it is an estimate.
//! println!("{:.3e} Wh/query ({})", e2s.wh_per_query.value, e2s.wh_per_query.method);
//! # Ok(()) }
//! ```
//!
//! # Features
//! | feature | default | what it enables |
//! |---|---|---|
//! | `nvml` | no | NVIDIA GPU energy through NVML, loaded at run time (`libnvidia-ml.so.1`); without it [`NvmlMeter`] returns [`Error::NvmlNotCompiled`] |
//!
//! The example `examples/energy_workload` runs a CPU workload under a tracker and
//! `benches/codecarbon_compare.py` compares it with CodeCarbon's `OfflineEmissionsTracker`.

mod carbon;
mod energy;
mod error;
mod meter;
mod phase;
mod process;
mod replay;
mod trace;
mod tracker;

pub mod grid;
pub mod meters;
pub mod report;

pub use carbon::{CarbonIntensity, DEFAULT_PUE};
pub use energy::{Energy, EstimateModel, JOULES_PER_KWH, JOULES_PER_WH, MeterSource, Method};
pub use error::{Error, Result};
pub use meter::{Component, EnergyReading, PowerMeter};
pub use meters::{
    CpuTdp, CpuTdpMeter, GpuTdpMeter, MeterProbe, NvmlMeter, PerfEventMeter, RamEstimateMeter,
    RaplMeter, SystemPaths, default_meters, probe,
};
pub use phase::{Lifecycle, NoopObserver, ObservedPhase, PhaseObserver};
pub use replay::ReplayMeter;
pub use trace::PowerTrace;
pub use tracker::{
    DEFAULT_SAMPLING_INTERVAL, EnergyTracker, MeterEnergy, MeterSummary, PhaseGuard, PhaseRecord,
    PowerSample, TrackerConfig, TrackerIssue, TrackerReport,
};

/// The names most programs need: `use slm_energy::prelude::*;`.
pub mod prelude {
    pub use crate::{
        CarbonIntensity, Energy, EnergyReading, EnergyTracker, Error, EstimateModel, MeterSource,
        Method, PhaseObserver, PowerMeter, PowerTrace, ReplayMeter, Result, TrackerConfig,
    };
}
