//! The real meters, and how to pick them.
//!
//! | Component | Measured (first that works) | Estimated otherwise |
//! |---|---|---|
//! | CPU | [`RaplMeter`] (powercap sysfs), [`PerfEventMeter`] (`power/energy-pkg/`) | [`CpuTdpMeter`] (CodeCarbon's TDP × load curve) |
//! | Memory | [`RaplMeter::dram`], [`PerfEventMeter::dram`] (`power/energy-ram/`) | [`RamEstimateMeter`] (CodeCarbon's RAM-size model) |
//! | GPU | [`NvmlMeter`] (feature `nvml`) | [`GpuTdpMeter`], only when you construct it |
//!
//! [`probe`] tries every one and says which work here and why the others do not;
//! [`default_meters`] returns the best that works per component.
//!
//! # How they count
//! - **RAPL through powercap** ([`RaplMeter`]): sums the `energy_uj` counters of the
//!   `package-*` zones (or the `dram` zones) under `/sys/class/powercap/intel-rapl:*`, adding
//!   `max_energy_range_uj` when a counter wraps. `psys`, `core`, `uncore` and the
//!   `intel-rapl-mmio:*` copies are left out. As in CodeCarbon, a package counter that mirrors
//!   another (multi-die CPUs, CodeCarbon issue #1274) is counted once. Since Linux 5.10
//!   `energy_uj` is root-only (CVE-2020-8694); the error says how to grant access.
//! - **RAPL through perf** ([`PerfEventMeter`]): the `power/energy-pkg/` and
//!   `power/energy-ram/` events opened system-wide on the first CPU of each package; needs
//!   CAP_PERFMON or `kernel.perf_event_paranoid <= 0`.
//! - **NVML** ([`NvmlMeter`], feature `nvml`): `libnvidia-ml.so.1` loaded at run time; the
//!   total-energy counter (Volta and later), else power sampled at each reading and integrated
//!   trapezoidally.
//! - **Estimates**, following CodeCarbon 3.3.2 so the figures compare: [`CpuTdpMeter`]
//!   (`TDP × (0.1 + 0.9 × load³)`, TDP from CodeCarbon's CPU table by its matching rules, else
//!   4 W per thread, else 85 W: [`CpuTdp`]); [`RamEstimateMeter`] (5 W per estimated DIMM on
//!   x86, 1.5 W on ARM, less per DIMM on big servers: [`ram_power_watts`]); [`GpuTdpMeter`]
//!   (a TDP times a load share you state; CodeCarbon has no GPU estimate). SLURM allocations,
//!   which CodeCarbon reads with `scontrol`, are not consulted.

mod estimate;
#[cfg(feature = "nvml")]
mod nvml;
#[cfg(not(feature = "nvml"))]
#[path = "nvml_disabled.rs"]
mod nvml;
mod perf_event;
mod probe;
mod rapl;
mod tdp_table;

use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use estimate::{
    ARM_WATTS_PER_DIMM, CONSTANT_LOAD_FRACTION, CpuTdpMeter, CpuTimes, GpuTdpMeter,
    RamEstimateMeter, X86_WATTS_PER_DIMM, cpu_power_watts, estimated_dimm_count, memory_gigabytes,
    ram_power_watts,
};
pub use nvml::{NVML_LIBRARY, NvmlGpu, NvmlMeter};
pub use perf_event::{
    DEFAULT_SYSFS_ROOT, PerfEventMeter, PerfEventSpec, RaplEvent, perf_event_spec,
};
pub use probe::{MeterProbe, default_meters, default_meters_at, probe, probe_at};
pub use rapl::{DEFAULT_POWERCAP_ROOT, RaplDomain, RaplMeter, rapl_domains};
pub use tdp_table::{
    CpuInfo, CpuTdp, CpuTdpEntry, CpuTdpTable, DEFAULT_WATTS_PER_THREAD, GENERIC_TDP_WATTS,
    TdpSource,
};

use crate::error::{Error, Result};

/// Where [`probe_at`] and [`default_meters_at`] look: the real system by default, a fake
/// tree in tests, or a host's `/sys` and `/proc` mounted elsewhere in a container.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemPaths {
    /// The powercap class directory ([`DEFAULT_POWERCAP_ROOT`]).
    pub powercap_root: PathBuf,
    /// The sysfs mount ([`DEFAULT_SYSFS_ROOT`]), for the perf `power` PMU.
    pub sysfs_root: PathBuf,
    /// The procfs mount (`/proc`), for `stat`, `cpuinfo` and `meminfo`.
    pub proc_root: PathBuf,
    /// The NVML library to load ([`NVML_LIBRARY`]).
    pub nvml_library: String,
}

impl Default for SystemPaths {
    fn default() -> Self {
        SystemPaths {
            powercap_root: DEFAULT_POWERCAP_ROOT.into(),
            sysfs_root: DEFAULT_SYSFS_ROOT.into(),
            proc_root: "/proc".into(),
            nvml_library: NVML_LIBRARY.into(),
        }
    }
}

/// Reads a small text file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// Reads a file holding one value, naming the file and what was expected in the error.
pub(crate) fn read_parsed<T: FromStr>(path: &Path, expected: &'static str) -> Result<T> {
    let text = read_file(path)?;
    text.trim().parse().map_err(|_| Error::ParseFile {
        path: path.to_owned(),
        content: text.trim().to_owned(),
        expected,
    })
}
