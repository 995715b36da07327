//! The names most programs need: `use slm_core::prelude::*;`.

pub use crate::causal_lm::{CausalLm, Logits, LogitsScope, TokenBatch};
pub use crate::checkpoint::{Checkpoint, SaveDtype, save_hf_dir};
pub use crate::config::{Architecture, ModelConfig};
pub use crate::error::{Error, Result};
pub use crate::model::{Decoder, KvCache};
pub use crate::tokenizer::{ChatMessage, Tokenizer};
pub use crate::weights::WeightSource;
pub use burn::prelude::Device;
