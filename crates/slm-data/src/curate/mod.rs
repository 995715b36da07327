//! Curation: the [`Stage`] trait and [`Pipeline`], splits, the label audit, the dataset card,
//! and [`curate()`], which runs all of it from a [`CurateConfig`].
//!
//! Public as `slm_data::curation`; what a pipeline is composed from is also at the crate root
//! (`slm_data::curate`, `slm_data::CurateConfig`, `slm_data::Stage`, ...). Besides: splitting
//! ([`stratified_split`], [`holdout`], [`parse_timestamp`]), the label audit ([`LabelAudit`]),
//! the dataset card ([`DatasetCard`]) and the pieces of a run ([`read_inputs`], [`READ_STAGE`]).

pub(crate) mod audit;
pub(crate) mod card;
pub(crate) mod config;
pub(crate) mod registry;
pub(crate) mod run;
pub(crate) mod split;
pub(crate) mod stage;

pub use audit::{LabelAudit, LabelConflict, NO_LABEL, label_counts};
pub use card::{DatasetCard, LENGTH_BUCKETS, LengthBucket, SplitCard, length_histogram};
pub use config::{CurateConfig, EvalConfig, InputConfig, OutputFormat, StagesConfig};
pub use registry::{CustomStageConfig, StageRegistry, StageSlot};
pub use run::{CurateReport, READ_STAGE, curate, curate_with, read_inputs};
pub use split::{
    HoldoutConfig, HoldoutSplit, SplitConfig, Splits, holdout, parse_timestamp, stratified_split,
};
pub use stage::{
    CurateObserver, Dropped, Pipeline, PipelineOutput, Stage, StageOutput, StageReport, Verdict,
    filter_map_examples,
};
