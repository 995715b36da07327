//! # slm
//!
//! Task-specific small language models end to end, in Rust: curate a narrow-domain dataset,
//! fine-tune or distil a compact decoder, prune and quantize it, serve it, and account for the
//! energy of every step. This crate is a facade: it re-exports the workspace crates behind
//! cargo features, the way `burn` does.
//!
//! | module | crate | what it holds | feature |
//! |---|---|---|---|
//! | [`core`] | `slm-core` | config, decoder, safetensors/GGUF I/O, tokenizer, chat templates, [`core::CausalLm`] | always |
//! | `data` | `slm-data` | dataset records and readers | `data` |
//! | [`ggml`] | `slm-ggml` | the GGML type enum and block codecs (no burn) | always |
//! | `train` | `slm-train` | LoRA/DoRA, full fine-tuning, distillation, AdamW, schedules | `train` |
//! | `compress` | `slm-compress` | pruning (magnitude, Wanda, 2:4, structured), quantization | `compress` |
//! | `infer` | `slm-infer` | sampling, generation, perplexity | `infer` |
//! | `energy` | `slm-energy` | energy, power meters, carbon | `energy` |
//! | `pipeline` | this crate | the end-to-end task pipeline and its report (`examples/pipeline.rs`, `slm pipeline`) | `pipeline` |
//!
//! Example programs live in `examples/`: `cargo run --example pipeline` (the whole lifecycle of a
//! spam classifier, `slm::pipeline`) and `cargo run --example smollm2` (chat on the CPU).
//!
//! ```
//! use slm::prelude::*;
//! let dtype = SaveDtype::parse("bf16").unwrap();
//! assert_eq!(dtype.torch_name(), "bfloat16");
//! ```

#[cfg(feature = "compress")]
pub use slm_compress as compress;
pub use slm_core as core;
#[cfg(feature = "data")]
pub use slm_data as data;
#[cfg(feature = "energy")]
pub use slm_energy as energy;
pub use slm_ggml as ggml;
#[cfg(feature = "infer")]
pub use slm_infer as infer;
#[cfg(feature = "train")]
pub use slm_train as train;

#[cfg(feature = "pipeline")]
pub mod pipeline;

/// The names most programs need, from every enabled crate (each crate's `Error`/`Result` stay
/// under its own module to avoid clashes).
pub mod prelude {
    pub use slm_core::prelude::{
        Architecture, CausalLm, ChatMessage, Checkpoint, Decoder, Device, KvCache, Logits,
        LogitsScope, ModelConfig, SaveDtype, TokenBatch, Tokenizer, WeightSource, save_hf_dir,
    };
    #[cfg(feature = "infer")]
    pub use slm_infer::prelude::{
        FinishReason, Generation, GenerationConfig, Sampler, SamplingParams, generate,
        generate_text,
    };
}
