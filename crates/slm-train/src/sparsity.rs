//! [`SparsityMask`]: a pruned model stays pruned through full fine-tuning.
//!
//! The zero pattern of every projection weight is read once, before training; each optimizer
//! step then zeroes the gradients of the pruned weights before clipping. Their AdamW moments
//! stay zero, so their update is `0 / (sqrt(0) + eps) = 0`, and decoupled weight decay scales a
//! zero to zero: the weights stay exactly zero, and the surviving ones train as usual (the
//! "masked fine-tuning" of SparseGPT and Wanda's recovery runs).

use std::collections::HashMap;

use burn::module::ParamId;
use burn::prelude::*;
use slm_core::model::Decoder;

use crate::error::{Error, Result};
use crate::optim::Grads;

/// The pruned (exactly zero) weights of a decoder's projections.
#[derive(Debug, Clone)]
pub struct SparsityMask {
    masks: HashMap<ParamId, Tensor<1>>,
    zeros: usize,
}

impl SparsityMask {
    /// The masks of `decoder`'s projection weights that have zeros; `None` when none has (a
    /// dense model trains unmasked, at no cost).
    ///
    /// # Errors
    /// [`Error::Backend`] when a weight cannot be read.
    pub fn of(decoder: &Decoder) -> Result<Option<Self>> {
        let mut masks = HashMap::new();
        let mut zeros = 0usize;
        for (name, proj) in decoder.projections() {
            let keep = proj.keep_mask();
            let n = keep.dims().iter().product::<usize>();
            let kept = keep
                .clone()
                .sum()
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Backend(format!("{name}: {e:?}")))?
                .first()
                .map_or(0, |k| k.round() as usize);
            if kept < n {
                zeros += n - kept;
                masks.insert(proj.weight_id(), keep.reshape([n]));
            }
        }
        Ok((!masks.is_empty()).then_some(Self { masks, zeros }))
    }

    /// Pruned weights kept at zero.
    pub fn zeros(&self) -> usize {
        self.zeros
    }

    /// Projection weights with a mask.
    pub fn tensors(&self) -> usize {
        self.masks.len()
    }

    /// Zeroes the gradients of the pruned weights.
    pub fn apply(&self, grads: &mut Grads) {
        for (id, mask) in &self.masks {
            grads.mask(*id, mask);
        }
    }
}
