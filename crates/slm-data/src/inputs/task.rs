//! [`TaskSpec`]: what a fine-tuned model was trained to do, recorded as `task.json` beside its
//! weights, so evaluation, generation and serving build the same prompt without flags: the
//! labels (a classifier) or the target field (a generator), the dataset fields, the prompt
//! template and how long inputs were cut.

use std::path::Path;

use serde::{Deserialize, Serialize};
use slm_core::tokenizer::Tokenizer;

use super::template::{PromptTemplate, TokenizedExample, Truncation};
use crate::error::{Error, Result};
use crate::example::Example;
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

    /// `example` as training sees it: the template's rendering with the input cut (as
    /// [`truncation`](Self::truncation) says) to fit [`seq_len`](Self::seq_len), the loss on
    /// the completion. A classifier's input is cut to leave room for its longest label,
    /// whatever the example's own label ([`prompt_for_labels`](Self::prompt_for_labels)):
    /// every label of an example gets the same prompt, so the prompt's length (where the
    /// answer starts) never tells the label, and label scoring sees the prompts training saw.
    /// Cut per label, long inputs of a one-token label ended one position later than a
    /// two-token label's, and a fully tuned model learns the label from that position.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an example without its target; the template's errors and
    /// [`Error::ExampleTooLong`] when even an empty input does not fit.
    pub fn tokenize(&self, example: &Example, tokenizer: &Tokenizer) -> Result<TokenizedExample> {
        let template = self.prompt_template();
        let Some(labels) = self.labels.as_ref().filter(|l| !l.is_empty()) else {
            return template.tokenize_within(example, tokenizer, self.seq_len, self.truncation);
        };
        let mut input_ids = self.prompt_for_labels(example, labels, tokenizer)?;
        let n_prompt = input_ids.len();
        let label = example
            .label
            .as_deref()
            .ok_or_else(|| Error::InvalidOption {
                name: "label",
                reason: format!("example {} has no label to train on", example.id),
            })?;
        input_ids.extend(completion(&template, label, tokenizer)?);
        let loss_mask = (0..input_ids.len()).map(|i| i >= n_prompt).collect();
        TokenizedExample::new(example.id.clone(), input_ids, loss_mask)
    }

    /// The prompt tokens of `example` for a choice among `labels`: its input cut so that the
    /// longest label's completion (in tokens) still fits in [`seq_len`](Self::seq_len), the
    /// same prompt whichever label follows.
    ///
    /// # Errors
    /// As [`tokenize`](Self::tokenize); [`Error::InvalidOption`] for no labels.
    pub fn prompt_for_labels(
        &self,
        example: &Example,
        labels: &[String],
        tokenizer: &Tokenizer,
    ) -> Result<Vec<u32>> {
        let template = self.prompt_template();
        let completions = self.label_completions(labels, tokenizer)?;
        // The first of the longest, so the choice does not depend on the label order beyond ties.
        let longest = (0..labels.len())
            .rev()
            .max_by_key(|&i| completions[i].len())
            .expect("labels checked non-empty");
        let cut = template.tokenize_within(
            &example.clone().with_label(labels[longest].clone()),
            tokenizer,
            self.seq_len,
            self.truncation,
        )?;
        let n_prompt = cut.loss_mask.iter().take_while(|m| !**m).count();
        let mut ids = cut.input_ids;
        ids.truncate(n_prompt);
        Ok(ids)
    }

    /// The completion tokens of each of `labels` (what follows the prompt when the answer is
    /// that label: the label, then the end of the turn or sequence).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for no labels; the template's errors.
    pub fn label_completions(
        &self,
        labels: &[String],
        tokenizer: &Tokenizer,
    ) -> Result<Vec<Vec<u32>>> {
        if labels.is_empty() {
            return Err(Error::InvalidOption {
                name: "labels",
                reason: "no labels to choose from".into(),
            });
        }
        let template = self.prompt_template();
        labels
            .iter()
            .map(|l| completion(&template, l, tokenizer))
            .collect()
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

/// The completion tokens of answer `label` under `template` (independent of the input: the
/// template renders the reply after the prompt).
fn completion(template: &PromptTemplate, label: &str, tokenizer: &Tokenizer) -> Result<Vec<u32>> {
    let probe = Example::new("label", "").with_label(label);
    let (_, completion) = template.render(&probe, tokenizer)?;
    tokenizer.encode(&completion, false).map_err(Into::into)
}
