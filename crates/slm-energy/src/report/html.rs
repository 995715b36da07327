//! The report as a Markdown section (for the benchmark report to embed) and as a
//! self-contained HTML page with inline SVG plots.

use std::fmt::Write as _;

use crate::energy::JOULES_PER_WH;
use crate::error::Result;
use crate::report::e2s::E2sReport;
use crate::report::plots::{phase_energy_svg, power_svg};
use crate::tracker::TrackerReport;

/// A table: header and rows of cells.
struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

fn phases_table(report: &TrackerReport) -> Table {
    let rows = report
        .phases
        .iter()
        .map(|p| {
            let (wh, method) = match p.energy() {
                Some(e) => (
                    format!("{:.4}", e.joules() / JOULES_PER_WH),
                    e.method().to_string(),
                ),
                None => ("n/a".to_string(), "no meter".to_string()),
            };
            let mut path = p.path.clone();
            if p.ended_by_stop {
                path.push_str(" (ended by stop)");
            }
            vec![
                path,
                format!("{:.2}", p.wall_seconds),
                format!("{:.2}", p.cpu_seconds),
                wh,
                method,
                format!("{:.1}", p.peak_rss_bytes as f64 / (1024.0 * 1024.0)),
            ]
        })
        .collect();
    Table {
        header: vec![
            "phase",
            "wall s",
            "CPU s",
            "energy Wh",
            "method",
            "peak RSS MiB",
        ],
        rows,
    }
}

fn meters_table(report: &TrackerReport) -> Table {
    let rows = report
        .meters
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.component.to_string(),
                m.energy.as_ref().map_or("n/a".to_string(), |e| {
                    format!("{:.4}", e.joules() / JOULES_PER_WH)
                }),
                m.method
                    .as_ref()
                    .map_or("no reading".to_string(), ToString::to_string),
            ]
        })
        .collect();
    Table {
        header: vec!["meter", "component", "energy Wh", "method"],
        rows,
    }
}

fn e2s_table(e2s: &E2sReport) -> Table {
    let mut rows: Vec<Vec<String>> = e2s
        .figures()
        .into_iter()
        .map(|(name, f)| {
            vec![
                name.to_string(),
                format!("{:.6}", f.value),
                f.unit.clone(),
                f.method.to_string(),
            ]
        })
        .collect();
    for (phase, f) in &e2s.one_off_phases {
        rows.push(vec![
            format!("one-off: {phase}"),
            format!("{:.6}", f.value),
            f.unit.clone(),
            f.method.to_string(),
        ]);
    }
    Table {
        header: vec!["figure", "value", "unit", "method"],
        rows,
    }
}

fn grid_line(report: &TrackerReport) -> String {
    let c = &report.config;
    format!(
        "Grid: {} gCO2e/kWh ({}); PUE {}.",
        c.carbon.grams_co2e_per_kwh, c.carbon.source, c.pue
    )
}

fn e2s_line(e2s: &E2sReport) -> String {
    format!(
        "Energy to solution over {} lifetime queries, inference measured over {} predictions in {:.1} s.",
        e2s.lifetime_queries, e2s.predictions_measured, e2s.serving_seconds
    )
}

fn markdown_table(out: &mut String, t: &Table) {
    let cell = |s: &str| s.replace('|', "\\|");
    let _ = writeln!(out, "| {} |", t.header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(t.header.len()));
    for row in &t.rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

/// A Markdown section (`## Energy`) with the phase, meter and (given one) Energy-to-Solution
/// tables, the grid, and any issues. Plots are in [`html_page`].
pub fn markdown_section(report: &TrackerReport, e2s: Option<&E2sReport>) -> String {
    let mut out = String::from("## Energy\n\n");
    let _ = writeln!(out, "{}\n", grid_line(report));
    if let Some(e2s) = e2s {
        let _ = writeln!(out, "### Energy to solution\n\n{}\n", e2s_line(e2s));
        markdown_table(&mut out, &e2s_table(e2s));
    }
    out.push_str("### Phases\n\n");
    markdown_table(&mut out, &phases_table(report));
    out.push_str("### Meters\n\n");
    markdown_table(&mut out, &meters_table(report));
    if !report.issues.is_empty() {
        out.push_str("### Issues\n\n");
        for i in &report.issues {
            let _ = writeln!(
                out,
                "- {} at {:.1} s ({}×): {}",
                i.source, i.seconds, i.count, i.message
            );
        }
        out.push('\n');
    }
    out
}

/// `s` with `&`, `<`, `>` and `"` escaped for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html_table(out: &mut String, t: &Table) {
    out.push_str("<table><thead><tr>");
    for h in &t.header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for c in row {
            let _ = write!(out, "<td>{}</td>", escape(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

/// A self-contained HTML page (no external files, scripts or fonts): the tables of
/// [`markdown_section`] and two inline SVG plots, power over time per meter and energy per
/// phase.
///
/// # Errors
/// [`Error::Plot`](crate::Error::Plot) when a plot cannot be drawn.
pub fn html_page(title: &str, report: &TrackerReport, e2s: Option<&E2sReport>) -> Result<String> {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n\
         <style>{HTML_STYLE}</style></head><body>\n<h1>{}</h1>\n",
        escape(title),
        escape(title),
    );
    out.push_str(&html_section(report, e2s)?);
    out.push_str("</body></html>\n");
    Ok(out)
}

/// The CSS of [`html_page`], for pages that embed [`html_section`].
pub const HTML_STYLE: &str = "body{font-family:sans-serif;max-width:60em;margin:2em auto}\
     table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .5em}\
     td{text-align:right}td:first-child,td:last-child{text-align:left}";

/// The body of [`html_page`] without the page around it (for a larger report to embed): the
/// grid line, Energy-to-Solution (with `e2s`), phases with their bar chart, meters with the
/// power plot, issues.
///
/// # Errors
/// [`Error::Plot`](crate::Error::Plot) when a plot cannot be drawn.
pub fn html_section(report: &TrackerReport, e2s: Option<&E2sReport>) -> Result<String> {
    let mut out = String::new();
    let _ = writeln!(out, "<p>{}</p>", escape(&grid_line(report)));
    if let Some(e2s) = e2s {
        let _ = writeln!(
            out,
            "<h2>Energy to solution</h2>\n<p>{}</p>",
            escape(&e2s_line(e2s))
        );
        html_table(&mut out, &e2s_table(e2s));
    }
    out.push_str("<h2>Phases</h2>\n");
    html_table(&mut out, &phases_table(report));
    out.push_str(&phase_energy_svg(report)?);
    out.push_str("\n<h2>Meters</h2>\n");
    html_table(&mut out, &meters_table(report));
    out.push_str(&power_svg(report)?);
    if !report.issues.is_empty() {
        out.push_str("\n<h2>Issues</h2>\n<ul>\n");
        for i in &report.issues {
            let _ = writeln!(
                out,
                "<li>{} at {:.1} s ({}×): {}</li>",
                escape(&i.source),
                i.seconds,
                i.count,
                escape(&i.message)
            );
        }
        out.push_str("</ul>\n");
    }
    Ok(out)
}
