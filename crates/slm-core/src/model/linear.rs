//! [`Projection`]: the one linear map of the decoder (`q`, `k`, `v`, `o`, `gate`, `up`, `down`
//! and the LM head), and the adapters that plug into it.
//!
//! A projection holds a dense weight (burn's `[in, out]` layout, with an optional bias) and,
//! optionally, a [`LoraAdapter`]: `y = x W + b + dropout(x) A B * scaling`, exactly peft's
//! `lora.Linear` (`result = base_layer(x) + lora_B(lora_A(dropout(x))) * scaling`). The adapter
//! is kept apart from the base weight (unmerged) so it trains alone, is saved alone (PEFT
//! files, see [`crate::peft`]) and can be folded in ([`Projection::merge`]) or taken out again
//! ([`Projection::unmerge`]). Quantized weights are the next kind to plug in here.
//!
//! An adapter with a magnitude vector `m` (`[out]`) is DoRA (peft's `use_dora=True`,
//! arXiv:2402.09353): the adapted weight `W + s A B` is renormalised per output to length `m`,
//! `y = x (W + s A B) diag(m / |W + s A B|) + b`, with the norm `|W + s A B|` (per output, over
//! the inputs) treated as a constant in the backward pass (the paper's section 4.3, as peft
//! does). peft computes it as `x W + (m/n - 1) * dropout(x) W + (m/n) * s * dropout(x) A B`,
//! and so does [`Projection::forward`].

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;

use crate::error::{Error, Result};

thread_local! {
    /// Per-call input statistics while [`capture_input_sq_norms`] runs on this thread.
    static CAPTURE: std::cell::RefCell<Option<Vec<Vec<f32>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with input capture on: every [`Projection::forward`] called on this thread while
/// `f` runs records the sum of squares of each input channel over its rows (`[in]`), one entry
/// per call, in call order. The decoder calls its projections in [`Decoder::projections`]
/// (crate::model::Decoder::projections) order (`q, k, v, o, gate, up, down` per layer, then an
/// untied LM head), so entry `i` of a forward is projection `i % n`. Calibration statistics
/// for activation-aware pruning and quantization (Wanda, importance matrices); capture costs
/// one reduction and one host read per projection call, so it is off otherwise.
pub fn capture_input_sq_norms<R>(f: impl FnOnce() -> R) -> (R, Vec<Vec<f32>>) {
    CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let out = f();
    let captured = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (out, captured)
}

fn record_input(rows: &Tensor<2>) {
    CAPTURE.with(|c| {
        if let Some(list) = c.borrow_mut().as_mut() {
            let sq = rows.clone().detach().powi_scalar(2).sum_dim(0);
            list.push(sq.try_into_vec_as::<f32>().unwrap_or_default());
        }
    });
}

/// A low-rank adapter on one projection: `A` `[in, r]` and `B` `[r, out]` (burn's layout;
/// peft stores `lora_A.weight` as `[r, in]` and `lora_B.weight` as `[out, r]`), the scaling
/// `alpha / r` (or `alpha / sqrt(r)` with rsLoRA), dropout on the adapter's input and, for
/// DoRA, the magnitude vector `[out]` (peft's `lora_magnitude_vector`).
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// `A`, `[in, r]`.
    pub(crate) a: Param<Tensor<2>>,
    /// `B`, `[r, out]`.
    pub(crate) b: Param<Tensor<2>>,
    /// DoRA's magnitude `m`, `[out]`.
    pub(crate) magnitude: Option<Param<Tensor<1>>>,
    dropout: Dropout,
    #[module(skip)]
    scaling: f64,
}

impl LoraAdapter {
    /// An adapter from its factors in burn's layout (`a` `[in, r]`, `b` `[r, out]`).
    pub fn new(a: Tensor<2>, b: Tensor<2>, scaling: f64, dropout: f64) -> Self {
        LoraAdapter {
            a: Param::from_tensor(a),
            b: Param::from_tensor(b),
            magnitude: None,
            dropout: DropoutConfig::new(dropout).init(),
            scaling,
        }
    }

    /// The same adapter as DoRA, with magnitude vector `m` `[out]` (peft initialises it to the
    /// per-output norm of `W + s A B`: see [`Projection::weight_norm`]).
    pub fn with_magnitude(mut self, magnitude: Tensor<1>) -> Self {
        self.magnitude = Some(Param::from_tensor(magnitude));
        self
    }

    /// The ids of `A` and `B` (to find their gradients or optimizer state).
    pub fn param_ids(&self) -> (burn::module::ParamId, burn::module::ParamId) {
        (self.a.id, self.b.id)
    }

    /// DoRA's magnitude vector `[out]`, when this adapter is DoRA.
    pub fn magnitude(&self) -> Option<Tensor<1>> {
        self.magnitude.as_ref().map(|m| m.val())
    }

    /// The id of the magnitude vector, when this adapter is DoRA.
    pub fn magnitude_id(&self) -> Option<burn::module::ParamId> {
        self.magnitude.as_ref().map(|m| m.id)
    }

    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.a.val().dims()[1]
    }

    /// The factor the low-rank update is multiplied by.
    pub fn scaling(&self) -> f64 {
        self.scaling
    }

    /// `A` as peft stores it, `[r, in]`.
    pub fn lora_a(&self) -> Tensor<2> {
        self.a.val().transpose()
    }

    /// `B` as peft stores it, `[out, r]`.
    pub fn lora_b(&self) -> Tensor<2> {
        self.b.val().transpose()
    }

    /// The low-rank update `scaling * A B`, `[in, out]` (for DoRA, before renormalisation).
    pub fn delta(&self) -> Tensor<2> {
        self.a.val().matmul(self.b.val()).mul_scalar(self.scaling)
    }
}

/// One linear map of the decoder: dense weight and bias, plus an optional [`LoraAdapter`].
#[derive(Module, Debug)]
pub struct Projection {
    dense: Linear,
    lora: Option<LoraAdapter>,
}

impl Projection {
    /// A randomly initialised projection `[d_in, d_out]` (burn's default initialiser).
    pub fn new(d_in: usize, d_out: usize, bias: bool, device: &Device) -> Self {
        Projection {
            dense: LinearConfig::new(d_in, d_out).with_bias(bias).init(device),
            lora: None,
        }
    }

    /// A projection from a weight in Hugging Face layout `[out, in]` (kept as a zero-copy
    /// transposed view, which flex multiplies as fast as a contiguous matrix) and a bias.
    pub fn from_hf(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Projection {
            dense: Linear {
                weight: Param::from_tensor(weight.transpose()),
                bias: bias.map(Param::from_tensor),
            },
            lora: None,
        }
    }

    /// `[in, out]`.
    pub fn dims(&self) -> [usize; 2] {
        self.dense.weight.val().dims()
    }

    /// The dense weight in Hugging Face layout `[out, in]` (without the adapter).
    pub fn weight_hf(&self) -> Tensor<2> {
        self.dense.weight.val().transpose()
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<Tensor<1>> {
        self.dense.bias.as_ref().map(|b| b.val())
    }

    /// The adapter, if one is attached.
    pub fn lora(&self) -> Option<&LoraAdapter> {
        self.lora.as_ref()
    }

    /// Attaches `adapter` (replacing any other) and freezes the dense weight and bias, so only
    /// the adapter trains.
    pub fn with_lora(mut self, adapter: LoraAdapter) -> Self {
        self.dense = self.dense.no_grad();
        self.lora = Some(adapter);
        self
    }

    /// Freezes the dense weight and bias (the adapter, if any, stays trainable).
    pub fn freeze_base(mut self) -> Self {
        self.dense = self.dense.no_grad();
        self
    }

    /// The per-output norm of `W + delta` over the inputs, `[1, out]`, detached: DoRA's
    /// `|W + s A B|` (the magnitude vector's initial value, with `delta` the fresh adapter's
    /// update).
    pub fn weight_norm(&self, delta: Tensor<2>) -> Tensor<2> {
        (self.dense.weight.val().detach() + delta.detach())
            .powi_scalar(2)
            .sum_dim(0)
            .sqrt()
            .detach()
    }

    /// Folds the adapter into the dense weight (`W + scaling * A B`; for DoRA
    /// `(W + scaling * A B) diag(m / |W + scaling * A B|)`) and drops it: peft's
    /// `merge_and_unload` for this projection. The weight becomes trainable again.
    pub fn merge(mut self) -> Self {
        if let Some(lora) = self.lora.take() {
            let delta = lora.delta();
            let mut merged = self.dense.weight.val() + delta.clone();
            if let Some(m) = lora.magnitude() {
                let norm = self.weight_norm(delta);
                merged = merged * (m.unsqueeze::<2>() / norm);
            }
            self.dense.weight = Param::from_tensor(merged.detach());
        }
        self
    }

    /// The dense weight's parameter id (what an optimizer keys its state and gradients by).
    pub fn weight_id(&self) -> burn::module::ParamId {
        self.dense.weight.id
    }

    /// 1 where the dense weight is not zero, 0 where it is, in the parameter's own layout
    /// (burn's `[in, out]`): the mask that keeps a pruned weight pruned.
    pub fn keep_mask(&self) -> Tensor<2> {
        self.dense.weight.val().not_equal_elem(0.0).float()
    }

    /// [`merge`](Self::merge) that keeps the dense weight's zeros zero: a pruned base (2:4,
    /// Wanda) stays sparse after a recovery adapter is folded in, where a plain merge would
    /// fill every pruned weight with the adapter's update.
    pub fn merge_keeping_zeros(self) -> Self {
        let keep = self.keep_mask();
        let mut merged = self.merge();
        let w = merged.dense.weight.val() * keep;
        merged.dense.weight = Param::from_tensor(w.detach());
        merged
    }

    /// Takes the adapter out of a weight it was merged into (`W - scaling * A B`), returning the
    /// projection with the adapter attached again: peft's `unmerge_adapter`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a DoRA adapter: a merged DoRA weight no longer holds the norm
    /// its columns were divided by (peft keeps it in a cache of the merging process), so the
    /// base weight cannot be recovered from it.
    pub fn unmerge(mut self, adapter: LoraAdapter) -> Result<Self> {
        if adapter.magnitude.is_some() {
            return Err(Error::Unsupported {
                what: "unmerging a merged DoRA adapter",
                value:
                    "the merge divided each output by a norm the merged weight no longer holds; \
                        reload the base weights and attach the adapter instead"
                        .into(),
            });
        }
        let base = self.dense.weight.val() - adapter.delta();
        self.dense.weight = Param::from_tensor(base.detach());
        Ok(self.with_lora(adapter))
    }

    /// `x W + b (+ adapter)` for `x` `[B, T, in]`, with batch and time folded into rows: one
    /// 2-D matmul (burn's `Linear::forward` on a 3-D input runs a broadcast batched matmul,
    /// about 12x slower on flex than the 2-D product against the same transposed view).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d_in] = x.dims();
        let d_out = self.dims()[1];
        let rows = x.reshape([b * t, d_in]);
        record_input(&rows);
        let xw = rows.clone().matmul(self.dense.weight.val());
        let mut y = match &self.dense.bias {
            Some(bias) => xw.clone() + bias.val().unsqueeze::<2>(),
            None => xw.clone(),
        };
        if let Some(lora) = &self.lora {
            let dropped = lora.dropout.forward(rows);
            let update = dropped
                .clone()
                .matmul(lora.a.val())
                .matmul(lora.b.val())
                .mul_scalar(lora.scaling);
            match &lora.magnitude {
                None => y = y + update,
                Some(m) => {
                    // peft's DoraLinearLayer: the base result of the dropped input, bias
                    // excluded (without dropout, the one already computed).
                    let base = if lora.dropout.prob == 0.0 {
                        xw
                    } else {
                        dropped.matmul(self.dense.weight.val())
                    };
                    let norm = self.weight_norm(lora.delta());
                    let scale = m.val().unsqueeze::<2>() / norm;
                    y = y + base * (scale.clone() - 1.0) + update * scale;
                }
            }
        }
        y.reshape([b, t, d_out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn t2(v: Vec<f32>, shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, shape), &Device::flex())
    }

    #[test]
    fn lora_adds_scaled_low_rank_update_and_merge_matches() {
        // W [out=3, in=2], A [r=1, in=2] -> a [2, 1], B [out=3, r=1] -> b [1, 3].
        let w = t2(vec![1., 2., 3., 4., 5., 6.], [3, 2]);
        let proj = Projection::from_hf(w, None);
        let a = t2(vec![0.5, -1.0], [2, 1]);
        let b = t2(vec![1.0, 2.0, 3.0], [1, 3]);
        let adapted = proj.with_lora(LoraAdapter::new(a.clone(), b.clone(), 2.0, 0.0));
        let x = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, 1.0], [1, 1, 2]),
            &Device::flex(),
        );
        let y: Vec<f32> = adapted.forward(x.clone()).try_into_vec_as::<f32>().unwrap();
        // Wx = [3, 7, 11]; A x = -0.5; B (A x) * 2 = [-1, -2, -3].
        assert_eq!(y, vec![2.0, 5.0, 8.0]);
        let merged = adapted.merge();
        assert!(merged.lora().is_none());
        let ym: Vec<f32> = merged.forward(x.clone()).try_into_vec_as::<f32>().unwrap();
        assert_eq!(ym, y);
        let back = merged.unmerge(LoraAdapter::new(a, b, 2.0, 0.0)).unwrap();
        let base: Vec<f32> = back.weight_hf().try_into_vec_as::<f32>().unwrap();
        assert_eq!(base, vec![1., 2., 3., 4., 5., 6.]);
    }

    #[test]
    fn dora_renormalises_each_output_and_refuses_unmerge() {
        // W [out=2, in=2] rows (3, 4) and (0, 2); A = 0: the adapted weight is W, so each
        // output is W's row rescaled to length m.
        let w = t2(vec![3., 4., 0., 2.], [2, 2]);
        let lora = LoraAdapter::new(t2(vec![0., 0.], [2, 1]), t2(vec![1., 1.], [1, 2]), 1.0, 0.0)
            .with_magnitude(Tensor::from_data(
                TensorData::new(vec![10f32, 1.0], [2]),
                &Device::flex(),
            ));
        let proj = Projection::from_hf(w, None).with_lora(lora.clone());
        let x = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, 1.0], [1, 1, 2]),
            &Device::flex(),
        );
        let y: Vec<f32> = proj.forward(x).try_into_vec_as::<f32>().unwrap();
        // Row 0: (3, 4) * 10 / 5 -> 14; row 1: (0, 2) * 1 / 2 -> 1.
        assert!(
            (y[0] - 14.0).abs() < 1e-5 && (y[1] - 1.0).abs() < 1e-5,
            "{y:?}"
        );
        let merged = proj.merge();
        let w: Vec<f32> = merged.weight_hf().try_into_vec_as::<f32>().unwrap();
        assert_eq!(w, vec![6., 8., 0., 1.]);
        assert!(matches!(
            merged.unmerge(lora),
            Err(Error::Unsupported { .. })
        ));
    }
}
