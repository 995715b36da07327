//! [`Energy`]: joules together with how they were obtained, measured or estimated.

use std::fmt;
use std::ops::Add;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Joules in a kilowatt-hour.
pub const JOULES_PER_KWH: f64 = 3.6e6;
/// Joules in a watt-hour.
pub const JOULES_PER_WH: f64 = 3600.0;

/// A hardware energy counter an energy figure was read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MeterSource {
    /// Intel/AMD RAPL counters (`/sys/class/powercap`).
    Rapl,
    /// NVIDIA's NVML total-energy counter.
    Nvml,
    /// Another meter, named (a wall-socket meter, a BMC, a replayed recording, ...).
    Other(String),
    /// Several meters added together (CPU from RAPL plus GPU from NVML), each listed once.
    Combined(Vec<MeterSource>),
}

/// A model an energy estimate was computed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EstimateModel {
    /// CodeCarbon's fallback for CPUs without counters and without a load reading ("constant"
    /// mode): power = `tdp_watts × load_fraction` over the elapsed time.
    CpuTdp {
        /// The CPU's thermal design power.
        tdp_watts: f64,
        /// The share of TDP assumed drawn (CodeCarbon assumes 0.5 without a load reading).
        load_fraction: f64,
    },
    /// CodeCarbon's `cpu_load` mode for CPUs without counters: over each interval between two
    /// readings, power = `tdp_watts × (0.1 + 0.9 × load³)` where `load` is the whole machine's
    /// CPU utilisation over that interval (from `/proc/stat`).
    CpuTdpLoad {
        /// The machine's CPU thermal design power (all sockets).
        tdp_watts: f64,
    },
    /// CodeCarbon's RAM model: a constant power from the memory size (watts per estimated
    /// DIMM, with diminishing watts per DIMM on large servers).
    RamSize {
        /// The memory size the power was derived from, in GiB.
        gigabytes: f64,
        /// The power assumed drawn.
        watts: f64,
    },
    /// A GPU without a readable counter: power = `tdp_watts × load_fraction`.
    GpuTdp {
        /// The GPU's thermal design power (board power limit).
        tdp_watts: f64,
        /// The share of TDP assumed drawn.
        load_fraction: f64,
    },
    /// Another model, named.
    Other(String),
    /// Several estimates added together, each listed once.
    Combined(Vec<EstimateModel>),
}

/// How an energy figure was obtained. An estimate never turns into a measurement: adding a
/// measured and an estimated energy gives an estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Read from a hardware counter.
    Measured(MeterSource),
    /// Computed from a model.
    Estimated(EstimateModel),
}

/// `a` followed by the items of `b` it does not already hold.
fn union<T: PartialEq>(mut a: Vec<T>, b: Vec<T>) -> Vec<T> {
    for x in b {
        if !a.contains(&x) {
            a.push(x);
        }
    }
    a
}

impl MeterSource {
    fn into_parts(self) -> Vec<MeterSource> {
        match self {
            MeterSource::Combined(parts) => parts,
            s => vec![s],
        }
    }

    /// The source of a sum of readings from `self` and `other`: each meter listed once.
    pub fn combine(self, other: MeterSource) -> MeterSource {
        let mut parts = union(self.into_parts(), other.into_parts());
        if parts.len() == 1 {
            parts.remove(0)
        } else {
            MeterSource::Combined(parts)
        }
    }
}

impl EstimateModel {
    fn into_parts(self) -> Vec<EstimateModel> {
        match self {
            EstimateModel::Combined(parts) => parts,
            m => vec![m],
        }
    }

    /// The model of a sum of estimates from `self` and `other`: each model listed once.
    pub fn combine(self, other: EstimateModel) -> EstimateModel {
        let mut parts = union(self.into_parts(), other.into_parts());
        if parts.len() == 1 {
            parts.remove(0)
        } else {
            EstimateModel::Combined(parts)
        }
    }
}

impl Method {
    /// The method of a sum: measured only when both parts are; otherwise the estimates' models.
    pub fn combine(self, other: Method) -> Method {
        match (self, other) {
            (Method::Measured(a), Method::Measured(b)) => Method::Measured(a.combine(b)),
            (Method::Estimated(a), Method::Estimated(b)) => Method::Estimated(a.combine(b)),
            (Method::Estimated(e), Method::Measured(_))
            | (Method::Measured(_), Method::Estimated(e)) => Method::Estimated(e),
        }
    }

    /// Whether every joule behind the figure was read from a counter.
    pub fn is_measured(&self) -> bool {
        matches!(self, Method::Measured(_))
    }
}

impl fmt::Display for MeterSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeterSource::Rapl => f.write_str("RAPL"),
            MeterSource::Nvml => f.write_str("NVML"),
            MeterSource::Other(name) => f.write_str(name),
            MeterSource::Combined(parts) => join(f, parts),
        }
    }
}

impl fmt::Display for EstimateModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EstimateModel::CpuTdp { .. } => f.write_str("CPU TDP model"),
            EstimateModel::CpuTdpLoad { .. } => f.write_str("CPU TDP x load model"),
            EstimateModel::RamSize { .. } => f.write_str("RAM size model"),
            EstimateModel::GpuTdp { .. } => f.write_str("GPU TDP model"),
            EstimateModel::Other(name) => f.write_str(name),
            EstimateModel::Combined(parts) => join(f, parts),
        }
    }
}

fn join<T: fmt::Display>(f: &mut fmt::Formatter<'_>, parts: &[T]) -> fmt::Result {
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            f.write_str(" + ")?;
        }
        write!(f, "{p}")?;
    }
    Ok(())
}

impl fmt::Display for Method {
    /// `measured (RAPL)`, `estimated (CPU TDP model)`, `measured (RAPL + NVML)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Measured(s) => write!(f, "measured ({s})"),
            Method::Estimated(m) => write!(f, "estimated ({m})"),
        }
    }
}

/// An amount of energy and how it was obtained.
///
/// Joules are finite and non-negative (the constructors check). The sum of two energies is
/// measured only when both are ([`Method::combine`]), so a figure with any estimated part always
/// displays as an estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawEnergy")]
pub struct Energy {
    joules: f64,
    method: Method,
}

/// What a serialized [`Energy`] holds, before validation.
#[derive(Deserialize)]
struct RawEnergy {
    joules: f64,
    method: Method,
}

impl TryFrom<RawEnergy> for Energy {
    type Error = Error;

    fn try_from(raw: RawEnergy) -> Result<Self> {
        Energy::new(raw.joules, raw.method)
    }
}

impl Energy {
    /// `joules` obtained by `method`; [`Error::InvalidEnergy`] unless finite and `>= 0`.
    pub fn new(joules: f64, method: Method) -> Result<Self> {
        if joules.is_finite() && joules >= 0.0 {
            Ok(Energy { joules, method })
        } else {
            Err(Error::InvalidEnergy { joules })
        }
    }

    /// Joules read from a counter.
    pub fn measured(joules: f64, source: MeterSource) -> Result<Self> {
        Energy::new(joules, Method::Measured(source))
    }

    /// Joules computed by a model.
    pub fn estimated(joules: f64, model: EstimateModel) -> Result<Self> {
        Energy::new(joules, Method::Estimated(model))
    }

    /// Kilowatt-hours obtained by `method`.
    pub fn from_kwh(kwh: f64, method: Method) -> Result<Self> {
        Energy::new(kwh * JOULES_PER_KWH, method)
    }

    /// Joules.
    pub fn joules(&self) -> f64 {
        self.joules
    }

    /// Kilowatt-hours.
    pub fn kwh(&self) -> f64 {
        self.joules / JOULES_PER_KWH
    }

    /// Watt-hours.
    pub fn wh(&self) -> f64 {
        self.joules / JOULES_PER_WH
    }

    /// How the figure was obtained.
    pub fn method(&self) -> &Method {
        &self.method
    }
}

impl Add for Energy {
    type Output = Energy;

    /// Adds joules and [combines](Method::combine) methods. Two finite energies cannot overflow
    /// an f64 in any physical setting (1.8e308 J), so the sum stays valid.
    fn add(self, rhs: Energy) -> Energy {
        Energy {
            joules: self.joules + rhs.joules,
            method: self.method.combine(rhs.method),
        }
    }
}

impl fmt::Display for Energy {
    /// `12.5 J, measured (RAPL)`; a precision applies to the joules (`{:.2}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match f.precision() {
            Some(p) => write!(f, "{:.*} J, {}", p, self.joules, self.method),
            None => write!(f, "{} J, {}", self.joules, self.method),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tdp() -> EstimateModel {
        EstimateModel::CpuTdp {
            tdp_watts: 65.0,
            load_fraction: 0.5,
        }
    }

    #[test]
    fn display_never_passes_an_estimate_off_as_measured() {
        let m = Energy::measured(10.0, MeterSource::Rapl).unwrap();
        let e = Energy::estimated(5.0, tdp()).unwrap();
        assert_eq!(m.to_string(), "10 J, measured (RAPL)");
        assert_eq!(e.to_string(), "5 J, estimated (CPU TDP model)");
        let sum = m.clone() + e.clone();
        assert_eq!(format!("{sum:.1}"), "15.0 J, estimated (CPU TDP model)");
        assert_eq!(e + m, sum, "the order does not matter");
    }

    #[test]
    fn measured_sources_combine_once_each() {
        let rapl = Energy::measured(1.0, MeterSource::Rapl).unwrap();
        let nvml = Energy::measured(2.0, MeterSource::Nvml).unwrap();
        let both = rapl.clone() + nvml.clone() + rapl.clone();
        assert_eq!(both.joules(), 4.0);
        assert_eq!(
            both.method(),
            &Method::Measured(MeterSource::Combined(vec![
                MeterSource::Rapl,
                MeterSource::Nvml
            ]))
        );
        assert_eq!(both.method().to_string(), "measured (RAPL + NVML)");
        assert_eq!(
            (rapl.clone() + rapl).method(),
            &Method::Measured(MeterSource::Rapl)
        );
        assert!(both.method().is_measured());
    }

    #[test]
    fn estimates_combine_once_each() {
        let a = Method::Estimated(tdp());
        let b = Method::Estimated(EstimateModel::Other("GPU TDP model".into()));
        let ab = a.clone().combine(b.clone());
        assert_eq!(ab.to_string(), "estimated (CPU TDP model + GPU TDP model)");
        assert_eq!(ab.clone().combine(a).combine(b), ab);
    }

    #[test]
    fn new_estimate_models_display_as_estimates() {
        for (model, text) in [
            (
                EstimateModel::CpuTdpLoad { tdp_watts: 85.0 },
                "estimated (CPU TDP x load model)",
            ),
            (
                EstimateModel::RamSize {
                    gigabytes: 16.0,
                    watts: 10.0,
                },
                "estimated (RAM size model)",
            ),
            (
                EstimateModel::GpuTdp {
                    tdp_watts: 700.0,
                    load_fraction: 0.5,
                },
                "estimated (GPU TDP model)",
            ),
        ] {
            let e = Energy::estimated(1.0, model).unwrap();
            assert_eq!(e.method().to_string(), text);
            let sum = Energy::measured(1.0, MeterSource::Rapl).unwrap() + e;
            assert!(!sum.method().is_measured());
        }
    }

    #[test]
    fn unit_conversions() {
        let e = Energy::from_kwh(1.5, Method::Measured(MeterSource::Nvml)).unwrap();
        assert_eq!(e.joules(), 5.4e6);
        assert_eq!(e.kwh(), 1.5);
        assert_eq!(e.wh(), 1500.0);
    }

    #[test]
    fn invalid_joules_are_refused() {
        for j in [-1.0, f64::NAN, f64::INFINITY] {
            let err = Energy::measured(j, MeterSource::Rapl).unwrap_err();
            assert!(matches!(err, Error::InvalidEnergy { .. }), "{j}");
        }
        assert_eq!(Energy::estimated(0.0, tdp()).unwrap().joules(), 0.0);
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let e = Energy::measured(3.0, MeterSource::Other("wall meter".into())).unwrap();
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"joules":3.0,"method":{"measured":{"other":"wall meter"}}}"#
        );
        assert_eq!(serde_json::from_str::<Energy>(&json).unwrap(), e);
        let bad = r#"{"joules":-3.0,"method":{"measured":"rapl"}}"#;
        assert!(
            serde_json::from_str::<Energy>(bad)
                .unwrap_err()
                .to_string()
                .contains("invalid energy -3 J")
        );
    }
}
