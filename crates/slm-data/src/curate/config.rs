//! [`CurateConfig`]: everything one curation run needs, read from TOML or JSON.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::curate::registry::{CustomStageConfig, StageRegistry, StageSlot};
use crate::curate::split::SplitConfig;
use crate::curate::stage::{Pipeline, Stage};
use crate::error::{Error, Result};
use crate::fields::FieldMap;
use crate::stages::{
    Decontaminate, DecontaminateConfig, ExactDedup, LengthConfig, LengthFilter, MinHashConfig,
    NearDedup, Normalize, NormalizeConfig, PiiConfig, PiiScrubber, QualityConfig, QualityFilter,
};

/// One input dataset: a path [`read_any`](crate::read_any) opens and which fields play which role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// The file, folder or glob pattern over shards (`data/train-*.parquet`; relative paths
    /// are relative to the config file).
    pub path: PathBuf,
    /// The field holding the input text (`text` by default).
    #[serde(default = "default_text_field")]
    pub text_field: String,
    /// The field holding the label, if any.
    #[serde(default)]
    pub label_field: Option<String>,
    /// The field holding the target text, if any.
    #[serde(default)]
    pub target_field: Option<String>,
    /// The field holding the id, if any (else `<file>:<line>`).
    #[serde(default)]
    pub id_field: Option<String>,
}

fn default_text_field() -> String {
    "text".to_string()
}

impl InputConfig {
    /// The input at `path` with the input in `text`, nothing else mapped.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        InputConfig {
            path: path.into(),
            text_field: default_text_field(),
            label_field: None,
            target_field: None,
            id_field: None,
        }
    }

    /// The [`FieldMap`] the reader gets.
    pub fn fields(&self) -> FieldMap {
        FieldMap {
            input: self.text_field.clone(),
            target: self.target_field.clone(),
            label: self.label_field.clone(),
            id: self.id_field.clone(),
        }
    }
}

/// An eval set decontamination checks against: usually the labelled val/test split a user
/// already has, in the same layout as the training data.
///
/// It takes the same field mapping as an input (`text_field`, `id_field`, `label_field`,
/// `target_field`); only its text is used, so other columns, mapped or not, are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// The eval dataset (relative to the config file; globs over shards too).
    pub path: PathBuf,
    /// The field holding its text (`text` by default).
    #[serde(default = "default_text_field")]
    pub text_field: String,
    /// The field holding the label, if any.
    #[serde(default)]
    pub label_field: Option<String>,
    /// The field holding the target text, if any.
    #[serde(default)]
    pub target_field: Option<String>,
    /// The field holding the id, if any.
    #[serde(default)]
    pub id_field: Option<String>,
    /// Decontamination settings (every eval set of a run must use the same).
    #[serde(default)]
    pub decontaminate: DecontaminateConfig,
}

impl EvalConfig {
    /// The eval set at `path`, its text in `text`, default decontamination.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EvalConfig {
            path: path.into(),
            text_field: default_text_field(),
            label_field: None,
            target_field: None,
            id_field: None,
            decontaminate: DecontaminateConfig::default(),
        }
    }

    /// The eval set as an input, with its field mapping.
    pub fn input(&self) -> InputConfig {
        InputConfig {
            path: self.path.clone(),
            text_field: self.text_field.clone(),
            label_field: self.label_field.clone(),
            target_field: self.target_field.clone(),
            id_field: self.id_field.clone(),
        }
    }
}

/// `[eval]` (one table) or `[[eval]]` (several), as the config file has it.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<EvalConfig>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Box<EvalConfig>),
        Many(Vec<EvalConfig>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(e) => vec![*e],
        OneOrMany::Many(v) => v,
    })
}

/// Which stages run, with their thresholds; the order is fixed: normalize, length, quality,
/// pii, exact dedup, near dedup, decontaminate (when [`CurateConfig::eval`] names an eval set),
/// with [`custom`](Self::custom) stages placed after the slot each names.
///
/// In a config file, a stage runs when its table is present (`[stages.normalize]`, even
/// empty, runs it with default settings) and `exact_dedup = true` turns exact dedup on.
/// Without any `[stages]` table, [`StagesConfig::default`] runs: normalize, pii, exact and
/// near dedup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagesConfig {
    /// Unicode/whitespace/HTML normalisation.
    #[serde(default)]
    pub normalize: Option<NormalizeConfig>,
    /// Length bounds.
    #[serde(default)]
    pub length: Option<LengthConfig>,
    /// Gopher-style quality filter.
    #[serde(default)]
    pub quality: Option<QualityConfig>,
    /// PII scrubbing.
    #[serde(default)]
    pub pii: Option<PiiConfig>,
    /// Exact deduplication.
    #[serde(default)]
    pub exact_dedup: bool,
    /// MinHash near-duplicate removal (datatrove's settings by default).
    #[serde(default)]
    pub near_dedup: Option<MinHashConfig>,
    /// Stages from a [`StageRegistry`](crate::StageRegistry) (`[[stages.custom]]` tables),
    /// each after its [`StageSlot`](crate::StageSlot).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<CustomStageConfig>,
}

impl StagesConfig {
    /// The ordered list of stages this config runs, as one [`Pipeline`]: the built-in stages
    /// in their fixed order (normalize, length, quality, pii, exact dedup, near dedup, then
    /// `decontaminate` when given), with each custom stage of `registry` right after the slot
    /// it names (several after one slot keep their config order).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an unknown custom stage or bad params.
    pub fn pipeline(
        &self,
        registry: &StageRegistry,
        decontaminate: Option<Decontaminate>,
    ) -> Result<Pipeline> {
        fn boxed(stage: impl Stage + 'static) -> Option<Box<dyn Stage>> {
            Some(Box::new(stage))
        }
        let built_in: [(StageSlot, Option<Box<dyn Stage>>); 8] = [
            (StageSlot::Read, None),
            (
                StageSlot::Normalize,
                self.normalize
                    .clone()
                    .and_then(|c| boxed(Normalize::new(c))),
            ),
            (
                StageSlot::Length,
                self.length
                    .clone()
                    .and_then(|c| boxed(LengthFilter::new(c))),
            ),
            (
                StageSlot::Quality,
                self.quality
                    .clone()
                    .and_then(|c| boxed(QualityFilter::new(c))),
            ),
            (
                StageSlot::Pii,
                self.pii.clone().and_then(|c| boxed(PiiScrubber::new(c))),
            ),
            (
                StageSlot::ExactDedup,
                self.exact_dedup.then(|| boxed(ExactDedup)).flatten(),
            ),
            (
                StageSlot::NearDedup,
                self.near_dedup
                    .clone()
                    .and_then(|c| boxed(NearDedup::new(c))),
            ),
            (StageSlot::Decontaminate, decontaminate.and_then(boxed)),
        ];
        let mut custom = self
            .custom
            .iter()
            .map(|c| Ok((c.after, registry.build(c)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut pipeline = Pipeline::new();
        for (slot, stage) in built_in {
            pipeline.extend(stage);
            let (here, later): (Vec<_>, Vec<_>) = custom.into_iter().partition(|(s, _)| *s == slot);
            pipeline.extend(here.into_iter().map(|(_, stage)| stage));
            custom = later;
        }
        Ok(pipeline)
    }
}

impl Default for StagesConfig {
    fn default() -> Self {
        StagesConfig {
            normalize: Some(NormalizeConfig::default()),
            length: None,
            quality: None,
            pii: Some(PiiConfig::default()),
            exact_dedup: true,
            near_dedup: Some(MinHashConfig::default()),
            custom: Vec::new(),
        }
    }
}

/// A file format [`curate`](crate::curate) writes each split in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// JSON Lines (`train.jsonl`, ...).
    Jsonl,
    /// Apache Parquet (`train.parquet`, ...), all splits with one schema.
    Parquet,
}

impl OutputFormat {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::Parquet => "parquet",
        }
    }
}

fn default_formats() -> Vec<OutputFormat> {
    vec![OutputFormat::Jsonl]
}

/// A curation run: inputs, stages, eval set, splits, seed and output folder.
///
/// ```toml
/// name = "spam"
/// output_dir = "curated"
/// seed = 42
///
/// [[inputs]]
/// path = "data/spamassassin/train.jsonl"
/// text_field = "text"
/// label_field = "label"
///
/// [[eval]]                      # one [eval] table, or several [[eval]] ones
/// path = "data/spamassassin/val.jsonl"
/// text_field = "text"
/// id_field = "id"
/// label_field = "label"
///
/// [[eval]]
/// path = "data/spamassassin/test.parquet"
/// text_field = "text"
///
/// [stages.normalize]
/// strip_html = true
/// unicode = "nfkc"
///
/// [stages.quality]
/// min_words = 3
///
/// [[stages.custom]]
/// name = "regex_filter"
/// after = "normalize"
/// params = { pattern = "(?i)^this is a multi-part message in mime format\\.?$", action = "drop" }
///
/// [splits]
/// val = 0.1
/// test = 0.1
/// holdout = { by = "time", field = "date", fraction = 0.1 }
/// ```
///
/// `formats = ["jsonl", "parquet"]` writes each split in both formats (JSONL only by
/// default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurateConfig {
    /// The dataset's name (for the card).
    #[serde(default = "default_name")]
    pub name: String,
    /// The input datasets, concatenated in order.
    pub inputs: Vec<InputConfig>,
    /// The eval sets for decontamination (`[eval]` or several `[[eval]]` tables).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub eval: Vec<EvalConfig>,
    /// The stages.
    #[serde(default)]
    pub stages: StagesConfig,
    /// Split fractions and the holdout.
    #[serde(default)]
    pub splits: SplitConfig,
    /// The split seed.
    #[serde(default)]
    pub seed: u64,
    /// Where the splits, card and `dropped.jsonl` go (created if missing).
    pub output_dir: PathBuf,
    /// The formats each split is written in (`["jsonl"]` by default).
    #[serde(default = "default_formats")]
    pub formats: Vec<OutputFormat>,
}

fn default_name() -> String {
    "dataset".to_string()
}

impl CurateConfig {
    /// A config with one input, default stages and splits.
    pub fn new(inputs: Vec<InputConfig>, output_dir: impl Into<PathBuf>) -> Self {
        CurateConfig {
            name: default_name(),
            inputs,
            eval: Vec::new(),
            stages: StagesConfig::default(),
            splits: SplitConfig::default(),
            seed: 0,
            output_dir: output_dir.into(),
            formats: default_formats(),
        }
    }

    /// Parses TOML text.
    ///
    /// # Errors
    /// [`Error::ConfigParse`] naming `path` (used only in the message).
    pub fn from_toml_str(text: &str, path: impl AsRef<Path>) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::ConfigParse {
            path: path.as_ref().to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Parses JSON text.
    ///
    /// # Errors
    /// [`Error::ConfigParse`] naming `path` (used only in the message).
    pub fn from_json_str(text: &str, path: impl AsRef<Path>) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::ConfigParse {
            path: path.as_ref().to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads a `.json` file as JSON and anything else as TOML, then makes relative input, eval
    /// and output paths relative to the file's folder and validates.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::ConfigParse`], [`Error::InvalidConfig`].
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let mut config = if is_json {
            Self::from_json_str(&text, path)?
        } else {
            Self::from_toml_str(&text, path)?
        };
        if let Some(base) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let rebase = |p: &mut PathBuf| {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            };
            config.inputs.iter_mut().for_each(|i| rebase(&mut i.path));
            config.eval.iter_mut().for_each(|e| rebase(&mut e.path));
            rebase(&mut config.output_dir);
        }
        config.validate()?;
        Ok(config)
    }

    /// [`Error::InvalidConfig`] for no inputs, no output format or one named twice, bad
    /// split fractions or a field mapped twice.
    pub fn validate(&self) -> Result<()> {
        if self.inputs.is_empty() {
            return Err(Error::InvalidConfig {
                message: "no inputs".to_string(),
            });
        }
        let mut formats = self.formats.clone();
        formats.sort_by_key(|f| f.extension());
        formats.dedup();
        if self.formats.is_empty() || formats.len() != self.formats.len() {
            return Err(Error::InvalidConfig {
                message:
                    "formats: name each of \"jsonl\" and \"parquet\" at most once, and at least one"
                        .to_string(),
            });
        }
        for input in self
            .inputs
            .iter()
            .cloned()
            .chain(self.eval.iter().map(EvalConfig::input))
        {
            input.fields().validate()?;
        }
        if let Some(other) = self
            .eval
            .iter()
            .find(|e| e.decontaminate != self.eval[0].decontaminate)
        {
            return Err(Error::InvalidConfig {
                message: format!(
                    "eval sets {} and {} have different decontaminate settings; one check runs \
                     against all eval sets, so give them the same",
                    self.eval[0].path.display(),
                    other.path.display()
                ),
            });
        }
        if let Some(m) = &self.stages.near_dedup
            && (m.n_grams == 0 || m.num_buckets == 0 || m.hashes_per_bucket == 0)
        {
            return Err(Error::InvalidConfig {
                message: "near_dedup: n_grams, num_buckets and hashes_per_bucket must be positive"
                    .to_string(),
            });
        }
        self.splits.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curate::split::HoldoutConfig;

    #[test]
    fn toml_and_json_read_the_same_config() {
        let toml = r#"
            name = "spam"
            output_dir = "out"
            seed = 3
            [[inputs]]
            path = "a.jsonl"
            label_field = "label"
            [eval]
            path = "eval.jsonl"
            decontaminate = { n = 8 }
            [stages]
            exact_dedup = false
            [stages.quality]
            min_words = 3
            [splits]
            val = 0.2
            holdout = { by = "source", field = "src", values = ["web"] }
        "#;
        let c = CurateConfig::from_toml_str(toml, "c.toml").unwrap();
        assert_eq!(
            c.inputs[0].fields(),
            FieldMap::new("text").with_label("label")
        );
        assert_eq!(c.eval[0].decontaminate.n, 8);
        assert_eq!(c.stages.quality.as_ref().unwrap().min_words, Some(3));
        assert!(
            c.stages.near_dedup.is_none() && c.stages.normalize.is_none() && !c.stages.exact_dedup
        );
        let bare = CurateConfig::from_toml_str(
            "output_dir = \"o\"\n[[inputs]]\npath = \"a.jsonl\"\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(bare.stages, StagesConfig::default());
        assert!(matches!(
            c.splits.holdout,
            Some(HoldoutConfig::Source { .. })
        ));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(CurateConfig::from_json_str(&json, "c.json").unwrap(), c);
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let err =
            CurateConfig::from_toml_str("output_dir = \"o\"\ninputs = []\nsed = 1\n", "c.toml")
                .unwrap_err();
        assert!(
            err.to_string().contains("c.toml: invalid curation config"),
            "{err}"
        );
        let c = CurateConfig::from_toml_str("output_dir = \"o\"\ninputs = []\n", "c.toml").unwrap();
        assert!(matches!(c.validate(), Err(Error::InvalidConfig { .. })));
    }
}
