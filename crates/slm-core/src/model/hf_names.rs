//! Where each decoder parameter lives in a Hugging Face checkpoint.
//!
//! There is one layout: the decoder module itself. Its parameters, walked in order by burn's
//! module visitor, are named by [`hf_name`] from their module path
//! (`layers.0.self_attn.q_proj.dense.weight` -> `model.layers.0.self_attn.q_proj.weight`), and
//! everything else derives from that walk: [`Collect`] reads names, shapes and values
//! ([`Decoder::named_parameters`](crate::model::Decoder::named_parameters)), [`Binder`] sets them
//! from a checkpoint, and [`disk_layout`] lists the on-disk tensors of a config from the
//! (lazy, unallocated) module structure.
//!
//! The decoder always sees the unfused Llama layout (`q_proj`, `k_proj`, `v_proj`, `gate_proj`,
//! `up_proj`). Phi-3 checkpoints store `qkv_proj` and `gate_up_proj` fused along the output
//! rows; [`disk_layout`] describes that, [`bind`] splits on load and [`to_checkpoint`] fuses on
//! save, so the names, shapes and order transformers expects round-trip exactly.

use std::collections::{BTreeSet, HashMap};

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::weights::WeightSource;

/// A named f32 tensor on the host: name, shape, row-major values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// One tensor as stored on disk, made of one or more canonical parameters stacked by rows.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskTensor {
    /// The on-disk name (`model.layers.0.self_attn.qkv_proj.weight`).
    pub name: String,
    /// The on-disk shape, `[out, in]` for matrices.
    pub shape: Vec<usize>,
    /// The canonical parameters it holds, in row order, with their row counts.
    pub parts: Vec<(String, usize)>,
}

impl DiskTensor {
    fn single(name: String, shape: Vec<usize>) -> Self {
        let rows = shape[0];
        Self {
            parts: vec![(name.clone(), rows)],
            name,
            shape,
        }
    }
}

/// How a decoder parameter is stored in a Hugging Face checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A weight or bias of the base model; `transposed` when burn keeps it `[in, out]` and the
    /// checkpoint `[out, in]` (every projection weight).
    Base {
        /// Whether the checkpoint's layout is the transpose of burn's.
        transposed: bool,
    },
    /// A LoRA `A` factor (burn `[in, r]`, peft `lora_A.weight` `[r, in]`).
    LoraA,
    /// A LoRA `B` factor (burn `[r, out]`, peft `lora_B.weight` `[out, r]`).
    LoraB,
    /// A DoRA magnitude vector (`[out]`, peft `lora_magnitude_vector`).
    LoraMagnitude,
}

/// The Hugging Face name of the decoder parameter at burn module path `path`, whose innermost
/// container is `container` (burn's `Struct:Linear`, `Struct:RmsNorm`, ...).
///
/// `embed_tokens.weight` -> `model.embed_tokens.weight`, `layers.0.input_layernorm.gamma` ->
/// `model.layers.0.input_layernorm.weight`, `layers.0.mlp.up_proj.dense.weight` ->
/// `model.layers.0.mlp.up_proj.weight`, `lm_head.dense.weight` -> `lm_head.weight`, and an
/// adapter's `layers.0.self_attn.q_proj.lora.a` -> `model.layers.0.self_attn.q_proj.lora_A.weight`
/// (`lora.magnitude` -> `...q_proj.lora_magnitude_vector`; peft prefixes `base_model.model.`
/// in its files).
pub fn hf_name(path: &[String], container: &str) -> (String, ParamKind) {
    let mut parts: Vec<&str> = path
        .iter()
        .map(String::as_str)
        .filter(|p| *p != "dense")
        .collect();
    let kind = match parts.as_slice() {
        [.., "lora", "a"] => ParamKind::LoraA,
        [.., "lora", "b"] => ParamKind::LoraB,
        [.., "lora", "magnitude"] => ParamKind::LoraMagnitude,
        [.., "weight"] => ParamKind::Base {
            transposed: container.ends_with("Linear"),
        },
        _ => ParamKind::Base { transposed: false },
    };
    match kind {
        ParamKind::LoraA | ParamKind::LoraB => {
            parts.truncate(parts.len() - 2);
            parts.push(if kind == ParamKind::LoraA {
                "lora_A"
            } else {
                "lora_B"
            });
            parts.push("weight");
        }
        ParamKind::LoraMagnitude => {
            parts.truncate(parts.len() - 2);
            parts.push("lora_magnitude_vector");
        }
        ParamKind::Base { .. } => {
            if let Some(last) = parts.last_mut()
                && *last == "gamma"
            {
                *last = "weight";
            }
        }
    }
    let name = parts.join(".");
    if parts.first() == Some(&"lm_head") {
        (name, kind)
    } else {
        (format!("model.{name}"), kind)
    }
}

/// Tracks the module path while burn walks a module.
#[derive(Debug, Default)]
struct PathTracker {
    path: Vec<String>,
    containers: Vec<String>,
}

impl PathTracker {
    fn enter(&mut self, name: &str, container: &str) {
        self.path.push(name.to_string());
        self.containers.push(container.to_string());
    }

    fn exit(&mut self) {
        self.path.pop();
        self.containers.pop();
    }

    fn name(&self) -> (String, ParamKind) {
        hf_name(
            &self.path,
            self.containers.last().map(String::as_str).unwrap_or(""),
        )
    }
}

/// The Hugging Face name of every parameter of `module` (adapters too, peft-style
/// `...q_proj.lora_A.weight`) with its id, in module order: how optimizer state and gradients,
/// keyed by id in memory, get names that survive a restart.
pub fn parameter_names<M: burn::module::Module>(
    module: &M,
) -> Vec<(burn::module::ParamId, String)> {
    struct Names {
        tracker: PathTracker,
        out: Vec<(burn::module::ParamId, String)>,
    }
    impl ModuleVisitor for Names {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.tracker.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.tracker.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.out.push((param.id, self.tracker.name().0));
        }
    }
    let mut names = Names {
        tracker: PathTracker::default(),
        out: Vec::new(),
    };
    module.visit(&mut names);
    names.out
}

/// A module visitor collecting every base parameter as a [`NamedTensor`] in Hugging Face
/// naming and layout (adapters are skipped: [`crate::peft`] writes those); with
/// [`Collect::shapes`] only names and shapes, read lazily, so no value is allocated.
#[derive(Debug)]
pub struct Collect {
    tracker: PathTracker,
    values: bool,
    only: Option<BTreeSet<String>>,
    out: Vec<NamedTensor>,
    error: Option<Error>,
}

impl Collect {
    /// Names, shapes and f32 values.
    pub fn values() -> Self {
        Collect {
            tracker: PathTracker::default(),
            values: true,
            only: None,
            out: Vec::new(),
            error: None,
        }
    }

    /// Names, shapes and values of the parameters named in `names` only (the others are not
    /// read).
    pub fn values_of(names: BTreeSet<String>) -> Self {
        Collect {
            only: Some(names),
            ..Collect::values()
        }
    }

    /// Names and shapes only (the values come back empty).
    pub fn shapes() -> Self {
        Collect {
            values: false,
            ..Collect::values()
        }
    }

    /// The collected tensors, in module order.
    pub fn finish(self) -> Result<Vec<NamedTensor>> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.out),
        }
    }
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.tracker.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.tracker.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (name, kind) = self.tracker.name();
        let ParamKind::Base { transposed } = kind else {
            return;
        };
        if self.only.as_ref().is_some_and(|only| !only.contains(&name)) {
            return;
        }
        let mut shape = param.lazy_shape().dims::<D>().to_vec();
        if transposed {
            shape.reverse();
        }
        let values = if !self.values {
            Vec::new()
        } else {
            let t = param.val();
            let t = if transposed { t.transpose() } else { t };
            match t.try_into_vec_as::<f32>() {
                Ok(v) => v,
                Err(e) => {
                    self.error
                        .get_or_insert(Error::Backend(format!("reading {name}: {e:?}")));
                    return;
                }
            }
        };
        self.out.push((name, shape, values));
    }
}

/// A trainable parameter with id `id` from values in Hugging Face layout (`transposed`: the
/// checkpoint keeps it `[out, in]`, burn `[in, out]`, so it becomes a zero-copy transposed
/// view). Trainable as `Param::from_tensor` makes it: freezing is the caller's choice.
fn hf_param<const D: usize>(
    values: Vec<f32>,
    shape: Vec<usize>,
    transposed: bool,
    device: &Device,
    id: burn::module::ParamId,
) -> Param<Tensor<D>> {
    let t = Tensor::<D>::from_data(TensorData::new(values, shape), device);
    let t = if transposed { t.transpose() } else { t };
    let mut param = Param::from_tensor(t);
    param.id = id;
    param
}

/// A module mapper setting every base parameter from [`BoundWeights`] by its Hugging Face name
/// (transposing projection weights to burn's `[in, out]` as a zero-copy view, which flex
/// multiplies as fast as a contiguous matrix). Adapter parameters are left alone.
#[derive(Debug)]
pub struct Binder {
    tracker: PathTracker,
    bound: BoundWeights,
    device: Device,
    error: Option<Error>,
}

impl Binder {
    /// A binder taking its tensors from `bound`, creating them on `device`.
    pub fn new(bound: BoundWeights, device: Device) -> Self {
        Binder {
            tracker: PathTracker::default(),
            bound,
            device,
            error: None,
        }
    }

    /// The first error met while mapping (a parameter the checkpoint lacks).
    pub fn finish(self) -> Result<()> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl ModuleMapper for Binder {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.tracker.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.tracker.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (name, kind) = self.tracker.name();
        let ParamKind::Base { transposed } = kind else {
            return param;
        };
        match self.bound.take(&name) {
            Ok((values, shape)) => hf_param(values, shape, transposed, &self.device, param.id),
            Err(e) => {
                self.error.get_or_insert(e);
                param
            }
        }
    }
}

/// Whether the module of parameter `name` (a Hugging Face name such as
/// `model.layers.0.input_layernorm.weight`) or one of its ancestors ends with one of
/// `modules`: peft's rule for `modules_to_save` (plain suffixes, so `norm` picks `model.norm`
/// and every `*_layernorm`; `mlp` picks a whole MLP).
pub fn in_saved_module(name: &str, modules: &[String]) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    (1..parts.len()).any(|n| {
        let module = parts[..n].join(".");
        modules.iter().any(|m| module.ends_with(m.as_str()))
    })
}

/// A module mapper making the base parameters that `select` picks (by Hugging Face name)
/// trainable, each with its value replaced from `values` (Hugging Face name, layout and shape)
/// where `values` holds it: how peft's `modules_to_save` are attached and loaded. Adapter
/// parameters are left alone.
pub struct TrainSelected<'a> {
    tracker: PathTracker,
    select: &'a dyn Fn(&str) -> bool,
    values: HashMap<String, (Vec<usize>, Vec<f32>)>,
    source_name: String,
    device: Device,
    selected: Vec<String>,
    error: Option<Error>,
}

impl std::fmt::Debug for TrainSelected<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainSelected")
            .field("values", &self.values.keys().collect::<Vec<_>>())
            .field("selected", &self.selected)
            .finish_non_exhaustive()
    }
}

impl<'a> TrainSelected<'a> {
    /// A mapper for the parameters `select` picks, replacing values from `values` (read from
    /// `source_name`, named in errors) on `device`.
    pub fn new(
        select: &'a dyn Fn(&str) -> bool,
        values: HashMap<String, (Vec<usize>, Vec<f32>)>,
        source_name: impl Into<String>,
        device: Device,
    ) -> Self {
        TrainSelected {
            tracker: PathTracker::default(),
            select,
            values,
            source_name: source_name.into(),
            device,
            selected: Vec::new(),
            error: None,
        }
    }

    /// The names of the parameters made trainable, in module order.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for a value whose shape is not its parameter's, and
    /// [`Error::UnexpectedTensors`] for values no selected parameter took.
    pub fn finish(self) -> Result<Vec<String>> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if !self.values.is_empty() {
            let mut names: Vec<String> = self.values.into_keys().collect();
            names.sort();
            names.truncate(8);
            return Err(Error::UnexpectedTensors {
                source_name: self.source_name,
                names,
            });
        }
        Ok(self.selected)
    }
}

impl ModuleMapper for TrainSelected<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.tracker.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.tracker.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (name, kind) = self.tracker.name();
        let ParamKind::Base { transposed } = kind else {
            return param;
        };
        if !(self.select)(&name) {
            return param;
        }
        self.selected.push(name.clone());
        let Some((shape, values)) = self.values.remove(&name) else {
            return param.set_require_grad(true);
        };
        let mut expected = param.lazy_shape().dims::<D>().to_vec();
        if transposed {
            expected.reverse();
        }
        if shape != expected {
            self.error.get_or_insert(Error::ShapeMismatch {
                source_name: self.source_name.clone(),
                name,
                got: shape,
                expected,
            });
            return param;
        }
        hf_param(values, shape, transposed, &self.device, param.id)
    }
}

/// The tensors a checkpoint of `config` holds, in transformers' naming and layout: the
/// decoder's own parameters ([`Decoder::parameter_shapes`](crate::model::Decoder::parameter_shapes)
/// of the lazy, unallocated structure), fused where the architecture fuses.
pub fn disk_layout(config: &ModelConfig) -> Vec<DiskTensor> {
    let canonical = config.init(&Device::default()).parameter_shapes();
    if config.architecture != Architecture::Phi3 {
        return canonical
            .into_iter()
            .map(|(name, shape)| DiskTensor::single(name, shape))
            .collect();
    }
    // Phi-3 stacks q, k, v into qkv_proj and gate, up into gate_up_proj, by output rows.
    let mut out: Vec<DiskTensor> = Vec::new();
    for (name, shape) in canonical {
        let fused = [
            ("self_attn.q_proj.weight", "self_attn.qkv_proj.weight", true),
            (
                "self_attn.k_proj.weight",
                "self_attn.qkv_proj.weight",
                false,
            ),
            (
                "self_attn.v_proj.weight",
                "self_attn.qkv_proj.weight",
                false,
            ),
            ("mlp.gate_proj.weight", "mlp.gate_up_proj.weight", true),
            ("mlp.up_proj.weight", "mlp.gate_up_proj.weight", false),
        ]
        .into_iter()
        .find_map(|(part, whole, first)| {
            let prefix = name.strip_suffix(part)?;
            Some((format!("{prefix}{whole}"), first))
        });
        match (fused, out.last_mut()) {
            (Some((_, false)), Some(last)) => {
                last.shape[0] += shape[0];
                last.parts.push((name, shape[0]));
            }
            (Some((whole, _)), _) => out.push(DiskTensor {
                name: whole,
                parts: vec![(name, shape[0])],
                shape,
            }),
            (None, _) => out.push(DiskTensor::single(name, shape)),
        }
    }
    out
}

/// Tensors some checkpoints carry that hold nothing the model needs.
fn ignorable(name: &str, config: &ModelConfig) -> bool {
    name.ends_with("rotary_emb.inv_freq")
        || (config.tie_word_embeddings && name == "lm_head.weight")
}

/// Canonical parameters read from a checkpoint: name -> (f32 values, HF shape).
#[derive(Debug, Default)]
pub struct BoundWeights {
    source_name: String,
    map: HashMap<String, (Vec<f32>, Vec<usize>)>,
}

impl BoundWeights {
    /// Canonical parameters held in memory (as [`crate::model::Decoder::named_parameters`]
    /// returns them); `source_name` names them in errors.
    pub(crate) fn from_parameters(
        source_name: impl Into<String>,
        params: Vec<NamedTensor>,
    ) -> Self {
        BoundWeights {
            source_name: source_name.into(),
            map: params
                .into_iter()
                .map(|(name, shape, values)| (name, (values, shape)))
                .collect(),
        }
    }

    /// Removes and returns one canonical parameter.
    pub fn take(&mut self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        self.map.remove(name).ok_or_else(|| Error::MissingTensor {
            source_name: self.source_name.clone(),
            name: name.to_string(),
        })
    }
}

/// `config`'s on-disk layout ([`disk_layout`]) after checking `weights` against it strictly:
/// the layer count, no unexpected tensors, every tensor present with its shape. Every loader
/// (the burn decoder's [`bind`], the CPU fast path) goes through it, so they accept and refuse
/// the same checkpoints with the same errors.
pub fn checked_layout(config: &ModelConfig, weights: &dyn WeightSource) -> Result<Vec<DiskTensor>> {
    let source_name = weights.source_name();
    // The layer count first: the layout below has a dozen entries per layer the config claims.
    let layers = weights
        .tensor_names()
        .iter()
        .filter_map(|n| {
            n.strip_prefix("model.layers.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |last| last.saturating_add(1));
    if layers != config.num_hidden_layers {
        return Err(Error::ConfigMismatch {
            source_name,
            field: "num_hidden_layers",
            config: config.num_hidden_layers,
            weights: layers,
        });
    }
    let layout = disk_layout(config);
    let known: BTreeSet<&str> = layout.iter().map(|t| t.name.as_str()).collect();
    let unexpected: Vec<String> = weights
        .tensor_names()
        .into_iter()
        .filter(|n| !known.contains(n.as_str()) && !ignorable(n, config))
        .collect();
    if !unexpected.is_empty() {
        return Err(Error::UnexpectedTensors {
            source_name,
            names: unexpected.into_iter().take(8).collect(),
        });
    }
    // Check every shape before reading anything, so a mismatch costs no dequantization.
    for t in &layout {
        let info = weights
            .tensor_info(&t.name)
            .ok_or_else(|| Error::MissingTensor {
                source_name: source_name.clone(),
                name: t.name.clone(),
            })?;
        if info.shape != t.shape {
            return Err(Error::ShapeMismatch {
                source_name: source_name.clone(),
                name: t.name.clone(),
                got: info.shape,
                expected: t.shape.clone(),
            });
        }
    }
    Ok(layout)
}

/// Reads every tensor of `config`'s layout from `weights`, checking names and shapes strictly
/// ([`checked_layout`]), and splits fused tensors into canonical parameters.
pub fn bind(config: &ModelConfig, weights: &dyn WeightSource) -> Result<BoundWeights> {
    let layout = checked_layout(config, weights)?;
    let source_name = weights.source_name();
    let mut map = HashMap::new();
    for t in layout {
        let values = weights.read_f32(&t.name)?;
        let cols: usize = t.shape[1..].iter().product();
        if values.len() != t.shape[0] * cols {
            return Err(Error::format(
                &source_name,
                format!(
                    "tensor `{}` yielded {} values, its shape {:?} needs {}",
                    t.name,
                    values.len(),
                    t.shape,
                    t.shape[0] * cols
                ),
            ));
        }
        if t.parts.len() == 1 {
            map.insert(t.name.clone(), (values, t.shape.clone()));
            continue;
        }
        let mut start = 0;
        for (part, rows) in &t.parts {
            let mut shape = t.shape.clone();
            shape[0] = *rows;
            map.insert(
                part.clone(),
                (values[start * cols..(start + rows) * cols].to_vec(), shape),
            );
            start += rows;
        }
    }
    Ok(BoundWeights { source_name, map })
}

/// Turns canonical parameters (as [`crate::model::Decoder::named_parameters`] returns them) into
/// the on-disk tensors of `config`'s architecture, fusing where the architecture fuses.
pub fn to_checkpoint(config: &ModelConfig, params: Vec<NamedTensor>) -> Result<Vec<NamedTensor>> {
    let mut by_name: HashMap<String, (Vec<usize>, Vec<f32>)> =
        params.into_iter().map(|(n, s, v)| (n, (s, v))).collect();
    let mut out = Vec::new();
    for t in disk_layout(config) {
        let mut data = Vec::with_capacity(t.shape.iter().product());
        for (part, _) in &t.parts {
            let (_, v) = by_name.remove(part).ok_or_else(|| Error::MissingTensor {
                source_name: "model parameters".into(),
                name: part.clone(),
            })?;
            data.extend_from_slice(&v);
        }
        out.push((t.name, t.shape, data));
    }
    Ok(out)
}
