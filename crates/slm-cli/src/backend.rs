//! Which implementation runs a model (`--backend`): the CPU fast path over the stored weights
//! (the default for GGUF files on the CPU) or the burn decoder (any device, adapters, every
//! format). Both are one [`CausalLm`] here, so every command that runs a model takes either.

use anyhow::Result;
use slm_core::fast::{FastCache, FastDecoder, FastDecoderConfig};
use slm_core::model::KvCache;
use slm_core::prelude::*;
use slm_core::{Logits, ModelFormat};

use crate::{DeviceArg, ModelArgs};

/// `--backend`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendArg {
    /// The fast path for a GGUF file on the CPU without an adapter, burn otherwise.
    #[default]
    Auto,
    /// The CPU fast path (GGUF blocks or safetensors floats, no adapters).
    Fast,
    /// The burn decoder.
    Burn,
}

/// A loaded model on either backend.
pub enum Runner {
    /// The burn decoder.
    Burn(Box<Decoder>),
    /// The CPU fast path.
    Fast(Box<FastDecoder>),
}

/// The cache of a [`Runner`].
pub enum RunnerCache {
    /// The burn decoder's.
    Burn(KvCache),
    /// The fast path's.
    Fast(FastCache),
}

impl Runner {
    /// Loads `args` on the backend it asks for.
    pub fn load(args: &ModelArgs) -> Result<(Checkpoint, Self)> {
        let ckpt = Checkpoint::open(&args.model)?;
        if args.uses_fast_path(&ckpt)? {
            let model = FastDecoderConfig::default().init(&ckpt.config, ckpt.weights.as_ref())?;
            return Ok((ckpt, Runner::Fast(Box::new(model))));
        }
        let model = crate::load_decoder(&ckpt, args)?;
        Ok((ckpt, Runner::Burn(Box::new(model))))
    }
}

impl ModelArgs {
    /// Whether `--backend` (with this checkpoint, adapter and device) picks the CPU fast path:
    /// `auto` does for a GGUF file on the CPU without an adapter.
    ///
    /// # Errors
    /// `--backend fast` with an adapter or off the CPU.
    pub fn uses_fast_path(&self, ckpt: &Checkpoint) -> Result<bool> {
        Ok(match self.backend {
            BackendArg::Fast => {
                if self.adapter.is_some() {
                    anyhow::bail!(
                        "--backend fast runs no adapters yet: merge it (`slm lora merge`) or use --backend burn"
                    );
                }
                if self.device != DeviceArg::Cpu {
                    anyhow::bail!(
                        "--backend fast runs on the CPU; use --backend burn for {:?}",
                        self.device
                    );
                }
                true
            }
            BackendArg::Burn => false,
            BackendArg::Auto => {
                ckpt.format == ModelFormat::Gguf
                    && self.adapter.is_none()
                    && self.device == DeviceArg::Cpu
            }
        })
    }
}

impl CausalLm for Runner {
    type Cache = RunnerCache;

    fn config(&self) -> &ModelConfig {
        match self {
            Runner::Burn(m) => m.config(),
            Runner::Fast(m) => CausalLm::config(m.as_ref()),
        }
    }

    fn new_cache(&self) -> RunnerCache {
        match self {
            Runner::Burn(m) => RunnerCache::Burn(m.new_cache()),
            Runner::Fast(m) => RunnerCache::Fast(m.new_cache()),
        }
    }

    fn forward(&self, batch: &TokenBatch, cache: &mut RunnerCache) -> slm_core::Result<Logits> {
        match (self, cache) {
            (Runner::Burn(m), RunnerCache::Burn(c)) => m.forward(batch, c),
            (Runner::Fast(m), RunnerCache::Fast(c)) => m.forward(batch, c),
            _ => Err(slm_core::Error::InvalidInput(
                "the cache belongs to another backend".into(),
            )),
        }
    }
}
