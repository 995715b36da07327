//! The run's report: `report.json` (every number), `emissions.csv` (CodeCarbon's columns, one
//! row per metered phase) and a self-contained `index.html` (no scripts, fonts or files beside
//! it) with SVG plots: accuracy against energy per 1,000 predictions, size against accuracy,
//! the single-stream latency CDF, the training losses, and Energy-to-Solution by phase. The three
//! files are made from one [`PipelineReport`], so their numbers agree.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use slm_energy::report::{
    CsvRunInfo, E2sInputs, E2sReport, PALETTE, emissions_csv, html_escape, html_section,
};
use slm_energy::{JOULES_PER_WH, TrackerReport};

use super::bench::StageBench;
use super::error::{Error, Result};
use super::{Compressed, Curated, Exported, PipelineConfig, TokenizerAudit, Trained};

/// One metered phase's energy, as `emissions.csv` has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseEnergy {
    /// The phase path (`training/teacher`, `serving/teacher`, ...).
    pub phase: String,
    /// Wall seconds.
    pub seconds: f64,
    /// IT energy in Wh (`None` when no meter read).
    pub wh: Option<f64>,
    /// How it was obtained.
    pub method: Option<String>,
}

/// Everything the run found, in one place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineReport {
    /// When the report was made (seconds since the Unix epoch).
    pub created_unix_seconds: f64,
    /// The machine: CPU model, cores, RAM, OS.
    pub machine: String,
    /// The settings of the run.
    pub config: PipelineConfig,
    /// The base model.
    pub base: PathBuf,
    /// The curated data.
    pub curated: Curated,
    /// The tokenizer audit.
    pub tokenizer: TokenizerAudit,
    /// The LoRA teacher.
    pub teacher: Trained,
    /// The distilled student.
    pub student: Trained,
    /// The pruned and quantized student.
    pub compressed: Compressed,
    /// Every stage's benchmark, in pipeline order.
    pub stages: Vec<StageBench>,
    /// The exported stage.
    pub chosen: String,
    /// What was exported, and why that stage.
    pub exported: Exported,
    /// Every metered phase, in the order they ran.
    pub phases: Vec<PhaseEnergy>,
    /// Energy-to-Solution of the chosen model over `config.lifetime_queries`.
    pub e2s: E2sReport,
    /// Phases read back from an earlier run instead of run again.
    pub resumed: Vec<String>,
    /// Every phase's energy report on one clock (what `emissions.csv` and the energy section
    /// are made from).
    pub energy: TrackerReport,
}

/// What [`PipelineReport::build`] is made from.
pub(super) struct Inputs<'a> {
    pub base: &'a Path,
    pub curated: &'a Curated,
    pub audit: &'a TokenizerAudit,
    pub teacher: &'a Trained,
    pub student: &'a Trained,
    pub compressed: &'a Compressed,
    pub benches: Vec<StageBench>,
    pub exported: &'a Exported,
    pub energies: Vec<TrackerReport>,
    pub resumed: Vec<String>,
}

fn machine() -> String {
    let info = CsvRunInfo::detect("slm-pipeline");
    format!(
        "{} ({} cores), {:.0} GiB RAM, {}",
        info.cpu_model, info.cpu_count, info.ram_total_gib, info.os
    )
}

impl PipelineReport {
    pub(super) fn build(config: &PipelineConfig, inputs: Inputs<'_>) -> Result<Self> {
        let energy = TrackerReport::concat(&inputs.energies)?;
        let chosen = inputs.exported.stage.clone();
        let serving = format!("serving/{chosen}");
        let predictions = inputs
            .benches
            .iter()
            .find(|b| b.stage == chosen)
            .map_or(0, |b| b.predictions as u64);
        let e2s = E2sInputs::from_report(&energy, &serving, predictions, config.lifetime_queries)?
            .compute()?;
        let phases = energy
            .phases
            .iter()
            .map(|p| PhaseEnergy {
                phase: p.path.clone(),
                seconds: p.wall_seconds,
                wh: p.energy().map(|e| e.joules() / JOULES_PER_WH),
                method: p.energy().map(|e| e.method().to_string()),
            })
            .collect();
        Ok(PipelineReport {
            created_unix_seconds: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            machine: machine(),
            config: config.clone(),
            base: inputs.base.to_path_buf(),
            curated: inputs.curated.clone(),
            tokenizer: inputs.audit.clone(),
            teacher: inputs.teacher.clone(),
            student: inputs.student.clone(),
            compressed: inputs.compressed.clone(),
            stages: inputs.benches,
            chosen,
            exported: inputs.exported.clone(),
            phases,
            e2s,
            resumed: inputs.resumed,
            energy,
        })
    }

    /// The stages as a plain-text table (what the example and `slm pipeline` print), then the
    /// chosen model and Energy-to-Solution.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<22} {:>8} {:>8} {:>7} {:>9} {:>9} {:>10}  energy\n",
            "stage", "accuracy", "macro-F1", "MB", "pred/s", "p50 ms", "Wh/1k"
        );
        for s in &self.stages {
            let _ = writeln!(
                out,
                "{:<22} {:>8.4} {:>8.4} {:>7.1} {:>9.2} {:>9.0} {:>10}  {}",
                s.stage,
                s.classification.accuracy,
                s.classification.macro_f1,
                s.model_bytes as f64 / 1e6,
                s.batched_predictions_per_second,
                s.latency_p50_ms,
                s.wh_per_1k.map_or("n/a".into(), |w| format!("{w:.4}")),
                s.energy_method.as_deref().unwrap_or("no meter"),
            );
        }
        let _ = writeln!(
            out,
            "chosen: {} ({}); exported {} and {}",
            self.chosen,
            self.exported.reason,
            self.exported.gguf.display(),
            self.exported.hf_dir.display()
        );
        let _ = write!(
            out,
            "energy to solution: {:.3e} Wh per query over {} queries ({})",
            self.e2s.wh_per_query.value, self.e2s.lifetime_queries, self.e2s.wh_per_query.method
        );
        out
    }

    /// The benchmark of stage `name`.
    pub fn stage(&self, name: &str) -> Option<&StageBench> {
        self.stages.iter().find(|s| s.stage == name)
    }

    /// Writes `report.json`, `emissions.csv` and `index.html` (and each plot as an `.svg`)
    /// into `dir`, each atomically.
    ///
    /// # Errors
    /// I/O, JSON, CSV and plot errors.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let write = |name: &str, bytes: &[u8]| -> Result<()> {
            Ok(slm_core::io::write_atomic(&dir.join(name), bytes)?)
        };
        let json = serde_json::to_string_pretty(self).map_err(|source| Error::Json {
            path: dir.join("report.json"),
            source,
        })?;
        write("report.json", json.as_bytes())?;
        let csv = emissions_csv(&self.energy, &CsvRunInfo::detect("slm-pipeline"))?;
        write("emissions.csv", csv.as_bytes())?;
        let plots = self.plots()?;
        for (name, _, svg) in &plots {
            write(&format!("{name}.svg"), svg.as_bytes())?;
        }
        write("index.html", self.html(&plots)?.as_bytes())?;
        Ok(())
    }

    /// `(file stem, title, svg)` of every plot.
    fn plots(&self) -> Result<Vec<(&'static str, &'static str, String)>> {
        let points = |y: fn(&StageBench) -> Option<f64>| -> Vec<(String, f64, f64)> {
            self.stages
                .iter()
                .filter_map(|s| y(s).map(|v| (s.stage.clone(), v, s.classification.accuracy)))
                .collect()
        };
        let mut plots = vec![
            (
                "accuracy-vs-energy",
                "Accuracy against energy per 1,000 predictions",
                scatter(
                    "Accuracy vs energy per 1,000 predictions",
                    "Wh per 1,000 predictions (batched)",
                    &points(|s| s.wh_per_1k),
                )?,
            ),
            (
                "size-vs-accuracy",
                "Model size against accuracy",
                scatter(
                    "Accuracy vs model size",
                    "model file, MB",
                    &points(|s| Some(s.model_bytes as f64 / 1e6)),
                )?,
            ),
            (
                "latency-cdf",
                "Single-stream latency CDF",
                self.latency_cdf()?,
            ),
            ("losses", "Training losses", self.losses()?),
        ];
        plots.push((
            "energy-by-phase",
            "Energy by phase",
            slm_energy::report::phase_energy_svg(&self.energy)?,
        ));
        Ok(plots)
    }

    fn latency_cdf(&self) -> Result<String> {
        let series: Vec<(String, Vec<(f64, f64)>)> = self
            .stages
            .iter()
            .map(|s| {
                let n = s.latencies_ms.len() as f64;
                let pts = s
                    .latencies_ms
                    .iter()
                    .enumerate()
                    .map(|(i, &ms)| (ms, (i + 1) as f64 / n))
                    .collect();
                (s.stage.clone(), pts)
            })
            .collect();
        lines(
            "Single-stream latency CDF",
            "latency, ms",
            "share of requests",
            &series,
        )
    }

    fn losses(&self) -> Result<String> {
        let as_series = |name: &str, t: &Trained| {
            (
                name.to_string(),
                t.losses.iter().map(|&(s, l)| (s as f64, l)).collect(),
            )
        };
        let mut series = vec![
            as_series("teacher (LoRA)", &self.teacher),
            as_series("student (distillation)", &self.student),
        ];
        if self.compressed.method != "none" {
            series.push(as_series("pruned (recovery)", &self.compressed.pruned));
        }
        lines("Training loss", "step", "loss", &series)
    }

    fn html(&self, plots: &[(&str, &str, String)]) -> Result<String> {
        let e = html_escape;
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>slm pipeline report</title>\n<style>{}body{{max-width:80em}}</style></head><body>\n\
             <h1>slm pipeline report</h1>\n<p>{} · base model {} · labels {} · {} test examples</p>\n",
            slm_energy::report::HTML_STYLE,
            e(&self.machine),
            e(&self.base.display().to_string()),
            e(&self.config.labels.join(", ")),
            self.stages.first().map_or(0, |s| s.predictions),
        );
        let _ = writeln!(
            out,
            "<h2>Models</h2>\n<p>Chosen for export: <b id=\"chosen\">{}</b> — {}</p>",
            e(&self.chosen),
            e(&self.exported.reason)
        );
        out.push_str(
            "<table id=\"stages\"><thead><tr><th>stage</th><th>accuracy</th><th>macro-F1</th>\
             <th>layers</th><th>MB</th><th>pred/s single</th><th>pred/s batched</th>\
             <th>TTFT p50 ms</th><th>latency p50 ms</th><th>latency p99 ms</th>\
             <th>peak RSS MB</th><th>Wh / 1k</th><th>gCO2e / 1k</th><th>pred/s/W</th><th>energy</th>\
             </tr></thead><tbody>\n",
        );
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("n/a".into(), |v| format!("{v:.digits$}"));
        for s in &self.stages {
            let _ = writeln!(
                out,
                "<tr data-stage=\"{}\"><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td><td>{:.1}</td>\
                 <td>{:.2}</td><td>{:.2}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e(&s.stage),
                e(&s.stage),
                s.classification.accuracy,
                s.classification.macro_f1,
                s.layers,
                s.model_bytes as f64 / 1e6,
                s.single_predictions_per_second,
                s.batched_predictions_per_second,
                s.ttft_p50_ms,
                s.latency_p50_ms,
                s.latency_p99_ms,
                s.peak_rss_bytes as f64 / 1e6,
                opt(s.wh_per_1k, 4),
                opt(s.gco2e_per_1k, 3),
                opt(s.predictions_per_second_per_watt, 3),
                match s.energy_method.as_deref() {
                    Some(m) if m.starts_with("measured") => "measured",
                    Some(_) => "estimated",
                    None => "no meter",
                },
            );
        }
        out.push_str("</tbody></table>\n");
        let methods: std::collections::BTreeSet<&str> = self
            .stages
            .iter()
            .filter_map(|s| s.energy_method.as_deref())
            .collect();
        let _ = writeln!(
            out,
            "<p>How the energy was obtained: {}.</p>",
            e(&methods.into_iter().collect::<Vec<_>>().join("; "))
        );
        let _ = writeln!(
            out,
            "<p>Accuracy by label scoring on the test split; every model's GGUF on the CPU fast \
             path through the continuous-batching engine. Energy per 1,000 predictions is the \
             batched run's; the peak RSS of a stage is the whole pipeline process's. Tokenizer: \
             {}.</p>",
            e(&self.tokenizer.reason)
        );
        let _ = writeln!(
            out,
            "<p>Data: {} ({:?}, {} dropped). Teacher: {} LoRA steps; student: {} of {} layers, {} \
             steps{}; compression: {} (sparsity {:.3}{}), {}.</p>",
            e(&self.curated.card.display().to_string()),
            self.curated.splits,
            self.curated.dropped,
            self.teacher.steps,
            self.student.layers,
            self.teacher.layers,
            self.student.steps,
            kept_weights(&self.student),
            e(&self.compressed.method),
            self.compressed.sparsity,
            kept_weights(&self.compressed.pruned),
            e(&self
                .compressed
                .quantized
                .iter()
                .map(|(q, _, bpw)| format!("{q} ({bpw:.2} bits/weight)"))
                .collect::<Vec<_>>()
                .join(", ")),
        );
        for (name, title, svg) in plots {
            let _ = writeln!(
                out,
                "<h2>{}</h2>\n<figure id=\"plot-{name}\">{svg}</figure>",
                e(title)
            );
        }
        out.push_str("<h2>Energy</h2>\n");
        out.push_str(&html_section(&self.energy, Some(&self.e2s))?);
        if !self.resumed.is_empty() {
            let _ = writeln!(
                out,
                "<p>Resumed from an earlier run: {} (their energy is what they took then).</p>",
                e(&self.resumed.join(", "))
            );
        }
        out.push_str("</body></html>\n");
        Ok(out)
    }
}

const WIDTH: u32 = 800;
const HEIGHT: u32 = 400;

/// `, the weights of step N kept (lowest val loss)` for a run evaluated on the val split
/// (`N` = 0: the weights it started from).
fn kept_weights(t: &Trained) -> String {
    if t.evals.is_empty() {
        return String::new();
    }
    format!(
        ", the weights of step {} kept (lowest of {} val losses)",
        t.kept_step,
        t.evals.len()
    )
}

fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("plot: {e}"))
}

fn range(values: impl Iterator<Item = f64> + Clone) -> std::ops::Range<f64> {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.05).max(1e-6);
    (lo - pad).max(0.0)..hi + pad
}

/// Labelled points `(label, x, accuracy)`.
fn scatter(caption: &str, x_desc: &str, points: &[(String, f64, f64)]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let x = range(points.iter().map(|p| p.1));
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(x, 0.0..1.05)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("accuracy")
            .draw()
            .map_err(plot_error)?;
        for (i, (label, px, py)) in points.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(std::iter::once(Circle::new((*px, *py), 5, colour.filled())))
                .map_err(plot_error)?
                .label(label.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Named line series.
fn lines(
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let all = series.iter().flat_map(|(_, p)| p.iter());
        let x = range(all.clone().map(|p| p.0));
        let y = range(all.map(|p| p.1));
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(x, y)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(plot_error)?;
        for (i, (label, pts)) in series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
                .map_err(plot_error)?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}
