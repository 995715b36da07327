//! The [`Stage`] trait and what a stage reports: kept examples, [`Dropped`] records and a
//! [`StageReport`] with counts per reason.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use slm_energy::{EnergyTracker, Lifecycle, NoopObserver, ObservedPhase, PhaseObserver};

use crate::error::Result;
use crate::example::Example;
use crate::stages::DuplicateGroup;

/// One removed row: which example, which stage removed it and why.
///
/// `reason` is a short, stable category (`too_short`, `near_duplicate`, ...) that reports
/// count by; `detail` says more about this row (the duplicate it matched, the failing value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    /// The example's id.
    pub id: String,
    /// The stage's name.
    pub stage: String,
    /// The category of the drop.
    pub reason: String,
    /// Row-specific evidence (may be empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Dropped {
    /// A drop without detail.
    pub fn new(id: impl Into<String>, stage: impl Into<String>, reason: impl Into<String>) -> Self {
        Dropped {
            id: id.into(),
            stage: stage.into(),
            reason: reason.into(),
            detail: String::new(),
        }
    }

    /// With row-specific evidence.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// What one stage did: kept examples and dropped rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageOutput {
    /// The examples that go on, in input order.
    pub kept: Vec<Example>,
    /// The rows removed, in input order.
    pub dropped: Vec<Dropped>,
    /// How many kept examples the stage changed (normalisation, scrubbing).
    pub modified: usize,
    /// The groups of duplicates a dedup stage found (each kept member first), for the label
    /// audit; empty for other stages.
    pub duplicates: Vec<DuplicateGroup>,
}

/// The counts a stage reports: in, out, and dropped by reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// The stage's name.
    pub stage: String,
    /// Examples that went in.
    pub input: usize,
    /// Examples that came out.
    pub output: usize,
    /// Examples the stage changed but kept.
    pub modified: usize,
    /// Dropped rows per reason.
    pub dropped: BTreeMap<String, usize>,
}

impl StageReport {
    /// The report for `output` of a stage named `stage` that got `input` examples.
    pub fn new(stage: impl Into<String>, input: usize, output: &StageOutput) -> Self {
        StageReport {
            stage: stage.into(),
            input,
            output: output.kept.len(),
            modified: output.modified,
            dropped: count_reasons(&output.dropped),
        }
    }

    /// All dropped rows, whatever the reason.
    pub fn dropped_total(&self) -> usize {
        self.dropped.values().sum()
    }
}

/// How many of `dropped` have each reason.
pub(crate) fn count_reasons(dropped: &[Dropped]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for d in dropped {
        *counts.entry(d.reason.clone()).or_insert(0) += 1;
    }
    counts
}

/// One curation step: takes examples, returns the kept ones and a record for each one it removed.
///
/// A trait so a user inserts their own filter into [`Pipeline`] next to the built-in stages
/// (normalise, dedup, quality, PII, decontamination): the pipeline only needs a name and this
/// one method. A stage sees the whole batch because some decisions are global (deduplication
/// keeps the first of a cluster); per-example stages use [`filter_map_examples`], which runs
/// them in parallel with rayon and keeps input order.
///
/// ```
/// use slm_data::{Dropped, Example, Pipeline, Result, Stage, StageOutput};
///
/// /// Drops examples without a label.
/// struct NeedsLabel;
///
/// impl Stage for NeedsLabel {
///     fn name(&self) -> &str { "needs_label" }
///     fn apply(&self, examples: Vec<Example>) -> Result<StageOutput> {
///         let (kept, gone): (Vec<_>, Vec<_>) = examples.into_iter().partition(|e| e.label.is_some());
///         let dropped = gone.iter().map(|e| Dropped::new(&e.id, self.name(), "no_label")).collect();
///         Ok(StageOutput { kept, dropped, ..Default::default() })
///     }
/// }
///
/// # fn main() -> Result<()> {
/// let rows = vec![Example::new("1", "a").with_label("x"), Example::new("2", "b")];
/// let out = Pipeline::new().with_stage(NeedsLabel).run(rows)?;
/// assert_eq!(out.kept.len(), 1);
/// assert_eq!(out.reports[0].dropped["no_label"], 1);
/// # Ok(()) }
/// ```
pub trait Stage: Send + Sync {
    /// A short name, used in reports and `dropped.jsonl`.
    fn name(&self) -> &str;

    /// Runs the stage over `examples`.
    ///
    /// # Errors
    /// Only for failures that stop the run (I/O, a bad configuration); a bad row is a
    /// [`Dropped`] record, not an error.
    fn apply(&self, examples: Vec<Example>) -> Result<StageOutput>;
}

/// What a per-example function decides about one example.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Keep it unchanged.
    Keep,
    /// Keep this changed version.
    Modified(Example),
    /// Drop it for this reason and detail.
    Drop {
        /// The category.
        reason: String,
        /// The evidence.
        detail: String,
    },
}

impl Verdict {
    /// [`Verdict::Keep`] when `input` and `target` equal the example's own, else
    /// [`Verdict::Modified`] with them: the verdict of every stage that rewrites text.
    pub fn rewritten(example: &Example, input: String, target: Option<String>) -> Self {
        if input == example.input && target == example.target {
            return Verdict::Keep;
        }
        let mut changed = example.clone();
        changed.input = input;
        changed.target = target;
        Verdict::Modified(changed)
    }

    /// A drop without detail.
    pub fn drop(reason: impl Into<String>) -> Self {
        Verdict::Drop {
            reason: reason.into(),
            detail: String::new(),
        }
    }
}

/// Runs `f` on every example in parallel (rayon) and assembles a [`StageOutput`] in input order.
pub fn filter_map_examples(
    stage: &str,
    examples: Vec<Example>,
    f: impl Fn(&Example) -> Verdict + Sync,
) -> StageOutput {
    let verdicts: Vec<Verdict> = examples.par_iter().map(&f).collect();
    let mut out = StageOutput::default();
    for (example, verdict) in examples.into_iter().zip(verdicts) {
        match verdict {
            Verdict::Keep => out.kept.push(example),
            Verdict::Modified(changed) => {
                out.modified += usize::from(changed != example);
                out.kept.push(changed);
            }
            Verdict::Drop { reason, detail } => out
                .dropped
                .push(Dropped::new(example.id, stage, reason).with_detail(detail)),
        }
    }
    out
}

/// Stages run one after the other, collecting every drop and report.
#[derive(Default)]
pub struct Pipeline {
    stages: Vec<Box<dyn Stage>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.stages.iter().map(|s| s.name()).collect();
        f.debug_struct("Pipeline").field("stages", &names).finish()
    }
}

/// What a [`Pipeline`] run produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineOutput {
    /// The examples that passed every stage.
    pub kept: Vec<Example>,
    /// Every removed row, stage by stage.
    pub dropped: Vec<Dropped>,
    /// One report per stage, in order.
    pub reports: Vec<StageReport>,
    /// The duplicate groups the dedup stages found, stage by stage.
    pub duplicates: Vec<DuplicateGroup>,
}

/// What a curation run tells the program running it: each phase's start and end (a
/// [`PhaseObserver`], so an [`EnergyTracker`] charges each stage to its own line of the
/// Energy-to-Solution report) and how many rows a phase has done, for progress bars.
pub trait CurateObserver: PhaseObserver {
    /// `done` of `total` rows (`None`: not known yet, as while reading) of the phase `phase`
    /// are through. Called at a phase's start and end and, where a phase streams (reading),
    /// every few thousand rows in between.
    fn rows(&self, _phase: &str, _done: usize, _total: Option<usize>) {}
}

impl CurateObserver for NoopObserver {}

impl CurateObserver for EnergyTracker {}

/// A phase of a curation run (a [`ObservedPhase`], so dropping it ends the phase, an error
/// included) that also tells the observer how many rows it has done.
pub(crate) struct Phase<'a> {
    observer: &'a dyn CurateObserver,
    guard: ObservedPhase<'a>,
}

impl<'a> Phase<'a> {
    /// The phase `path`.
    pub(crate) fn new(observer: &'a dyn CurateObserver, path: String) -> Self {
        Phase {
            observer,
            guard: ObservedPhase::new(observer, path),
        }
    }

    /// The phase `curation/<name>`.
    pub(crate) fn start(observer: &'a dyn CurateObserver, name: &str) -> Self {
        Phase::new(observer, format!("{}/{name}", Lifecycle::Curation))
    }

    /// Tells the observer how far the phase is.
    pub(crate) fn rows(&self, done: usize, total: Option<usize>) {
        self.observer.rows(self.guard.path(), done, total);
    }
}

impl Extend<Box<dyn Stage>> for Pipeline {
    fn extend<I: IntoIterator<Item = Box<dyn Stage>>>(&mut self, stages: I) {
        self.stages.extend(stages);
    }
}

impl Pipeline {
    /// An empty pipeline (passes everything through).
    pub fn new() -> Self {
        Pipeline::default()
    }

    /// Appends a stage.
    pub fn with_stage(mut self, stage: impl Stage + 'static) -> Self {
        self.stages.push(Box::new(stage));
        self
    }

    /// Appends a boxed stage.
    pub fn push(&mut self, stage: Box<dyn Stage>) {
        self.stages.push(stage);
    }

    /// The stages' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    /// Runs every stage in order.
    ///
    /// # Errors
    /// The first stage error.
    pub fn run(&self, examples: Vec<Example>) -> Result<PipelineOutput> {
        self.run_observed(examples, &NoopObserver)
    }

    /// [`run`](Self::run), each stage a phase `curation/<stage name>` of `observer` with its
    /// rows in and out.
    ///
    /// # Errors
    /// The first stage error.
    pub fn run_observed(
        &self,
        examples: Vec<Example>,
        observer: &dyn CurateObserver,
    ) -> Result<PipelineOutput> {
        let mut out = PipelineOutput {
            kept: examples,
            ..Default::default()
        };
        for stage in &self.stages {
            let phase = Phase::start(observer, stage.name());
            let input = out.kept.len();
            phase.rows(0, Some(input));
            let step = stage.apply(std::mem::take(&mut out.kept))?;
            phase.rows(input, Some(input));
            out.reports
                .push(StageReport::new(stage.name(), input, &step));
            out.dropped.extend(step.dropped);
            out.duplicates.extend(step.duplicates);
            out.kept = step.kept;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct DropOdd;
    impl Stage for DropOdd {
        fn name(&self) -> &str {
            "drop_odd"
        }
        fn apply(&self, examples: Vec<Example>) -> Result<StageOutput> {
            Ok(filter_map_examples(self.name(), examples, |e| {
                if e.input.len() % 2 == 1 {
                    Verdict::drop("odd")
                } else {
                    Verdict::Modified(e.clone().with_label("even"))
                }
            }))
        }
    }

    #[test]
    fn a_pipeline_reports_counts_and_keeps_order() {
        let rows: Vec<Example> = (0..100)
            .map(|i| Example::new(i.to_string(), "x".repeat(i)))
            .collect();
        let out = Pipeline::new().with_stage(DropOdd).run(rows).unwrap();
        assert_eq!(out.kept.len(), 50);
        assert!(
            out.kept
                .windows(2)
                .all(|w| w[0].input.len() < w[1].input.len())
        );
        let r = &out.reports[0];
        assert_eq!((r.input, r.output, r.modified), (100, 50, 50));
        assert_eq!(r.dropped["odd"], 50);
        assert_eq!(out.dropped[0], Dropped::new("1", "drop_odd", "odd"));
    }
}
