//! [`TaskSpec`]: what a fine-tuned model was trained to do, recorded as `task.json` beside its
//! weights, so evaluation, generation and serving build the same prompt without flags: the
//! labels (a classifier) or the target field (a generator), the dataset fields, the prompt
//! template and how long inputs were cut.

use std::path::Path;

use serde::{Deserialize, Serialize};
use slm_core::tokenizer::Tokenizer;

use super::template::{PromptTemplate, Truncation};
use crate::error::{Error, Result};
use crate::fields::FieldMap;

/// The file name a task is saved under.
pub const TASK_FILE: &str = "task.json";

/// The prompt layout of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TemplateSpec {
    /// The tokenizer's chat template, with the instruction before the input.
    Chat {
        /// Text before the input in the user message.
        instruction: String,
        /// An optional system message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system: Option<String>,
    },
    /// Alpaca-style plain text (`### Input:` / `### Response:`).
    Instruction {
        /// The task description.
        instruction: String,
    },
}

/// What a model was fine-tuned to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The closed label set of a classifier (the label is the only target), or `None` for a
    /// generation task whose target is [`target_field`](Self::target_field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// The dataset field holding the input text.
    pub text_field: String,
    /// The dataset field holding the label.
    pub label_field: String,
    /// The dataset field holding the target text (generation tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_field: Option<String>,
    /// The prompt.
    pub template: TemplateSpec,
    /// Where long inputs are cut.
    pub truncation: Truncation,
    /// The row length inputs are cut to.
    pub seq_len: usize,
}

impl TaskSpec {
    /// A classifier over `labels` with the default instruction, the chat template when
    /// `tokenizer` has one (instruct models) and plain text otherwise, on curated splits'
    /// fields (`input`, `label`).
    pub fn classifier(labels: Vec<String>, tokenizer: &Tokenizer, seq_len: usize) -> Self {
        let instruction = format!(
            "Classify the text as one of: {}. Answer with the label only.",
            labels.join(", ")
        );
        TaskSpec {
            labels: Some(labels),
            text_field: "input".into(),
            label_field: "label".into(),
            target_field: None,
            template: TemplateSpec::default_for(tokenizer, instruction),
            truncation: Truncation::End,
            seq_len,
        }
    }

    /// The field mapping a reader gets for this task's data.
    pub fn fields(&self) -> FieldMap {
        let mut f = FieldMap::new(self.text_field.clone()).with_label(self.label_field.clone());
        if let Some(t) = &self.target_field {
            f = f.with_target(t.clone());
        }
        f
    }

    /// The prompt template.
    pub fn prompt_template(&self) -> PromptTemplate {
        match &self.template {
            TemplateSpec::Chat {
                instruction,
                system,
            } => PromptTemplate::Chat {
                system: system.clone(),
                instruction: Some(instruction.clone()),
            },
            TemplateSpec::Instruction { instruction } => {
                PromptTemplate::instruction(instruction.clone())
            }
        }
    }

    /// Reads `dir/task.json`, or `None` when there is none.
    ///
    /// # Errors
    /// [`Error::Io`] and [`Error::ConfigParse`] naming the file.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(TASK_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::ConfigParse {
                path,
                message: e.to_string(),
            })
    }

    /// Writes `dir/task.json` atomically.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::ConfigParse {
            path: dir.join(TASK_FILE),
            message: e.to_string(),
        })?;
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        slm_core::io::write_atomic(&dir.join(TASK_FILE), text.as_bytes())?;
        Ok(())
    }
}

impl TemplateSpec {
    /// The chat template when `tokenizer` has one, plain text otherwise.
    pub fn default_for(tokenizer: &Tokenizer, instruction: String) -> Self {
        if tokenizer.chat_template().is_some() {
            TemplateSpec::Chat {
                instruction,
                system: None,
            }
        } else {
            TemplateSpec::Instruction { instruction }
        }
    }
}
