//! MinHash signature throughput (MB/s of input text) with datatrove's settings (5-gram word
//! shingles, 14 x 8 = 112 permutations), and the whole near-dedup pass (signatures + LSH +
//! union-find).
//!
//! ```text
//! cargo bench --bench minhash --profile dev
//! RAYON_NUM_THREADS=1 cargo bench --bench minhash --profile dev   # one core
//! ```
//! Reads every `data/spamassassin/*.jsonl` (field `text`) when there is one; otherwise it makes
//! 4,000 synthetic e-mail-like documents (about 6 MB) from a fixed seed, with a tenth of them
//! near-copies of others. `benches/datatrove_compare.py` runs datatrove on the same texts.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use slm::data::{FieldMap, MinHashConfig, MinHasher, read_jsonl};

fn corpus() -> (String, Vec<String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/spamassassin");
    let mut texts = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        paths.sort();
        for p in paths {
            if let Ok(rows) = read_jsonl(&p, FieldMap::new("text")) {
                texts.extend(rows.into_iter().map(|e| e.input));
            }
        }
    }
    if !texts.is_empty() {
        return ("spamassassin".into(), texts);
    }
    ("synthetic".into(), synthetic(4_000))
}

/// Documents of 150-450 words from a 2,000-word vocabulary (xorshift, fixed seed); every tenth
/// is a copy of an earlier one with a few words changed.
fn synthetic(n: usize) -> Vec<String> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let vocab: Vec<String> = (0..2000)
        .map(|i| {
            let len = 2 + i % 9;
            (0..len)
                .map(|j| (b'a' + ((i * 7 + j * 13) % 26) as u8) as char)
                .collect()
        })
        .collect();
    let mut docs: Vec<String> = Vec::with_capacity(n);
    for i in 0..n {
        if i % 10 == 9 {
            let src = &docs[(next() as usize) % docs.len()];
            let mut words: Vec<&str> = src.split(' ').collect();
            for _ in 0..3 {
                let k = (next() as usize) % words.len();
                words[k] = &vocab[(next() as usize) % vocab.len()];
            }
            let doc = words.join(" ");
            docs.push(doc);
            continue;
        }
        let len = 150 + (next() as usize) % 300;
        let words: Vec<&str> = (0..len)
            .map(|_| vocab[(next() as usize) % vocab.len()].as_str())
            .collect();
        docs.push(words.join(" "));
    }
    docs
}

fn minhash(c: &mut Criterion) {
    let (name, texts) = corpus();
    let bytes: usize = texts.iter().map(String::len).sum();
    let hasher = MinHasher::new(MinHashConfig::default());
    let clusters = hasher.clusters(&texts);
    eprintln!(
        "{name}: {} documents, {:.2} MB, {} near-duplicate clusters ({} documents removed)",
        texts.len(),
        bytes as f64 / 1e6,
        clusters.len(),
        clusters.iter().map(|c| c.len() - 1).sum::<usize>()
    );
    let mut group = c.benchmark_group(format!("minhash/{name}"));
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10);
    group.bench_function("signatures", |b| b.iter(|| hasher.signatures(&texts)));
    group.bench_function("dedup_clusters", |b| b.iter(|| hasher.clusters(&texts)));
    group.finish();
}

criterion_group!(benches, minhash);
criterion_main!(benches);
