//! The [`PowerMeter`] trait, its [`EnergyReading`]s and the hardware [`Component`] a meter covers.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::energy::Energy;
use crate::error::{Error, Result};

/// The part of the machine a meter's energy belongs to, so a tracker can report energy per
/// component (CodeCarbon's `cpu_energy`, `gpu_energy`, `ram_energy` columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Component {
    /// The CPU packages (RAPL `package-N` domains, or a CPU TDP estimate).
    Cpu,
    /// Memory as measured by a RAPL `dram` domain.
    Dram,
    /// Memory as estimated from its size (no DRAM counter).
    Ram,
    /// The GPUs.
    Gpu,
}

impl fmt::Display for Component {
    /// `CPU`, `DRAM`, `RAM`, `GPU`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Component::Cpu => "CPU",
            Component::Dram => "DRAM",
            Component::Ram => "RAM",
            Component::Gpu => "GPU",
        })
    }
}

/// One reading of a meter's cumulative energy counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyReading {
    /// When the reading was taken, in seconds on the meter's own clock.
    pub seconds: f64,
    /// Energy counted since the meter's origin, with how it was obtained.
    pub energy: Energy,
}

impl EnergyReading {
    /// The energy counted between `earlier` and this reading, with both readings' methods
    /// [combined](crate::Method::combine) (an estimate on either side makes an estimate).
    ///
    /// # Errors
    /// [`Error::CounterWentBackwards`] when `earlier` was taken later than this reading or
    /// counted more energy (a counter reset or wrap the meter did not handle).
    pub fn energy_since(&self, earlier: &EnergyReading) -> Result<Energy> {
        let joules = self.energy.joules() - earlier.energy.joules();
        if self.seconds < earlier.seconds || joules < 0.0 {
            return Err(Error::CounterWentBackwards {
                earlier_seconds: earlier.seconds,
                earlier_joules: earlier.energy.joules(),
                later_seconds: self.seconds,
                later_joules: self.energy.joules(),
            });
        }
        let method = earlier
            .energy
            .method()
            .clone()
            .combine(self.energy.method().clone());
        Energy::new(joules, method)
    }

    /// Mean power between `earlier` and this reading, in watts (0 over a zero interval).
    pub fn mean_watts_since(&self, earlier: &EnergyReading) -> Result<f64> {
        let energy = self.energy_since(earlier)?;
        let seconds = self.seconds - earlier.seconds;
        Ok(if seconds > 0.0 {
            energy.joules() / seconds
        } else {
            0.0
        })
    }
}

/// A source of cumulative energy readings: a hardware counter (RAPL, NVML), a model-based
/// estimate, or a recording replayed in tests.
///
/// It is a trait because the tracker that charges energy to lifecycle phases should not care
/// which of these it reads, and because tests need a meter whose answers are known exactly
/// ([`ReplayMeter`](crate::ReplayMeter)). A meter only counts; the phases and their
/// attribution live with the tracker. Readings are cumulative, so two readings bracket a phase
/// and [`EnergyReading::energy_since`] gives its energy.
pub trait PowerMeter: Send {
    /// A short name for reports (`rapl`, `nvml`, `replay`, ...).
    fn name(&self) -> &str;

    /// The part of the machine whose energy this meter counts.
    fn component(&self) -> Component;

    /// The counter now. Successive readings never decrease in time or energy.
    fn read(&mut self) -> Result<EnergyReading>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::{EstimateModel, MeterSource};

    fn reading(seconds: f64, joules: f64) -> EnergyReading {
        EnergyReading {
            seconds,
            energy: Energy::measured(joules, MeterSource::Rapl).unwrap(),
        }
    }

    #[test]
    fn difference_of_two_readings() {
        let (a, b) = (reading(1.0, 100.0), reading(3.0, 160.0));
        let e = b.energy_since(&a).unwrap();
        assert_eq!(e.joules(), 60.0);
        assert!(e.method().is_measured());
        assert_eq!(b.mean_watts_since(&a).unwrap(), 30.0);
        assert_eq!(a.mean_watts_since(&a).unwrap(), 0.0);
    }

    #[test]
    fn an_estimated_end_makes_an_estimate() {
        let a = reading(0.0, 0.0);
        let model = EstimateModel::CpuTdp {
            tdp_watts: 10.0,
            load_fraction: 0.5,
        };
        let b = EnergyReading {
            seconds: 2.0,
            energy: Energy::estimated(10.0, model).unwrap(),
        };
        assert_eq!(
            b.energy_since(&a).unwrap().method().to_string(),
            "estimated (CPU TDP model)"
        );
    }

    #[test]
    fn components_display_and_serialize() {
        assert_eq!(Component::Dram.to_string(), "DRAM");
        assert_eq!(serde_json::to_string(&Component::Gpu).unwrap(), r#""gpu""#);
        assert_eq!(
            serde_json::from_str::<Component>(r#""ram""#).unwrap(),
            Component::Ram
        );
    }

    #[test]
    fn readings_out_of_order_are_errors() {
        let (a, b) = (reading(1.0, 100.0), reading(3.0, 160.0));
        assert!(matches!(
            a.energy_since(&b),
            Err(Error::CounterWentBackwards { .. })
        ));
        let reset = reading(4.0, 5.0);
        assert!(matches!(
            reset.energy_since(&b),
            Err(Error::CounterWentBackwards { .. })
        ));
    }
}
