//! What a pipeline run does: the data, the models, each phase's budget, and where it writes.
//! Every field has a default (the SpamAssassin sample, SmolLM2, a ~20-minute budget on two
//! cores); [`PipelineConfig::quick`] shrinks the budgets to a few minutes, and a TOML file
//! (`slm pipeline --config pipeline.toml`) sets any of them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

/// One pipeline run. Relative paths in a TOML file are relative to the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Everything the run writes (phase artifacts, models, the report under `report/`).
    pub out: PathBuf,
    /// The data: a `slm data curate` TOML config, or a labelled file any slm-data reader reads
    /// (JSONL, CSV, Parquet, ...; fields `text` and `label`), curated with the default stages.
    pub data: PathBuf,
    /// The closed label set.
    pub labels: Vec<String>,
    /// The base model (a GGUF or Hugging Face directory) the teacher is tuned from; `None`
    /// is SmolLM2-135M-Instruct from the slm cache (`scripts/fetch-smollm2.sh` puts it there).
    pub base: Option<PathBuf>,
    /// A larger general model also benchmarked zero-shot (any GGUF), for the comparison the
    /// Green-AI claim needs.
    pub baseline: Option<PathBuf>,
    /// Start over instead of resuming from the finished phases in `out`.
    pub fresh: bool,
    /// Tokens per prompt (emails are cut to fit, the instruction and label never).
    pub seq_len: usize,
    /// Examples of each label shown in the few-shot baseline's prompt.
    pub few_shot: usize,
    /// The teacher: LoRA on the base model.
    pub teacher: TeacherConfig,
    /// The student: a shallower copy of the tuned teacher, distilled.
    pub student: StudentConfig,
    /// Pruning and quantization of the student.
    pub compress: CompressConfig,
    /// Test examples benchmarked (`None`: the whole test split).
    pub test_limit: Option<usize>,
    /// Examples of the single-stream latency run (each scored alone).
    pub latency_examples: usize,
    /// Queries the chosen model is expected to answer over its life (Energy-to-Solution).
    pub lifetime_queries: u64,
    /// The largest accuracy drop (absolute) a compressed model may show against its parent and
    /// still be chosen for export.
    pub accept_margin: f64,
    /// The grid region for gCO2e (ISO code such as `FR`; `None`: the world average).
    pub region: Option<String>,
    /// Threads of the CPU fast path (`None`: every core).
    pub threads: Option<usize>,
}

/// LoRA fine-tuning of the base model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeacherConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Rows per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// LoRA rank.
    pub lora_r: usize,
    /// LoRA alpha.
    pub lora_alpha: f64,
    /// Training examples used (`None`: the whole train split).
    pub train_limit: Option<usize>,
}

/// Distillation into a shallower student.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StudentConfig {
    /// Keep every `every`-th layer of the teacher (2: half the layers).
    pub every: usize,
    /// Optimizer steps.
    pub steps: u64,
    /// Rows per step.
    pub batch_size: usize,
    /// Peak learning rate (full fine-tuning of the student).
    pub lr: f64,
    /// Teacher tokens kept per position in the cached soft labels.
    pub top_k: usize,
    /// Softening temperature.
    pub temperature: f64,
    /// Weight of the soft targets against the hard labels.
    pub alpha: f64,
    /// Evaluate the loss on the val split every this many steps (and before the first) and
    /// keep the weights of the lowest (`None`: the last step's weights). Full tuning of the
    /// half-depth student on a few hundred emails overfits within its budget.
    pub eval_every: Option<u64>,
}

/// Pruning with a recovery fine-tune, then quantization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompressConfig {
    /// `wanda-2:4` (2 of every 4 input weights, by Wanda's score), `wanda` (unstructured) or
    /// `none`.
    pub prune: String,
    /// Sparsity for unstructured `wanda` (2:4 is always 0.5).
    pub sparsity: f64,
    /// Calibration prompts for Wanda's activation norms.
    pub calibration_examples: usize,
    /// Recovery fine-tuning steps after pruning (zeros kept).
    pub recovery_steps: u64,
    /// Recovery learning rate.
    pub recovery_lr: f64,
    /// Evaluate the recovery on the val split every this many steps (and before the first,
    /// on the pruned weights) and keep the weights of the lowest val loss: a recovery that
    /// does not help keeps the pruned model as it is (`None`: the last step's weights).
    pub recovery_eval_every: Option<u64>,
    /// GGUF file types the pruned student is quantized to (`Q8_0`, `Q4_0`, `Q4_K_M`, ...).
    pub quantize: Vec<String>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            out: PathBuf::from("target/pipeline"),
            data: PathBuf::from("data/spamassassin/curate.toml"),
            labels: vec!["ham".into(), "spam".into()],
            base: None,
            baseline: None,
            fresh: false,
            seq_len: 128,
            few_shot: 1,
            teacher: TeacherConfig::default(),
            student: StudentConfig::default(),
            compress: CompressConfig::default(),
            test_limit: None,
            latency_examples: 16,
            lifetime_queries: 1_000_000,
            accept_margin: 0.02,
            region: None,
            threads: None,
        }
    }
}

impl Default for TeacherConfig {
    fn default() -> Self {
        Self {
            steps: 120,
            batch_size: 4,
            lr: 1e-3,
            lora_r: 16,
            lora_alpha: 32.0,
            train_limit: None,
        }
    }
}

impl Default for StudentConfig {
    fn default() -> Self {
        Self {
            every: 2,
            steps: 160,
            batch_size: 4,
            lr: 1e-4,
            top_k: 16,
            temperature: 2.0,
            alpha: 0.5,
            eval_every: Some(20),
        }
    }
}

impl Default for CompressConfig {
    fn default() -> Self {
        Self {
            prune: "wanda".into(),
            sparsity: 0.3,
            calibration_examples: 32,
            recovery_steps: 64,
            recovery_lr: 1e-4,
            recovery_eval_every: Some(16),
            quantize: vec!["Q8_0".into(), "Q4_K_M".into()],
        }
    }
}

impl PipelineConfig {
    /// The `--quick` budgets: a slice of every phase, a few minutes on two cores (what CI runs).
    pub fn quick(mut self) -> Self {
        self.teacher.steps = 40;
        self.student.steps = 80;
        self.compress.recovery_steps = 32;
        self.latency_examples = 4;
        self.lifetime_queries = 100_000;
        self
    }

    /// Reads a TOML file; its relative paths are taken relative to the file.
    ///
    /// # Errors
    /// [`Error::Config`] for a file that cannot be read or parsed, or an unknown key.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        rebase(&mut config.out);
        rebase(&mut config.data);
        config.base.as_mut().map(rebase);
        config.baseline.as_mut().map(rebase);
        Ok(config)
    }

    /// Checks the settings before anything runs.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: &str| Err(Error::Invalid(format!("{field}: {why}")));
        if self.labels.len() < 2 || self.labels.iter().any(String::is_empty) {
            return bad("labels", "at least two non-empty labels");
        }
        if self.seq_len < 16 {
            return bad("seq_len", "at least 16 tokens");
        }
        if self.teacher.steps == 0 || self.teacher.batch_size == 0 {
            return bad("teacher", "steps and batch_size must be positive");
        }
        if self.student.every < 2 {
            return bad(
                "student.every",
                "at least 2 (the student keeps every k-th layer)",
            );
        }
        if self.student.steps == 0 || self.student.batch_size == 0 || self.student.top_k == 0 {
            return bad("student", "steps, batch_size and top_k must be positive");
        }
        if self.student.eval_every == Some(0) {
            return bad("student.eval_every", "at least 1 step (or absent)");
        }
        if self.compress.recovery_eval_every == Some(0) {
            return bad(
                "compress.recovery_eval_every",
                "at least 1 step (or absent)",
            );
        }
        if !["wanda-2:4", "wanda", "none"].contains(&self.compress.prune.as_str()) {
            return bad("compress.prune", "one of wanda-2:4, wanda, none");
        }
        if !(0.0..1.0).contains(&self.compress.sparsity) {
            return bad("compress.sparsity", "in [0, 1)");
        }
        if self.lifetime_queries == 0 {
            return bad("lifetime_queries", "at least 1");
        }
        if self.latency_examples == 0 {
            return bad("latency_examples", "at least 1");
        }
        if !(0.0..=1.0).contains(&self.accept_margin) {
            return bad("accept_margin", "in [0, 1]");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults_and_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipeline.toml");
        std::fs::write(
            &path,
            "out = \"run\"\ndata = \"mail.jsonl\"\n[teacher]\nsteps = 7\n[compress]\nquantize = [\"Q8_0\"]\n",
        )
        .unwrap();
        let c = PipelineConfig::from_toml_file(&path).unwrap();
        assert_eq!(c.out, dir.path().join("run"));
        assert_eq!(c.data, dir.path().join("mail.jsonl"));
        assert_eq!(c.teacher.steps, 7);
        assert_eq!(c.teacher.batch_size, 4);
        assert_eq!(c.compress.quantize, ["Q8_0"]);
        c.validate().unwrap();

        std::fs::write(&path, "studnet = 3\n").unwrap();
        let err = PipelineConfig::from_toml_file(&path).unwrap_err();
        assert!(err.to_string().contains("studnet"), "{err}");
    }

    #[test]
    fn the_shipped_spam_config_parses_and_points_at_the_curate_config() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/spamassassin/pipeline.toml");
        let c = PipelineConfig::from_toml_file(&path).unwrap();
        c.validate().unwrap();
        assert!(c.data.is_file(), "{}", c.data.display());
        assert_eq!(c.labels, ["ham", "spam"]);
        assert_eq!(c.teacher, TeacherConfig::default());
        assert_eq!(c.student, StudentConfig::default());
        assert_eq!(c.compress.quantize, CompressConfig::default().quantize);
    }

    #[test]
    fn validation_names_the_field() {
        let c = PipelineConfig {
            labels: vec!["spam".into()],
            ..PipelineConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("labels"));
        let mut c = PipelineConfig::default();
        c.compress.prune = "magic".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("compress.prune")
        );
        PipelineConfig::default().quick().validate().unwrap();
    }
}
