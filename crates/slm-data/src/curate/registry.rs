//! [`StageRegistry`]: stages a config file can name, built-in or the user's own.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::curate::Stage;
use crate::error::{Error, Result};
use crate::stages::{LabelFilterConfig, LanguageConfig, RegexFilterConfig};

/// A built-in stage slot a [`CustomStageConfig`] runs after, in the fixed order of
/// [`curate`](crate::curate): `read`, `normalize`, `length`, `quality`, `pii`,
/// `exact_dedup`, `near_dedup`, `decontaminate`. The slot exists whether or not its stage
/// is enabled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageSlot {
    /// Right after reading, before normalisation.
    Read,
    /// After normalisation.
    Normalize,
    /// After the length filter.
    Length,
    /// After the quality filter.
    Quality,
    /// After PII scrubbing.
    Pii,
    /// After exact deduplication.
    ExactDedup,
    /// After near-duplicate removal.
    NearDedup,
    /// Last: after decontamination, before the label audit and splits.
    #[default]
    Decontaminate,
}

/// A stage from a [`StageRegistry`], named in a config file:
///
/// ```toml
/// [[stages.custom]]
/// name = "regex_filter"     # the name it is registered under
/// after = "normalize"       # a StageSlot; default: last
/// params = { pattern = "(?i)unsubscribe", action = "drop" }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomStageConfig {
    /// The registered name.
    pub name: String,
    /// The slot it runs after (stages of one slot run in config order).
    #[serde(default)]
    pub after: StageSlot,
    /// Its settings, handed to the stage's factory (an empty table when absent).
    #[serde(default = "empty_params")]
    pub params: Value,
}

fn empty_params() -> Value {
    Value::Object(Default::default())
}

impl CustomStageConfig {
    /// The stage registered as `name`, last, with no params.
    pub fn new(name: impl Into<String>) -> Self {
        CustomStageConfig {
            name: name.into(),
            after: StageSlot::default(),
            params: empty_params(),
        }
    }
}

type Factory = Box<dyn Fn(&Value) -> Result<Box<dyn Stage>> + Send + Sync>;

/// Maps the names a config file uses to stage factories, so a
/// [`CurateConfig`](crate::CurateConfig) can place user stages among the built-in ones.
///
/// [`StageRegistry::default`] knows `regex_filter` ([`RegexFilterConfig`]), `label_filter`
/// ([`LabelFilterConfig`]) and `language_filter` ([`LanguageConfig`]); register your own with a typed config and pass the registry to
/// [`curate_with`](crate::curate_with):
///
/// ```
/// use serde::Deserialize;
/// use slm_data::{CustomStageConfig, Example, Result, Stage, StageOutput, StageRegistry, Verdict};
///
/// #[derive(Deserialize)]
/// struct MaxLinks { max: usize }
///
/// struct LinkFilter(MaxLinks);
///
/// impl Stage for LinkFilter {
///     fn name(&self) -> &str { "max_links" }
///     fn apply(&self, examples: Vec<Example>) -> Result<StageOutput> {
///         Ok(slm_data::filter_map_examples(self.name(), examples, |e| {
///             if e.input.matches("http").count() > self.0.max { Verdict::drop("too_many_links") } else { Verdict::Keep }
///         }))
///     }
/// }
///
/// # fn main() -> Result<()> {
/// let mut registry = StageRegistry::default();
/// registry.register_config("max_links", |c: MaxLinks| Ok(LinkFilter(c)));
/// let spec: CustomStageConfig = toml::from_str("name = \"max_links\"\nparams = { max = 1 }").unwrap();
/// let stage = registry.build(&spec)?;
/// let out = stage.apply(vec![Example::new("1", "http://a http://b"), Example::new("2", "no links")])?;
/// assert_eq!(out.kept.len(), 1);
/// assert!(registry.build(&CustomStageConfig::new("nope")).is_err());
/// # Ok(()) }
/// ```
pub struct StageRegistry {
    factories: BTreeMap<String, Factory>,
}

impl std::fmt::Debug for StageRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageRegistry")
            .field("names", &self.names())
            .finish()
    }
}

impl Default for StageRegistry {
    fn default() -> Self {
        let mut registry = StageRegistry::empty();
        registry.register_config("regex_filter", RegexFilterConfig::init);
        registry.register_config("label_filter", |c: LabelFilterConfig| Ok(c.init()));
        registry.register_config("language_filter", LanguageConfig::init);
        registry
    }
}

impl StageRegistry {
    /// A registry without any stage (not even the built-in generic ones).
    pub fn empty() -> Self {
        StageRegistry {
            factories: BTreeMap::new(),
        }
    }

    /// Registers (or replaces) `name` with a factory from the raw `params` value.
    pub fn register(
        &mut self,
        name: impl Into<String>,
        factory: impl Fn(&Value) -> Result<Box<dyn Stage>> + Send + Sync + 'static,
    ) -> &mut Self {
        self.factories.insert(name.into(), Box::new(factory));
        self
    }

    /// Registers `name` with a typed config `C` deserialized from `params` (serde's errors,
    /// such as an unknown or missing field, become [`Error::InvalidConfig`] naming the stage).
    pub fn register_config<C, S>(
        &mut self,
        name: impl Into<String>,
        init: impl Fn(C) -> Result<S> + Send + Sync + 'static,
    ) -> &mut Self
    where
        C: DeserializeOwned,
        S: Stage + 'static,
    {
        let name = name.into();
        let label = name.clone();
        self.register(name, move |params| {
            let config = C::deserialize(params).map_err(|e| Error::InvalidConfig {
                message: format!("stage `{label}`: {e}"),
            })?;
            Ok(Box::new(init(config)?) as Box<dyn Stage>)
        })
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    /// Builds the stage `spec` names.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an unregistered name (listing the registered ones) or
    /// params the stage refuses.
    pub fn build(&self, spec: &CustomStageConfig) -> Result<Box<dyn Stage>> {
        let factory = self
            .factories
            .get(&spec.name)
            .ok_or_else(|| Error::InvalidConfig {
                message: format!(
                    "unknown stage `{}` (registered: {})",
                    spec.name,
                    self.names().join(", ")
                ),
            })?;
        let params = match &spec.params {
            Value::Null => empty_params(),
            other => other.clone(),
        };
        factory(&params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Example;

    #[test]
    fn builds_the_built_ins_from_toml_params_and_reports_bad_ones() {
        let registry = StageRegistry::default();
        assert_eq!(
            registry.names(),
            ["label_filter", "language_filter", "regex_filter"]
        );
        let spec: CustomStageConfig = toml::from_str(
            "name = \"regex_filter\"\nafter = \"pii\"\nparams = { pattern = \"x+\", action = \"keep\" }",
        )
        .unwrap();
        assert_eq!(spec.after, StageSlot::Pii);
        let stage = registry.build(&spec).unwrap();
        let out = stage
            .apply(vec![Example::new("1", "xx"), Example::new("2", "y")])
            .unwrap();
        assert_eq!(out.kept.len(), 1);

        let typo: CustomStageConfig =
            toml::from_str("name = \"regex_filter\"\nparams = { patern = \"x\" }").unwrap();
        let err = registry.build(&typo).err().unwrap().to_string();
        assert!(
            err.starts_with(
                "invalid curation config: stage `regex_filter`: unknown field `patern`"
            ),
            "{err}"
        );
        let err = registry
            .build(&CustomStageConfig::new("nope"))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "invalid curation config: unknown stage `nope` (registered: label_filter, language_filter, regex_filter)"
        );
        // No params at all: label_filter's defaults (keeps everything).
        let stage = registry
            .build(&CustomStageConfig::new("label_filter"))
            .unwrap();
        assert_eq!(
            stage
                .apply(vec![Example::new("1", "a")])
                .unwrap()
                .kept
                .len(),
            1
        );
        assert!(
            toml::from_str::<CustomStageConfig>("name = \"x\"\nafter = \"later\"").is_err(),
            "unknown slot"
        );
    }
}
