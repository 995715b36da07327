//! Prompt templates and tokenization with a loss mask on the target only.

use slm_core::tokenizer::{ChatMessage, Tokenizer};

use crate::error::{Error, Result};
use crate::example::Example;

/// What the model learns to produce for an example: its `target`, or else its `label`.
fn answer(example: &Example) -> Result<&str> {
    example
        .target
        .as_deref()
        .or(example.label.as_deref())
        .ok_or_else(|| Error::MissingTarget {
            id: example.id.clone(),
            field: "target or label",
        })
}

/// How an [`Example`] becomes a prompt and a completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptTemplate {
    /// Plain text: `{instruction}\n\n{input_header}\n{input}\n\n{response_header}\n` as the
    /// prompt (Alpaca's layout), and the target (or label) then the end-of-sequence token (when
    /// the tokenizer names one) as the completion. The tokenizer's post-processor adds BOS to
    /// the prompt when it has one.
    Instruction {
        /// The task description, the same for every example.
        instruction: String,
        /// The line before the input (`### Input:`).
        input_header: String,
        /// The line before the answer (`### Response:`).
        response_header: String,
    },
    /// The tokenizer's chat template (through slm-core's `apply_chat_template`): an optional
    /// system message, a user message with the instruction and the input, and the target as
    /// the assistant's reply. The completion is what the template adds for the reply (its
    /// end-of-turn tokens included).
    Chat {
        /// An optional system message.
        system: Option<String>,
        /// Text put before the input in the user message (a blank line separates them).
        instruction: Option<String>,
    },
}

impl PromptTemplate {
    /// An [`PromptTemplate::Instruction`] with Alpaca's `### Input:` / `### Response:` headers.
    pub fn instruction(instruction: impl Into<String>) -> Self {
        Self::Instruction {
            instruction: instruction.into(),
            input_header: "### Input:".into(),
            response_header: "### Response:".into(),
        }
    }

    /// A [`PromptTemplate::Chat`] with `instruction` before the input and no system message.
    pub fn chat(instruction: impl Into<String>) -> Self {
        Self::Chat {
            system: None,
            instruction: Some(instruction.into()),
        }
    }

    /// The prompt text for `input` alone (what the model sees at inference time).
    pub fn render_prompt(&self, input: &str, tokenizer: &Tokenizer) -> Result<String> {
        match self {
            Self::Instruction {
                instruction,
                input_header,
                response_header,
            } => Ok(format!(
                "{instruction}\n\n{input_header}\n{input}\n\n{response_header}\n"
            )),
            Self::Chat { .. } => Ok(tokenizer.apply_chat_template(&self.messages(input), true)?),
        }
    }

    fn messages(&self, input: &str) -> Vec<ChatMessage> {
        let Self::Chat {
            system,
            instruction,
        } = self
        else {
            return Vec::new();
        };
        let mut m = Vec::new();
        if let Some(s) = system {
            m.push(ChatMessage::new("system", s.clone()));
        }
        let user = match instruction {
            Some(i) => format!("{i}\n\n{input}"),
            None => input.to_string(),
        };
        m.push(ChatMessage::user(user));
        m
    }

    /// Renders `example` as `(prompt, completion)` text.
    pub fn render(&self, example: &Example, tokenizer: &Tokenizer) -> Result<(String, String)> {
        let target = answer(example)?;
        let prompt = self.render_prompt(&example.input, tokenizer)?;
        match self {
            Self::Instruction { .. } => {
                let eos = tokenizer.eos_token().unwrap_or_default();
                Ok((prompt, format!("{target}{eos}")))
            }
            Self::Chat { .. } => {
                let mut messages = self.messages(&example.input);
                messages.push(ChatMessage::new("assistant", target));
                let full = tokenizer.apply_chat_template(&messages, false)?;
                match full.strip_prefix(&prompt) {
                    Some(completion) => Ok((prompt, completion.to_string())),
                    None => Err(Error::InvalidOption {
                        name: "template",
                        reason: "the chat template's rendering with the reply does not start \
                                 with its generation prompt"
                            .into(),
                    }),
                }
            }
        }
    }

    /// Renders and tokenizes `example`: prompt tokens (BOS included for instruction
    /// templates) carry no loss, completion tokens do.
    ///
    /// Prompt and completion are encoded separately and concatenated, so the boundary is
    /// exact even where BPE would merge across it.
    pub fn tokenize(&self, example: &Example, tokenizer: &Tokenizer) -> Result<TokenizedExample> {
        let (prompt, completion) = self.render(example, tokenizer)?;
        let add_special = matches!(self, Self::Instruction { .. });
        let mut input_ids = tokenizer.encode(&prompt, add_special)?;
        let n_prompt = input_ids.len();
        input_ids.extend(tokenizer.encode(&completion, false)?);
        let loss_mask = (0..input_ids.len()).map(|i| i >= n_prompt).collect();
        Ok(TokenizedExample {
            id: example.id.clone(),
            input_ids,
            loss_mask,
        })
    }
}

/// Where an input too long for a row is cut. Only the input text is ever cut: the template's
/// instruction and the target stay whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Truncation {
    /// Cut the end of the input, keeping its beginning (transformers' `truncation_side="right"`).
    #[default]
    End,
    /// Cut the beginning, keeping its end.
    Start,
    /// Cut the middle, keeping the beginning and the end.
    Middle,
}

impl PromptTemplate {
    /// [`tokenize`](Self::tokenize), cutting the input text (never the instruction or the
    /// target) as `how` says until the example fits in `max_len` tokens.
    ///
    /// # Errors
    /// [`Error::ExampleTooLong`] when even an empty input does not fit.
    pub fn tokenize_within(
        &self,
        example: &Example,
        tokenizer: &Tokenizer,
        max_len: usize,
        how: Truncation,
    ) -> Result<TokenizedExample> {
        let mut cut = example.clone();
        let mut slack = 0usize;
        loop {
            let t = self.tokenize(&cut, tokenizer)?;
            if t.len() <= max_len {
                return Ok(t);
            }
            let ids = tokenizer.encode(&cut.input, false)?;
            let excess = t.len() - max_len + slack;
            if ids.is_empty() || slack > 64 {
                return Err(Error::ExampleTooLong {
                    id: example.id.clone(),
                    tokens: t.len(),
                    max: max_len,
                });
            }
            let keep = ids.len().saturating_sub(excess);
            let kept: Vec<u32> = match how {
                Truncation::End => ids[..keep].to_vec(),
                Truncation::Start => ids[ids.len() - keep..].to_vec(),
                Truncation::Middle => {
                    let head = keep.div_ceil(2);
                    let tail = keep - head;
                    ids[..head]
                        .iter()
                        .chain(&ids[ids.len() - tail..])
                        .copied()
                        .collect()
                }
            };
            cut.input = tokenizer.decode(&kept, false)?;
            // Decoding and re-encoding can merge tokens differently; cut a little more next time.
            slack = if slack == 0 { 1 } else { slack * 2 };
        }
    }
}

/// One example as token ids, with which of them the loss is computed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedExample {
    /// The example's id.
    pub id: String,
    /// Prompt then completion token ids.
    pub input_ids: Vec<u32>,
    /// `true` on completion tokens (same length as `input_ids`).
    pub loss_mask: Vec<bool>,
}

impl TokenizedExample {
    /// Builds one from ids and mask; their lengths must agree.
    pub fn new(id: impl Into<String>, input_ids: Vec<u32>, loss_mask: Vec<bool>) -> Result<Self> {
        if input_ids.len() != loss_mask.len() {
            return Err(Error::InvalidOption {
                name: "loss_mask",
                reason: format!(
                    "{} mask entries for {} tokens",
                    loss_mask.len(),
                    input_ids.len()
                ),
            });
        }
        Ok(Self {
            id: id.into(),
            input_ids,
            loss_mask,
        })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// transformers-style labels: the token id where the loss applies, [`IGNORE_INDEX`]
    /// elsewhere (not shifted: the loss compares logits at `t - 1` with `labels[t]`).
    pub fn labels(&self) -> Vec<i64> {
        self.input_ids
            .iter()
            .zip(&self.loss_mask)
            .map(|(&id, &m)| if m { id as i64 } else { IGNORE_INDEX })
            .collect()
    }
}

/// The label of positions without loss, PyTorch's `CrossEntropyLoss(ignore_index=-100)`.
pub const IGNORE_INDEX: i64 = -100;

/// Tokenizes every example with `template`; the first error stops it.
pub fn tokenize_all(
    examples: &[Example],
    template: &PromptTemplate,
    tokenizer: &Tokenizer,
) -> Result<Vec<TokenizedExample>> {
    examples
        .iter()
        .map(|e| template.tokenize(e, tokenizer))
        .collect()
}
