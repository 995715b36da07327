//! [`curate`]: one call from a [`CurateConfig`] to splits, a dataset card and `dropped.jsonl`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use slm_energy::{Lifecycle, NoopObserver};

use crate::curate::audit::LabelAudit;
use crate::curate::card::DatasetCard;
use crate::curate::config::{CurateConfig, EvalConfig, InputConfig, OutputFormat};
use crate::curate::registry::StageRegistry;
use crate::curate::split::{Splits, holdout, stratified_split};
use crate::curate::stage::{CurateObserver, Dropped, Phase, StageReport, count_reasons};
use crate::error::{Error, Result};
use crate::example::Example;
use crate::readers::read_any;
use crate::stages::Decontaminate;
use crate::writers::{ParquetSchema, ParquetWriter, write_jsonl};

/// The name of the pseudo-stage that records unreadable rows.
pub const READ_STAGE: &str = "read";

/// What [`curate`] wrote and found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurateReport {
    /// The dataset card (also written as `card.json` and `README.md`).
    pub card: DatasetCard,
    /// Every file written: one file per non-empty split and format, the card, the README
    /// and `dropped.jsonl`.
    pub files: Vec<PathBuf>,
    /// Rows removed, all stages together.
    pub dropped: usize,
}

/// The examples of every input, with unreadable rows as [`Dropped`] records.
///
/// A bad row (malformed JSON, a field of the wrong type, ...) is dropped with its error as the
/// detail; an input that cannot be opened, has no records, or whose rows all fail is an error,
/// and so is an unmapped column named `id`, `input`, `target` or `label` (the curated files
/// use those names for the example's own fields, so it would be lost or clash at the end).
pub fn read_inputs(inputs: &[InputConfig]) -> Result<(Vec<Example>, Vec<Dropped>)> {
    read_rows(inputs, true, &Phase::start(&NoopObserver, READ_STAGE))
}

/// Rows between two progress reports of a streaming read.
const PROGRESS_EVERY: usize = 4096;

/// [`read_inputs`], refusing unmapped reserved columns only with `check_reserved`, and telling
/// `phase` the rows read so far.
fn read_rows(
    inputs: &[InputConfig],
    check_reserved: bool,
    phase: &Phase<'_>,
) -> Result<(Vec<Example>, Vec<Dropped>)> {
    let (mut examples, mut dropped) = (Vec::new(), Vec::new());
    phase.rows(0, None);
    for input in inputs {
        let reader = read_any(&input.path, &input.fields())?;
        let (mut good, mut first_err) = (0usize, None);
        for (n, row) in reader.enumerate() {
            if (examples.len() + dropped.len()) % PROGRESS_EVERY == PROGRESS_EVERY - 1 {
                phase.rows(examples.len() + dropped.len() + 1, None);
            }
            match row {
                Ok(e) => {
                    if check_reserved && let Some(key) = e.reserved_meta_key() {
                        return Err(unmapped_reserved_column(input, key));
                    }
                    good += 1;
                    examples.push(e);
                }
                Err(err) => {
                    if matches!(
                        err,
                        Error::Io { .. } | Error::EmptyDataset { .. } | Error::UnknownColumn { .. }
                    ) {
                        return Err(err);
                    }
                    dropped.push(read_drop(&input.path, n + 1, &err));
                    first_err.get_or_insert(err);
                }
            }
        }
        if good == 0 {
            return Err(first_err.unwrap_or(Error::EmptyDataset {
                path: input.path.clone(),
            }));
        }
    }
    let total = examples.len() + dropped.len();
    phase.rows(total, Some(total));
    Ok((examples, dropped))
}

fn unmapped_reserved_column(input: &InputConfig, column: &str) -> Error {
    let option = match column {
        "input" => "text_field",
        "id" => "id_field",
        "target" => "target_field",
        _ => "label_field",
    };
    Error::InvalidConfig {
        message: format!(
            "{}: column `{column}` is not mapped, but curated files use `{column}` for each \
             example's own {column}; map it (`{option} = \"{column}\"`) or rename the column",
            input.path.display()
        ),
    }
}

fn read_drop(path: &Path, record: usize, err: &Error) -> Dropped {
    let (line, reason) = match err {
        Error::Json { line, .. } => (Some(*line), "malformed_json"),
        Error::InvalidUtf8 { line, .. } => (Some(*line), "invalid_utf8"),
        Error::NotAnObject { line, .. } => (Some(*line), "not_an_object"),
        Error::MissingField { line, .. } => (Some(*line), "missing_field"),
        Error::WrongType { line, .. } => (Some(*line), "wrong_type"),
        Error::LineTooLong { line, .. } => (Some(*line), "line_too_long"),
        _ => (None, "unreadable"),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let id = match line {
        Some(line) => format!("{name}:{line}"),
        None => format!("{name}:#{record}"),
    };
    Dropped::new(id, READ_STAGE, reason).with_detail(err.to_string())
}

/// Runs a whole curation: reads the inputs, runs the configured stages (normalize, length,
/// quality, pii, exact dedup, near dedup, decontaminate against the eval set, and custom
/// stages from [`StageRegistry::default`] after their slots), audits labels, splits (holdout
/// first, then stratified train/val/test) and writes into `output_dir`: `train`, `val`,
/// `test` (and `live` with a holdout) in each of [`CurateConfig::formats`] (`train.jsonl`,
/// `train.parquet`, ...), each atomically and only when not empty; `card.json`; `README.md`;
/// `dropped.jsonl`.
///
/// Readers stream, but the run holds the dataset in memory (deduplication and splits are
/// global decisions) and each stage works on all rows at once, in parallel with rayon: the
/// whole SpamAssassin corpus (13.4 MB of JSONL) peaks at 58 MiB resident and runs at about
/// 18 MB/s on 2 cores (`benches/curate.rs`). That fits narrow-domain datasets; web-scale
/// corpora need a sharded, on-disk pipeline such as datatrove's.
///
/// ```
/// use slm_data::{CurateConfig, InputConfig, curate, write_jsonl, Example};
///
/// # fn main() -> slm_data::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let (things, when) = (["printer", "vpn", "badge", "laptop", "door"], ["today", "soon", "please"]);
/// let rows: Vec<Example> = (0..20)
///     .map(|i| {
///         let text = format!("fix the {} and the {} {}", things[i % 5], things[(i / 5) % 3], when[(i / 5) % 3]);
///         Example::new(i.to_string(), text).with_label(if i % 2 == 0 { "it" } else { "facilities" })
///     })
///     .collect(); // rows 15..20 repeat rows 0..5
/// write_jsonl(dir.path().join("in.jsonl"), &rows)?;
///
/// // The canonical layout `write_jsonl` wrote: id, input, target, label.
/// let mut input = InputConfig::new(dir.path().join("in.jsonl"));
/// input.text_field = "input".into();
/// input.label_field = Some("label".into());
/// input.target_field = Some("target".into());
/// input.id_field = Some("id".into());
/// let report = curate(&CurateConfig::new(vec![input], dir.path().join("out")))?;
/// assert_eq!(report.dropped, 5); // exact duplicates
/// assert_eq!(report.card.splits["train"].count, 11);
/// assert!(dir.path().join("out/dropped.jsonl").exists());
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InvalidConfig`] for a bad config (an unknown custom stage included) or when every
/// row is dropped (never a silently empty dataset); reader errors for inputs that cannot be
/// read; [`Error::Io`], [`Error::Core`] (its I/O error, from the atomic writes) and
/// [`Error::Parquet`] for output.
pub fn curate(config: &CurateConfig) -> Result<CurateReport> {
    curate_with(config, &StageRegistry::default(), &NoopObserver)
}

/// [`curate`] with the custom stages of `registry` (your own stages, registered under the
/// names the config's `[[stages.custom]]` tables use), reporting its phases to `observer`: an
/// [`EnergyTracker`](slm_energy::EnergyTracker) charges each to its own line of the
/// Energy-to-Solution report, and a [`CurateObserver`] also hears the rows each phase has done
/// (for progress bars). The phases are `curation` around the whole run, and inside it
/// `curation/read_eval` (with eval sets), `curation/read`, one per stage of
/// [`StagesConfig::pipeline`](crate::StagesConfig::pipeline) (`curation/normalize`,
/// `curation/near_dedup`, ... by stage name), `curation/split` and `curation/write`.
///
/// # Errors
/// As [`curate`]; custom stages are built (and their params checked) before any input is read.
pub fn curate_with(
    config: &CurateConfig,
    registry: &StageRegistry,
    observer: &dyn CurateObserver,
) -> Result<CurateReport> {
    config.validate()?;
    let _run = Phase::new(observer, Lifecycle::Curation.to_string());
    // The eval sets and custom stages first: a bad one fails before any input is read.
    let decontaminate = match config.eval.first() {
        None => None,
        Some(first) => {
            let read_eval = Phase::start(observer, "read_eval");
            let inputs: Vec<InputConfig> = config.eval.iter().map(EvalConfig::input).collect();
            // Only the text is used: unmapped extra columns are fine here.
            let (eval_rows, _) = read_rows(&inputs, false, &read_eval)?;
            let texts: Vec<&str> = eval_rows.iter().map(|e| e.input.as_str()).collect();
            Some(Decontaminate::new(first.decontaminate.clone(), &texts))
        }
    };
    let pipeline = config.stages.pipeline(registry, decontaminate)?;
    let read = Phase::start(observer, READ_STAGE);
    let (examples, mut dropped) = read_rows(&config.inputs, true, &read)?;
    drop(read);
    let mut reports = vec![StageReport {
        stage: READ_STAGE.to_string(),
        input: examples.len() + dropped.len(),
        output: examples.len(),
        modified: 0,
        dropped: count_reasons(&dropped),
    }];
    let rows_read = reports[0].input;
    let mut warnings = Vec::new();
    let mut ids = std::collections::HashSet::new();
    if let Some(dup) = examples.iter().find(|e| !ids.insert(e.id.as_str())) {
        warnings.push(format!(
            "example ids are not unique (e.g. `{}`); dropped.jsonl may be ambiguous",
            dup.id
        ));
    }
    let out = pipeline.run_observed(examples, observer)?;
    reports.extend(out.reports);
    dropped.extend(out.dropped);
    let (rows, groups) = (out.kept, out.duplicates);
    if rows.is_empty() {
        return Err(Error::InvalidConfig {
            message: format!(
                "every one of the {rows_read} rows was dropped; see the stage thresholds"
            ),
        });
    }
    let split_phase = Phase::start(observer, "split");
    let audit = LabelAudit::new(&rows, &groups);

    let (rows, live) = match &config.splits.holdout {
        None => (rows, Vec::new()),
        Some(h) => {
            let split = holdout(rows, h);
            warnings.extend(split.warnings);
            (split.rest, split.live)
        }
    };
    let splits = Splits {
        live,
        ..stratified_split(rows, &config.splits, config.seed)?
    };

    let format = if config.formats.contains(&OutputFormat::Parquet) {
        OutputFormat::Parquet
    } else {
        OutputFormat::Jsonl
    };
    let data_files = splits
        .named()
        .into_iter()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(name, _)| (name.to_string(), format!("{name}.{}", format.extension())))
        .collect();
    let card = DatasetCard {
        name: config.name.clone(),
        inputs: config
            .inputs
            .iter()
            .map(|i| i.path.display().to_string())
            .collect(),
        rows_read,
        stages: reports,
        audit,
        seed: config.seed,
        warnings,
        data_files,
        ..Default::default()
    }
    .with_splits(&splits);

    drop(split_phase);
    let _write = Phase::start(observer, "write");
    let out = &config.output_dir;
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.clone(),
        source,
    })?;
    let mut files = Vec::new();
    // One schema for every Parquet split, typed from all of them.
    let schema = config
        .formats
        .contains(&OutputFormat::Parquet)
        .then(|| ParquetSchema::of(splits.named().into_iter().flat_map(|(_, s)| s.iter())));
    for format in [OutputFormat::Jsonl, OutputFormat::Parquet] {
        let wanted = config.formats.contains(&format);
        for (name, split) in splits.named() {
            let path = out.join(format!("{name}.{}", format.extension()));
            if split.is_empty() || !wanted {
                // A stale file from an earlier run would read as this run's split.
                if path.exists() {
                    std::fs::remove_file(&path).map_err(|source| Error::Io {
                        path: path.clone(),
                        source,
                    })?;
                }
                continue;
            }
            match format {
                OutputFormat::Jsonl => write_jsonl(&path, split)?,
                OutputFormat::Parquet => {
                    let schema = schema.clone().expect("computed when Parquet is wanted");
                    let mut writer = ParquetWriter::create(&path).with_schema(schema);
                    for example in split {
                        writer.write(example)?;
                    }
                    writer.finish()?
                }
            };
            files.push(path);
        }
    }
    let n_dropped = dropped.len();
    files.push(write_lines(&out.join("dropped.jsonl"), &dropped)?);
    let card_json = serde_json::to_string_pretty(&card).map_err(|e| Error::Io {
        path: out.join("card.json"),
        source: e.into(),
    })?;
    files.push(write_atomic(&out.join("card.json"), card_json.as_bytes())?);
    files.push(write_atomic(
        &out.join("README.md"),
        card.to_markdown().as_bytes(),
    )?);
    Ok(CurateReport {
        card,
        files,
        dropped: n_dropped,
    })
}

fn write_lines(path: &Path, dropped: &[Dropped]) -> Result<PathBuf> {
    let mut text = String::new();
    for d in dropped {
        text.push_str(&serde_json::to_string(d).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e.into(),
        })?);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// [`slm_core::io::write_atomic`], returning the path written.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    slm_core::io::write_atomic(path, bytes)?;
    Ok(path.to_path_buf())
}
