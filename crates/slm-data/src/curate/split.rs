//! Splits: stratified train/val/test by label, seeded, plus a "live-like" held-out split by
//! time or source.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::example::Example;

/// Fractions of the stratified split; `train` is whatever `val` and `test` leave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    /// Fraction for validation (0.1).
    pub val: f64,
    /// Fraction for test (0.1).
    pub test: f64,
    /// An optional live-like held-out split taken out first.
    pub holdout: Option<HoldoutConfig>,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            val: 0.1,
            test: 0.1,
            holdout: None,
        }
    }
}

impl SplitConfig {
    /// [`Error::InvalidConfig`] unless `val` and `test` are in `[0, 1]` and sum to at most 1.
    pub fn validate(&self) -> Result<()> {
        let ok = |f: f64| (0.0..=1.0).contains(&f);
        if !ok(self.val) || !ok(self.test) || self.val + self.test > 1.0 {
            return Err(Error::InvalidConfig {
                message: format!(
                    "split fractions val={} test={} must lie in [0, 1] and sum to at most 1",
                    self.val, self.test
                ),
            });
        }
        if let Some(HoldoutConfig::Time { fraction, .. }) = &self.holdout
            && !(0.0..1.0).contains(fraction)
        {
            return Err(Error::InvalidConfig {
                message: format!("holdout fraction {fraction} must lie in [0, 1)"),
            });
        }
        Ok(())
    }
}

/// A held-out split that mirrors production: the newest examples, or whole sources the model
/// never saw in training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "lowercase", deny_unknown_fields)]
pub enum HoldoutConfig {
    /// The newest `fraction` of examples by the metadata field `field` (ISO 8601 dates or
    /// numbers; ISO strings compare correctly as text).
    Time {
        /// The metadata field holding the date.
        field: String,
        /// The fraction held out (0.1 by default).
        #[serde(default = "default_holdout_fraction")]
        fraction: f64,
    },
    /// Every example whose metadata field `field` is one of `values`.
    Source {
        /// The metadata field naming the source.
        field: String,
        /// The held-out sources.
        values: Vec<String>,
    },
}

fn default_holdout_fraction() -> f64 {
    0.1
}

/// The split a curated dataset ends up in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Splits {
    /// Training examples.
    pub train: Vec<Example>,
    /// Validation examples.
    pub val: Vec<Example>,
    /// Test examples.
    pub test: Vec<Example>,
    /// The live-like held-out split (empty without a holdout).
    pub live: Vec<Example>,
}

impl Splits {
    /// `(name, examples)` for every split, in the order train, val, test, live.
    pub fn named(&self) -> [(&'static str, &Vec<Example>); 4] {
        [
            ("train", &self.train),
            ("val", &self.val),
            ("test", &self.test),
            ("live", &self.live),
        ]
    }
}

fn meta_key(e: &Example, field: &str) -> Option<String> {
    match e.meta.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(format!("{:020.6}", n.as_f64()?)),
        _ => None,
    }
}

/// What [`holdout`] returns: `Ok((rest, live))`, or `Err((examples, why))` with every example
/// given back when the metadata does not allow the holdout.
pub type HoldoutResult = std::result::Result<(Vec<Example>, Vec<Example>), (Vec<Example>, String)>;

/// Takes the holdout out of `examples`; `Err((examples, message))` when the metadata does not
/// allow it (a field missing on some example), in which case nothing is held out.
pub fn holdout(examples: Vec<Example>, config: &HoldoutConfig) -> HoldoutResult {
    let field = match config {
        HoldoutConfig::Time { field, .. } | HoldoutConfig::Source { field, .. } => field,
    };
    let keys: Vec<Option<String>> = examples.iter().map(|e| meta_key(e, field)).collect();
    let missing = keys.iter().filter(|k| k.is_none()).count();
    if missing > 0 {
        let msg = format!(
            "holdout skipped: {missing} of {} examples lack a string or number metadata field `{field}`",
            examples.len()
        );
        return Err((examples, msg));
    }
    let keys: Vec<String> = keys.into_iter().flatten().collect();
    let held: Vec<bool> = match config {
        HoldoutConfig::Source { values, .. } => keys.iter().map(|k| values.contains(k)).collect(),
        HoldoutConfig::Time { fraction, .. } => {
            let mut order: Vec<usize> = (0..examples.len()).collect();
            order.sort_by(|&a, &b| keys[a].cmp(&keys[b]).then(a.cmp(&b)));
            let n_live = (examples.len() as f64 * fraction).round() as usize;
            let mut held = vec![false; examples.len()];
            for &i in &order[examples.len() - n_live..] {
                held[i] = true;
            }
            held
        }
    };
    let (mut rest, mut live) = (Vec::new(), Vec::new());
    for (e, h) in examples.into_iter().zip(held) {
        if h { live.push(e) } else { rest.push(e) }
    }
    Ok((rest, live))
}

/// Splits `examples` into train/val/test, stratified by label (examples without a label form
/// their own stratum): each stratum is shuffled with `seed` and gets `round(n * val)`
/// validation and `round(n * test)` test examples, so every class's share is within one
/// example of its target. Order within a split follows input order; the same input, config and
/// seed give the same splits.
pub fn stratified_split(examples: Vec<Example>, config: &SplitConfig, seed: u64) -> Result<Splits> {
    config.validate()?;
    let mut strata: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        strata.entry(e.label.clone()).or_default().push(i);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    // 0 train, 1 val, 2 test
    let mut assign = vec![0u8; examples.len()];
    for members in strata.values_mut() {
        members.shuffle(&mut rng);
        let n = members.len() as f64;
        let (mut n_val, mut n_test) = (
            (n * config.val).round() as usize,
            (n * config.test).round() as usize,
        );
        if n_val + n_test > members.len() {
            n_test = members.len() - n_val.min(members.len());
            n_val = n_val.min(members.len());
        }
        for &i in &members[..n_val] {
            assign[i] = 1;
        }
        for &i in &members[n_val..n_val + n_test] {
            assign[i] = 2;
        }
    }
    let mut splits = Splits::default();
    for (e, a) in examples.into_iter().zip(assign) {
        match a {
            1 => splits.val.push(e),
            2 => splits.test.push(e),
            _ => splits.train.push(e),
        }
    }
    Ok(splits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<Example> {
        (0..n)
            .map(|i| {
                Example::new(i.to_string(), format!("text {i}"))
                    .with_label(if i % 3 == 0 { "a" } else { "b" })
                    .with_meta("date", format!("2024-01-{:02}", 1 + i % 28))
                    .with_meta("source", if i % 5 == 0 { "web" } else { "mail" })
            })
            .collect()
    }

    #[test]
    fn stratified_split_is_deterministic_and_proportional() {
        let cfg = SplitConfig::default();
        let a = stratified_split(rows(90), &cfg, 7).unwrap();
        let b = stratified_split(rows(90), &cfg, 7).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.train.len(), a.val.len(), a.test.len()), (72, 9, 9));
        assert_eq!(
            a.val
                .iter()
                .filter(|e| e.label.as_deref() == Some("a"))
                .count(),
            3
        );
        let c = stratified_split(rows(90), &cfg, 8).unwrap();
        assert_ne!(a.val, c.val);
    }

    #[test]
    fn holdouts_by_time_and_source() {
        let time = HoldoutConfig::Time {
            field: "date".into(),
            fraction: 0.1,
        };
        let (rest, live) = holdout(rows(100), &time).unwrap();
        assert_eq!((rest.len(), live.len()), (90, 10));
        let newest = rest
            .iter()
            .filter_map(|e| e.meta["date"].as_str())
            .max()
            .unwrap();
        assert!(
            live.iter()
                .all(|e| e.meta["date"].as_str().unwrap() >= newest)
        );
        let source = HoldoutConfig::Source {
            field: "source".into(),
            values: vec!["web".into()],
        };
        let (_, live) = holdout(rows(100), &source).unwrap();
        assert_eq!(live.len(), 20);
        let missing = HoldoutConfig::Source {
            field: "nope".into(),
            values: vec![],
        };
        let (back, msg) = holdout(rows(3), &missing).unwrap_err();
        assert_eq!(back.len(), 3);
        assert!(msg.contains("`nope`"), "{msg}");
    }

    #[test]
    fn bad_fractions_are_refused() {
        let cfg = SplitConfig {
            val: 0.6,
            test: 0.6,
            holdout: None,
        };
        assert!(matches!(
            stratified_split(rows(3), &cfg, 0),
            Err(Error::InvalidConfig { .. })
        ));
    }
}
