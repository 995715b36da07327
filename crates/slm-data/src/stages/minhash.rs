//! MinHash signatures and LSH banding, configured as datatrove's `MinhashConfig`
//! (`datatrove/pipeline/dedup/minhash.py`, v0.10): 5-gram word shingles hashed with 64-bit
//! xxHash, 14 buckets x 8 hashes (112 permutations `(a*x + b) mod (2^61 - 1)`), a pair of
//! documents is a candidate when one bucket matches in full, and candidates are joined with
//! union-find. The threshold this implies is `(1/14)^(1/8) ~= 0.72`.
//!
//! The permutation parameters `a in [1, p)`, `b in [0, p)` are numpy's
//! `RandomState(seed).randint(.., dtype=uint64)` draws (MT19937 and numpy's masked rejection
//! sampling, reimplemented here), and `(a*x + b)` wraps modulo 2^64 before the `mod p`, as
//! numpy's `uint64` arithmetic does in datatrove: with the same seed, the signatures of the same
//! shingles are datatrove's, value for value.
//!
//! Differences from datatrove, on purpose or by necessity:
//! - Words are split on whitespace after [`simplify_text`]; datatrove 0.10 uses the language's
//!   word tokenizer (spaCy's for English), which on punctuation-free text mostly splits on
//!   whitespace too but also splits a few forms (`cannot` -> `can not`).
//! - [`simplify_text`] treats every non-alphanumeric character as punctuation; datatrove has a
//!   fixed list (the same for ASCII). It strips combining marks after NFD like datatrove, but
//!   before number folding.
//! - Everything is in memory in one process; datatrove sorts signature files per bucket on
//!   disk so it scales past memory.
//! - The kept document of a cluster is the first in input order (deterministic); datatrove
//!   keeps the union-find root, which depends on union order and cluster sizes.

use std::borrow::Cow;
use std::collections::HashMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use xxhash_rust::xxh64::xxh64;

/// The Mersenne prime `2^61 - 1` the permutations work modulo.
pub const MERSENNE_PRIME: u64 = (1 << 61) - 1;

/// MinHash-LSH settings, with datatrove's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinHashConfig {
    /// Words per shingle (5).
    pub n_grams: usize,
    /// LSH bands (14).
    pub num_buckets: usize,
    /// Hashes per band (8).
    pub hashes_per_bucket: usize,
    /// Seed of the permutation parameters (1).
    pub seed: u64,
}

impl Default for MinHashConfig {
    fn default() -> Self {
        MinHashConfig {
            n_grams: 5,
            num_buckets: 14,
            hashes_per_bucket: 8,
            seed: 1,
        }
    }
}

impl MinHashConfig {
    /// Signature length: `num_buckets * hashes_per_bucket`.
    pub fn num_hashes(&self) -> usize {
        self.num_buckets * self.hashes_per_bucket
    }

    /// The Jaccard similarity at which a pair becomes a candidate with probability about 1/2:
    /// `(1/b)^(1/r)`.
    pub fn threshold(&self) -> f64 {
        (1.0 / self.num_buckets as f64).powf(1.0 / self.hashes_per_bucket as f64)
    }
}

/// Lowercases, folds numbers to `0`, turns every non-alphanumeric character into a space,
/// strips combining marks (NFD) and collapses whitespace: datatrove's `simplify_text` with its
/// default `TextNormConfig` (see the module docs for the differences).
pub fn simplify_text(text: &str) -> String {
    let lowered = text.to_lowercase();
    let chars: Cow<str> = if lowered.is_ascii() {
        Cow::Borrowed(&lowered)
    } else {
        Cow::Owned(lowered.nfd().filter(|c| !is_combining_mark(*c)).collect())
    };
    let mut out = String::with_capacity(chars.len());
    let mut it = chars.chars().peekable();
    let mut space = true; // no leading space
    while let Some(c) = it.next() {
        if c.is_numeric() {
            // A number, with at most one decimal separator followed by more digits.
            while it.peek().is_some_and(|d| d.is_numeric()) {
                it.next();
            }
            let mut ahead = it.clone();
            if matches!(ahead.next(), Some('.' | ',' | '،' | '٫'))
                && ahead.peek().is_some_and(|d| d.is_numeric())
            {
                it = ahead;
                while it.peek().is_some_and(|d| d.is_numeric()) {
                    it.next();
                }
            }
            out.push('0');
            space = false;
        } else if c.is_alphanumeric() {
            out.push(c);
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// The distinct shingle hashes of `text`: xxh64 (seed 0) of each run of `n` words of
/// [`simplify_text`], joined by single spaces. Empty when the text has fewer than `n` words
/// (such texts get no signature, as in datatrove).
pub fn shingles(text: &str, n: usize) -> Vec<u64> {
    let simple = simplify_text(text);
    // Byte offsets of word starts and ends; a shingle is one slice of `simple`.
    let mut bounds: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, b) in simple.bytes().enumerate() {
        match (b == b' ', start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                bounds.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        bounds.push((s, simple.len()));
    }
    if n == 0 || bounds.len() < n {
        return Vec::new();
    }
    let mut out: Vec<u64> = bounds
        .windows(n)
        .map(|w| xxh64(&simple.as_bytes()[w[0].0..w[n - 1].1], 0))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Computes signatures and LSH clusters for one [`MinHashConfig`].
#[derive(Debug, Clone)]
pub struct MinHasher {
    config: MinHashConfig,
    a: Vec<u64>,
    b: Vec<u64>,
}

/// numpy's legacy `RandomState(seed)`: MT19937 seeded by `init_genrand`, enough of it for
/// `randint(low, high, dtype=np.uint64)`.
struct NumpyRandomState {
    mt: [u32; 624],
    pos: usize,
}

impl NumpyRandomState {
    fn new(seed: u32) -> Self {
        let mut mt = [0u32; 624];
        mt[0] = seed;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        NumpyRandomState { mt, pos: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.pos == 624 {
            for i in 0..624 {
                let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % 624] & 0x7fff_ffff);
                let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
                self.mt[i] = self.mt[(i + 397) % 624] ^ (y >> 1) ^ mag;
            }
            self.pos = 0;
        }
        let mut y = self.mt[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `randint(low, high, dtype=np.uint64)` for a range wider than 32 bits: draws of
    /// `(next32 << 32 | next32) & mask` until one is in range (numpy's `bounded_masked_uint64`).
    fn randint_u64(&mut self, low: u64, high: u64) -> u64 {
        let range = high - low - 1;
        debug_assert!(
            range > u64::from(u32::MAX),
            "only the 64-bit path is implemented"
        );
        let mask = u64::MAX >> range.leading_zeros();
        loop {
            let hi = u64::from(self.next_u32());
            let v = ((hi << 32) | u64::from(self.next_u32())) & mask;
            if v <= range {
                return low + v;
            }
        }
    }
}

/// `x mod (2^61 - 1)` for any `u64`.
#[inline(always)]
fn mod_mersenne(x: u64) -> u64 {
    let y = (x & MERSENNE_PRIME) + (x >> 61);
    if y >= MERSENNE_PRIME {
        y - MERSENNE_PRIME
    } else {
        y
    }
}

impl MinHasher {
    /// Draws the permutation parameters from `config.seed` as datatrove does:
    /// `RandomState(seed)`, all `a` then all `b` (a seed above `u32::MAX` uses its low 32 bits,
    /// where numpy would refuse it).
    pub fn new(config: MinHashConfig) -> Self {
        let mut rng = NumpyRandomState::new(config.seed as u32);
        let k = config.num_hashes();
        let a = (0..k).map(|_| rng.randint_u64(1, MERSENNE_PRIME)).collect();
        let b = (0..k).map(|_| rng.randint_u64(0, MERSENNE_PRIME)).collect();
        MinHasher { config, a, b }
    }

    /// Its settings.
    pub fn config(&self) -> &MinHashConfig {
        &self.config
    }

    /// The signature of a set of shingle hashes (`num_hashes` values), or `None` for an empty set.
    pub fn signature_of_shingles(&self, shingles: &[u64]) -> Option<Vec<u64>> {
        if shingles.is_empty() {
            return None;
        }
        let mut mins = vec![u64::MAX; self.a.len()];
        for &s in shingles {
            for ((m, &a), &b) in mins.iter_mut().zip(&self.a).zip(&self.b) {
                let v = mod_mersenne(s.wrapping_mul(a).wrapping_add(b));
                *m = (*m).min(v);
            }
        }
        Some(mins)
    }

    /// The signature of `text`, or `None` when it has fewer than `n_grams` words.
    pub fn signature(&self, text: &str) -> Option<Vec<u64>> {
        self.signature_of_shingles(&shingles(text, self.config.n_grams))
    }

    /// Signatures of many texts, in parallel.
    pub fn signatures<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Vec<Option<Vec<u64>>> {
        texts
            .par_iter()
            .map(|t| self.signature(t.as_ref()))
            .collect()
    }

    /// Groups of texts that LSH puts together (union-find over band collisions), each sorted by
    /// index, the groups sorted by their first index; singletons are left out.
    pub fn clusters<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Vec<Vec<usize>> {
        let sigs = self.signatures(texts);
        let mut uf = UnionFind::new(texts.len());
        let r = self.config.hashes_per_bucket;
        for band in 0..self.config.num_buckets {
            let mut seen: HashMap<&[u64], usize> = HashMap::new();
            for (i, sig) in sigs.iter().enumerate() {
                let Some(sig) = sig else { continue };
                let key = &sig[band * r..(band + 1) * r];
                match seen.get(key) {
                    Some(&first) => uf.union(first, i),
                    None => {
                        seen.insert(key, i);
                    }
                }
            }
        }
        uf.groups()
    }
}

/// The fraction of equal positions of two signatures: the MinHash estimate of Jaccard similarity.
pub fn estimate_jaccard(a: &[u64], b: &[u64]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len().max(1) as f64
}

/// Disjoint sets over `0..n` with path halving; the root of a set is its smallest member.
#[derive(Debug, Clone)]
pub(crate) struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    pub(crate) fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n).collect(),
        }
    }

    pub(crate) fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    pub(crate) fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[hi] = lo;
        }
    }

    /// Sets with two or more members, each sorted, ordered by first member.
    pub(crate) fn groups(&mut self) -> Vec<Vec<usize>> {
        let n = self.parent.len();
        let mut by_root: HashMap<usize, Vec<usize>> = HashMap::new();
        for i in 0..n {
            let r = self.find(i);
            by_root.entry(r).or_default().push(i);
        }
        let mut groups: Vec<Vec<usize>> = by_root.into_values().filter(|g| g.len() > 1).collect();
        groups.sort_unstable_by_key(|g| g[0]);
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplify_matches_datatrove_on_ascii_and_folds_numbers_and_accents() {
        assert_eq!(
            simplify_text("  Hello, World!! It's 3.14 or 1,000 -- café\tOK "),
            "hello world it s 0 or 0 cafe ok"
        );
        assert_eq!(simplify_text("!!!"), "");
    }

    #[test]
    fn shingles_are_xxh64_of_space_joined_words() {
        let s = shingles("The quick brown fox jumps.", 5);
        assert_eq!(s, vec![xxh64(b"the quick brown fox jumps", 0)]);
        assert!(shingles("too short text", 5).is_empty());
    }

    #[test]
    fn permutations_are_numpys_randomstate_draws() {
        // numpy 2.4.6: g = np.random.RandomState(1); a = g.randint(1, (1 << 61) - 1,
        // dtype=np.uint64, size=(1, 112)); b = g.randint(0, (1 << 61) - 1, ...) as in
        // datatrove's MinhashDedupSignature.parameters.
        let h = MinHasher::new(MinHashConfig::default());
        assert_eq!(
            h.a[..3],
            [
                775_169_054_918_279_404,
                1_758_426_461_858_698_313,
                2_109_959_069_025_162
            ]
        );
        assert_eq!(h.a[111], 223_865_076_026_037_746);
        assert_eq!(
            h.b[..3],
            [
                1_062_448_801_025_099_917,
                1_324_811_268_927_594_100,
                1_217_488_311_597_731_462
            ]
        );
        assert_eq!(h.b[111], 1_097_409_548_522_419_201);
        // RandomState(1) starts 1791095845, 4282876139 (the MT19937 reference sequence).
        let mut rng = NumpyRandomState::new(1);
        assert_eq!(
            [rng.next_u32(), rng.next_u32()],
            [1_791_095_845, 4_282_876_139]
        );
        // np.random.RandomState(42).randint(1, (1 << 61) - 1, dtype=np.uint64)
        assert_eq!(
            NumpyRandomState::new(42).randint_u64(1, MERSENNE_PRIME),
            2_297_359_619_001_564_596
        );
    }

    #[test]
    fn defaults_and_threshold_are_datatroves() {
        let c = MinHashConfig::default();
        assert_eq!(c.num_hashes(), 112);
        assert!((c.threshold() - 0.719).abs() < 0.01);
        assert_eq!(mod_mersenne(u64::MAX), u64::MAX % MERSENNE_PRIME);
        assert_eq!(mod_mersenne(MERSENNE_PRIME), 0);
    }

    #[test]
    fn near_duplicates_cluster_and_different_texts_do_not() {
        let base = "the committee met on tuesday to discuss the budget for next year and agreed to \
                    increase funding for the library the park and the community centre while cutting \
                    spending on consultants and travel after a long debate the mayor thanked the \
                    volunteers who organised the summer festival and asked residents to send their \
                    comments about the new bus routes before the end of the month so that the \
                    council can publish a revised timetable together with the annual report";
        let near = base.replace("tuesday", "wednesday");
        let other = "a completely unrelated sentence about cooking pasta with garlic olive oil chili \
                     and parsley which takes about fifteen minutes from start to finish on a weeknight";
        let h = MinHasher::new(MinHashConfig::default());
        let texts = [base, other, &near, "short"];
        assert_eq!(h.clusters(&texts), vec![vec![0, 2]]);
        let (a, b) = (h.signature(base).unwrap(), h.signature(&near).unwrap());
        assert!(estimate_jaccard(&a, &b) > 0.6);
    }

    #[test]
    fn union_find_roots_are_smallest() {
        let mut uf = UnionFind::new(6);
        uf.union(5, 3);
        uf.union(3, 1);
        uf.union(4, 2);
        assert_eq!(uf.groups(), vec![vec![1, 3, 5], vec![2, 4]]);
    }
}
