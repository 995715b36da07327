//! A CodeCarbon-compatible `emissions.csv`: CodeCarbon 3.3.2's `EmissionsData` columns, in its
//! order and units, one row per phase, so CodeCarbon's dashboards (`carbonboard`) read it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::energy::{Energy, JOULES_PER_KWH};
use crate::error::Result;
use crate::grid;
use crate::meter::Component;
use crate::tracker::{PhaseRecord, TrackerReport};

/// CodeCarbon 3.3.2's `EmissionsData` fields (`codecarbon/output_methods/emissions_data.py`),
/// the header of its `emissions.csv`, in order.
pub const EMISSIONS_CSV_COLUMNS: [&str; 38] = [
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
];

/// The run-level columns of `emissions.csv`: who ran what on which machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CsvRunInfo {
    /// `project_name`.
    pub project_name: String,
    /// `run_id`: one id for every row of a tracker run (a UUID in CodeCarbon).
    pub run_id: String,
    /// `os`, as `platform.platform()` would write it (`Linux-6.1.0`).
    pub os: String,
    /// `cpu_count`: logical CPUs.
    pub cpu_count: usize,
    /// `cpu_model`.
    pub cpu_model: String,
    /// `gpu_count`.
    pub gpu_count: usize,
    /// `gpu_model`.
    pub gpu_model: String,
    /// `ram_total_size` in GiB (CodeCarbon's "GB" is bytes / 1024³).
    pub ram_total_gib: f64,
    /// `tracking_mode`: `machine` (whole-machine counters such as RAPL) or `process`.
    pub tracking_mode: String,
}

impl CsvRunInfo {
    /// This machine's details read from `/proc` (empty where unreadable), a fresh run id, no
    /// GPU, `machine` tracking.
    pub fn detect(project_name: &str) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or(String::new(), |(_, v)| v.trim().to_string());
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut os = capitalise(std::env::consts::OS);
        if !release.trim().is_empty() {
            os = format!("{os}-{}", release.trim());
        }
        let ram_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0.0);
        CsvRunInfo {
            project_name: project_name.to_string(),
            run_id: run_id(),
            os,
            cpu_count: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            gpu_count: 0,
            gpu_model: String::new(),
            ram_total_gib: ram_kib / (1024.0 * 1024.0),
            tracking_mode: "machine".to_string(),
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
}

/// A random UUID from the kernel, or one made of the time and process id.
fn run_id() -> String {
    if let Ok(uuid) = std::fs::read_to_string("/proc/sys/kernel/random/uuid") {
        return uuid.trim().to_string();
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let x = nanos ^ (u128::from(std::process::id()) << 64);
    let h = format!("{x:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for seconds since the Unix epoch, CodeCarbon's timestamp format.
pub(crate) fn iso8601(unix_seconds: f64) -> String {
    let secs = unix_seconds.max(0.0).floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// kWh of the meters of `phase` in `components`, 0 without any.
fn kwh_of(phase: &PhaseRecord, components: &[Component]) -> f64 {
    phase
        .meters
        .iter()
        .filter(|m| components.contains(&m.component))
        // A fold from +0: `f64::sum` of nothing is -0, which CSV would print as `-0`.
        .fold(0.0, |total, m| total + m.energy.joules())
        / JOULES_PER_KWH
}

/// One CSV row for `phase`, values in [`EMISSIONS_CSV_COLUMNS`] order. Energies and powers are
/// multiplied by the PUE, as CodeCarbon does; DRAM and RAM both go to `ram_*`.
fn row(report: &TrackerReport, info: &CsvRunInfo, phase: &PhaseRecord) -> Result<Vec<String>> {
    let pue = report.config.pue;
    let cpu = kwh_of(phase, &[Component::Cpu]) * pue;
    let gpu = kwh_of(phase, &[Component::Gpu]) * pue;
    let ram = kwh_of(phase, &[Component::Dram, Component::Ram]) * pue;
    let total = phase.energy().as_ref().map_or(0.0, Energy::kwh) * pue;
    let grams = match phase.energy() {
        Some(e) => report.emissions_grams(&e)?,
        None => 0.0,
    };
    let duration = phase.wall_seconds;
    let per_second = |x: f64| if duration > 0.0 { x / duration } else { 0.0 };
    // kWh over s → W.
    let watts = |kwh: f64| per_second(kwh * JOULES_PER_KWH);
    let region = report
        .config
        .region_code
        .as_deref()
        .and_then(|c| grid::lookup(c).ok());
    let (country_name, country_iso, region_name) = match region {
        Some(r) if r.is_region() => (
            "United States".to_string(),
            r.country_alpha3().to_string(),
            r.name.to_lowercase(),
        ),
        Some(r) => (r.name.to_string(), r.code.to_string(), String::new()),
        None => (String::new(), String::new(), String::new()),
    };
    let cpu_util = if duration > 0.0 && info.cpu_count > 0 {
        100.0 * phase.cpu_seconds / (duration * info.cpu_count as f64)
    } else {
        0.0
    };
    let rss_gib = phase.peak_rss_bytes as f64 / (1024.0 * 1024.0 * 1024.0);
    let ram_util = if info.ram_total_gib > 0.0 {
        100.0 * rss_gib / info.ram_total_gib
    } else {
        0.0
    };
    let end = report.started_unix_seconds + phase.start_seconds + phase.wall_seconds;
    let f = |x: f64| x.to_string();
    Ok(vec![
        iso8601(end),
        info.project_name.clone(),
        info.run_id.clone(),
        phase.path.clone(),
        f(duration),
        f(grams / 1000.0),
        f(per_second(grams / 1000.0)),
        f(watts(cpu)),
        f(watts(gpu)),
        f(watts(ram)),
        f(cpu),
        f(gpu),
        f(ram),
        f(total),
        f(0.0),
        country_name,
        country_iso,
        region_name,
        String::new(),
        String::new(),
        info.os.clone(),
        String::new(),
        String::new(),
        f(info.cpu_count as f64),
        info.cpu_model.clone(),
        f(info.gpu_count as f64),
        info.gpu_model.clone(),
        String::new(),
        String::new(),
        f(info.ram_total_gib),
        info.tracking_mode.clone(),
        f(cpu_util),
        f(0.0),
        f(ram_util),
        f(rss_gib),
        "N".to_string(),
        f(pue),
        f(0.0),
    ])
}

/// `emissions.csv` text for every finished phase of `report`: CodeCarbon's header, then one
/// row per phase in the order they ended, with the phase path as `experiment_id`.
///
/// Units as CodeCarbon: `duration` s, `emissions` kgCO2e, `emissions_rate` kg/s, `*_power` W,
/// `*_energy` and `energy_consumed` kWh (all × PUE), `ram_total_size`/`ram_used_gb` GiB.
/// Columns this crate has no figure for are empty (`python_version`, `codecarbon_version`,
/// cloud and location fields) or 0 (`water_consumed`, `wue`, `gpu_utilization_percent`).
///
/// # Errors
/// [`Error::Csv`](crate::Error::Csv), or an invalid PUE/intensity in the report's config.
pub fn emissions_csv(report: &TrackerReport, info: &CsvRunInfo) -> Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(EMISSIONS_CSV_COLUMNS)?;
    for phase in &report.phases {
        writer.write_record(row(report, info, phase)?)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| crate::Error::Csv(e.into_error().into()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Writes [`emissions_csv`] to `path` atomically.
///
/// # Errors
/// As [`emissions_csv`], and [`Error::WriteFile`](crate::Error::WriteFile).
pub fn write_emissions_csv(path: &Path, report: &TrackerReport, info: &CsvRunInfo) -> Result<()> {
    super::write_atomic(path, emissions_csv(report, info)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_iso8601() {
        assert_eq!(iso8601(0.0), "1970-01-01T00:00:00");
        assert_eq!(iso8601(951_782_400.5), "2000-02-29T00:00:00");
        assert_eq!(iso8601(1_700_000_000.0), "2023-11-14T22:13:20");
    }

    #[test]
    fn run_ids_look_like_uuids() {
        let id = run_id();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.matches('-').count(), 4);
    }

    #[test]
    fn detect_fills_the_machine() {
        let info = CsvRunInfo::detect("p");
        assert!(info.cpu_count >= 1);
        assert_eq!(info.project_name, "p");
        assert_eq!(info.tracking_mode, "machine");
    }
}
