//! MinHash signature throughput (MB/s of input text) with datatrove's settings (5-gram word
//! shingles, 14 x 8 = 112 permutations), and the whole near-dedup pass (signatures + LSH +
//! union-find), on the SpamAssassin corpus.
//!
//! ```text
//! cargo bench --bench minhash --profile dev
//! RAYON_NUM_THREADS=1 cargo bench --bench minhash --profile dev   # one core
//! python3 benches/datatrove_compare.py                              # both, side by side
//! ```
//! The corpus is the `text` of every line of the full SpamAssassin import when
//! `scripts/import-spamassassin.sh` has made it, else of the shipped 604-email sample (see
//! `common::spamassassin_jsonl`). It prints the clusters found, and with
//! `SLM_MINHASH_CLUSTERS=FILE` writes them (one JSON array of line numbers, 0-based, per
//! cluster) for `datatrove_compare.py` to compare.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use slm::data::stages::{MinHashConfig, MinHasher};
use slm::data::{FieldMap, read_jsonl};

fn minhash(c: &mut Criterion) {
    let (name, path) = common::spamassassin_jsonl();
    let texts: Vec<String> = read_jsonl(&path, FieldMap::new("text"))
        .expect("the SpamAssassin JSONL")
        .into_iter()
        .map(|e| e.input)
        .collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    let hasher = MinHasher::new(MinHashConfig::default());
    let clusters = hasher.clusters(&texts);
    eprintln!(
        "{name}: {} documents, {:.2} MB of text, {} near-duplicate clusters ({} documents removed)",
        texts.len(),
        bytes as f64 / 1e6,
        clusters.len(),
        clusters.iter().map(|c| c.len() - 1).sum::<usize>()
    );
    if let Some(out) = std::env::var_os("SLM_MINHASH_CLUSTERS") {
        let lines: String = clusters
            .iter()
            .map(|c| format!("{}\n", serde_json_line(c)))
            .collect();
        std::fs::write(&out, lines).expect("SLM_MINHASH_CLUSTERS is writable");
    }
    let mut group = c.benchmark_group(format!("minhash/{name}"));
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10);
    group.bench_function("signatures", |b| b.iter(|| hasher.signatures(&texts)));
    group.bench_function("dedup_clusters", |b| b.iter(|| hasher.clusters(&texts)));
    group.finish();
}

fn serde_json_line(cluster: &[usize]) -> String {
    let ids: Vec<String> = cluster.iter().map(usize::to_string).collect();
    format!("[{}]", ids.join(","))
}

criterion_group!(benches, minhash);
criterion_main!(benches);
