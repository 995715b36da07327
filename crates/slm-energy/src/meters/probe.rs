//! [`probe`]: which meters work on this machine and why the others do not, and
//! [`default_meters`]: the best that works per component.

use serde::Serialize;

use crate::energy::{EstimateModel, MeterSource, Method};
use crate::error::Result;
use crate::meter::{Component, PowerMeter};
use crate::meters::SystemPaths;
use crate::meters::estimate::{CONSTANT_LOAD_FRACTION, CpuTdpMeter, RamEstimateMeter};
use crate::meters::nvml::NvmlMeter;
use crate::meters::perf_event::{PerfEventMeter, RaplEvent};
use crate::meters::rapl::RaplMeter;
use crate::meters::tdp_table::{CpuInfo, CpuTdp, CpuTdpTable};

/// What [`probe`] found about one meter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeterProbe {
    /// The meter's [`name`](PowerMeter::name) (`rapl`, `perf_event`, `nvml`, `cpu_tdp`,
    /// `ram_estimate`).
    pub name: String,
    /// What it counts.
    pub component: Component,
    /// Whether it could be opened and read here.
    pub available: bool,
    /// How its readings are obtained: `measured (RAPL)`, `estimated (CPU TDP x load model)`.
    pub method: String,
    /// What was found (domains, GPUs, the TDP and CPU model) or exactly why it is unavailable
    /// and what to do.
    pub detail: String,
    /// Whether [`default_meters`] uses it: the first available meter of its group (CPU,
    /// memory, GPU).
    pub selected: bool,
}

/// A meter that could be built, and what to say about it.
type Built = (Box<dyn PowerMeter>, String);

/// One way of metering, tried in order within its group.
struct Candidate {
    name: &'static str,
    component: Component,
    /// The method its readings would have, for when it cannot be built.
    method: Method,
    build: fn(&SystemPaths) -> Result<Built>,
}

fn boxed<M: PowerMeter + 'static>(meter: M, detail: String) -> Result<Built> {
    Ok((Box::new(meter), detail))
}

fn rapl_detail(meter: &RaplMeter) -> String {
    let zones: Vec<String> = meter
        .domains()
        .iter()
        .map(|(d, counted)| {
            let mirror = if *counted {
                ""
            } else {
                ", mirrors another package"
            };
            format!("{} ({}{mirror})", d.name, d.zone)
        })
        .collect();
    format!("{}: {}", meter.root().display(), zones.join(", "))
}

fn perf_detail(meter: &PerfEventMeter) -> String {
    let spec = meter.spec();
    let cpus: Vec<String> = spec.cpus.iter().map(i32::to_string).collect();
    format!(
        "power/{}/ (PMU type {}, config {:#x}, {:e} J per count) on CPU {}",
        spec.event.name(),
        spec.pmu_type,
        spec.config,
        spec.joules_per_count,
        cpus.join(", ")
    )
}

/// This machine's CPU TDP as CodeCarbon would find it; an unreadable cpuinfo is an unknown
/// model, as in CodeCarbon.
fn cpu_tdp(paths: &SystemPaths) -> CpuTdp {
    CpuTdp::detect(&paths.proc_root.join("cpuinfo")).unwrap_or_else(|_| {
        let unknown = CpuInfo {
            model: None,
            threads: 1,
            sockets: 1,
        };
        CpuTdp::from_cpu_info(&unknown, CpuTdpTable::codecarbon())
    })
}

/// The candidates per group, best first.
fn groups() -> Vec<Vec<Candidate>> {
    let rapl = Method::Measured(MeterSource::Rapl);
    let cpu = vec![
        Candidate {
            name: "rapl",
            component: Component::Cpu,
            method: rapl.clone(),
            build: |p| {
                let m = RaplMeter::packages(&p.powercap_root)?;
                let detail = rapl_detail(&m);
                boxed(m, detail)
            },
        },
        Candidate {
            name: "perf_event",
            component: Component::Cpu,
            method: rapl.clone(),
            build: |p| {
                let m = PerfEventMeter::open(&p.sysfs_root, RaplEvent::Pkg)?;
                let detail = perf_detail(&m);
                boxed(m, detail)
            },
        },
        Candidate {
            name: "cpu_tdp",
            component: Component::Cpu,
            method: Method::Estimated(EstimateModel::CpuTdpLoad { tdp_watts: 0.0 }),
            build: |p| {
                let stat = p.proc_root.join("stat");
                let m = CpuTdpMeter::with_stat_path(cpu_tdp(p), &stat)?;
                let detail = format!("{}; load from {}", m.tdp().describe(), stat.display());
                boxed(m, detail)
            },
        },
        Candidate {
            name: "cpu_tdp",
            component: Component::Cpu,
            method: Method::Estimated(EstimateModel::CpuTdp {
                tdp_watts: 0.0,
                load_fraction: CONSTANT_LOAD_FRACTION,
            }),
            build: |p| {
                let m = CpuTdpMeter::constant(cpu_tdp(p))?;
                let detail = format!(
                    "{}; no load reading: {} of TDP",
                    m.tdp().describe(),
                    CONSTANT_LOAD_FRACTION
                );
                boxed(m, detail)
            },
        },
    ];
    let memory = vec![
        Candidate {
            name: "rapl",
            component: Component::Dram,
            method: rapl.clone(),
            build: |p| {
                let m = RaplMeter::dram(&p.powercap_root)?;
                let detail = rapl_detail(&m);
                boxed(m, detail)
            },
        },
        Candidate {
            name: "perf_event",
            component: Component::Dram,
            method: rapl,
            build: |p| {
                let m = PerfEventMeter::open(&p.sysfs_root, RaplEvent::Ram)?;
                let detail = perf_detail(&m);
                boxed(m, detail)
            },
        },
        Candidate {
            name: "ram_estimate",
            component: Component::Ram,
            method: Method::Estimated(EstimateModel::RamSize {
                gigabytes: 0.0,
                watts: 0.0,
            }),
            build: |p| {
                let m = RamEstimateMeter::with_meminfo_path(p.proc_root.join("meminfo"))?;
                let detail = format!(
                    "{:.2} GiB of memory: {} W (CodeCarbon's RAM model)",
                    m.gigabytes(),
                    m.watts()
                );
                boxed(m, detail)
            },
        },
    ];
    let gpu = vec![Candidate {
        name: "nvml",
        component: Component::Gpu,
        method: Method::Measured(MeterSource::Nvml),
        build: |p| {
            let m = NvmlMeter::with_library(&p.nvml_library)?;
            let gpus: Vec<String> = m
                .gpus()
                .iter()
                .map(|g| {
                    let how = if g.energy_counter {
                        "total-energy counter"
                    } else {
                        "power sampled between readings"
                    };
                    format!("GPU {}: {} ({how})", g.index, g.name)
                })
                .collect();
            let detail = gpus.join(", ");
            boxed(m, detail)
        },
    }];
    vec![cpu, memory, gpu]
}

/// Builds `candidate` and reads it once, so "available" means a reading was obtained.
fn try_build(candidate: &Candidate, paths: &SystemPaths) -> Result<(Built, String)> {
    let (mut meter, detail) = (candidate.build)(paths)?;
    let method = meter.read()?.energy.method().to_string();
    Ok(((meter, detail), method))
}

/// Which meters work on this machine, and why the others do not: every candidate of
/// [`default_meters`], tried in order.
pub fn probe() -> Vec<MeterProbe> {
    probe_at(&SystemPaths::default())
}

/// [`probe`] against the files under `paths`.
pub fn probe_at(paths: &SystemPaths) -> Vec<MeterProbe> {
    let mut probes = Vec::new();
    for group in groups() {
        let mut selected = false;
        for candidate in &group {
            let (available, method, detail) = match try_build(candidate, paths) {
                Ok(((_, detail), method)) => (true, method, detail),
                Err(e) => (false, candidate.method.to_string(), e.to_string()),
            };
            probes.push(MeterProbe {
                name: candidate.name.to_owned(),
                component: candidate.component,
                available,
                method,
                detail,
                selected: available && !selected,
            });
            selected |= available;
        }
    }
    probes
}

/// The best available meter per component group: RAPL, else perf events, else the CPU TDP
/// estimate for the CPU; a DRAM counter, else the RAM estimate, for memory; NVML for the GPUs
/// when the `nvml` feature is on and a GPU is present. Never empty: the CPU estimate always
/// works.
pub fn default_meters() -> Vec<Box<dyn PowerMeter>> {
    default_meters_at(&SystemPaths::default())
}

/// [`default_meters`] against the files under `paths`.
pub fn default_meters_at(paths: &SystemPaths) -> Vec<Box<dyn PowerMeter>> {
    groups()
        .iter()
        .filter_map(|group| {
            group
                .iter()
                .find_map(|c| try_build(c, paths).ok().map(|((meter, _), _)| meter))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    /// A machine with no RAPL, no perf PMU, no NVML: only the estimates work.
    fn bare_machine(dir: &Path) -> SystemPaths {
        let proc_root = dir.join("proc");
        fs::create_dir_all(&proc_root).unwrap();
        fs::write(proc_root.join("stat"), "cpu  10 0 10 80 0 0 0 0 0 0\n").unwrap();
        fs::write(
            proc_root.join("cpuinfo"),
            "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz\nphysical id\t: 0\n",
        )
        .unwrap();
        fs::write(proc_root.join("meminfo"), "MemTotal: 16777216 kB\n").unwrap();
        SystemPaths {
            powercap_root: dir.join("powercap"),
            sysfs_root: dir.join("sys"),
            proc_root,
            nvml_library: "libnvidia-ml-absent.so.1".into(),
        }
    }

    #[test]
    fn a_bare_machine_falls_back_to_estimates() {
        let dir = tempfile::tempdir().unwrap();
        let paths = bare_machine(dir.path());
        let probes = probe_at(&paths);
        let summary: Vec<(&str, Component, bool, bool)> = probes
            .iter()
            .map(|p| (p.name.as_str(), p.component, p.available, p.selected))
            .collect();
        assert_eq!(
            summary,
            [
                ("rapl", Component::Cpu, false, false),
                ("perf_event", Component::Cpu, false, false),
                ("cpu_tdp", Component::Cpu, true, true),
                ("cpu_tdp", Component::Cpu, true, false),
                ("rapl", Component::Dram, false, false),
                ("perf_event", Component::Dram, false, false),
                ("ram_estimate", Component::Ram, true, true),
                ("nvml", Component::Gpu, false, false),
            ]
        );
        assert!(
            probes[0].detail.contains("no powercap RAPL domains"),
            "{}",
            probes[0].detail
        );
        assert_eq!(probes[0].method, "measured (RAPL)");
        assert_eq!(probes[2].method, "estimated (CPU TDP x load model)");
        assert!(
            probes[2].detail.contains("Intel Xeon Gold 6248R"),
            "{}",
            probes[2].detail
        );
        assert!(
            probes[2].detail.contains("TDP 205 W"),
            "{}",
            probes[2].detail
        );
        assert_eq!(
            probes[6].detail,
            "16.00 GiB of memory: 10 W (CodeCarbon's RAM model)"
        );
        assert!(probes[7].detail.contains("nvml") || probes[7].detail.contains("NVML"));
        let json = serde_json::to_value(&probes[6]).unwrap();
        assert_eq!(json["component"], "ram");
        assert_eq!(json["method"], "estimated (RAM size model)");

        let meters = default_meters_at(&paths);
        let picked: Vec<(&str, Component)> =
            meters.iter().map(|m| (m.name(), m.component())).collect();
        assert_eq!(
            picked,
            [
                ("cpu_tdp", Component::Cpu),
                ("ram_estimate", Component::Ram)
            ]
        );
    }

    #[test]
    fn rapl_is_preferred_when_readable() {
        let dir = tempfile::tempdir().unwrap();
        let paths = bare_machine(dir.path());
        for (zone, name) in [("intel-rapl:0", "package-0"), ("intel-rapl:0:0", "dram")] {
            let z = paths.powercap_root.join(zone);
            fs::create_dir_all(&z).unwrap();
            fs::write(z.join("name"), name).unwrap();
            fs::write(z.join("energy_uj"), "1000").unwrap();
            fs::write(z.join("max_energy_range_uj"), "262143328850").unwrap();
        }
        let probes = probe_at(&paths);
        assert!(probes[0].selected && probes[4].selected);
        assert!(
            probes[0].detail.ends_with("package-0 (intel-rapl:0)"),
            "{}",
            probes[0].detail
        );
        assert!(!probes[2].selected && !probes[6].selected);
        let meters = default_meters_at(&paths);
        let picked: Vec<(&str, Component)> =
            meters.iter().map(|m| (m.name(), m.component())).collect();
        assert_eq!(
            picked,
            [("rapl", Component::Cpu), ("rapl", Component::Dram)]
        );
    }

    #[test]
    fn the_real_machine_always_has_a_cpu_meter() {
        let probes = probe();
        assert!(
            probes
                .iter()
                .any(|p| p.component == Component::Cpu && p.selected)
        );
        for p in &probes {
            assert!(!p.detail.is_empty(), "{p:?}");
            assert!(p.method.starts_with("measured (") || p.method.starts_with("estimated ("));
        }
        let meters = default_meters();
        assert_eq!(meters[0].component(), Component::Cpu);
    }
}
