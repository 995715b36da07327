//! Gradients and the optimizer step on a burn module: [`Grads`] holds each trainable
//! parameter's gradient (summed over micro-batches for gradient accumulation), and
//! [`TensorAdamW`] applies PyTorch's AdamW (the same math and [`AdamWConfig`] as the reference
//! [`AdamW`](crate::AdamW), which its tests compare it with) with moments kept as tensors on the
//! parameter's device. [`Grads::clip_global_norm`] scales all gradients together as
//! `torch.nn.utils.clip_grad_norm_` does (burn's own clipping works per tensor).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

use crate::adamw::AdamWConfig;
use crate::clip::CLIP_EPS;
use crate::error::{Error, Result};

/// The gradient of every trainable parameter of a module, flattened, by parameter id (on the
/// inner, non-autodiff device).
#[derive(Debug, Clone, Default)]
pub struct Grads {
    by_id: HashMap<ParamId, Tensor<1>>,
}

impl Grads {
    /// Runs the backward pass of `loss` and keeps the gradients of `module`'s parameters.
    /// Frozen parameters have none.
    pub fn from_backward<M: Module>(loss: &Tensor<1>, module: &M) -> Self {
        let grads = loss.backward();
        let mut collect = CollectGrads {
            grads: &grads,
            out: Grads::default(),
        };
        module.visit(&mut collect);
        collect.out
    }

    /// Sets the gradient of parameter `id` (given gradients, in tests and custom losses).
    pub fn insert<const D: usize>(&mut self, id: ParamId, grad: Tensor<D>) {
        let n: usize = grad.dims().iter().product();
        self.by_id.insert(id, grad.reshape([n]));
    }

    /// Parameters with a gradient.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no parameter has a gradient (a fully frozen model).
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The gradient of parameter `id`, flattened.
    pub fn get(&self, id: ParamId) -> Option<&Tensor<1>> {
        self.by_id.get(&id)
    }

    /// Adds `other` (another micro-batch) into these gradients.
    pub fn accumulate(&mut self, other: Grads) {
        for (id, g) in other.by_id {
            let sum = match self.by_id.remove(&id) {
                Some(mine) => mine + g,
                None => g,
            };
            self.by_id.insert(id, sum);
        }
    }

    /// Multiplies the gradient of `id` (if it has one) elementwise by `mask` (flattened as the
    /// gradient is): zeros in the mask freeze those elements.
    pub fn mask(&mut self, id: ParamId, mask: &Tensor<1>) {
        if let Some(g) = self.by_id.get_mut(&id) {
            *g = g.clone() * mask.clone();
        }
    }

    /// Multiplies every gradient by `factor` (1 / micro-batches, for a mean).
    pub fn scale(&mut self, factor: f64) {
        for g in self.by_id.values_mut() {
            *g = g.clone().mul_scalar(factor as f32);
        }
    }

    /// The global L2 norm over all gradients.
    ///
    /// # Errors
    /// [`Error::Backend`] when a value cannot be read.
    pub fn norm(&self) -> Result<f64> {
        let mut sum = 0f64;
        for g in self.by_id.values() {
            let s = g
                .clone()
                .square()
                .sum()
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Backend(format!("reading a gradient norm: {e:?}")))?;
            sum += s[0] as f64;
        }
        Ok(sum.sqrt())
    }

    /// Scales every gradient so the global L2 norm is at most `max_norm` (coefficient
    /// `max_norm / (norm + 1e-6)` when above, as PyTorch), returning the norm before clipping.
    ///
    /// # Errors
    /// [`Error::NonFinite`] when a gradient holds NaN or an infinity (nothing is scaled).
    pub fn clip_global_norm(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.norm()?;
        if !norm.is_finite() {
            return Err(Error::NonFinite {
                tensor: None,
                index: 0,
                value: norm as f32,
            });
        }
        if norm > max_norm {
            self.scale(max_norm / (norm + CLIP_EPS as f64));
        }
        Ok(norm)
    }
}

struct CollectGrads<'a> {
    grads: &'a burn::tensor::Gradients,
    out: Grads,
}

impl ModuleVisitor for CollectGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            let n: usize = g.dims().iter().product();
            self.out.by_id.insert(param.id, g.reshape([n]));
        }
    }
}

/// Moments of one parameter, flattened.
#[derive(Debug, Clone)]
struct Moments {
    exp_avg: Tensor<1>,
    exp_avg_sq: Tensor<1>,
}

/// AdamW over a burn module's parameters, PyTorch semantics: decoupled weight decay first,
/// then bias-corrected moments (see [`AdamW`](crate::AdamW) for the formula).
#[derive(Debug, Clone)]
pub struct TensorAdamW {
    config: AdamWConfig,
    step: u64,
    moments: HashMap<ParamId, Moments>,
}

impl TensorAdamW {
    /// An optimizer with `config` and no state yet.
    ///
    /// # Errors
    /// [`Error::InvalidHyperParameter`] as [`AdamWConfig::validate`].
    pub fn new(config: AdamWConfig) -> Result<Self> {
        config.validate()?;
        Ok(TensorAdamW {
            config,
            step: 0,
            moments: HashMap::new(),
        })
    }

    /// Steps taken so far.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// One step on every parameter of `module` that has a gradient in `grads`, at learning
    /// rate `lr`. Parameters without a gradient (frozen ones) are left as they are.
    pub fn step<M: Module>(&mut self, lr: f64, module: M, mut grads: Grads) -> M {
        self.step += 1;
        let mut mapper = StepMapper {
            optim: self,
            lr,
            grads: &mut grads,
        };
        module.map(&mut mapper)
    }

    /// The step count and every parameter's moments as flat `f32` vectors: what a checkpoint
    /// saves.
    ///
    /// # Errors
    /// [`Error::Backend`] when a value cannot be read.
    pub fn state(&self) -> Result<OptimizerState> {
        let read = |t: &Tensor<1>| {
            t.clone()
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Backend(format!("reading optimizer state: {e:?}")))
        };
        let mut moments = Vec::with_capacity(self.moments.len());
        for (id, m) in &self.moments {
            moments.push(ParamMoments {
                id: *id,
                exp_avg: read(&m.exp_avg)?,
                exp_avg_sq: read(&m.exp_avg_sq)?,
            });
        }
        Ok(OptimizerState {
            step: self.step,
            moments,
        })
    }

    /// Restores a state saved by [`state`](Self::state), on `device`.
    pub fn restore(&mut self, state: OptimizerState, device: &Device) {
        let t = |x: Vec<f32>| {
            let n = x.len();
            Tensor::<1>::from_data(TensorData::new(x, [n]), device)
        };
        self.step = state.step;
        self.moments = state
            .moments
            .into_iter()
            .map(|m| {
                (
                    m.id,
                    Moments {
                        exp_avg: t(m.exp_avg),
                        exp_avg_sq: t(m.exp_avg_sq),
                    },
                )
            })
            .collect();
    }
}

/// One parameter's AdamW moments, flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamMoments {
    /// The parameter.
    pub id: ParamId,
    /// First moment.
    pub exp_avg: Vec<f32>,
    /// Second moment.
    pub exp_avg_sq: Vec<f32>,
}

/// Everything [`TensorAdamW`] carries between steps.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState {
    /// Steps taken.
    pub step: u64,
    /// Per-parameter moments.
    pub moments: Vec<ParamMoments>,
}

struct StepMapper<'a> {
    optim: &'a mut TensorAdamW,
    lr: f64,
    grads: &'a mut Grads,
}

impl ModuleMapper for StepMapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(g) = self.grads.by_id.remove(&id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let shape = tensor.dims();
        let n: usize = shape.iter().product();
        let p = tensor.inner().reshape([n]);
        let AdamWConfig {
            betas: (beta1, beta2),
            eps,
            weight_decay,
            ..
        } = self.optim.config;
        let lr = self.lr;
        let t = self.optim.step.min(i32::MAX as u64) as i32;
        let state = self.optim.moments.remove(&id).unwrap_or_else(|| Moments {
            exp_avg: g.zeros_like(),
            exp_avg_sq: g.zeros_like(),
        });
        let p = if weight_decay != 0.0 {
            p.mul_scalar((1.0 - lr * weight_decay) as f32)
        } else {
            p
        };
        let exp_avg =
            state.exp_avg.clone() + (g.clone() - state.exp_avg).mul_scalar((1.0 - beta1) as f32);
        let exp_avg_sq = state.exp_avg_sq.mul_scalar(beta2 as f32)
            + (g.clone() * g).mul_scalar((1.0 - beta2) as f32);
        let step_size = lr / (1.0 - beta1.powi(t));
        let bias_correction2_sqrt = (1.0 - beta2.powi(t)).sqrt() as f32;
        let denom = exp_avg_sq
            .clone()
            .sqrt()
            .div_scalar(bias_correction2_sqrt)
            .add_scalar(eps as f32);
        let p = p - (exp_avg.clone() / denom).mul_scalar(step_size as f32);
        self.optim.moments.insert(
            id,
            Moments {
                exp_avg,
                exp_avg_sq,
            },
        );
        let mut updated = Tensor::<D>::from_inner(p.reshape(shape));
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}
