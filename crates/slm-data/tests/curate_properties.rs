//! Property tests of curation: MinHash estimates, splits, and the PII scrubber.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use slm_data::curation::stratified_split;
use slm_data::stages::minhash::estimate_jaccard;
use slm_data::stages::pii::luhn_valid;
use slm_data::stages::{MinHashConfig, MinHasher, PiiScrubber};
use slm_data::{Example, SplitConfig};

/// A fixed seed: even a correct MinHash leaves a 3-sigma band for about 0.3% of samples (a
/// third of 128 cases' runs would fail somewhere), so the bound is 4 sigma (6e-5 per case) and
/// the cases are fixed, which makes the test deterministic rather than lucky.
fn fixed(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x5eed),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(fixed(128))]

    /// |estimate - J| <= 4 sigma + 1/k with sigma = sqrt(J(1-J)/k), k = 112 (the 1/k covers the
    /// estimate's granularity). A 3-sigma run over the same cases fails on 1 of 128 (3.2 sigma).
    #[test]
    fn minhash_estimates_stay_within_four_sigma(
        shared in 0usize..300,
        only_a in 0usize..300,
        only_b in 0usize..300,
        salt in any::<u64>(),
    ) {
        prop_assume!(shared + only_a + only_b > 0 && shared + only_a > 0 && shared + only_b > 0);
        let h = MinHasher::new(MinHashConfig::default());
        let mix = |i: u64| xxhash_like(i ^ salt);
        let a: Vec<u64> = (0..(shared + only_a) as u64).map(mix).collect();
        let b: Vec<u64> = (0..shared as u64).chain(1_000_000..1_000_000 + only_b as u64).map(mix).collect();
        let (sa, sb) = (h.signature_of_shingles(&a).unwrap(), h.signature_of_shingles(&b).unwrap());
        let j = shared as f64 / (shared + only_a + only_b) as f64;
        let k = 112.0;
        let sigma = (j * (1.0 - j) / k).sqrt();
        let est = estimate_jaccard(&sa, &sb);
        prop_assert!((est - j).abs() <= 4.0 * sigma + 1.0 / k, "est {est} true {j} sigma {sigma}");
    }
}

/// SplitMix64's finaliser: distinct inputs give distinct, well-mixed shingle hashes.
fn xxhash_like(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

proptest! {
    #![proptest_config(Config { cases: 64, ..Config::default() })]

    /// Splits are disjoint, cover the input, and each class's share of val and test is within
    /// one example of its target.
    #[test]
    fn splits_are_disjoint_covering_and_stratified(
        labels in proptest::collection::vec(0u8..4, 0..200),
        val in 0.0f64..0.5,
        test in 0.0f64..0.5,
        seed in any::<u64>(),
    ) {
        let rows: Vec<Example> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let e = Example::new(i.to_string(), "x");
                if *l == 3 { e } else { e.with_label(l.to_string()) }
            })
            .collect();
        let cfg = SplitConfig { val, test, holdout: None };
        let s = stratified_split(rows.clone(), &cfg, seed).unwrap();
        let ids = |v: &Vec<Example>| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        let all: Vec<String> = [&s.train, &s.val, &s.test].into_iter().flat_map(ids).collect();
        let unique: HashSet<&String> = all.iter().collect();
        prop_assert_eq!(all.len(), rows.len());
        prop_assert_eq!(unique.len(), rows.len());
        let mut per_class: BTreeMap<Option<String>, usize> = BTreeMap::new();
        for e in &rows { *per_class.entry(e.label.clone()).or_default() += 1; }
        for (class, n) in per_class {
            let count = |v: &Vec<Example>| v.iter().filter(|e| e.label == class).count() as f64;
            let n = n as f64;
            prop_assert!((count(&s.val) - n * val).abs() <= 1.0);
            prop_assert!((count(&s.test) - n * test).abs() <= 1.0);
            prop_assert!((count(&s.train) - n * (1.0 - val - test)).abs() <= 1.0);
        }
        prop_assert_eq!(stratified_split(rows, &cfg, seed).unwrap(), s);
    }
}

fn digit_runs(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|r| !r.is_empty())
        .collect()
}

proptest! {
    #![proptest_config(Config { cases: 512, ..Config::default() })]

    /// The scrubber never panics and leaves no Luhn-valid 16-digit run.
    #[test]
    fn pii_scrubber_leaves_no_card_number(
        parts in proptest::collection::vec(
            prop_oneof![
                "[0-9]{1,20}",
                "[ .:@+()\\-]{1,2}",
                "[a-fA-F]{1,4}",
                "[a-z]{1,6}@[a-z]{1,5}\\.com",
                Just("4111111111111111".to_string()),
                Just("4111 1111 1111 1111".to_string()),
                "\\PC{1,4}",
            ],
            0..24,
        ),
    ) {
        let text: String = parts.concat();
        let out = PiiScrubber::default().scrub(&text);
        for run in digit_runs(&out) {
            prop_assert!(!(run.len() == 16 && luhn_valid(run.as_bytes())), "{run} in {out:?} from {text:?}");
        }
    }
}

#[test]
fn near_duplicate_clusters_are_deterministic() {
    let texts: Vec<String> = (0..50)
        .map(|i| {
            format!(
                "shared prefix words that repeat in every text here {} and more",
                ["alpha", "beta"][i % 2]
            )
        })
        .collect();
    let h = MinHasher::new(MinHashConfig::default());
    let a = h.clusters(&texts);
    assert_eq!(a, h.clusters(&texts));
    let members: BTreeSet<usize> = a.iter().flatten().copied().collect();
    assert_eq!(members.len(), 50);
    assert_eq!(a.len(), 2);
}
