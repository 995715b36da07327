//! The CPU thermal-design-power table and CodeCarbon's rules for finding a CPU in it, plus the
//! CPU facts those rules need (`/proc/cpuinfo`: model name, threads, sockets).
//!
//! Mirrors codecarbon 3.3.2: `TDP._get_matching_cpu` and `TDP._main` in `codecarbon/core/cpu.py`,
//! `CPU.from_utils` in `codecarbon/external/hardware.py` and `ResourceTracker.set_CPU_tracking`
//! in `codecarbon/core/resource_tracker.py`. The table is CodeCarbon's `cpu_power.csv`
//! (`data/cpu_tdp.csv`, MIT licence, see `data/README.md`).

use std::path::Path;
use std::sync::OnceLock;

use serde::Serialize;

use crate::error::Result;
use crate::meters::read_file;

/// CodeCarbon's TDP per logical CPU when the model is known but not in the table
/// (`DEFAULT_POWER_PER_CORE`, used as watts per thread).
pub const DEFAULT_WATTS_PER_THREAD: f64 = 4.0;
/// CodeCarbon's TDP when the CPU model cannot be read at all (`POWER_CONSTANT`).
pub const GENERIC_TDP_WATTS: f64 = 85.0;

/// The table, as shipped.
const CPU_TDP_CSV: &str = include_str!("../../data/cpu_tdp.csv");

/// One row of the TDP table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuTdpEntry {
    /// The model as the table names it (`Intel Xeon Platinum 8480+`).
    pub name: String,
    /// TDP per socket in watts; `None` for the four rows whose value is malformed in the
    /// source (`Intel Celeron 1000A,27.29.5`), where CodeCarbon would raise a `ValueError`
    /// and this crate falls back as for an unknown model.
    pub tdp_watts: Option<f64>,
}

/// CodeCarbon's CPU TDP table ([`CpuTdpTable::codecarbon`]) or one of your own.
#[derive(Debug, Clone)]
pub struct CpuTdpTable {
    entries: Vec<CpuTdpEntry>,
}

/// Python's `str.lower`, for the ASCII-and-a-few-symbols names in the table.
fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// rapidfuzz's `utils.default_process`, split into tokens: lower case, every non-alphanumeric
/// character a separator.
fn tokens(s: &str) -> Vec<String> {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    let mut tokens: Vec<String> = cleaned.split_whitespace().map(lower).collect();
    tokens.sort();
    tokens.dedup();
    tokens
}

/// Whether rapidfuzz's `fuzz.token_set_ratio` is 100: the token sets share a token and one
/// holds the other.
fn token_set_ratio_is_100(a: &[String], b: &[String]) -> bool {
    let shared = a.iter().any(|t| b.contains(t));
    shared && (a.iter().all(|t| b.contains(t)) || b.iter().all(|t| a.contains(t)))
}

/// Removes every match of the regex ` @\s*\d+\.\d+GHz`.
fn strip_frequencies(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(" @") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match frequency_len(after) {
            Some(n) => rest = &after[n..],
            None => {
                out.push_str(" @");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The length of `\s*\d+\.\d+GHz` at the start of `s`, if it is there.
fn frequency_len(s: &str) -> Option<usize> {
    let ws = s.len() - s.trim_start().len();
    let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
    let int = digits(&s[ws..]);
    if int == 0 || s.as_bytes().get(ws + int) != Some(&b'.') {
        return None;
    }
    let frac = digits(&s[ws + int + 1..]);
    let end = ws + int + 1 + frac;
    (frac > 0 && s[end..].starts_with("GHz")).then_some(end + 3)
}

impl CpuTdpTable {
    /// CodeCarbon 3.3.2's table (4,918 models), parsed once.
    pub fn codecarbon() -> &'static CpuTdpTable {
        static TABLE: OnceLock<CpuTdpTable> = OnceLock::new();
        TABLE.get_or_init(|| CpuTdpTable::parse(CPU_TDP_CSV))
    }

    /// A table from CSV text with a `Name,TDP` header; `#` lines are comments and a name may
    /// be double-quoted (it may then hold commas).
    pub fn parse(csv: &str) -> CpuTdpTable {
        let entries = csv
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .skip(1)
            .filter_map(|line| {
                let (name, tdp) = line.rsplit_once(',')?;
                let name = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
                    Some(quoted) => quoted.replace("\"\"", "\""),
                    None => name.to_owned(),
                };
                Some(CpuTdpEntry {
                    name,
                    tdp_watts: tdp.trim().parse().ok(),
                })
            })
            .collect();
        CpuTdpTable { entries }
    }

    /// The rows.
    pub fn entries(&self) -> &[CpuTdpEntry] {
        &self.entries
    }

    /// The first row equal to `model` ignoring case (rapidfuzz `fuzz.ratio` = 100 after
    /// `str.lower`).
    fn exact(&self, model: &str) -> Option<&CpuTdpEntry> {
        let model = lower(model);
        self.entries.iter().find(|e| lower(&e.name) == model)
    }

    /// The row CodeCarbon would match `model_raw` (a CPU brand string such as
    /// `Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz`) to, following `TDP._get_matching_cpu`
    /// (non-greedy):
    /// 1. a row equal to the brand string, ignoring case;
    /// 2. else the same after dropping `(R)`, everything from ` CPU @ `, ` CPU` and
    ///    ` @ <f>GHz`;
    /// 3. else the single row whose token set (lower case, split at non-alphanumerics) holds
    ///    or is held by the cleaned name's; several such rows are ambiguous: no match.
    pub fn lookup(&self, model_raw: &str) -> Option<&CpuTdpEntry> {
        if let Some(e) = self.exact(model_raw) {
            return Some(e);
        }
        let mut model = model_raw.replace("(R)", "");
        if let Some(at) = model.find(" CPU @ ").filter(|&at| at > 0) {
            model.truncate(at);
        }
        let model = strip_frequencies(&model.replace(" CPU", ""));
        if let Some(e) = self.exact(&model) {
            return Some(e);
        }
        let wanted = tokens(&model);
        if wanted.is_empty() {
            return None;
        }
        let mut matches = self
            .entries
            .iter()
            .filter(|e| token_set_ratio_is_100(&wanted, &tokens(&e.name)));
        match (matches.next(), matches.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }
}

/// What `/proc/cpuinfo` says about the CPUs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuInfo {
    /// The first `model name` (x86's CPUID brand string, what py-cpuinfo's `brand_raw`
    /// gives); `None` when there is none (many ARM kernels).
    pub model: Option<String>,
    /// Logical CPUs online (`processor` entries; psutil's `cpu_count()`).
    pub threads: u32,
    /// Distinct `physical id`s, at least 1 (lscpu's `Socket(s)`).
    pub sockets: u32,
}

impl CpuInfo {
    /// Parses the text of `/proc/cpuinfo`.
    pub fn parse(text: &str) -> CpuInfo {
        let mut model = None;
        let mut threads = 0;
        let mut packages: Vec<&str> = Vec::new();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "processor" => threads += 1,
                "model name" if model.is_none() && !value.is_empty() => {
                    model = Some(value.to_owned())
                }
                "physical id" if !packages.contains(&value) => packages.push(value),
                _ => {}
            }
        }
        CpuInfo {
            model,
            threads: threads.max(1),
            sockets: (packages.len() as u32).max(1),
        }
    }

    /// Reads and parses a cpuinfo file (normally `/proc/cpuinfo`).
    ///
    /// # Errors
    /// [`Error::ReadFile`](crate::Error::ReadFile) when it cannot be read.
    pub fn read(path: &Path) -> Result<CpuInfo> {
        Ok(CpuInfo::parse(&read_file(path)?))
    }
}

/// Where a CPU TDP came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum TdpSource {
    /// A row of the TDP table, times the sockets.
    Table {
        /// The row's name.
        matched: String,
        /// Its TDP per socket.
        watts_per_socket: f64,
        /// Sockets.
        sockets: u32,
    },
    /// The model is known but not in the table (or ambiguous): CodeCarbon's
    /// [`DEFAULT_WATTS_PER_THREAD`] × threads, times the sockets as CodeCarbon does.
    PerThread {
        /// Logical CPUs.
        threads: u32,
        /// Sockets.
        sockets: u32,
    },
    /// No model name at all: CodeCarbon's [`GENERIC_TDP_WATTS`].
    Generic,
    /// Given by the user.
    Given,
}

/// A CPU's TDP for the estimate, with how it was found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuTdp {
    /// The CPU model (`Unknown` when none could be read).
    pub cpu_model: String,
    /// The machine's CPU TDP (all sockets), in watts.
    pub tdp_watts: f64,
    /// Where it came from.
    pub source: TdpSource,
}

impl CpuTdp {
    /// The TDP CodeCarbon 3.3.2 would use for this machine with no CPU counter: the table's
    /// TDP × sockets; else, for a known model, 4 W × threads × sockets; else 85 W.
    pub fn from_cpu_info(info: &CpuInfo, table: &CpuTdpTable) -> CpuTdp {
        let Some(model) = info.model.clone() else {
            return CpuTdp {
                cpu_model: "Unknown".into(),
                tdp_watts: GENERIC_TDP_WATTS,
                source: TdpSource::Generic,
            };
        };
        let sockets = info.sockets;
        // CodeCarbon tests `if power:`, so a 0 W row falls back like a missing one.
        let found = table
            .lookup(&model)
            .and_then(|e| Some((e, e.tdp_watts.filter(|&w| w > 0.0)?)));
        match found {
            Some((entry, watts)) => CpuTdp {
                cpu_model: model,
                tdp_watts: watts * f64::from(sockets),
                source: TdpSource::Table {
                    matched: entry.name.clone(),
                    watts_per_socket: watts,
                    sockets,
                },
            },
            None => CpuTdp {
                cpu_model: model,
                tdp_watts: DEFAULT_WATTS_PER_THREAD * f64::from(info.threads) * f64::from(sockets),
                source: TdpSource::PerThread {
                    threads: info.threads,
                    sockets,
                },
            },
        }
    }

    /// This machine's TDP from `cpuinfo` (normally `/proc/cpuinfo`) and CodeCarbon's table.
    ///
    /// # Errors
    /// [`Error::ReadFile`](crate::Error::ReadFile) when `cpuinfo` cannot be read.
    pub fn detect(cpuinfo: &Path) -> Result<CpuTdp> {
        Ok(CpuTdp::from_cpu_info(
            &CpuInfo::read(cpuinfo)?,
            CpuTdpTable::codecarbon(),
        ))
    }

    /// A TDP you know (CodeCarbon's `force_cpu_power`).
    pub fn given(cpu_model: impl Into<String>, tdp_watts: f64) -> CpuTdp {
        CpuTdp {
            cpu_model: cpu_model.into(),
            tdp_watts,
            source: TdpSource::Given,
        }
    }

    /// One line for reports: the model, the TDP and how it was found.
    pub fn describe(&self) -> String {
        let how = match &self.source {
            TdpSource::Table {
                matched,
                watts_per_socket,
                sockets,
            } => format!(
                "CodeCarbon table row `{matched}`: {watts_per_socket} W x {sockets} socket(s)"
            ),
            TdpSource::PerThread { threads, sockets } => format!(
                "not in CodeCarbon's table, or ambiguous: {DEFAULT_WATTS_PER_THREAD} W x {threads} thread(s) x {sockets} socket(s)"
            ),
            TdpSource::Generic => "no CPU model name: CodeCarbon's generic TDP".into(),
            TdpSource::Given => "given".into(),
        };
        format!("{}, TDP {} W ({how})", self.cpu_model, self.tdp_watts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CodeCarbon 3.3.2's matches for these brand strings, from `data/cpu_tdp_vectors.py`.
    const CODECARBON_MATCHES: &[(&str, Option<&str>)] = &[
        ("AMD EPYC", None),
        (
            "Intel(R) Xeon(R) Platinum 8480+",
            Some("Intel Xeon Platinum 8480+"),
        ),
        (
            "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz",
            Some("Intel Core i7-8700"),
        ),
        (
            "Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz",
            Some("Intel Xeon E5-2686 v4"),
        ),
        ("AMD EPYC 7763 64-Core Processor", Some("AMD EPYC 7763")),
        (
            "AMD Ryzen 9 5950X 16-Core Processor",
            Some("AMD Ryzen 9 5950X"),
        ),
        ("Apple M2", Some("Apple M2")),
        ("Apple M4 Max", Some("Apple M4 Max")),
        (
            "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
            Some("Intel Xeon Platinum 8375C"),
        ),
        ("AMD EPYC 9654 96-Core Processor", Some("AMD EPYC 9654")),
        ("Intel(R) Core(TM) i9-13900K", Some("Intel Core i9-13900K")),
        (
            "Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz",
            Some("Intel Xeon Gold 6248R"),
        ),
        ("AMD Ryzen 5 6600HS", Some("AMD Ryzen 5 6600HS\u{200b}")),
        (
            "Intel(R) Xeon(R) Platinum 8468",
            Some("Intel Xeon Platinum 8468"),
        ),
        ("AMD EPYC 7B13", None),
        (
            "Intel(R) Core(TM) i5-10210U CPU @ 1.60GHz",
            Some("Intel Core i5-10210U"),
        ),
        ("Neoverse-N1", None),
        ("Unknown", None),
        (
            "AMD Ryzen Threadripper PRO 5995WX 64-Cores",
            Some("AMD Ryzen Threadripper PRO 5995WX"),
        ),
        ("Intel(R) Xeon(R) CPU @ 2.20GHz", None),
        ("AMD EPYC 7R32", None),
        (
            "Intel(R) Core(TM) Ultra 7 155H",
            Some("Intel Core Ultra 7 155H"),
        ),
        ("13th Gen Intel(R) Core(TM) i7-1365U", None),
        (
            "AMD Ryzen 7 7840U w/ Radeon  780M Graphics",
            Some("AMD Ryzen 7 7840U"),
        ),
        (
            "Intel Core i5+8400  (9M Cache, up to 4.00 GHz) includes Intel Optane Memory",
            Some("Intel Core i5+8400  (9M Cache, up to 4.00 GHz) includes Intel Optane Memory"),
        ),
        (
            "intel xeon platinum 8480+",
            Some("Intel Xeon Platinum 8480+"),
        ),
        ("AMD EPYC 4124P", Some("AMD EPYC 4124P")),
        ("1075T", Some("1075T")),
        (
            "Intel(R) Xeon(R) Gold 6330 CPU @ 2.00GHz",
            Some("Intel Xeon Gold 6330"),
        ),
        (
            "Intel(R) Xeon(R) Silver 4314 CPU @ 2.40GHz",
            Some("Intel Xeon Silver 4314"),
        ),
    ];

    #[test]
    fn lookups_agree_with_codecarbon() {
        let table = CpuTdpTable::codecarbon();
        for (model, expected) in CODECARBON_MATCHES {
            let got = table.lookup(model).map(|e| e.name.as_str());
            assert_eq!(got, *expected, "{model}");
        }
    }

    #[test]
    fn the_table_is_complete() {
        let table = CpuTdpTable::codecarbon();
        assert_eq!(table.entries().len(), 4918);
        let unparsable = table
            .entries()
            .iter()
            .filter(|e| e.tdp_watts.is_none())
            .count();
        assert_eq!(
            unparsable, 4,
            "the four malformed Celeron rows of the source"
        );
        let quoted = table.lookup("Intel EP80579 Integrated, 1066 MHz").unwrap();
        assert_eq!(quoted.tdp_watts, Some(18.0));
    }

    #[test]
    fn frequencies_are_stripped_like_the_regex() {
        assert_eq!(strip_frequencies("Xeon @ 2.20GHz"), "Xeon");
        assert_eq!(strip_frequencies("Xeon @2.2GHz x @ 3.0GHz"), "Xeon x");
        assert_eq!(strip_frequencies("a @ 2GHz"), "a @ 2GHz");
        assert_eq!(strip_frequencies("a @ 2.GHz @"), "a @ 2.GHz @");
    }

    const EPYC_VM: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nphysical id\t: 0\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\nphysical id\t: 0\n";

    #[test]
    fn cpuinfo_is_parsed() {
        let info = CpuInfo::parse(EPYC_VM);
        assert_eq!(info.model.as_deref(), Some("AMD EPYC"));
        assert_eq!((info.threads, info.sockets), (2, 1));
        let arm = CpuInfo::parse("processor : 0\nBogoMIPS : 50.00\n\nprocessor : 1\n");
        assert_eq!((arm.model, arm.threads, arm.sockets), (None, 2, 1));
    }

    #[test]
    fn tdp_follows_codecarbon_fallbacks() {
        let table = CpuTdpTable::codecarbon();
        // An unnamed EPYC (a VM) matches 148 rows: ambiguous, so 4 W per thread.
        let tdp = CpuTdp::from_cpu_info(&CpuInfo::parse(EPYC_VM), table);
        assert_eq!(tdp.tdp_watts, 8.0);
        assert!(matches!(
            tdp.source,
            TdpSource::PerThread {
                threads: 2,
                sockets: 1
            }
        ));
        assert!(
            tdp.describe().contains("4 W x 2 thread(s) x 1 socket(s)"),
            "{}",
            tdp.describe()
        );

        let two_sockets = CpuInfo {
            model: Some("Intel(R) Xeon(R) Platinum 8480+".into()),
            threads: 224,
            sockets: 2,
        };
        let tdp = CpuTdp::from_cpu_info(&two_sockets, table);
        assert_eq!(tdp.tdp_watts, 700.0);

        let unknown = CpuInfo {
            model: None,
            threads: 8,
            sockets: 1,
        };
        let tdp = CpuTdp::from_cpu_info(&unknown, table);
        assert_eq!((tdp.tdp_watts, tdp.cpu_model.as_str()), (85.0, "Unknown"));

        let celeron = CpuInfo {
            model: Some("Intel Celeron 1000A".into()),
            threads: 1,
            sockets: 1,
        };
        assert_eq!(
            CpuTdp::from_cpu_info(&celeron, table).tdp_watts,
            4.0,
            "malformed row"
        );
    }
}
