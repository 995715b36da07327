//! [`RaplMeter`]: Intel and AMD RAPL energy counters read through the Linux powercap sysfs
//! interface (`/sys/class/powercap/intel-rapl:*`; AMD CPUs expose the same files through the
//! same `intel_rapl` driver since Linux 5.8).
//!
//! Each RAPL zone is a directory holding `name` (`package-0`, `dram`, `core`, `uncore`, `psys`),
//! `energy_uj` (a microjoule counter that wraps) and `max_energy_range_uj` (where it wraps).
//! Top-level zones are `intel-rapl:<package>` and sub-zones `intel-rapl:<package>:<n>`; the
//! class directory lists both flat. This meter sums the `package-*` zones as [`Component::Cpu`]
//! or the `dram` zones as [`Component::Dram`]. It leaves out `psys` (the whole platform, which
//! contains the packages), `core`/`uncore` (parts of a package) and the `intel-rapl-mmio:*`
//! zones (a second view of the package counters).
//!
//! Like CodeCarbon 3.3.2 (`codecarbon/core/rapl.py`), a counter that reads lower than before
//! has wrapped and gets `max_energy_range_uj` added, and on multi-die CPUs whose package zones
//! mirror one socket-wide counter (CodeCarbon issue #1274) a package whose counter starts
//! within 1 J of another's is left out until an interval shows whether it accumulates on its
//! own (it is counted again) or mirrors the other exactly (it is dropped for good).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::energy::{Energy, MeterSource};
use crate::error::{Error, Result};
use crate::meter::{Component, EnergyReading, PowerMeter};
use crate::meters::{read_file, read_parsed};

/// Where the kernel lists powercap zones.
pub const DEFAULT_POWERCAP_ROOT: &str = "/sys/class/powercap";

/// Two package counters closer than this (in µJ) at the start may be one counter seen twice:
/// CodeCarbon's `SEQUENTIAL_READ_TOLERANCE_KWH` (1 J).
const MIRROR_TOLERANCE_UJ: f64 = 1e6;
/// ...or closer than this relative difference (CodeCarbon's `MIRRORED_COUNTER_TOLERANCE`).
const MIRROR_RELATIVE_TOLERANCE: f64 = 1e-6;

/// One RAPL zone found under the powercap root.
#[derive(Debug, Clone, PartialEq)]
pub struct RaplDomain {
    /// The zone's directory name (`intel-rapl:0`, `intel-rapl:0:1`).
    pub zone: String,
    /// The zone's `name` file (`package-0`, `dram`, `psys`).
    pub name: String,
    /// The zone's directory.
    pub path: PathBuf,
}

impl RaplDomain {
    /// The component this zone counts, if the meter uses it: `package-*` is the CPU, `dram` the
    /// memory; `psys`, `core`, `uncore` are not used.
    pub fn component(&self) -> Option<Component> {
        if self.name.starts_with("package") {
            Some(Component::Cpu)
        } else if self.name == "dram" {
            Some(Component::Dram)
        } else {
            None
        }
    }
}

/// Whether `entry` names a RAPL zone: `intel-rapl:<n>` or `intel-rapl:<n>:<m>` (not the
/// `intel-rapl` control type itself, nor `intel-rapl-mmio:*`).
fn is_rapl_zone(entry: &str) -> bool {
    entry.strip_prefix("intel-rapl:").is_some_and(|rest| {
        let parts: Vec<&str> = rest.split(':').collect();
        parts.len() <= 2
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Every RAPL zone under `root` (normally [`DEFAULT_POWERCAP_ROOT`]), sorted by zone.
///
/// # Errors
/// [`Error::NoRaplDomains`] when `root` is missing or holds no RAPL zone;
/// [`Error::ReadFile`] when a zone's `name` cannot be read.
pub fn rapl_domains(root: &Path) -> Result<Vec<RaplDomain>> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NoRaplDomains {
                root: root.to_owned(),
            });
        }
        Err(source) => {
            return Err(Error::ReadFile {
                path: root.to_owned(),
                source,
            });
        }
    };
    let mut zones: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| is_rapl_zone(name))
        .collect();
    zones.sort();
    if zones.is_empty() {
        return Err(Error::NoRaplDomains {
            root: root.to_owned(),
        });
    }
    zones
        .into_iter()
        .map(|zone| {
            let path = root.join(&zone);
            let name = read_file(&path.join("name"))?.trim().to_owned();
            Ok(RaplDomain { zone, name, path })
        })
        .collect()
}

/// Maps an error reading `energy_uj` to the typed error that says what to do.
fn energy_read_error(path: &Path, source: io::Error) -> Error {
    if source.kind() == io::ErrorKind::PermissionDenied {
        Error::RaplPermissionDenied {
            path: path.to_owned(),
        }
    } else {
        Error::ReadFile {
            path: path.to_owned(),
            source,
        }
    }
}

/// Reads a zone's `energy_uj`.
fn read_energy_uj(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).map_err(|e| energy_read_error(path, e))?;
    text.trim().parse().map_err(|_| Error::ParseFile {
        path: path.to_owned(),
        content: text.trim().to_owned(),
        expected: "a microjoule count",
    })
}

/// Whether two cumulative counters (µJ) look like one counter read twice (CodeCarbon's
/// `counters_match`).
fn counters_match(a: f64, b: f64) -> bool {
    (a - b).abs() <= (MIRROR_RELATIVE_TOLERANCE * a.max(b)).max(MIRROR_TOLERANCE_UJ)
}

/// Whether a zone's energy counts toward the total.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Counting {
    /// Counted.
    Yes,
    /// Suspected of mirroring the zone at this index: left out until an interval decides.
    PendingMirrorOf(usize),
    /// Mirrors another zone: never counted.
    Mirror,
}

/// A zone being metered.
#[derive(Debug, Clone)]
struct Zone {
    domain: RaplDomain,
    energy_path: PathBuf,
    max_range_uj: u64,
    last_uj: u64,
    /// µJ accumulated since the meter started.
    total_uj: f64,
    /// µJ accumulated over the last interval.
    delta_uj: f64,
    counting: Counting,
}

impl Zone {
    fn open(domain: RaplDomain) -> Result<Zone> {
        let energy_path = domain.path.join("energy_uj");
        let last_uj = read_energy_uj(&energy_path)?;
        let max_range_uj = read_parsed(
            &domain.path.join("max_energy_range_uj"),
            "a microjoule count",
        )?;
        Ok(Zone {
            domain,
            energy_path,
            max_range_uj,
            last_uj,
            total_uj: 0.0,
            delta_uj: 0.0,
            counting: Counting::Yes,
        })
    }

    /// Reads the counter and accumulates the energy since the last read, wrap included.
    fn update(&mut self) -> Result<()> {
        let now = read_energy_uj(&self.energy_path)?;
        self.delta_uj = wrapped_delta(self.last_uj, now, self.max_range_uj) as f64;
        self.total_uj += self.delta_uj;
        self.last_uj = now;
        Ok(())
    }
}

/// Energy between two counter values; a lower value has wrapped past `max_range`. A value
/// still lower after adding the range (a reset, or a zone without a range) counts nothing, as
/// in CodeCarbon.
fn wrapped_delta(last: u64, now: u64, max_range: u64) -> u64 {
    if now >= last {
        now - last
    } else {
        (now + max_range).saturating_sub(last)
    }
}

/// A [`PowerMeter`] over RAPL zones of one kind, summed: all packages ([`Component::Cpu`]) or
/// all DRAM zones ([`Component::Dram`]). Readings are [measured](crate::Method::Measured) by
/// [`MeterSource::Rapl`] and count from zero at construction.
///
/// ```no_run
/// use slm_energy::meters::DEFAULT_POWERCAP_ROOT;
/// use slm_energy::{PowerMeter, RaplMeter};
///
/// # fn main() -> slm_energy::Result<()> {
/// let mut cpu = RaplMeter::packages(DEFAULT_POWERCAP_ROOT)?;
/// let start = cpu.read()?;
/// // ... work ...
/// let joules = cpu.read()?.energy_since(&start)?.joules();
/// # let _ = joules; Ok(()) }
/// ```
#[derive(Debug)]
pub struct RaplMeter {
    root: PathBuf,
    component: Component,
    zones: Vec<Zone>,
    started: Instant,
}

impl RaplMeter {
    /// A meter summing the `package-*` zones under `root` (normally
    /// [`DEFAULT_POWERCAP_ROOT`]); reads every counter once.
    ///
    /// # Errors
    /// [`Error::NoRaplDomains`] when there is no package zone, [`Error::RaplPermissionDenied`]
    /// when `energy_uj` is root-only, [`Error::ReadFile`]/[`Error::ParseFile`] otherwise.
    pub fn packages(root: impl Into<PathBuf>) -> Result<Self> {
        Self::open(root.into(), Component::Cpu)
    }

    /// A meter summing the `dram` zones under `root`.
    ///
    /// # Errors
    /// As [`packages`](Self::packages), and [`Error::NoRaplDramDomain`] when the CPU has RAPL
    /// but reports no DRAM zone.
    pub fn dram(root: impl Into<PathBuf>) -> Result<Self> {
        Self::open(root.into(), Component::Dram)
    }

    fn open(root: PathBuf, component: Component) -> Result<Self> {
        let all = rapl_domains(&root)?;
        let chosen: Vec<RaplDomain> = all
            .iter()
            .filter(|d| d.component() == Some(component))
            .cloned()
            .collect();
        if chosen.is_empty() {
            return Err(match component {
                Component::Dram => Error::NoRaplDramDomain {
                    root,
                    found: all
                        .iter()
                        .map(|d| format!("{} ({})", d.name, d.zone))
                        .collect::<Vec<_>>()
                        .join(", "),
                },
                _ => Error::NoRaplDomains { root },
            });
        }
        let mut zones = chosen
            .into_iter()
            .map(Zone::open)
            .collect::<Result<Vec<_>>>()?;
        if component == Component::Cpu {
            mark_mirror_candidates(&mut zones);
        }
        Ok(RaplMeter {
            root,
            component,
            zones,
            started: Instant::now(),
        })
    }

    /// The zones this meter reads, with whether each is counted (a package zone that mirrors
    /// another is not).
    pub fn domains(&self) -> Vec<(&RaplDomain, bool)> {
        self.zones
            .iter()
            .map(|z| (&z.domain, z.counting == Counting::Yes))
            .collect()
    }

    /// The powercap root this meter reads.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads every zone and returns the energy counted since construction.
    fn total_joules(&mut self) -> Result<f64> {
        for zone in &mut self.zones {
            zone.update()?;
        }
        confirm_mirrors(&mut self.zones);
        Ok(self
            .zones
            .iter()
            .filter(|z| z.counting == Counting::Yes)
            .map(|z| z.total_uj)
            .sum::<f64>()
            * 1e-6)
    }
}

/// CodeCarbon's `find_mirrored_counters`: a package counter (> 0) within tolerance of an
/// earlier one is suspected of mirroring it.
fn mark_mirror_candidates(zones: &mut [Zone]) {
    let mut references: Vec<usize> = Vec::new();
    for i in 0..zones.len() {
        let energy = zones[i].last_uj as f64;
        if energy <= 0.0 {
            continue;
        }
        match references
            .iter()
            .find(|&&r| counters_match(energy, zones[r].last_uj as f64))
        {
            Some(&r) => zones[i].counting = Counting::PendingMirrorOf(r),
            None => references.push(i),
        }
    }
}

/// CodeCarbon's `_confirm_mirrored_files`: after an interval, a suspect that accumulated the
/// same energy as its reference is a mirror, one that accumulated a different amount is a
/// meter of its own, and one where neither accumulated anything stays suspect.
fn confirm_mirrors(zones: &mut [Zone]) {
    for i in 0..zones.len() {
        if let Counting::PendingMirrorOf(r) = zones[i].counting {
            let (delta, reference) = (zones[i].delta_uj, zones[r].delta_uj);
            if delta <= 0.0 && reference <= 0.0 {
                continue;
            }
            zones[i].counting = if counters_match(delta, reference) {
                Counting::Mirror
            } else {
                Counting::Yes
            };
        }
    }
}

impl PowerMeter for RaplMeter {
    fn name(&self) -> &str {
        "rapl"
    }

    fn component(&self) -> Component {
        self.component
    }

    fn read(&mut self) -> Result<EnergyReading> {
        let joules = self.total_joules()?;
        Ok(EnergyReading {
            seconds: self.started.elapsed().as_secs_f64(),
            energy: Energy::measured(joules, MeterSource::Rapl)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Writes a zone under `root`.
    fn zone(root: &Path, zone: &str, name: &str, energy_uj: u64, max_uj: u64) {
        let dir = root.join(zone);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        fs::write(dir.join("max_energy_range_uj"), format!("{max_uj}\n")).unwrap();
        set(root, zone, energy_uj);
    }

    fn set(root: &Path, zone: &str, energy_uj: u64) {
        fs::write(root.join(zone).join("energy_uj"), format!("{energy_uj}\n")).unwrap();
    }

    /// Two sockets with DRAM, a psys zone, a core sub-zone and an MMIO view of package 0.
    fn two_socket_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("intel-rapl")).unwrap();
        zone(
            root,
            "intel-rapl:0",
            "package-0",
            10_000_000,
            262_143_328_850,
        );
        zone(root, "intel-rapl:0:0", "core", 5_000_000, 262_143_328_850);
        zone(root, "intel-rapl:0:1", "dram", 1_000_000, 65_712_999_613);
        zone(
            root,
            "intel-rapl:1",
            "package-1",
            50_000_000,
            262_143_328_850,
        );
        zone(root, "intel-rapl:1:0", "dram", 2_000_000, 65_712_999_613);
        zone(root, "intel-rapl:2", "psys", 900_000_000, 262_143_328_850);
        zone(
            root,
            "intel-rapl-mmio:0",
            "package-0",
            10_000_000,
            262_143_328_850,
        );
        dir
    }

    #[test]
    fn zone_names_are_recognised() {
        for ok in ["intel-rapl:0", "intel-rapl:12", "intel-rapl:0:1"] {
            assert!(is_rapl_zone(ok), "{ok}");
        }
        for not in [
            "intel-rapl",
            "intel-rapl:",
            "intel-rapl:0:",
            "intel-rapl:0:1:2",
            "intel-rapl-mmio:0",
            "intel-rapl:a",
            "dtpm",
        ] {
            assert!(!is_rapl_zone(not), "{not}");
        }
    }

    #[test]
    fn packages_and_dram_are_summed_separately() {
        let dir = two_socket_tree();
        let root = dir.path();
        let mut cpu = RaplMeter::packages(root).unwrap();
        let mut dram = RaplMeter::dram(root).unwrap();
        assert_eq!(
            (cpu.component(), dram.component()),
            (Component::Cpu, Component::Dram)
        );
        let names: Vec<_> = cpu.domains().iter().map(|(d, _)| d.name.clone()).collect();
        assert_eq!(names, ["package-0", "package-1"]);
        assert_eq!(dram.domains().len(), 2);

        let start = cpu.read().unwrap();
        assert_eq!(start.energy.joules(), 0.0, "counts from construction");
        set(root, "intel-rapl:0", 13_000_000); // +3 J
        set(root, "intel-rapl:1", 54_500_000); // +4.5 J
        set(root, "intel-rapl:2", 999_000_000); // psys: ignored
        set(root, "intel-rapl:0:1", 1_250_000); // +0.25 J
        set(root, "intel-rapl:1:0", 2_750_000); // +0.75 J
        let end = cpu.read().unwrap();
        let e = end.energy_since(&start).unwrap();
        assert!((e.joules() - 7.5).abs() < 1e-9, "{e}");
        assert_eq!(e.method().to_string(), "measured (RAPL)");
        assert!((dram.read().unwrap().energy.joules() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_wrapped_counter_adds_its_range() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        zone(
            root,
            "intel-rapl:0",
            "package-0",
            999_000_000,
            1_000_000_000,
        );
        let mut m = RaplMeter::packages(root).unwrap();
        set(root, "intel-rapl:0", 999_500_000); // +0.5 J
        assert!((m.read().unwrap().energy.joules() - 0.5).abs() < 1e-9);
        set(root, "intel-rapl:0", 2_000_000); // wrapped: +0.5 J to the top, +2 J after
        assert!((m.read().unwrap().energy.joules() - 3.0).abs() < 1e-9);
        set(root, "intel-rapl:0", 3_000_000);
        assert!((m.read().unwrap().energy.joules() - 4.0).abs() < 1e-9);
        assert_eq!(wrapped_delta(10, 5, 0), 0, "no range: nothing counted");
    }

    #[test]
    fn a_mirrored_package_counter_is_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let max = 262_143_328_850;
        // Two dies mirroring one socket counter, and a second socket of its own.
        zone(root, "intel-rapl:0", "package-0", 70_000_000, max);
        zone(root, "intel-rapl:1", "package-1", 70_000_100, max);
        zone(root, "intel-rapl:2", "package-2", 10_000_000, max);
        let mut m = RaplMeter::packages(root).unwrap();
        set(root, "intel-rapl:0", 80_000_000);
        set(root, "intel-rapl:1", 80_000_100);
        set(root, "intel-rapl:2", 15_000_000);
        assert!((m.read().unwrap().energy.joules() - 15.0).abs() < 1e-9);
        let counted: Vec<bool> = m.domains().iter().map(|(_, c)| *c).collect();
        assert_eq!(counted, [true, false, true]);

        // Equal counters at the start that then diverge are two meters.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        zone(root, "intel-rapl:0", "package-0", 70_000_000, max);
        zone(root, "intel-rapl:1", "package-1", 70_000_000, max);
        let mut m = RaplMeter::packages(root).unwrap();
        assert_eq!(
            m.read().unwrap().energy.joules(),
            0.0,
            "nothing yet: still pending"
        );
        set(root, "intel-rapl:0", 80_000_000);
        set(root, "intel-rapl:1", 95_000_000);
        assert!((m.read().unwrap().energy.joules() - 35.0).abs() < 1e-9);
    }

    #[test]
    fn no_zones_is_a_typed_error_that_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("powercap");
        let err = RaplMeter::packages(&missing).unwrap_err();
        assert!(matches!(err, Error::NoRaplDomains { .. }));
        let text = err.to_string();
        assert!(
            text.contains("no powercap RAPL domains under") && text.contains("virtual machine"),
            "{text}"
        );
        fs::create_dir_all(missing.join("dtpm")).unwrap();
        assert!(matches!(
            RaplMeter::packages(&missing),
            Err(Error::NoRaplDomains { .. })
        ));

        // A client CPU: package and core, no DRAM.
        zone(&missing, "intel-rapl:0", "package-0", 1, 100);
        zone(&missing, "intel-rapl:0:0", "core", 1, 100);
        let err = RaplMeter::dram(&missing).unwrap_err();
        assert!(matches!(err, Error::NoRaplDramDomain { .. }));
        assert!(
            err.to_string()
                .contains("package-0 (intel-rapl:0), core (intel-rapl:0:0)"),
            "{err}"
        );
    }

    #[test]
    fn permission_denied_names_the_file_and_the_fix() {
        let path = Path::new("/sys/class/powercap/intel-rapl:0/energy_uj");
        let err = energy_read_error(path, io::Error::from(io::ErrorKind::PermissionDenied));
        let text = err.to_string();
        assert!(matches!(err, Error::RaplPermissionDenied { .. }));
        for needle in [
            "intel-rapl:0/energy_uj is not readable",
            "CVE-2020-8694",
            "root",
            "chmod a+r",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        let other = energy_read_error(path, io::Error::from(io::ErrorKind::NotFound));
        assert!(matches!(other, Error::ReadFile { .. }));
    }

    #[test]
    fn garbage_in_a_counter_is_a_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        zone(root, "intel-rapl:0", "package-0", 1, 100);
        fs::write(root.join("intel-rapl:0/energy_uj"), "lots\n").unwrap();
        let err = RaplMeter::packages(root).unwrap_err();
        assert!(err.to_string().contains("cannot parse \"lots\""), "{err}");
    }
}
