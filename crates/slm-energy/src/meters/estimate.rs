//! Estimating meters for machines without readable counters, following CodeCarbon 3.3.2
//! (`codecarbon/external/hardware.py`, `codecarbon/external/ram.py`), so figures compare with
//! what CodeCarbon users know:
//!
//! - [`CpuTdpMeter`]: CodeCarbon's `cpu_load` mode in `machine` tracking (its default when RAPL
//!   is unreadable). Over each interval between two readings, power =
//!   `TDP × (0.1 + 0.9 × load³)` ([`cpu_power_watts`]), `load` being the whole machine's busy
//!   share over that interval from `/proc/stat` (CodeCarbon's `SystemCPULoadMeter`:
//!   busy = total − idle − iowait, total excluding guest time already counted in user/nice).
//!   The TDP comes from [`CpuTdp`]. Without `/proc/stat` it falls back to CodeCarbon's
//!   `constant` mode, `TDP × 0.5`.
//! - [`RamEstimateMeter`]: CodeCarbon's RAM model ([`ram_power_watts`]), a constant power from
//!   the memory size.
//! - [`GpuTdpMeter`]: a GPU's TDP times a load share you state. CodeCarbon has no GPU estimate
//!   (it reads NVML or nothing); use it when a GPU ran but could not be metered.
//!
//! Where these differ from CodeCarbon: the load curve is convex, so the estimate depends on how
//! often the meter is read (CodeCarbon samples every `measure_power_secs`, 15 s by default;
//! read at the same interval to compare); SLURM allocations (`scontrol`) are not consulted.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::energy::{Energy, EstimateModel};
use crate::error::{Error, Result};
use crate::meter::{Component, EnergyReading, PowerMeter};
use crate::meters::read_file;
use crate::meters::tdp_table::CpuTdp;

/// Share of TDP CodeCarbon assumes without a load reading (`CONSUMPTION_PERCENTAGE_CONSTANT`).
pub const CONSTANT_LOAD_FRACTION: f64 = 0.5;
/// CodeCarbon's watts per DIMM on x86 (`RAM_SLOT_POWER_X86`).
pub const X86_WATTS_PER_DIMM: f64 = 5.0;
/// CodeCarbon's watts per DIMM on ARM.
pub const ARM_WATTS_PER_DIMM: f64 = 1.5;
/// Bytes in the "GB" CodeCarbon divides memory by (`B_TO_GB`, a GiB).
const BYTES_PER_GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// CodeCarbon's CPU power at `load` (0 to 1) for a CPU of `tdp_watts`:
/// `tdp × (0.1 + 0.9 × load³)`, 10 % of TDP when idle.
pub fn cpu_power_watts(tdp_watts: f64, load: f64) -> f64 {
    let load = load.clamp(0.0, 1.0);
    tdp_watts * (0.1 + 0.9 * load.powi(3))
}

/// CodeCarbon's guess at how many DIMMs hold `gigabytes` (GiB) of memory
/// (`RAM._estimate_dimm_count`).
pub fn estimated_dimm_count(gigabytes: f64) -> u32 {
    match gigabytes {
        g if g <= 2.0 => 1,
        g if g <= 16.0 => 2,
        g if g <= 32.0 => 4,
        g if g <= 64.0 => 4,
        g if g <= 128.0 => 8,
        g => {
            // The largest common DIMM that fits at least 8 times, capped at 32 DIMMs.
            [128.0, 64.0, 32.0, 16.0, 8.0, 4.0]
                .into_iter()
                .find(|&size| size <= g / 8.0)
                .map_or(8, |size| ((g / size).ceil() as u32).min(32))
        }
    }
}

/// CodeCarbon's RAM power for `gigabytes` (GiB) of memory (`RAM._calculate_ram_power`): watts
/// per estimated DIMM, 90 % of that beyond 4 DIMMs, 80 % beyond 8, 70 % beyond 16, and at least
/// two DIMMs' worth on x86 (3 W on ARM).
pub fn ram_power_watts(gigabytes: f64, arm: bool) -> f64 {
    let dimms = f64::from(estimated_dimm_count(gigabytes));
    let (per_dimm, min) = if arm {
        (ARM_WATTS_PER_DIMM, 3.0)
    } else {
        (X86_WATTS_PER_DIMM, 2.0 * X86_WATTS_PER_DIMM)
    };
    let tiers = [(4.0, 1.0), (4.0, 0.9), (8.0, 0.8), (f64::INFINITY, 0.7)];
    let (mut left, mut watts) = (dimms, 0.0);
    for (count, share) in tiers {
        let n = left.min(count);
        watts += per_dimm * share * n;
        left -= n;
    }
    watts.max(min)
}

/// Cumulative CPU times from the `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuTimes {
    /// All time except guest time (already inside user and nice).
    pub total: f64,
    /// `total` less idle and iowait.
    pub busy: f64,
}

impl CpuTimes {
    /// Parses the aggregate `cpu` line of `/proc/stat` text (fields user, nice, system, idle,
    /// iowait, irq, softirq, steal, guest, guest_nice; missing trailing fields are 0).
    ///
    /// # Errors
    /// [`Error::ParseFile`] (naming `path`) when there is no parsable `cpu` line.
    pub fn parse(path: &Path, text: &str) -> Result<CpuTimes> {
        let bad = || Error::ParseFile {
            path: path.to_owned(),
            content: text.lines().next().unwrap_or_default().to_owned(),
            expected: "a `cpu` line of clock-tick counts",
        };
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some("cpu"))
            .ok_or_else(bad)?;
        let fields = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse::<f64>().map_err(|_| bad()))
            .collect::<Result<Vec<f64>>>()?;
        if fields.len() < 4 {
            return Err(bad());
        }
        let field = |i: usize| fields.get(i).copied().unwrap_or(0.0);
        let total = fields.iter().take(10).sum::<f64>() - field(8) - field(9);
        Ok(CpuTimes {
            total,
            busy: total - field(3) - field(4),
        })
    }

    /// Reads `/proc/stat` (or a file like it).
    pub fn read(path: &Path) -> Result<CpuTimes> {
        CpuTimes::parse(path, &read_file(path)?)
    }

    /// The busy share of the time between `earlier` and `self`, in `[0, 1]` (0 over no time).
    pub fn load_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.total - earlier.total;
        if total <= 0.0 {
            return 0.0;
        }
        ((self.busy - earlier.busy) / total).clamp(0.0, 1.0)
    }
}

/// How [`CpuTdpMeter`] knows the load.
#[derive(Debug, Clone)]
enum LoadSource {
    /// Deltas of a `/proc/stat`-like file.
    ProcStat { path: PathBuf, last: CpuTimes },
    /// No reading: CodeCarbon's constant 50 %.
    Constant,
}

/// A [`PowerMeter`] estimating CPU energy as CodeCarbon 3.3.2 does without RAPL (its
/// `cpu_load` mode, `machine` tracking): over each interval between two readings, power =
/// `TDP × (0.1 + 0.9 × load³)` ([`cpu_power_watts`]) with `load` the whole machine's busy share
/// over that interval from `/proc/stat` ([`CpuTimes`]), and the TDP from [`CpuTdp`].
///
/// Readings are [estimates](crate::Method::Estimated): [`EstimateModel::CpuTdpLoad`] with a
/// load reading, [`EstimateModel::CpuTdp`] at 50 % of TDP ([`constant`](Self::constant),
/// CodeCarbon's `constant` mode) without one. The curve is convex, so the figure depends on
/// how often the meter is read: read it at a steady interval (CodeCarbon reads every
/// `measure_power_secs`, 15 s by default) to compare with CodeCarbon.
#[derive(Debug, Clone)]
pub struct CpuTdpMeter {
    tdp: CpuTdp,
    load: LoadSource,
    started: Instant,
    last_seconds: f64,
    joules: f64,
    last_load: Option<f64>,
}

impl CpuTdpMeter {
    /// A meter for a CPU of `tdp` whose load is read from `/proc/stat`.
    ///
    /// # Errors
    /// [`Error::ReadFile`]/[`Error::ParseFile`] when `/proc/stat` cannot be read.
    pub fn new(tdp: CpuTdp) -> Result<Self> {
        Self::with_stat_path(tdp, "/proc/stat")
    }

    /// A meter whose load is read from `stat_path`, a file in `/proc/stat`'s format.
    pub fn with_stat_path(tdp: CpuTdp, stat_path: impl Into<PathBuf>) -> Result<Self> {
        let path = stat_path.into();
        let last = CpuTimes::read(&path)?;
        Self::start(tdp, LoadSource::ProcStat { path, last })
    }

    /// A meter without a load reading: CodeCarbon's `constant` mode, `TDP × 0.5`.
    ///
    /// # Errors
    /// [`Error::InvalidPower`] for a negative or non-finite TDP (as the other constructors).
    pub fn constant(tdp: CpuTdp) -> Result<Self> {
        Self::start(tdp, LoadSource::Constant)
    }

    fn start(tdp: CpuTdp, load: LoadSource) -> Result<Self> {
        ConstantPower::new(tdp.tdp_watts, "CPU TDP")?;
        Ok(CpuTdpMeter {
            tdp,
            load,
            started: Instant::now(),
            last_seconds: 0.0,
            joules: 0.0,
            last_load: None,
        })
    }

    /// The TDP the estimate uses and where it came from.
    pub fn tdp(&self) -> &CpuTdp {
        &self.tdp
    }

    /// The load over the interval before the latest reading (`None` before the first, or
    /// without a load reading).
    pub fn last_load(&self) -> Option<f64> {
        self.last_load
    }

    fn model(&self) -> EstimateModel {
        match self.load {
            LoadSource::ProcStat { .. } => EstimateModel::CpuTdpLoad {
                tdp_watts: self.tdp.tdp_watts,
            },
            LoadSource::Constant => EstimateModel::CpuTdp {
                tdp_watts: self.tdp.tdp_watts,
                load_fraction: CONSTANT_LOAD_FRACTION,
            },
        }
    }

    /// The reading at `seconds` on the meter's clock.
    fn read_at(&mut self, seconds: f64) -> Result<EnergyReading> {
        let seconds = seconds.max(self.last_seconds);
        let watts = match &mut self.load {
            LoadSource::ProcStat { path, last } => {
                let now = CpuTimes::read(path)?;
                let load = now.load_since(last);
                *last = now;
                self.last_load = Some(load);
                cpu_power_watts(self.tdp.tdp_watts, load)
            }
            LoadSource::Constant => self.tdp.tdp_watts * CONSTANT_LOAD_FRACTION,
        };
        self.joules += watts * (seconds - self.last_seconds);
        self.last_seconds = seconds;
        Ok(EnergyReading {
            seconds,
            energy: Energy::estimated(self.joules, self.model())?,
        })
    }
}

impl PowerMeter for CpuTdpMeter {
    fn name(&self) -> &str {
        "cpu_tdp"
    }

    fn component(&self) -> Component {
        Component::Cpu
    }

    fn read(&mut self) -> Result<EnergyReading> {
        self.read_at(self.started.elapsed().as_secs_f64())
    }
}

/// Energy at a constant power since construction: what the RAM and GPU estimates share.
#[derive(Debug, Clone)]
struct ConstantPower {
    watts: f64,
    started: Instant,
}

impl ConstantPower {
    fn new(watts: f64, what: &'static str) -> Result<Self> {
        if !(watts.is_finite() && watts >= 0.0) {
            return Err(Error::InvalidPower { watts, what });
        }
        Ok(ConstantPower {
            watts,
            started: Instant::now(),
        })
    }

    fn reading_at(&self, seconds: f64, model: EstimateModel) -> Result<EnergyReading> {
        Ok(EnergyReading {
            seconds,
            energy: Energy::estimated(self.watts * seconds, model)?,
        })
    }

    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// The machine's memory size in GiB from `MemTotal` of a `/proc/meminfo`-like file (psutil's
/// `virtual_memory().total`).
///
/// # Errors
/// [`Error::ReadFile`], or [`Error::ParseFile`] without a `MemTotal: <n> kB` line.
pub fn memory_gigabytes(meminfo: &Path) -> Result<f64> {
    let text = read_file(meminfo)?;
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| Error::ParseFile {
            path: meminfo.to_owned(),
            content: text.lines().next().unwrap_or_default().to_owned(),
            expected: "a `MemTotal: <n> kB` line",
        })?;
    Ok(kib * 1024.0 / BYTES_PER_GIB)
}

/// A [`PowerMeter`] estimating memory energy from the memory size with CodeCarbon's model
/// ([`ram_power_watts`]), as [`Component::Ram`] and [`EstimateModel::RamSize`].
#[derive(Debug, Clone)]
pub struct RamEstimateMeter {
    gigabytes: f64,
    power: ConstantPower,
}

impl RamEstimateMeter {
    /// The machine's memory, from `/proc/meminfo`.
    ///
    /// # Errors
    /// Those of [`memory_gigabytes`].
    pub fn new() -> Result<Self> {
        Self::with_meminfo_path("/proc/meminfo")
    }

    /// The memory in a `/proc/meminfo`-like file.
    pub fn with_meminfo_path(meminfo: impl AsRef<Path>) -> Result<Self> {
        Self::with_gigabytes(memory_gigabytes(meminfo.as_ref())?)
    }

    /// `gigabytes` GiB of memory on this machine's architecture (ARM DIMMs draw less).
    ///
    /// # Errors
    /// [`Error::InvalidPower`] for a negative or non-finite size.
    pub fn with_gigabytes(gigabytes: f64) -> Result<Self> {
        let arm = matches!(std::env::consts::ARCH, "arm" | "aarch64");
        if !(gigabytes.is_finite() && gigabytes >= 0.0) {
            return Err(Error::InvalidPower {
                watts: gigabytes,
                what: "memory size (GiB) for the RAM power",
            });
        }
        Ok(RamEstimateMeter {
            gigabytes,
            power: ConstantPower::new(ram_power_watts(gigabytes, arm), "RAM power")?,
        })
    }

    /// The memory size, in GiB.
    pub fn gigabytes(&self) -> f64 {
        self.gigabytes
    }

    /// The power assumed drawn, in watts.
    pub fn watts(&self) -> f64 {
        self.power.watts
    }

    fn read_at(&self, seconds: f64) -> Result<EnergyReading> {
        let model = EstimateModel::RamSize {
            gigabytes: self.gigabytes,
            watts: self.power.watts,
        };
        self.power.reading_at(seconds, model)
    }
}

impl PowerMeter for RamEstimateMeter {
    fn name(&self) -> &str {
        "ram_estimate"
    }

    fn component(&self) -> Component {
        Component::Ram
    }

    fn read(&mut self) -> Result<EnergyReading> {
        self.read_at(self.power.elapsed())
    }
}

/// A [`PowerMeter`] estimating GPU energy as `tdp_watts × load_fraction`, as
/// [`Component::Gpu`] and [`EstimateModel::GpuTdp`]. For a GPU that ran but could not be
/// metered; state the load share you believe (mean utilisation from `nvidia-smi`, say).
#[derive(Debug, Clone)]
pub struct GpuTdpMeter {
    tdp_watts: f64,
    load_fraction: f64,
    power: ConstantPower,
}

impl GpuTdpMeter {
    /// A GPU of `tdp_watts` drawing `load_fraction` of it.
    ///
    /// # Errors
    /// [`Error::InvalidPower`] for a negative or non-finite TDP,
    /// [`Error::InvalidLoadFraction`] for a share outside `[0, 1]`.
    pub fn new(tdp_watts: f64, load_fraction: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&load_fraction) {
            return Err(Error::InvalidLoadFraction { load_fraction });
        }
        ConstantPower::new(tdp_watts, "GPU TDP")?;
        Ok(GpuTdpMeter {
            tdp_watts,
            load_fraction,
            power: ConstantPower::new(tdp_watts * load_fraction, "GPU power")?,
        })
    }

    fn read_at(&self, seconds: f64) -> Result<EnergyReading> {
        let model = EstimateModel::GpuTdp {
            tdp_watts: self.tdp_watts,
            load_fraction: self.load_fraction,
        };
        self.power.reading_at(seconds, model)
    }
}

impl PowerMeter for GpuTdpMeter {
    fn name(&self) -> &str {
        "gpu_tdp"
    }

    fn component(&self) -> Component {
        Component::Gpu
    }

    fn read(&mut self) -> Result<EnergyReading> {
        self.read_at(self.power.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A `/proc/stat` whose aggregate line has `busy` and `idle` ticks (plus guest time that
    /// must not count).
    fn stat(busy: u64, idle: u64) -> String {
        // user nice system idle iowait irq softirq steal guest guest_nice
        format!(
            "cpu  {} 0 {} {idle} 0 0 0 0 7 3\ncpu0 1 2 3 4 5 6 7 8 9 10\nctxt 99\n",
            busy / 2 + 10,
            busy - busy / 2 - 10
        )
    }

    #[test]
    fn the_cpu_curve_is_codecarbons() {
        assert_eq!(cpu_power_watts(100.0, 0.0), 10.0);
        assert_eq!(cpu_power_watts(100.0, 1.0), 100.0);
        assert!((cpu_power_watts(100.0, 0.5) - 21.25).abs() < 1e-12);
        assert_eq!(cpu_power_watts(100.0, 2.0), 100.0, "clamped");
    }

    #[test]
    fn proc_stat_load_excludes_guest_and_iowait() {
        let p = Path::new("stat");
        let a = CpuTimes::parse(p, "cpu  100 0 100 700 100 0 0 0 50 50\n").unwrap();
        assert_eq!((a.total, a.busy), (1000.0, 200.0));
        let b = CpuTimes::parse(p, "cpu  400 0 100 800 100 0 0 0 50 50\n").unwrap();
        assert_eq!(b.load_since(&a), 0.75);
        assert_eq!(a.load_since(&a), 0.0);
        let old_kernel = CpuTimes::parse(p, "cpu 1 2 3 4\n").unwrap();
        assert_eq!((old_kernel.total, old_kernel.busy), (10.0, 6.0));
        for bad in ["", "intr 5\n", "cpu a b c d\n", "cpu 1 2\n"] {
            let err = CpuTimes::parse(p, bad).unwrap_err();
            assert!(matches!(err, Error::ParseFile { .. }), "{bad}");
        }
    }

    #[test]
    fn cpu_meter_integrates_the_load_of_each_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat");
        fs::write(&path, stat(1000, 1000)).unwrap();
        let mut m = CpuTdpMeter::with_stat_path(CpuTdp::given("test CPU", 100.0), &path).unwrap();
        assert_eq!(m.component(), Component::Cpu);
        // 10 s fully busy: 100 W.
        fs::write(&path, stat(2000, 1000)).unwrap();
        let r = m.read_at(10.0).unwrap();
        assert_eq!(m.last_load(), Some(1.0));
        assert!((r.energy.joules() - 1000.0).abs() < 1e-9);
        assert_eq!(
            r.energy.method().to_string(),
            "estimated (CPU TDP x load model)"
        );
        // 20 s at 50 %: 21.25 W.
        fs::write(&path, stat(2500, 1500)).unwrap();
        let r2 = m.read_at(30.0).unwrap();
        assert!((r2.energy_since(&r).unwrap().joules() - 425.0).abs() < 1e-9);
        assert_eq!(
            r2.energy_since(&r).unwrap().method(),
            &crate::Method::Estimated(EstimateModel::CpuTdpLoad { tdp_watts: 100.0 }),
            "one model, whatever the loads"
        );
        // 10 s idle: 10 W.
        let r3 = m.read_at(40.0).unwrap();
        assert!((r3.energy_since(&r2).unwrap().joules() - 100.0).abs() < 1e-9);
        // A clock that stood still adds nothing.
        assert_eq!(m.read_at(40.0).unwrap().energy, r3.energy);
    }

    #[test]
    fn cpu_meter_without_load_is_codecarbons_constant_mode() {
        let mut m = CpuTdpMeter::constant(CpuTdp::given("x", 80.0)).unwrap();
        let r = m.read_at(10.0).unwrap();
        assert_eq!(r.energy.joules(), 400.0);
        assert_eq!(r.energy.method().to_string(), "estimated (CPU TDP model)");
        assert!(matches!(
            CpuTdpMeter::constant(CpuTdp::given("x", -1.0)),
            Err(Error::InvalidPower { .. })
        ));
        let missing = CpuTdpMeter::with_stat_path(CpuTdp::given("x", 1.0), "/nonexistent/stat");
        let err = missing.unwrap_err().to_string();
        assert!(err.contains("/nonexistent/stat"), "{err}");
    }

    #[test]
    fn ram_model_matches_codecarbon() {
        // Values from codecarbon 3.3.2's RAM._calculate_ram_power (x86 and ARM).
        for (gb, x86, arm) in [
            (1.0, 10.0, 3.0),
            (8.0, 10.0, 3.0),
            (16.0, 10.0, 3.0),
            (23.54, 20.0, 6.0),
            (64.0, 20.0, 6.0),
            (128.0, 38.0, 11.4),
            (256.0, 38.0, 11.4),
            (512.0, 38.0, 11.4),
            (1024.0, 38.0, 11.4),
            (2048.0, 70.0, 21.0),
            (4096.0, 126.0, 37.8),
        ] {
            assert!(
                (ram_power_watts(gb, false) - x86).abs() < 1e-9,
                "{gb} GiB x86"
            );
            assert!(
                (ram_power_watts(gb, true) - arm).abs() < 1e-9,
                "{gb} GiB arm"
            );
        }
        assert_eq!(estimated_dimm_count(4096.0), 32);
    }

    #[test]
    fn ram_meter_reads_meminfo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meminfo");
        fs::write(&path, "MemTotal:       24684092 kB\nMemFree: 1 kB\n").unwrap();
        let m = RamEstimateMeter::with_meminfo_path(&path).unwrap();
        assert!((m.gigabytes() - 23.54).abs() < 0.01);
        let r = m.read_at(3600.0).unwrap();
        assert_eq!(m.component(), Component::Ram);
        assert!(
            (r.energy.wh() - m.watts()).abs() < 1e-9,
            "an hour at constant power"
        );
        assert_eq!(r.energy.method().to_string(), "estimated (RAM size model)");
        fs::write(&path, "MemFree: 1 kB\n").unwrap();
        assert!(matches!(
            RamEstimateMeter::with_meminfo_path(&path),
            Err(Error::ParseFile { .. })
        ));
        assert!(RamEstimateMeter::with_gigabytes(-1.0).is_err());
    }

    #[test]
    fn gpu_tdp_meter_is_an_estimate() {
        let m = GpuTdpMeter::new(700.0, 0.5).unwrap();
        let r = m.read_at(2.0).unwrap();
        assert_eq!(r.energy.joules(), 700.0);
        assert_eq!(r.energy.method().to_string(), "estimated (GPU TDP model)");
        assert_eq!(m.component(), Component::Gpu);
        assert!(matches!(
            GpuTdpMeter::new(700.0, 1.5),
            Err(Error::InvalidLoadFraction { .. })
        ));
        assert!(matches!(
            GpuTdpMeter::new(f64::NAN, 0.5),
            Err(Error::InvalidPower { .. })
        ));
    }
}
