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
//! ## Later
//! Later issues add the real meters (RAPL through powercap, NVML), a CodeCarbon-style TDP
//! estimator for machines without counters, an `EnergyTracker` that charges readings to
//! lifecycle phases through `tracing` spans, and the energy report (JSON, `emissions.csv`).
//!
//! This crate has no features.

mod carbon;
mod energy;
mod error;
mod meter;
mod replay;
mod trace;

pub use carbon::{CarbonIntensity, DEFAULT_PUE};
pub use energy::{Energy, EstimateModel, JOULES_PER_KWH, JOULES_PER_WH, MeterSource, Method};
pub use error::{Error, Result};
pub use meter::{EnergyReading, PowerMeter};
pub use replay::ReplayMeter;
pub use trace::PowerTrace;

/// The names most programs need: `use slm_energy::prelude::*;`.
pub mod prelude {
    pub use crate::{
        CarbonIntensity, Energy, EnergyReading, Error, EstimateModel, MeterSource, Method,
        PowerMeter, PowerTrace, ReplayMeter, Result,
    };
}
