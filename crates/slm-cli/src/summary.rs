//! The human summary `slm data curate` prints (the machine JSON is `--json`): rows per stage
//! with their top drop reasons, split sizes with their labels, the files written, and the
//! energy used with how it was obtained.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use slm_data::CurateReport;
use slm_energy::TrackerReport;

/// Drop reasons shown per stage; the rest are in the card and `dropped.jsonl`.
const TOP_REASONS: usize = 3;

/// The summary of a curation run, several lines ending in a newline.
pub fn curate_summary(report: &CurateReport, energy: &TrackerReport) -> String {
    let card = &report.card;
    let kept: usize = card.splits.values().map(|s| s.count).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "curated {}: {} rows read, {} kept, {} dropped",
        card.name, card.rows_read, kept, report.dropped
    );
    let width = card.stages.iter().map(|s| s.stage.len()).max().unwrap_or(0);
    for s in &card.stages {
        let _ = write!(
            out,
            "  {:<width$}  {:>8} -> {:<8}",
            s.stage, s.input, s.output
        );
        let mut reasons: Vec<(&String, &usize)> = s.dropped.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut notes: Vec<String> = reasons
            .iter()
            .take(TOP_REASONS)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        if reasons.len() > TOP_REASONS {
            notes.push(format!("{} more reasons", reasons.len() - TOP_REASONS));
        }
        if s.modified > 0 {
            notes.push(format!("{} modified", s.modified));
        }
        let _ = writeln!(out, " {}", notes.join(", ").trim_end());
    }
    let splits: Vec<String> = card
        .splits
        .iter()
        .map(|(name, split)| {
            let labels: Vec<String> = split
                .labels
                .iter()
                .map(|(label, n)| format!("{label} {n}"))
                .collect();
            if labels.is_empty() {
                format!("{name} {}", split.count)
            } else {
                format!("{name} {} ({})", split.count, labels.join(", "))
            }
        })
        .collect();
    let _ = writeln!(out, "splits: {}", splits.join("; "));
    for w in &card.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let _ = writeln!(out, "files: {}", files_line(&report.files));
    let _ = writeln!(out, "energy: {}", energy_line(energy));
    out
}

/// `DIR/{a, b, c}` when every file is in one folder, else the paths.
fn files_line(files: &[PathBuf]) -> String {
    let dir = files
        .first()
        .and_then(|f| f.parent())
        .unwrap_or(Path::new(""));
    if files.iter().all(|f| f.parent() == Some(dir)) {
        let names: Vec<String> = files
            .iter()
            .filter_map(|f| f.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        format!("{}/{{{}}}", dir.display(), names.join(", "))
    } else {
        let all: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        all.join(", ")
    }
}

/// Total energy and wall time, then each meter's share with how it was obtained.
fn energy_line(energy: &TrackerReport) -> String {
    let meters: Vec<String> = energy
        .meters
        .iter()
        .filter_map(|m| Some(format!("{} {:.2}", m.name, m.energy.as_ref()?)))
        .collect();
    match energy.total_energy() {
        Some(total) => format!(
            "{:.2} J in {:.2} s ({})",
            total.joules(),
            energy.wall_seconds,
            meters.join("; ")
        ),
        None => format!(
            "no meter could be read in {:.2} s (see energy.json)",
            energy.wall_seconds
        ),
    }
}
