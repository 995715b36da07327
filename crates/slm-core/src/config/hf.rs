//! Reading and writing Hugging Face `config.json` files.
//!
//! [`HfConfig`] mirrors the JSON tolerantly (both the transformers-5 `rope_parameters` layout and
//! the older `rope_theta` + `rope_scaling` one), and [`HfConfig::resolve`] turns it into a
//! validated [`ModelConfig`] or a typed error that names the offending field.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use super::rope::{longrope_attention_factor, yarn_mscale};
use super::{Architecture, ModelConfig, RopeScaling};
use crate::error::{Error, Result};

/// Either one token id or a list of them (`eos_token_id` in Llama 3 is a list).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl TokenIds {
    fn into_vec(self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![id],
            TokenIds::Many(v) => v,
        }
    }
}

/// A tolerant mirror of `config.json` for the supported architectures.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct HfConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    pub model_type: Option<String>,
    pub vocab_size: Option<usize>,
    pub hidden_size: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub rms_norm_eps: Option<f64>,
    pub rope_theta: Option<f64>,
    pub rope_scaling: Option<Value>,
    pub rope_parameters: Option<Value>,
    pub partial_rotary_factor: Option<f64>,
    pub max_position_embeddings: Option<usize>,
    pub sliding_window: Option<usize>,
    pub use_sliding_window: Option<bool>,
    pub max_window_layers: Option<usize>,
    pub original_max_position_embeddings: Option<usize>,
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    pub attention_bias: Option<bool>,
    pub mlp_bias: Option<bool>,
    pub hidden_act: Option<String>,
    pub bos_token_id: Option<TokenIds>,
    pub eos_token_id: Option<TokenIds>,
    pub pad_token_id: Option<TokenIds>,
    #[serde(alias = "torch_dtype")]
    pub dtype: Option<String>,
}

impl HfConfig {
    /// Reads and resolves `path` (a `config.json`).
    pub fn load(path: &Path) -> Result<ModelConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// Parses and resolves JSON text; `source_name` appears in errors.
    pub fn from_json_str(text: &str, source_name: &str) -> Result<ModelConfig> {
        let cfg: HfConfig = serde_json::from_str(text).map_err(|e| Error::Json {
            path: source_name.into(),
            source: e,
        })?;
        cfg.resolve(source_name)
    }

    /// Validates the mirror into a [`ModelConfig`].
    pub fn resolve(self, source_name: &str) -> Result<ModelConfig> {
        let missing = |field: &str| Error::MissingField {
            source_name: source_name.to_string(),
            field: field.to_string(),
        };
        let class = self
            .architectures
            .first()
            .cloned()
            .ok_or_else(|| missing("architectures"))?;
        let architecture = Architecture::from_hf_class(&class)?;
        let hidden_size = self.hidden_size.ok_or_else(|| missing("hidden_size"))?;
        let num_attention_heads = self
            .num_attention_heads
            .ok_or_else(|| missing("num_attention_heads"))?;
        if num_attention_heads == 0 {
            return Err(Error::InvalidConfig(
                "num_attention_heads must be positive".into(),
            ));
        }
        let head_dim = self.head_dim.unwrap_or(hidden_size / num_attention_heads);
        if let Some(act) = &self.hidden_act
            && act != "silu"
        {
            return Err(Error::Unsupported {
                what: "hidden_act",
                value: act.clone(),
            });
        }

        // RoPE: transformers 5 `rope_parameters`, or the older `rope_theta` + `rope_scaling`.
        // Either is an object or null; anything else is an error naming it, never a silent
        // default rope.
        let rope_object = |field: &str, v: &Option<Value>| match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(_) => Err(missing(field)),
        };
        let params = match rope_object("rope_parameters", &self.rope_parameters)? {
            Some(p) => Some(p),
            None => rope_object("rope_scaling", &self.rope_scaling)?,
        };
        let params_name = if self.rope_parameters.as_ref().is_some_and(Value::is_object) {
            "rope_parameters"
        } else {
            "rope_scaling"
        };
        // A key that is present must have the right type; absent keys fall back.
        let get_f = |k: &str| -> Result<Option<f64>> {
            match params.as_ref().and_then(|p| p.get(k)) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| missing(&format!("{params_name}.{k}"))),
            }
        };
        let rope_theta = get_f("rope_theta")?
            .or(self.rope_theta)
            .or(match architecture {
                Architecture::Llama | Architecture::Phi3 | Architecture::Mistral => Some(10_000.0),
                Architecture::Qwen2 => None,
            })
            .ok_or_else(|| missing("rope_theta"))?;
        let rope_type = match params
            .as_ref()
            .and_then(|p| p.get("rope_type").or_else(|| p.get("type")))
        {
            None | Some(Value::Null) => "default".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(missing(&format!("{params_name}.rope_type"))),
        };
        let need = |k: &str| get_f(k)?.ok_or_else(|| missing(&format!("{params_name}.{k}")));
        let max_position_embeddings = self.max_position_embeddings.unwrap_or(2048);
        // `original_max_position_embeddings` sits in the rope parameters or (Phi-3) at the top.
        let original = || -> Result<usize> {
            match get_f("original_max_position_embeddings")? {
                Some(v) => Ok(v as usize),
                None => self.original_max_position_embeddings.ok_or_else(|| {
                    missing(&format!("{params_name}.original_max_position_embeddings"))
                }),
            }
        };
        let factors = |k: &str| -> Result<Vec<f32>> {
            match params.as_ref().and_then(|p| p.get(k)) {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_f64().map(|f| f as f32))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| missing(&format!("{params_name}.{k}"))),
                _ => Err(missing(&format!("{params_name}.{k}"))),
            }
        };
        let rope_scaling = match rope_type.as_str() {
            "default" => RopeScaling::Default,
            "llama3" => RopeScaling::Llama3 {
                factor: need("factor")?,
                low_freq_factor: need("low_freq_factor")?,
                high_freq_factor: need("high_freq_factor")?,
                original_max_position_embeddings: need("original_max_position_embeddings")?
                    as usize,
            },
            "linear" => RopeScaling::Linear {
                factor: need("factor")?,
            },
            "dynamic" => RopeScaling::Dynamic {
                factor: need("factor")?,
            },
            "yarn" => {
                // modeling_rope_utils._compute_yarn_parameters.
                let original = original()?;
                let factor = match get_f("factor")? {
                    Some(f) => f,
                    None => max_position_embeddings as f64 / original as f64,
                };
                let attention_factor = match (
                    get_f("attention_factor")?,
                    get_f("mscale")?.filter(|m| *m != 0.0),
                    get_f("mscale_all_dim")?.filter(|m| *m != 0.0),
                ) {
                    (Some(a), _, _) => a,
                    (None, Some(m), Some(all)) => yarn_mscale(factor, m) / yarn_mscale(factor, all),
                    (None, _, _) => yarn_mscale(factor, 1.0),
                };
                let truncate = match params.as_ref().and_then(|p| p.get("truncate")) {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(missing(&format!("{params_name}.truncate"))),
                };
                RopeScaling::Yarn {
                    factor,
                    original_max_position_embeddings: original,
                    beta_fast: get_f("beta_fast")?.filter(|b| *b != 0.0).unwrap_or(32.0),
                    beta_slow: get_f("beta_slow")?.filter(|b| *b != 0.0).unwrap_or(1.0),
                    attention_factor,
                    truncate,
                }
            }
            "longrope" | "su" => {
                // modeling_rope_utils._compute_longrope_parameters.
                let original = original()?;
                let factor = match get_f("factor")? {
                    Some(f) => f,
                    None => max_position_embeddings as f64 / original as f64,
                };
                let attention_factor = match get_f("attention_factor")? {
                    Some(a) => a,
                    None => longrope_attention_factor(factor, original),
                };
                RopeScaling::LongRope {
                    short_factor: factors("short_factor")?,
                    long_factor: factors("long_factor")?,
                    original_max_position_embeddings: original,
                    attention_factor,
                }
            }
            other => {
                return Err(Error::Unsupported {
                    what: "rope type",
                    value: other.to_string(),
                });
            }
        };
        let partial_rotary_factor = get_f("partial_rotary_factor")?
            .or(self.partial_rotary_factor)
            .unwrap_or(1.0);
        // Which layers slide, as transformers' configs set `layer_types`: Mistral and Phi-3
        // every layer when `sliding_window` is set; Qwen2 only with `use_sliding_window`, from
        // layer `max_window_layers` on.
        let (sliding_window, max_window_layers) = match architecture {
            Architecture::Qwen2 if self.use_sliding_window == Some(true) => {
                (self.sliding_window, self.max_window_layers)
            }
            Architecture::Qwen2 | Architecture::Llama => (None, None),
            Architecture::Phi3 | Architecture::Mistral => (self.sliding_window, None),
        };
        if self.use_sliding_window == Some(true) && sliding_window.is_none() {
            return Err(missing("sliding_window"));
        }
        let attention_bias = match architecture {
            Architecture::Qwen2 => true,
            _ => self.attention_bias.unwrap_or(false),
        };
        let o_proj_bias = match architecture {
            Architecture::Llama | Architecture::Mistral => self.attention_bias.unwrap_or(false),
            _ => false,
        };
        let cfg = ModelConfig {
            architecture,
            vocab_size: self.vocab_size.ok_or_else(|| missing("vocab_size"))?,
            hidden_size,
            intermediate_size: self
                .intermediate_size
                .ok_or_else(|| missing("intermediate_size"))?,
            num_hidden_layers: self
                .num_hidden_layers
                .ok_or_else(|| missing("num_hidden_layers"))?,
            num_attention_heads,
            num_key_value_heads: self.num_key_value_heads.unwrap_or(num_attention_heads),
            head_dim,
            rms_norm_eps: self.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            partial_rotary_factor,
            max_position_embeddings,
            sliding_window,
            max_window_layers,
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(false),
            attention_bias,
            o_proj_bias,
            mlp_bias: matches!(architecture, Architecture::Llama) && self.mlp_bias.unwrap_or(false),
            bos_token_id: self
                .bos_token_id
                .and_then(|t| t.into_vec().first().copied()),
            eos_token_ids: self
                .eos_token_id
                .map(TokenIds::into_vec)
                .unwrap_or_default(),
            pad_token_id: self
                .pad_token_id
                .and_then(|t| t.into_vec().first().copied()),
            torch_dtype: self.dtype.unwrap_or_else(|| "float32".into()),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl ModelConfig {
    /// The `config.json` transformers and vLLM read for this model, saved with `dtype`.
    ///
    /// RoPE settings use the `rope_theta` + `rope_scaling` keys, which both transformers 4 and 5
    /// and vLLM accept.
    pub fn to_hf_json(&self, dtype: &str) -> Result<Value> {
        let mut rope_scaling = match &self.rope_scaling {
            RopeScaling::Default => Value::Null,
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => json!({
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            }),
            RopeScaling::Linear { factor } => json!({"rope_type": "linear", "factor": factor}),
            RopeScaling::Dynamic { factor } => json!({"rope_type": "dynamic", "factor": factor}),
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                attention_factor,
                truncate,
            } => json!({
                "rope_type": "yarn",
                "factor": factor,
                "original_max_position_embeddings": original_max_position_embeddings,
                "beta_fast": beta_fast,
                "beta_slow": beta_slow,
                "attention_factor": attention_factor,
                "truncate": truncate,
            }),
            RopeScaling::LongRope {
                short_factor,
                long_factor,
                original_max_position_embeddings,
                attention_factor,
            } => json!({
                "rope_type": "longrope",
                "short_factor": short_factor,
                "long_factor": long_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
                "attention_factor": attention_factor,
            }),
            RopeScaling::Factors { .. } => {
                return Err(Error::Unsupported {
                    what: "rope scaling in config.json",
                    value: "per-frequency rope_freqs factors that match no llama3 parameters (transformers has no rope type for them)".into(),
                });
            }
        };
        if self.partial_rotary_factor != 1.0 {
            if self.architecture != Architecture::Phi3 {
                return Err(Error::Unsupported {
                    what: "partial_rotary_factor in config.json",
                    value: format!(
                        "{} for {} (transformers rotates only part of the head for Phi3ForCausalLM)",
                        self.partial_rotary_factor,
                        self.architecture.hf_class()
                    ),
                });
            }
            if rope_scaling.is_null() {
                rope_scaling = json!({"rope_type": "default"});
            }
            rope_scaling["partial_rotary_factor"] = json!(self.partial_rotary_factor);
        }
        if self.sliding_window.is_some() && self.architecture == Architecture::Llama {
            return Err(Error::Unsupported {
                what: "sliding window in config.json",
                value: "LlamaForCausalLM has no sliding window".into(),
            });
        }
        let eos = match self.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        let mut v = json!({
            "architectures": [self.architecture.hf_class()],
            "model_type": self.architecture.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": rope_scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": self.pad_token_id,
            "initializer_range": 0.02,
            "attention_dropout": 0.0,
            "use_cache": true,
            "torch_dtype": dtype,
        });
        let obj = v.as_object_mut().expect("json! object");
        match self.architecture {
            Architecture::Llama => {
                obj.insert("attention_bias".into(), json!(self.o_proj_bias));
                obj.insert("mlp_bias".into(), json!(self.mlp_bias));
                obj.insert("pretraining_tp".into(), json!(1));
            }
            Architecture::Mistral => {
                obj.insert("sliding_window".into(), json!(self.sliding_window));
            }
            Architecture::Qwen2 => {
                obj.insert(
                    "use_sliding_window".into(),
                    json!(self.sliding_window.is_some()),
                );
                obj.insert("sliding_window".into(), json!(self.sliding_window));
                obj.insert(
                    "max_window_layers".into(),
                    // Layers from this index on slide: all of them when no first layer is set.
                    json!(
                        self.max_window_layers
                            .unwrap_or(if self.sliding_window.is_some() {
                                0
                            } else {
                                self.num_hidden_layers
                            })
                    ),
                );
            }
            Architecture::Phi3 => {
                obj.insert("sliding_window".into(), json!(self.sliding_window));
                let original = match &self.rope_scaling {
                    RopeScaling::LongRope {
                        original_max_position_embeddings,
                        ..
                    } => *original_max_position_embeddings,
                    _ => self.max_position_embeddings,
                };
                obj.insert("original_max_position_embeddings".into(), json!(original));
                obj.insert("embd_pdrop".into(), json!(0.0));
                obj.insert("resid_pdrop".into(), json!(0.0));
            }
        }
        Ok(v)
    }

    /// The `generation_config.json` matching [`ModelConfig::to_hf_json`].
    pub fn to_generation_config_json(&self) -> Value {
        let eos = match self.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        json!({
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": self.pad_token_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_architecture_is_named() {
        let err =
            HfConfig::from_json_str(r#"{"architectures":["GPT2LMHeadModel"]}"#, "x").unwrap_err();
        assert!(err.to_string().contains("GPT2LMHeadModel"), "{err}");
    }

    #[test]
    fn missing_field_is_named() {
        let err = HfConfig::from_json_str(
            r#"{"architectures":["LlamaForCausalLM"],"hidden_size":8,"num_attention_heads":2}"#,
            "cfg.json",
        )
        .unwrap_err();
        assert!(matches!(err, Error::MissingField { ref field, .. } if field == "vocab_size"));
    }

    #[test]
    fn unsupported_rope_type_is_named() {
        let text = r#"{"architectures":["LlamaForCausalLM"],"vocab_size":8,"hidden_size":8,
            "intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,
            "rope_scaling":{"rope_type":"proportional","factor":4.0}}"#;
        let err = HfConfig::from_json_str(text, "c").unwrap_err();
        assert!(err.to_string().contains("proportional"), "{err}");
        // A known type without a field it needs names that field.
        let err = HfConfig::from_json_str(&text.replace("proportional", "yarn"), "c").unwrap_err();
        assert!(
            err.to_string()
                .contains("rope_scaling.original_max_position_embeddings"),
            "{err}"
        );
    }

    #[test]
    fn malformed_rope_fields_are_named_never_defaulted() {
        let base = r#"{"architectures":["LlamaForCausalLM"],"vocab_size":8,"hidden_size":8,
            "intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2"#;
        for (extra, field) in [
            (r#""rope_parameters": -1"#, "rope_parameters"),
            (r#""rope_parameters": 0"#, "rope_parameters"),
            (r#""rope_parameters": 7"#, "rope_parameters"),
            (r#""rope_parameters": "x""#, "rope_parameters"),
            (r#""rope_parameters": []"#, "rope_parameters"),
            (r#""rope_scaling": "x""#, "rope_scaling"),
            (
                r#""rope_parameters": {"rope_theta": "x"}"#,
                "rope_parameters.rope_theta",
            ),
            (
                r#""rope_parameters": {"rope_type": 7}"#,
                "rope_parameters.rope_type",
            ),
            (
                r#""rope_scaling": {"rope_type": "llama3", "factor": "8"}"#,
                "rope_scaling.factor",
            ),
        ] {
            let text = format!("{base}, {extra}}}");
            match HfConfig::from_json_str(&text, "c") {
                Err(Error::MissingField { field: f, .. }) => assert_eq!(f, field, "{extra}"),
                other => panic!("{extra}: expected an error naming {field}, got {other:?}"),
            }
        }
        // null is "not set", as transformers reads it.
        let text = format!(r#"{base}, "rope_parameters": null, "rope_scaling": null}}"#);
        assert!(HfConfig::from_json_str(&text, "c").is_ok());
    }

    #[test]
    fn heads_must_divide() {
        let text = r#"{"architectures":["LlamaForCausalLM"],"vocab_size":8,"hidden_size":8,
            "intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3}"#;
        assert!(matches!(
            HfConfig::from_json_str(text, "c"),
            Err(Error::InvalidConfig(_))
        ));
    }
}
