//! PEFT LoRA adapters, both ways: [`LoraConfig`] is peft's `LoraConfig` (what
//! `adapter_config.json` holds), [`load_adapter`] attaches the factors of a peft
//! `save_pretrained` directory to a [`Decoder`], and [`save_adapter`] writes one that
//! `peft.PeftModel.from_pretrained(base, dir)` loads: `adapter_config.json` and
//! `adapter_model.safetensors` with peft's key names
//! (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`, `[r, in]`;
//! `lora_B.weight`, `[out, r]`).
//!
//! The update is peft's: `y = W x + B A dropout(x) * scaling`, `scaling = lora_alpha / r`, or
//! `lora_alpha / sqrt(r)` with rsLoRA (`use_rslora`); with DoRA (`use_dora`) the adapted
//! weight is renormalised per output by a trained magnitude vector (`lora_magnitude_vector`,
//! `[out]`; see [`crate::model::linear`]). Settings that would change that meaning and are not
//! implemented here (per-module rank/alpha patterns, LoRA biases, `fan_in_fan_out`, layer
//! subsets) are refused with an error naming the field, never ignored.
//!
//! ```
//! use slm_core::peft::{LoraConfig, load_adapter, save_adapter};
//! use slm_core::prelude::*;
//! # use slm_core::config::RopeScaling;
//! # fn main() -> slm_core::Result<()> {
//! # let config = ModelConfig {
//! #     architecture: Architecture::Llama, vocab_size: 32, hidden_size: 16, intermediate_size: 32,
//! #     num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 4,
//! #     rms_norm_eps: 1e-5, rope_theta: 10_000.0, rope_scaling: RopeScaling::Default, partial_rotary_factor: 1.0,
//! #     max_position_embeddings: 64, sliding_window: None, max_window_layers: None, tie_word_embeddings: true,
//! #     attention_bias: false, o_proj_bias: false, mlp_bias: false, bos_token_id: Some(0),
//! #     eos_token_ids: vec![1], pad_token_id: None, torch_dtype: "float32".into(),
//! # };
//! let base = config.init(&Device::flex());
//! let lora = LoraConfig::new(4, 8.0).with_targets(&["q_proj", "v_proj"]);
//! let model = lora.init(base, 0)?;          // A random, B zero: the model is unchanged
//! let dir = tempfile::tempdir().unwrap();
//! save_adapter(&model, &lora, "tiny-base", dir.path())?;
//! let (again, read) = load_adapter(config.init(&Device::flex()), dir.path())?;
//! assert_eq!(read.r, 4);
//! assert_eq!(again.projections().iter().filter(|(_, p)| p.lora().is_some()).count(), 4);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::checkpoint::{SaveDtype, write_safetensors};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::decoder::infallible;
use crate::model::hf_names::in_saved_module;
use crate::model::{Decoder, LoraAdapter, Projection};
use crate::weights::{SafetensorsWeights, WeightSource};

/// The file peft writes the adapter settings to.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The file peft writes the adapter tensors to.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The prefix peft puts before module names in its files.
const PEFT_PREFIX: &str = "base_model.model.";
/// The name peft gives a DoRA magnitude vector after the module's name.
const MAGNITUDE: &str = "lora_magnitude_vector";

/// Which modules get an adapter, as peft's `target_modules` says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// Module names: a module matches when its name is one of them or ends with `.name`
    /// (`q_proj` matches `model.layers.3.self_attn.q_proj`). `all-linear` alone means every
    /// projection except the LM head, as in peft.
    Names(Vec<String>),
    /// A regular expression the whole module name must match (peft's `re.fullmatch`).
    Regex(String),
}

/// LoRA settings: rank, alpha, dropout, target modules and rsLoRA, as peft names them.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// The rank `r` of each adapter.
    pub r: usize,
    /// `lora_alpha`: the update is scaled by `alpha / r` (`alpha / sqrt(r)` with rsLoRA).
    pub alpha: f64,
    /// Dropout on the adapter's input while training (`lora_dropout`).
    pub dropout: f64,
    /// Which projections get an adapter.
    pub target_modules: TargetModules,
    /// rsLoRA: scale by `alpha / sqrt(r)`, which keeps high ranks stable (`use_rslora`).
    pub rslora: bool,
    /// DoRA: weight-decomposed LoRA, a trained magnitude per output (`use_dora`).
    pub dora: bool,
    /// Modules trained fully beside the adapters and saved whole (`modules_to_save`, e.g.
    /// `lm_head`, `embed_tokens`), matched by peft's rule: a module whose name, or an
    /// ancestor's, ends with one of these strings (see [`in_saved_module`]). A tied LM head
    /// named here gets a copy of its own (as peft's wrapper does), so it trains apart from the
    /// embedding.
    pub modules_to_save: Vec<String>,
}

/// The seven projections of a Llama-family layer.
pub const ALL_PROJECTIONS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

impl LoraConfig {
    /// Rank `r` and `alpha` on all seven projections of every layer, no dropout, no rsLoRA.
    pub fn new(r: usize, alpha: f64) -> Self {
        LoraConfig {
            r,
            alpha,
            dropout: 0.0,
            target_modules: TargetModules::Names(
                ALL_PROJECTIONS.iter().map(|s| s.to_string()).collect(),
            ),
            rslora: false,
            dora: false,
            modules_to_save: Vec::new(),
        }
    }

    /// The same with these target module names (`q_proj`, `v_proj`, ...).
    pub fn with_targets(mut self, names: &[&str]) -> Self {
        self.target_modules = TargetModules::Names(names.iter().map(|s| s.to_string()).collect());
        self
    }

    /// The same with rsLoRA on or off.
    pub fn with_rslora(mut self, rslora: bool) -> Self {
        self.rslora = rslora;
        self
    }

    /// The same with DoRA on or off.
    pub fn with_dora(mut self, dora: bool) -> Self {
        self.dora = dora;
        self
    }

    /// The same with these modules trained fully and saved beside the adapters.
    pub fn with_modules_to_save(mut self, modules: &[&str]) -> Self {
        self.modules_to_save = modules.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The same with this adapter dropout.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// The factor the update `B A x` is multiplied by.
    pub fn scaling(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// [`Error::InvalidConfig`] for a zero rank, a non-finite alpha, a dropout outside
    /// `[0, 1)`, no targets or a bad target regex.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(format!("LoRA: {m}")));
        if self.r == 0 {
            return bad("r must be positive".into());
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return bad(format!("lora_alpha must be positive, got {}", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!(
                "lora_dropout must be in [0, 1), got {}",
                self.dropout
            ));
        }
        match &self.target_modules {
            TargetModules::Names(n) if n.is_empty() => bad("no target_modules".into()),
            TargetModules::Regex(r) => regex::Regex::new(&format!("^(?:{r})$"))
                .map(|_| ())
                .map_err(|e| Error::InvalidConfig(format!("LoRA target_modules regex: {e}"))),
            _ => Ok(()),
        }
    }

    /// Whether the projection named `module` (`model.layers.0.self_attn.q_proj`, `lm_head`)
    /// gets an adapter, by peft's matching rules.
    pub fn matches(&self, module: &str) -> bool {
        match &self.target_modules {
            TargetModules::Names(names) if names.len() == 1 && names[0] == "all-linear" => {
                module != "lm_head"
            }
            TargetModules::Names(names) => names
                .iter()
                .any(|n| module == n || module.ends_with(&format!(".{n}"))),
            TargetModules::Regex(r) => regex::Regex::new(&format!("^(?:{r})$"))
                .map(|re| re.is_match(module))
                .unwrap_or(false),
        }
    }

    /// Attaches a fresh adapter to every targeted projection of `decoder` and freezes the base:
    /// `A` from peft's default (Kaiming-uniform, bound `1/sqrt(in)`), `B` zero (and for DoRA the
    /// magnitude set to the per-output norm of `W`), so the model's outputs are unchanged until
    /// it trains. `seed` makes `A` reproducible.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad config or targets that match no projection.
    pub fn init(&self, decoder: Decoder, seed: u64) -> Result<Decoder> {
        self.validate()?;
        let device = decoder.device();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut attached = 0;
        let model = decoder.map_projections(|name, proj| -> Result<Projection> {
            if !self.matches(name) {
                return Ok(proj);
            }
            attached += 1;
            let [d_in, d_out] = proj.dims();
            let bound = 1.0 / (d_in as f32).sqrt();
            let a: Vec<f32> = (0..d_in * self.r)
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            let a = Tensor::<2>::from_data(TensorData::new(a, [d_in, self.r]), &device);
            let b = Tensor::<2>::zeros([self.r, d_out], &device);
            let mut adapter = LoraAdapter::new(a, b, self.scaling(), self.dropout);
            if self.dora {
                let norm = proj.weight_norm(adapter.delta());
                adapter = adapter.with_magnitude(norm.reshape([d_out]));
            }
            Ok(proj.with_lora(adapter))
        })?;
        self.check_attached(attached)?;
        self.attach_saved_modules(model.freeze_base(), HashMap::new(), "LoraConfig")
    }

    /// Whether the base parameter `name` (Hugging Face naming) belongs to a module in
    /// `modules_to_save`.
    pub fn saves(&self, name: &str) -> bool {
        in_saved_module(name, &self.modules_to_save)
    }

    /// Makes the `modules_to_save` trainable (untying a tied LM head they name first), with
    /// values from `values` where given.
    fn attach_saved_modules(
        &self,
        model: Decoder,
        values: HashMap<String, (Vec<usize>, Vec<f32>)>,
        source: &str,
    ) -> Result<Decoder> {
        if self.modules_to_save.is_empty() {
            return Ok(model);
        }
        let model = if self.saves("lm_head.weight") {
            model.untie_lm_head()
        } else {
            model
        };
        if let Some((name, _)) = model
            .projections()
            .into_iter()
            .find(|(name, p)| p.lora().is_some() && self.saves(&format!("{name}.weight")))
        {
            return Err(Error::InvalidConfig(format!(
                "LoRA: `{name}` is both a LoRA target and inside modules_to_save {:?}; \
                 choose one",
                self.modules_to_save
            )));
        }
        let select = |name: &str| self.saves(name);
        let (model, trained) = model.train_selected(&select, values, source)?;
        if trained.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "LoRA modules_to_save {:?} match no module of this model (its modules are \
                 model.embed_tokens, model.layers.N.input_layernorm, \
                 model.layers.N.post_attention_layernorm, model.norm, lm_head and the \
                 projections)",
                self.modules_to_save
            )));
        }
        Ok(model)
    }

    fn check_attached(&self, attached: usize) -> Result<()> {
        if attached == 0 {
            return Err(Error::InvalidConfig(format!(
                "LoRA target_modules {:?} match no projection of this model (its projections \
                 are q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head)",
                self.target_modules
            )));
        }
        Ok(())
    }

    /// Parses `adapter_config.json` text; `source` names it in errors.
    ///
    /// # Errors
    /// [`Error::Json`] for bad JSON, [`Error::MissingField`] for a missing or mistyped `r`,
    /// `lora_alpha` or `target_modules`, [`Error::Unsupported`] for a peft type other than
    /// LORA and for settings not implemented here (named).
    pub fn from_adapter_config(text: &str, source: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).map_err(|e| Error::Json {
            path: source.into(),
            source: e,
        })?;
        let missing = |field: &str| Error::MissingField {
            source_name: source.to_string(),
            field: field.to_string(),
        };
        match v.get("peft_type").and_then(Value::as_str) {
            None | Some("LORA") => {}
            Some(other) => {
                return Err(Error::Unsupported {
                    what: "peft_type",
                    value: other.to_string(),
                });
            }
        }
        // Settings that change what the adapter computes must be at their neutral value.
        let flag = |field: &str| match v.get(field) {
            None | Some(Value::Null) => Ok(false),
            Some(x) => x.as_bool().ok_or_else(|| missing(field)),
        };
        let neutral = |field: &'static str, ok: &dyn Fn(&Value) -> bool| match v.get(field) {
            None | Some(Value::Null) => Ok(()),
            Some(x) if ok(x) => Ok(()),
            Some(x) => Err(Error::Unsupported {
                what: field,
                value: x.to_string(),
            }),
        };
        let empty = |x: &Value| x.as_object().is_some_and(|m| m.is_empty());
        let falsy = |x: &Value| x == &Value::Bool(false);
        neutral("fan_in_fan_out", &falsy)?;
        neutral("lora_bias", &falsy)?;
        neutral("bias", &|x| x == "none")?;
        neutral("rank_pattern", &empty)?;
        neutral("alpha_pattern", &empty)?;
        neutral("layers_to_transform", &|_| false)?;
        let r = v
            .get("r")
            .and_then(Value::as_u64)
            .ok_or_else(|| missing("r"))? as usize;
        let alpha = v
            .get("lora_alpha")
            .and_then(Value::as_f64)
            .ok_or_else(|| missing("lora_alpha"))?;
        let dropout = match v.get("lora_dropout") {
            None | Some(Value::Null) => 0.0,
            Some(x) => x.as_f64().ok_or_else(|| missing("lora_dropout"))?,
        };
        let target_modules = match v.get("target_modules") {
            Some(Value::String(s)) if s == "all-linear" => {
                TargetModules::Names(vec!["all-linear".into()])
            }
            Some(Value::String(s)) => TargetModules::Regex(s.clone()),
            Some(Value::Array(a)) => TargetModules::Names(
                a.iter()
                    .map(|x| x.as_str().map(String::from))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| missing("target_modules"))?,
            ),
            _ => return Err(missing("target_modules")),
        };
        let modules_to_save = match v.get("modules_to_save") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| missing("modules_to_save"))?,
            Some(_) => return Err(missing("modules_to_save")),
        };
        let config = LoraConfig {
            r,
            alpha,
            dropout,
            target_modules,
            rslora: flag("use_rslora")?,
            dora: flag("use_dora")?,
            modules_to_save,
        };
        config.validate()?;
        Ok(config)
    }

    /// The `adapter_config.json` peft writes for this config on top of `base_model`.
    pub fn to_adapter_config(&self, base_model: &str) -> Value {
        json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.r,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": self.target_modules,
            "use_rslora": self.rslora,
            "use_dora": self.dora,
            "bias": "none",
            "fan_in_fan_out": false,
            "init_lora_weights": true,
            "inference_mode": true,
            "modules_to_save": (!self.modules_to_save.is_empty()).then_some(&self.modules_to_save),
            "rank_pattern": {},
            "alpha_pattern": {},
            "layers_to_transform": null,
            "revision": null,
        })
    }
}

/// One projection's LoRA factors as peft stores them (row-major f32).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraFactors {
    /// `lora_A.weight`, `[r, in]`.
    pub a: Vec<f32>,
    /// `lora_B.weight`, `[out, r]`.
    pub b: Vec<f32>,
    /// DoRA's `lora_magnitude_vector`, `[out]`.
    pub magnitude: Option<Vec<f32>>,
    /// The projection's `[in, out]`.
    pub dims: [usize; 2],
}

/// A peft adapter directory read into memory and checked against a model's projections: what
/// the burn decoder ([`load_adapter`]) and the CPU fast path
/// ([`FastDecoder::load_adapter`](crate::fast::FastDecoder::load_adapter)) both attach.
#[derive(Debug, Clone)]
pub struct AdapterWeights {
    /// The adapter's settings (`adapter_config.json`).
    pub config: LoraConfig,
    /// The factors of every targeted projection, by module name
    /// (`model.layers.0.self_attn.q_proj`, `lm_head`).
    pub factors: BTreeMap<String, LoraFactors>,
    /// The `modules_to_save` tensors by Hugging Face parameter name (`lm_head.weight`,
    /// `model.norm.weight`): shape and values.
    pub saved: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// The weights file, for messages.
    pub source: String,
}

/// The projections an adapter can target in a model of `config`, by module name with their
/// `[in, out]`: seven per layer, then `lm_head` when it is not tied to the embedding (the
/// names and order of [`Decoder::projections`]).
pub fn projection_dims(config: &ModelConfig) -> Vec<(String, [usize; 2])> {
    let (d, ff) = (config.hidden_size, config.intermediate_size);
    let q = config.num_attention_heads * config.head_dim;
    let kv = config.num_key_value_heads * config.head_dim;
    let mut out = Vec::with_capacity(config.num_hidden_layers * 7 + 1);
    for i in 0..config.num_hidden_layers {
        for (name, dims) in [
            ("self_attn.q_proj", [d, q]),
            ("self_attn.k_proj", [d, kv]),
            ("self_attn.v_proj", [d, kv]),
            ("self_attn.o_proj", [q, d]),
            ("mlp.gate_proj", [d, ff]),
            ("mlp.up_proj", [d, ff]),
            ("mlp.down_proj", [ff, d]),
        ] {
            out.push((format!("model.layers.{i}.{name}"), dims));
        }
    }
    if !config.tie_word_embeddings {
        out.push(("lm_head".to_string(), [d, config.vocab_size]));
    }
    out
}

/// Reads `dir/adapter_config.json` and `dir/adapter_model.safetensors` (f32, f16 or bf16),
/// checked against a model of `config` as `PeftModel.from_pretrained(base, dir)` checks it.
///
/// # Errors
/// I/O and format errors naming the file; [`Error::MissingTensor`] when a targeted projection
/// has no factors, [`Error::UnexpectedTensors`] for tensors that belong to no targeted
/// projection or saved module (an adapter for another architecture), [`Error::ShapeMismatch`]
/// for factors whose shape does not fit the model or the config's rank,
/// [`Error::InvalidConfig`] for targets that match nothing or a module both targeted and saved.
pub fn read_adapter(dir: &Path, model: &ModelConfig) -> Result<AdapterWeights> {
    let config_path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let config = LoraConfig::from_adapter_config(&text, &config_path.display().to_string())?;
    let weights_path = dir.join(ADAPTER_WEIGHTS);
    if !weights_path.is_file() && dir.join("adapter_model.bin").is_file() {
        return Err(Error::Unsupported {
            what: "adapter weights format",
            value: "adapter_model.bin (pickle); re-save with safe_serialization=True".into(),
        });
    }
    let weights = SafetensorsWeights::open(&weights_path)?;
    let source = weights.source_name();
    let mut unused: BTreeSet<String> = weights.tensor_names().into_iter().collect();
    let mut read = |name: &str, expected: &[usize]| {
        let info = weights
            .tensor_info(name)
            .ok_or_else(|| Error::MissingTensor {
                source_name: source.clone(),
                name: name.to_string(),
            })?;
        if info.shape != expected {
            return Err(Error::ShapeMismatch {
                source_name: source.clone(),
                name: name.to_string(),
                got: info.shape,
                expected: expected.to_vec(),
            });
        }
        unused.remove(name);
        weights.read_f32(name)
    };
    let mut factors = BTreeMap::new();
    for (name, [d_in, d_out]) in projection_dims(model) {
        if !config.matches(&name) {
            continue;
        }
        if config.saves(&format!("{name}.weight")) {
            return Err(Error::InvalidConfig(format!(
                "LoRA: `{name}` is both a LoRA target and inside modules_to_save {:?}; \
                 choose one",
                config.modules_to_save
            )));
        }
        let key = |factor: &str| format!("{PEFT_PREFIX}{name}.{factor}.weight");
        let a = read(&key("lora_A"), &[config.r, d_in])?;
        let b = read(&key("lora_B"), &[d_out, config.r])?;
        let magnitude = if config.dora {
            Some(read(&format!("{PEFT_PREFIX}{name}.{MAGNITUDE}"), &[d_out])?)
        } else {
            None
        };
        factors.insert(
            name,
            LoraFactors {
                a,
                b,
                magnitude,
                dims: [d_in, d_out],
            },
        );
    }
    config.check_attached(factors.len())?;
    // The saved modules' tensors: every tensor left that names a base parameter of one.
    let mut saved = HashMap::new();
    for key in unused.clone() {
        if let Some(name) = key.strip_prefix(PEFT_PREFIX)
            && config.saves(name)
            && let Some(info) = weights.tensor_info(&key)
        {
            saved.insert(name.to_string(), (info.shape, weights.read_f32(&key)?));
            unused.remove(&key);
        }
    }
    if !unused.is_empty() {
        return Err(Error::UnexpectedTensors {
            source_name: source,
            names: unused.into_iter().take(8).collect(),
        });
    }
    Ok(AdapterWeights {
        config,
        factors,
        saved,
        source,
    })
}

/// Reads a peft adapter directory ([`read_adapter`]) and attaches it to `decoder` (base
/// frozen, unmerged), as `PeftModel.from_pretrained(base, dir)` does.
///
/// # Errors
/// As [`read_adapter`], and [`Error::ShapeMismatch`] / [`Error::UnexpectedTensors`] for saved
/// modules that do not fit the model.
pub fn load_adapter(decoder: Decoder, dir: &Path) -> Result<(Decoder, LoraConfig)> {
    let AdapterWeights {
        config,
        mut factors,
        saved,
        source,
    } = read_adapter(dir, decoder.config())?;
    let device = decoder.device();
    let matrix = |values: Vec<f32>, shape: [usize; 2]| {
        Tensor::<2>::from_data(TensorData::new(values, shape), &device)
    };
    let model = infallible(decoder.map_projections(|name, proj: Projection| {
        let Some(f) = factors.remove(name) else {
            return Ok::<_, std::convert::Infallible>(proj);
        };
        let [d_in, d_out] = f.dims;
        let a = matrix(f.a, [config.r, d_in]);
        let b = matrix(f.b, [d_out, config.r]);
        let mut adapter = LoraAdapter::new(
            a.transpose(),
            b.transpose(),
            config.scaling(),
            config.dropout,
        );
        if let Some(m) = f.magnitude {
            adapter =
                adapter.with_magnitude(Tensor::from_data(TensorData::new(m, [d_out]), &device));
        }
        Ok(proj.with_lora(adapter))
    }));
    let model = config.attach_saved_modules(model.freeze_base(), saved, &source)?;
    Ok((model, config))
}

/// Writes the adapters of `decoder` as a peft adapter directory: `adapter_config.json`
/// (`config`, on top of `base_model`) and `adapter_model.safetensors` (f32), each atomically.
///
/// # Errors
/// [`Error::InvalidInput`] when the decoder carries no adapter; I/O errors naming the file.
pub fn save_adapter(
    decoder: &Decoder,
    config: &LoraConfig,
    base_model: &str,
    dir: &Path,
) -> Result<()> {
    let mut tensors = Vec::new();
    for (name, proj) in decoder.projections() {
        let Some(lora) = proj.lora() else { continue };
        for (factor, t) in [("lora_A", lora.lora_a()), ("lora_B", lora.lora_b())] {
            let shape = t.dims().to_vec();
            let values = t
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Backend(format!("reading {name}.{factor}: {e:?}")))?;
            tensors.push((
                format!("{PEFT_PREFIX}{name}.{factor}.weight"),
                shape,
                values,
            ));
        }
        if let Some(m) = lora.magnitude() {
            let shape = m.dims().to_vec();
            let values = m
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Backend(format!("reading {name}.{MAGNITUDE}: {e:?}")))?;
            tensors.push((format!("{PEFT_PREFIX}{name}.{MAGNITUDE}"), shape, values));
        }
    }
    if tensors.is_empty() {
        return Err(Error::InvalidInput(
            "the model carries no LoRA adapter to save".into(),
        ));
    }
    if !config.modules_to_save.is_empty() {
        for (name, shape, values) in decoder.named_parameters_where(|n| config.saves(n))? {
            tensors.push((format!("{PEFT_PREFIX}{name}"), shape, values));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_safetensors(&dir.join(ADAPTER_WEIGHTS), &tensors, SaveDtype::F32)?;
    let text = serde_json::to_string_pretty(&config.to_adapter_config(base_model))
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    crate::io::write_atomic(&dir.join(ADAPTER_CONFIG), text.as_bytes())
}
