//! [`NvmlMeter`] without the `nvml` feature: the same API, whose constructors return
//! [`Error::NvmlNotCompiled`], so callers need no `cfg` of their own.

use crate::error::{Error, Result};
use crate::meter::{Component, EnergyReading, PowerMeter};

/// The NVML library the driver installs.
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// One GPU as the meter sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NvmlGpu {
    /// NVML's index.
    pub index: u32,
    /// NVML's name.
    pub name: String,
    /// Whether the total-energy counter is used (`false`: power sampled between readings).
    pub energy_counter: bool,
}

/// NVIDIA GPU energy through NVML; this build lacks the `nvml` feature, so it cannot be
/// constructed.
#[derive(Debug)]
pub struct NvmlMeter {
    never: std::convert::Infallible,
}

impl NvmlMeter {
    /// Always [`Error::NvmlNotCompiled`]: rebuild with `--features nvml`.
    pub fn new() -> Result<Self> {
        Err(Error::NvmlNotCompiled)
    }

    /// Always [`Error::NvmlNotCompiled`]: rebuild with `--features nvml`.
    pub fn with_library(_library: &str) -> Result<Self> {
        Err(Error::NvmlNotCompiled)
    }

    /// The GPUs metered.
    pub fn gpus(&self) -> Vec<NvmlGpu> {
        match self.never {}
    }

    /// Each GPU's power draw now, in watts.
    pub fn power_watts(&self) -> Result<Vec<f64>> {
        match self.never {}
    }

    /// Each GPU's total-energy counter now, in millijoules.
    pub fn energy_counters_mj(&self) -> Result<Vec<Option<u64>>> {
        match self.never {}
    }
}

impl PowerMeter for NvmlMeter {
    fn name(&self) -> &str {
        "nvml"
    }

    fn component(&self) -> Component {
        Component::Gpu
    }

    fn read(&mut self) -> Result<EnergyReading> {
        match self.never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_feature_the_error_says_how_to_get_it() {
        let err = NvmlMeter::new().unwrap_err();
        assert!(err.to_string().contains("--features nvml"), "{err}");
    }
}
