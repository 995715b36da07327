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

/// A metadata value as a holdout key: its text (a number as written), and its point in time
/// when it is an ISO 8601 string or a number.
struct Key {
    text: String,
    time: Option<f64>,
}

fn meta_key(e: &Example, field: &str) -> Option<Key> {
    match e.meta.get(field)? {
        serde_json::Value::String(s) => Some(Key {
            text: s.clone(),
            time: parse_timestamp(s),
        }),
        serde_json::Value::Number(n) => Some(Key {
            text: n.to_string(),
            time: Some(n.as_f64()?),
        }),
        _ => None,
    }
}

/// Seconds since 1970-01-01T00:00:00Z of an ISO 8601 / RFC 3339 date or date-time
/// (`2002-08-22`, `2002-08-22T18:26:25+07:00`, `... 18:26:25.5Z`; no offset means UTC), so
/// times written in different zones order by the instant they name, not by their text.
pub fn parse_timestamp(text: &str) -> Option<f64> {
    let b = text.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(r)?;
        digits.iter().all(u8::is_ascii_digit).then(|| {
            digits
                .iter()
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'))
        })
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut seconds = (days * 86_400) as f64;
    if b.len() == 10 {
        return Some(seconds);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    seconds += (h * 3600 + m * 60 + sec) as f64;
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac: f64 = std::str::from_utf8(&b[start - 1..i]).ok()?.parse().ok()?;
        seconds += frac;
    }
    match b.get(i..)? {
        [] | [b'Z' | b'z'] => Some(seconds),
        [sign @ (b'+' | b'-'), ..] if b.len() == i + 6 && b[i + 3] == b':' => {
            let offset = (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60) as f64;
            Some(if *sign == b'+' {
                seconds - offset
            } else {
                seconds + offset
            })
        }
        _ => None,
    }
}

/// What [`holdout`] did: the examples that go on to train/val/test, the held-out ones, and
/// what it could not do (examples without the metadata field stay out of the holdout).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HoldoutSplit {
    /// Examples for the stratified split.
    pub rest: Vec<Example>,
    /// The live-like held-out examples.
    pub live: Vec<Example>,
    /// Why fewer examples than configured could be held out, if so.
    pub warnings: Vec<String>,
}

/// Takes the holdout out of `examples`.
///
/// By time, the newest `fraction` of the examples that have the field is held out: values that
/// read as ISO 8601 dates order by instant (UTC), numbers by value, and when any value is
/// neither, all order as text. By source, examples whose field is one of `values` are held
/// out. Examples without the field (or with a non-string, non-number value) are never held
/// out; a warning counts them.
pub fn holdout(examples: Vec<Example>, config: &HoldoutConfig) -> HoldoutSplit {
    let field = match config {
        HoldoutConfig::Time { field, .. } | HoldoutConfig::Source { field, .. } => field,
    };
    let keys: Vec<Option<Key>> = examples.iter().map(|e| meta_key(e, field)).collect();
    let mut warnings = Vec::new();
    let missing = keys.iter().filter(|k| k.is_none()).count();
    if missing > 0 {
        warnings.push(format!(
            "holdout: {missing} of {} examples lack a string or number metadata field `{field}` and stay in train/val/test",
            examples.len()
        ));
    }
    let held: Vec<bool> = match config {
        HoldoutConfig::Source { values, .. } => keys
            .iter()
            .map(|k| k.as_ref().is_some_and(|k| values.contains(&k.text)))
            .collect(),
        HoldoutConfig::Time { fraction, .. } => {
            // By instant when every value is a time; otherwise every value compares as text.
            let by_time = keys.iter().flatten().all(|k| k.time.is_some());
            let mut order: Vec<(usize, &Key)> = keys
                .iter()
                .enumerate()
                .filter_map(|(i, k)| Some((i, k.as_ref()?)))
                .collect();
            order.sort_by(|(a, ka), (b, kb)| {
                let by_key = if by_time {
                    ka.time
                        .partial_cmp(&kb.time)
                        .unwrap_or(std::cmp::Ordering::Equal)
                } else {
                    ka.text.cmp(&kb.text)
                };
                by_key.then(a.cmp(b))
            });
            let n_live = (order.len() as f64 * fraction).round() as usize;
            let mut held = vec![false; examples.len()];
            for &(i, _) in &order[order.len() - n_live..] {
                held[i] = true;
            }
            held
        }
    };
    let mut split = HoldoutSplit {
        warnings,
        ..Default::default()
    };
    for (e, h) in examples.into_iter().zip(held) {
        if h {
            split.live.push(e)
        } else {
            split.rest.push(e)
        }
    }
    if split.live.is_empty() {
        split
            .warnings
            .push(format!("holdout by `{field}` is empty"));
    }
    split
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
        let HoldoutSplit {
            rest,
            live,
            warnings,
        } = holdout(rows(100), &time);
        assert_eq!((rest.len(), live.len(), warnings.len()), (90, 10, 0));
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
        assert_eq!(holdout(rows(100), &source).live.len(), 20);
        let missing = HoldoutConfig::Source {
            field: "nope".into(),
            values: vec![],
        };
        let split = holdout(rows(3), &missing);
        assert_eq!((split.rest.len(), split.live.len()), (3, 0));
        assert!(
            split.warnings[0].contains("3 of 3 examples lack"),
            "{:?}",
            split.warnings
        );
    }

    #[test]
    fn time_holdouts_order_by_instant_and_keep_undated_examples() {
        // Later by text, earlier in UTC: 10:00+07:00 is 03:00Z.
        let dates = [
            Some("2002-08-22T10:00:00+07:00"),
            Some("2002-08-22T05:00:00+01:00"),
            Some("2002-08-22T04:30:00Z"),
            None,
            Some("2002-08-21"),
        ];
        let rows: Vec<Example> = dates
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let e = Example::new(i.to_string(), "x");
                match d {
                    Some(d) => e.with_meta("date", *d),
                    None => e.with_meta("date", serde_json::Value::Null),
                }
            })
            .collect();
        let time = HoldoutConfig::Time {
            field: "date".into(),
            fraction: 0.5,
        };
        let split = holdout(rows, &time);
        let live: Vec<&str> = split.live.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(live, ["1", "2"], "04:00Z and 04:30Z are the newest");
        assert_eq!(split.rest.len(), 3);
        assert!(
            split.warnings[0].contains("1 of 5 examples lack"),
            "{:?}",
            split.warnings
        );
    }

    #[test]
    fn timestamps_parse_to_utc_seconds() {
        assert_eq!(parse_timestamp("1970-01-01"), Some(0.0));
        assert_eq!(parse_timestamp("1970-01-02T00:00:01Z"), Some(86_401.0));
        assert_eq!(
            parse_timestamp("2002-08-22T18:26:25+07:00"),
            Some(1_030_015_585.0)
        );
        assert_eq!(
            parse_timestamp("2000-03-01 00:00:00.25"),
            Some(951_868_800.25)
        );
        assert_eq!(parse_timestamp("1969-12-31T23:00:00-01:00"), Some(0.0));
        for bad in [
            "",
            "2002",
            "2002-13-01",
            "2002-08-22T25:00:00",
            "2002-08-22Tnoon",
            "22/08/2002",
            "2002-08-22T18:26:25+0700x",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
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
