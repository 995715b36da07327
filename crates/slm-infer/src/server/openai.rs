//! The OpenAI API's request and response bodies, as its clients send and read them (with the
//! sampling extensions vLLM accepts: `top_k`, `min_p`, `repetition_penalty`, `ignore_eos`,
//! `stop_token_ids`, `truncate_prompt_tokens`), and its error body.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several (OpenAI allows up to 4; more are accepted).
    Many(Vec<String>),
}

impl Stop {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// Sampling fields shared by both endpoints.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SamplingFields {
    /// Default 1, as OpenAI's.
    pub temperature: Option<f32>,
    /// Default 1.
    pub top_p: Option<f32>,
    /// vLLM extension; 0 or -1 = off.
    pub top_k: Option<i64>,
    /// vLLM extension.
    pub min_p: Option<f32>,
    /// vLLM extension.
    pub repetition_penalty: Option<f32>,
    /// -2 to 2.
    pub presence_penalty: Option<f32>,
    /// -2 to 2.
    pub frequency_penalty: Option<f32>,
    /// Token id (as a string) to bias, -100 to 100.
    pub logit_bias: Option<BTreeMap<String, f32>>,
    /// Sampler seed (choice `i` of `n` uses `seed + i`).
    pub seed: Option<u64>,
    /// Stop strings.
    pub stop: Option<Stop>,
    /// Extra stop token ids (vLLM extension).
    pub stop_token_ids: Option<Vec<u32>>,
    /// Do not stop at the end-of-sequence token (vLLM extension).
    #[serde(default)]
    pub ignore_eos: bool,
    /// Choices per prompt.
    pub n: Option<usize>,
    /// Server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// `{"include_usage": true}` adds a usage chunk before `[DONE]`.
    pub stream_options: Option<StreamOptions>,
    /// Keep only the last this many prompt tokens (vLLM extension); the response's usage says
    /// how many were cut. Without it a prompt longer than the context is a 400.
    pub truncate_prompt_tokens: Option<usize>,
    /// Structured output: `{"type": "text"}`, `{"type": "json_object"}` or
    /// `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`.
    pub response_format: Option<Value>,
    /// The output is one of these strings (vLLM extension).
    pub guided_choice: Option<Vec<String>>,
    /// The output matches this regex (vLLM extension).
    pub guided_regex: Option<String>,
    /// The output is JSON valid under this schema (vLLM extension).
    pub guided_json: Option<Value>,
    /// The output follows this Lark grammar (vLLM extension).
    pub guided_grammar: Option<String>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage`.
    #[serde(default)]
    pub include_usage: bool,
}

/// A chat message; `content` is a string or a list of `{"type":"text","text":..}` parts.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessageIn {
    /// `system`, `user`, `assistant`.
    pub role: String,
    /// The text.
    pub content: Value,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The served model's name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessageIn>,
    /// Upper bound on new tokens (deprecated OpenAI name).
    pub max_tokens: Option<usize>,
    /// Upper bound on new tokens.
    pub max_completion_tokens: Option<usize>,
    /// Return log-probabilities of the output tokens.
    #[serde(default)]
    pub logprobs: bool,
    /// Alternatives per token (0 to 20), with `logprobs`.
    pub top_logprobs: Option<usize>,
    /// Sampling and stream fields.
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// `prompt`: a string, strings, token ids, or lists of token ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// One text.
    Text(String),
    /// Several texts (one choice set each).
    Texts(Vec<String>),
    /// One prompt as token ids.
    Ids(Vec<u32>),
    /// Several prompts as token ids.
    IdLists(Vec<Vec<u32>>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The served model's name.
    pub model: String,
    /// The prompt(s).
    pub prompt: Prompt,
    /// Upper bound on new tokens (OpenAI's default: 16).
    pub max_tokens: Option<usize>,
    /// Log-probabilities with this many alternatives (0 to 5 in OpenAI's API).
    pub logprobs: Option<usize>,
    /// Put the prompt before the completion in `text`.
    #[serde(default)]
    pub echo: bool,
    /// Sampling and stream fields.
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// `usage`, with the request's energy (null when no meter could be read).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Usage {
    /// Prompt tokens (after truncation).
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
    /// Prompt tokens served from the prefix cache.
    pub prompt_tokens_details: PromptTokensDetails,
    /// Prompt tokens cut by `truncate_prompt_tokens` (present only when some were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_truncated: Option<usize>,
    /// The request's share of the machine's energy (joules); null without a meter.
    pub energy_joules: Option<f64>,
    /// Its emissions (grams CO2e) at the server's grid intensity; null without a meter.
    pub gco2e: Option<f64>,
    /// How the energy was obtained (`measured (RAPL)`, `estimated (CPU TDP model)`); null
    /// without a meter.
    pub energy_method: Option<String>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose keys and values came from the prefix cache.
    pub cached_tokens: usize,
}

impl Usage {
    /// Adds another prompt's usage (its tokens and energy).
    pub(crate) fn add_prompt(&mut self, other: &Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens = self.prompt_tokens + self.completion_tokens;
        // Different prompts: their cached tokens add up (within one prompt, `usage_of` takes the
        // largest over its choices, which share the prompt).
        self.prompt_tokens_details.cached_tokens += other.prompt_tokens_details.cached_tokens;
        self.energy_joules = match (self.energy_joules, other.energy_joules) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        self.gco2e = match (self.gco2e, other.gco2e) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        if self.energy_method != other.energy_method {
            self.energy_method = match (&self.energy_method, &other.energy_method) {
                (Some(_), Some(_)) => Some("estimated (mixed)".into()),
                _ => None,
            };
        }
    }
}

/// An OpenAI-style error: status plus `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
    /// `invalid_request_error`, `rate_limit_error`, `server_error`, ...
    pub kind: &'static str,
    /// The offending field, when one is to blame.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `context_length_exceeded`, ...).
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 `invalid_request_error`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    }

    /// A 500 `server_error`.
    pub fn server_error(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// Names the offending field.
    pub fn param(mut self, param: &str) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets the code.
    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The body.
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        use crate::Error as E;
        let message = e.to_string();
        match e {
            E::QueueFull { .. } => Self {
                status: StatusCode::TOO_MANY_REQUESTS,
                message,
                kind: "rate_limit_error",
                param: None,
                code: Some("queue_full"),
            },
            E::EngineStopped => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message,
                kind: "server_error",
                param: None,
                code: None,
            },
            E::PromptTooLarge { .. }
            | E::Core(slm_core::Error::ContextOverflow { .. })
            | E::Core(slm_core::Error::KvCacheFull { .. }) => {
                Self::bad_request(message).code("context_length_exceeded")
            }
            E::InvalidConfig(_) | E::Core(slm_core::Error::TokenOutOfVocab { .. }) => {
                Self::bad_request(message)
            }
            _ => Self {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message,
                kind: "server_error",
                param: None,
                code: None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}
