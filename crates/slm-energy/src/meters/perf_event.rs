//! [`PerfEventMeter`]: the RAPL counters read through the kernel's `power` perf PMU
//! (`perf stat -e power/energy-pkg/`), for machines where powercap's `energy_uj` is root-only
//! but perf events are allowed (CAP_PERFMON, or `kernel.perf_event_paranoid <= 0`).
//!
//! The PMU describes itself in sysfs: `bus/event_source/devices/power/type` is the PMU type
//! for `perf_event_open`, `events/energy-pkg` holds the config (`event=0x02`),
//! `events/energy-pkg.scale` the joules per count, and `cpumask` the one CPU per package to
//! open the event on (the first CPU of each package). The counts are 64-bit and the kernel
//! handles the 32-bit hardware wrap, so the meter only sums `count × scale` over packages.

use std::path::Path;
use std::time::Instant;

use crate::energy::{Energy, MeterSource};
use crate::error::{Error, Result};
use crate::meter::{Component, EnergyReading, PowerMeter};
use crate::meters::{read_file, read_parsed};

/// The sysfs mount point.
pub const DEFAULT_SYSFS_ROOT: &str = "/sys";

/// The sysctl that gates system-wide perf events for unprivileged users.
const PARANOID_PATH: &str = "/proc/sys/kernel/perf_event_paranoid";

/// A RAPL event of the `power` PMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaplEvent {
    /// `power/energy-pkg/`: the CPU packages.
    Pkg,
    /// `power/energy-ram/`: the DRAM.
    Ram,
}

impl RaplEvent {
    /// The event's name in sysfs and in `perf` (`energy-pkg`, `energy-ram`).
    pub fn name(self) -> &'static str {
        match self {
            RaplEvent::Pkg => "energy-pkg",
            RaplEvent::Ram => "energy-ram",
        }
    }

    /// The component the event counts.
    pub fn component(self) -> Component {
        match self {
            RaplEvent::Pkg => Component::Cpu,
            RaplEvent::Ram => Component::Dram,
        }
    }
}

/// What sysfs says about one event of the `power` PMU.
#[derive(Debug, Clone, PartialEq)]
pub struct PerfEventSpec {
    /// The event.
    pub event: RaplEvent,
    /// The PMU type (`power/type`), the `type` field of `perf_event_attr`.
    pub pmu_type: u32,
    /// The event config (`event=0x02` gives 2).
    pub config: u64,
    /// Joules per count (`energy-pkg.scale`, 2^-32 on most CPUs).
    pub joules_per_count: f64,
    /// The CPUs to open the event on, one per package.
    pub cpus: Vec<i32>,
}

/// Parses `event=0x02` (the only term the `power` PMU's format has).
fn parse_event_config(path: &Path, text: &str) -> Result<u64> {
    let bad = || Error::ParseFile {
        path: path.to_owned(),
        content: text.trim().to_owned(),
        expected: "an event config such as `event=0x02`",
    };
    let value = text.trim().strip_prefix("event=").ok_or_else(bad)?;
    match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    }
    .map_err(|_| bad())
}

/// Parses a kernel CPU list (`0`, `0,36`, `0-3,8`).
fn parse_cpu_list(path: &Path, text: &str) -> Result<Vec<i32>> {
    let bad = || Error::ParseFile {
        path: path.to_owned(),
        content: text.trim().to_owned(),
        expected: "a CPU list such as `0,36`",
    };
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (i32, i32) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if b < a {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    if cpus.is_empty() {
        return Err(bad());
    }
    Ok(cpus)
}

/// The first CPU of each package, from `devices/system/cpu/cpu*/topology/physical_package_id`
/// (used when the PMU has no `cpumask`).
fn first_cpu_per_package(sysfs_root: &Path) -> Result<Vec<i32>> {
    let dir = sysfs_root.join("devices/system/cpu");
    let entries = std::fs::read_dir(&dir).map_err(|source| Error::ReadFile {
        path: dir.clone(),
        source,
    })?;
    let mut firsts: Vec<(i64, i32)> = Vec::new();
    let mut cpus: Vec<i32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_prefix("cpu").and_then(|i| i.parse().ok()))
        .collect();
    cpus.sort();
    for cpu in cpus {
        let path = dir.join(format!("cpu{cpu}/topology/physical_package_id"));
        if !path.exists() {
            continue; // offline CPU
        }
        let package: i64 = read_parsed(&path, "a package id")?;
        if !firsts.iter().any(|&(p, _)| p == package) {
            firsts.push((package, cpu));
        }
    }
    if firsts.is_empty() {
        return Err(Error::ReadFile {
            path: dir,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no CPU topology"),
        });
    }
    Ok(firsts.into_iter().map(|(_, cpu)| cpu).collect())
}

/// Reads what the `power` PMU under `sysfs_root` (normally [`DEFAULT_SYSFS_ROOT`]) says
/// about `event`.
///
/// # Errors
/// [`Error::NoPerfPowerPmu`] when the kernel has no `power` PMU, [`Error::NoPerfEvent`] when
/// it lacks the event (`energy-ram` on most client CPUs), [`Error::ReadFile`] or
/// [`Error::ParseFile`] for unreadable or malformed files.
pub fn perf_event_spec(sysfs_root: &Path, event: RaplEvent) -> Result<PerfEventSpec> {
    let pmu = sysfs_root.join("bus/event_source/devices/power");
    let type_path = pmu.join("type");
    if !type_path.exists() {
        return Err(Error::NoPerfPowerPmu { path: type_path });
    }
    let pmu_type = read_parsed(&type_path, "a PMU type number")?;
    let event_path = pmu.join("events").join(event.name());
    if !event_path.exists() {
        return Err(Error::NoPerfEvent {
            event: event.name(),
            path: event_path,
        });
    }
    let config = parse_event_config(&event_path, &read_file(&event_path)?)?;
    let scale_path = pmu.join("events").join(format!("{}.scale", event.name()));
    let joules_per_count: f64 = read_parsed(&scale_path, "a scale in joules per count")?;
    if !(joules_per_count.is_finite() && joules_per_count > 0.0) {
        return Err(Error::ParseFile {
            path: scale_path,
            content: joules_per_count.to_string(),
            expected: "a positive scale",
        });
    }
    let mask_path = pmu.join("cpumask");
    let cpus = if mask_path.exists() {
        parse_cpu_list(&mask_path, &read_file(&mask_path)?)?
    } else {
        first_cpu_per_package(sysfs_root)?
    };
    Ok(PerfEventSpec {
        event,
        pmu_type,
        config,
        joules_per_count,
        cpus,
    })
}

/// A [`PowerMeter`] over one RAPL perf event opened on every package, summed. Readings are
/// [measured](crate::Method::Measured) by [`MeterSource::Rapl`] (the same hardware counters
/// as [`RaplMeter`](crate::RaplMeter), another door) and count from zero at construction.
#[derive(Debug)]
pub struct PerfEventMeter {
    spec: PerfEventSpec,
    counters: Vec<sys::Counter>,
    started: Instant,
}

impl PerfEventMeter {
    /// `power/energy-pkg/` on every package, described by the sysfs under `sysfs_root`
    /// (normally [`DEFAULT_SYSFS_ROOT`]).
    ///
    /// # Errors
    /// Those of [`perf_event_spec`], then [`Error::PerfPermissionDenied`] (which capability or
    /// sysctl is missing), [`Error::PerfEventOpen`] for other refusals, and
    /// [`Error::UnsupportedOs`] off Linux.
    pub fn packages(sysfs_root: impl AsRef<Path>) -> Result<Self> {
        Self::open(sysfs_root.as_ref(), RaplEvent::Pkg)
    }

    /// `power/energy-ram/` on every package (see [`packages`](Self::packages)).
    pub fn dram(sysfs_root: impl AsRef<Path>) -> Result<Self> {
        Self::open(sysfs_root.as_ref(), RaplEvent::Ram)
    }

    /// `event` on every package, described by the sysfs under `sysfs_root`.
    pub fn open(sysfs_root: &Path, event: RaplEvent) -> Result<Self> {
        let spec = perf_event_spec(sysfs_root, event)?;
        let counters = spec
            .cpus
            .iter()
            .map(|&cpu| sys::Counter::open(&spec, cpu))
            .collect::<Result<Vec<_>>>()?;
        Ok(PerfEventMeter {
            spec,
            counters,
            started: Instant::now(),
        })
    }

    /// What the meter opened: PMU type, config, scale and CPUs.
    pub fn spec(&self) -> &PerfEventSpec {
        &self.spec
    }
}

impl PowerMeter for PerfEventMeter {
    fn name(&self) -> &str {
        "perf_event"
    }

    fn component(&self) -> Component {
        self.spec.event.component()
    }

    fn read(&mut self) -> Result<EnergyReading> {
        let mut counts = 0u128;
        for counter in &mut self.counters {
            counts += u128::from(counter.read()?);
        }
        Ok(EnergyReading {
            seconds: self.started.elapsed().as_secs_f64(),
            energy: Energy::measured(
                counts as f64 * self.spec.joules_per_count,
                MeterSource::Rapl,
            )?,
        })
    }
}

/// The value of `kernel.perf_event_paranoid`, for error messages.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn paranoid_setting() -> String {
    std::fs::read_to_string(PARANOID_PATH)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| format!("unknown: {PARANOID_PATH} unreadable"))
}

#[cfg(target_os = "linux")]
mod sys {
    //! The `perf_event_open` system call.

    use std::fs::File;
    use std::io::{self, Read};
    use std::os::fd::{FromRawFd, OwnedFd};

    use super::{PerfEventSpec, paranoid_setting};
    use crate::error::{Error, Result};

    /// `perf_event_attr` as of `PERF_ATTR_SIZE_VER0` (64 bytes): the kernel accepts the
    /// oldest layout and zero-fills the rest. `libc` does not define the struct.
    #[repr(C)]
    #[derive(Default)]
    struct PerfEventAttr {
        type_: u32,
        size: u32,
        config: u64,
        sample_period: u64,
        sample_type: u64,
        read_format: u64,
        /// `disabled`, `inherit`, `exclude_*`, ... bits: all zero, so counting starts at open.
        flags: u64,
        wakeup_events: u32,
        bp_type: u32,
        config1: u64,
    }

    const PERF_ATTR_SIZE_VER0: u32 = 64;
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

    /// One open event: a file descriptor whose 8-byte reads give the count since open.
    #[derive(Debug)]
    pub(super) struct Counter {
        file: File,
        cpu: i32,
        event: &'static str,
    }

    impl Counter {
        /// `perf_event_open(attr, pid = -1, cpu, group_fd = -1, FD_CLOEXEC)`: every process on
        /// `cpu`'s package, which is what system-wide needs.
        pub(super) fn open(spec: &PerfEventSpec, cpu: i32) -> Result<Counter> {
            let attr = PerfEventAttr {
                type_: spec.pmu_type,
                size: PERF_ATTR_SIZE_VER0,
                config: spec.config,
                ..Default::default()
            };
            const _: () = assert!(std::mem::size_of::<PerfEventAttr>() == 64);
            // SAFETY: `attr` is a valid, initialised `perf_event_attr` of the size it states,
            // alive for the duration of the call; the other arguments are plain integers.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_perf_event_open,
                    &attr as *const PerfEventAttr,
                    -1 as libc::pid_t,
                    cpu as libc::c_int,
                    -1 as libc::c_int,
                    PERF_FLAG_FD_CLOEXEC,
                )
            };
            let event = spec.event.name();
            if fd < 0 {
                let source = io::Error::last_os_error();
                return Err(match source.raw_os_error() {
                    Some(libc::EACCES) | Some(libc::EPERM) => Error::PerfPermissionDenied {
                        event,
                        cpu,
                        paranoid: paranoid_setting(),
                        source,
                    },
                    _ => Error::PerfEventOpen { event, cpu, source },
                });
            }
            // SAFETY: the syscall returned a new file descriptor that nothing else owns.
            let owned = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
            Ok(Counter {
                file: File::from(owned),
                cpu,
                event,
            })
        }

        /// The raw count since the event was opened.
        pub(super) fn read(&mut self) -> Result<u64> {
            let mut buf = [0u8; 8];
            self.file
                .read_exact(&mut buf)
                .map_err(|source| Error::PerfEventOpen {
                    event: self.event,
                    cpu: self.cpu,
                    source,
                })?;
            Ok(u64::from_ne_bytes(buf))
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    //! perf events exist only on Linux.

    use super::PerfEventSpec;
    use crate::error::{Error, Result};

    /// Never constructed off Linux.
    #[derive(Debug)]
    pub(super) enum Counter {}

    impl Counter {
        pub(super) fn open(_spec: &PerfEventSpec, _cpu: i32) -> Result<Counter> {
            Err(Error::UnsupportedOs {
                meter: "perf_event",
                os: std::env::consts::OS,
            })
        }

        pub(super) fn read(&mut self) -> Result<u64> {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake sysfs with a `power` PMU offering `energy-pkg` on CPUs 0 and 36.
    fn fake_sysfs(with_mask: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let pmu = dir.path().join("bus/event_source/devices/power");
        fs::create_dir_all(pmu.join("events")).unwrap();
        fs::write(pmu.join("type"), "23\n").unwrap();
        fs::write(pmu.join("events/energy-pkg"), "event=0x02\n").unwrap();
        fs::write(
            pmu.join("events/energy-pkg.scale"),
            "2.3283064365386962890625e-10\n",
        )
        .unwrap();
        fs::write(pmu.join("events/energy-pkg.unit"), "Joules\n").unwrap();
        if with_mask {
            fs::write(pmu.join("cpumask"), "0,36\n").unwrap();
        }
        for (cpu, package) in [(0, 0), (1, 0), (36, 1), (37, 1)] {
            let topo = dir
                .path()
                .join(format!("devices/system/cpu/cpu{cpu}/topology"));
            fs::create_dir_all(&topo).unwrap();
            fs::write(topo.join("physical_package_id"), format!("{package}\n")).unwrap();
        }
        dir
    }

    #[test]
    fn the_pmu_description_is_parsed() {
        let sysfs = fake_sysfs(true);
        let spec = perf_event_spec(sysfs.path(), RaplEvent::Pkg).unwrap();
        assert_eq!(spec.pmu_type, 23);
        assert_eq!(spec.config, 2);
        assert_eq!(spec.joules_per_count, 2f64.powi(-32));
        assert_eq!(spec.cpus, [0, 36]);
    }

    #[test]
    fn without_a_cpumask_the_first_cpu_of_each_package_is_used() {
        let sysfs = fake_sysfs(false);
        let spec = perf_event_spec(sysfs.path(), RaplEvent::Pkg).unwrap();
        assert_eq!(spec.cpus, [0, 36]);
    }

    #[test]
    fn missing_pmu_or_event_are_typed_errors() {
        let empty = tempfile::tempdir().unwrap();
        let err = perf_event_spec(empty.path(), RaplEvent::Pkg).unwrap_err();
        assert!(matches!(err, Error::NoPerfPowerPmu { .. }));
        assert!(
            err.to_string().contains("power/type does not exist"),
            "{err}"
        );
        let sysfs = fake_sysfs(true);
        let err = perf_event_spec(sysfs.path(), RaplEvent::Ram).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NoPerfEvent {
                    event: "energy-ram",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn configs_and_cpu_lists_parse_or_fail_cleanly() {
        let p = Path::new("x");
        assert_eq!(parse_event_config(p, "event=0x02\n").unwrap(), 2);
        assert_eq!(parse_event_config(p, "event=3").unwrap(), 3);
        for bad in ["", "event=", "umask=0x1", "event=0xZZ"] {
            assert!(
                matches!(parse_event_config(p, bad), Err(Error::ParseFile { .. })),
                "{bad}"
            );
        }
        assert_eq!(parse_cpu_list(p, "0-3,8\n").unwrap(), [0, 1, 2, 3, 8]);
        for bad in ["", "a", "3-1", "1-"] {
            assert!(
                matches!(parse_cpu_list(p, bad), Err(Error::ParseFile { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn opening_the_real_events_is_ok_or_a_typed_error() {
        for event in [RaplEvent::Pkg, RaplEvent::Ram] {
            match PerfEventMeter::open(Path::new(DEFAULT_SYSFS_ROOT), event) {
                Ok(mut m) => {
                    let a = m.read().unwrap();
                    let b = m.read().unwrap();
                    assert!(b.energy_since(&a).is_ok());
                    assert_eq!(m.component(), event.component());
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
        // The real syscall with a bogus PMU type: refused, never a panic.
        let spec = PerfEventSpec {
            event: RaplEvent::Pkg,
            pmu_type: u32::MAX,
            config: 2,
            joules_per_count: 1.0,
            cpus: vec![0],
        };
        assert!(sys::Counter::open(&spec, 0).is_err());
    }
}
