//! Helpers shared by slm-infer's integration tests: fixture paths, qwen2-tiny on the CPU fast
//! path, the SmolLM2 GGUF when present.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use slm_core::fast::{FastDecoder, FastDecoderConfig};
use slm_core::prelude::*;
use slm_core::step::{AdapterId, BatchedLm, KvUsage, SeqChunk, SeqId, StepLogits};
use slm_core::tokenizer::Tokenizer;

/// A path under the repository's copy of the reference fixtures.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel)
}

/// The qwen2-tiny checkpoint (random weights, saved by transformers).
pub fn qwen2_tiny() -> Checkpoint {
    Checkpoint::open(&fixture("models/qwen2-tiny")).unwrap()
}

/// qwen2-tiny's tokenizer.
pub fn qwen2_tiny_tokenizer() -> Tokenizer {
    Tokenizer::from_model_dir(&fixture("models/qwen2-tiny")).unwrap()
}

/// qwen2-tiny on the fast path with a key/value budget of `kv_budget_bytes`.
pub fn qwen2_fast_bytes(kv_budget_bytes: usize) -> FastDecoder {
    let ckpt = qwen2_tiny();
    FastDecoderConfig {
        kv_budget_bytes,
        ..Default::default()
    }
    .init(&ckpt.config, ckpt.weights.as_ref())
    .unwrap()
}

/// qwen2-tiny on the fast path with a pool of `blocks` blocks of 16 tokens.
pub fn qwen2_fast(blocks: usize) -> FastDecoder {
    let per_block = (1 << 20) / qwen2_fast_bytes(1 << 20).kv_usage().total_blocks;
    qwen2_fast_bytes(per_block * blocks)
}

/// The cached SmolLM2 GGUF; `None` (with a note) when absent, a failure when
/// `SLM_REQUIRE_SMOLLM2=1`.
pub fn smollm2() -> Option<PathBuf> {
    let path = slm_core::cache::smollm2_gguf_if_present().unwrap_or_else(|e| panic!("{e}"));
    if path.is_none() {
        eprintln!("skipping: SmolLM2 GGUF not found (run scripts/fetch-smollm2.sh)");
    }
    path
}

/// llama-tiny on the fast path (a key/value budget of `kv_budget_bytes`) holding peft's two
/// fixture adapters: `a` (LoRA on q/v) and `all` (rsLoRA on every projection).
pub fn llama_tiny_with_adapters(kv_budget_bytes: usize) -> FastDecoder {
    let ckpt = Checkpoint::open(&fixture("models/llama-tiny")).unwrap();
    let mut model = FastDecoderConfig {
        kv_budget_bytes,
        ..Default::default()
    }
    .init(&ckpt.config, ckpt.weights.as_ref())
    .unwrap();
    model.load_adapter("a", &fixture("lora/adapter_a")).unwrap();
    model
        .load_adapter("all", &fixture("lora/adapter_rslora_all"))
        .unwrap();
    model
}

/// A model whose every step takes at least `delay`: for tests that need a request to still be
/// running while others arrive, however fast the fast path gets.
pub struct SlowSteps<M> {
    pub model: M,
    pub delay: std::time::Duration,
}

impl<M: BatchedLm> BatchedLm for SlowSteps<M> {
    fn config(&self) -> &ModelConfig {
        self.model.config()
    }
    fn add_sequence(&self) -> SeqId {
        self.model.add_sequence()
    }
    fn adapters(&self) -> Vec<String> {
        self.model.adapters()
    }
    fn add_sequence_with(&self, adapter: Option<AdapterId>) -> slm_core::Result<SeqId> {
        self.model.add_sequence_with(adapter)
    }
    fn fork(&self, seq: SeqId, len: usize) -> slm_core::Result<SeqId> {
        self.model.fork(seq, len)
    }
    fn release(&self, seq: SeqId) {
        self.model.release(seq)
    }
    fn seq_len(&self, seq: SeqId) -> Option<usize> {
        self.model.seq_len(seq)
    }
    fn truncate(&self, seq: SeqId, len: usize) -> slm_core::Result<()> {
        self.model.truncate(seq, len)
    }
    fn kv_usage(&self) -> KvUsage {
        self.model.kv_usage()
    }
    fn step(&self, chunks: &[SeqChunk<'_>]) -> slm_core::Result<StepLogits> {
        std::thread::sleep(self.delay);
        self.model.step(chunks)
    }
}
