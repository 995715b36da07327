#!/usr/bin/env python3
"""datatrove's MinHash deduplication on the corpus `benches/minhash.rs` uses, for comparison.

    python3 -m venv /tmp/dt && /tmp/dt/bin/pip install datatrove xxhash nltk
    /tmp/dt/bin/python benches/datatrove_compare.py [--rust-mbps X]
    cargo bench --bench minhash --profile dev          # prints the Rust MB/s and clusters

Same corpus (every data/spamassassin/*.jsonl `text`, else the bench's synthetic documents,
generated here with the same xorshift sequence) and the same settings (5-gram word shingles,
14 buckets x 8 hashes, 64-bit xxhash). Times the signature step alone (what the Rust bench's
`signatures` measures) and the whole dedup (signatures + buckets + clusters, the Rust
`dedup_clusters`), on one worker, and prints MB/s, clusters, documents removed and, with
--rust-mbps, the speed ratio.
"""
import argparse
import glob
import json
import os
import tempfile
import time

M64 = (1 << 64) - 1


def synthetic(n):
    state = 0x2545F4914F6CDD1D

    def nxt():
        nonlocal state
        state ^= (state << 13) & M64
        state ^= state >> 7
        state ^= (state << 17) & M64
        return state

    vocab = ["".join(chr(ord("a") + (i * 7 + j * 13) % 26) for j in range(2 + i % 9)) for i in range(2000)]
    docs = []
    for i in range(n):
        if i % 10 == 9:
            src = docs[nxt() % len(docs)]
            words = src.split(" ")
            for _ in range(3):
                k = nxt() % len(words)
                words[k] = vocab[nxt() % len(vocab)]
            docs.append(" ".join(words))
            continue
        length = 150 + nxt() % 300
        docs.append(" ".join(vocab[nxt() % len(vocab)] for _ in range(length)))
    return docs


def corpus(root):
    texts = []
    for path in sorted(glob.glob(os.path.join(root, "data/spamassassin/*.jsonl"))):
        with open(path) as f:
            texts += [json.loads(line)["text"] for line in f if line.strip()]
    return ("spamassassin", texts) if texts else ("synthetic", synthetic(4000))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rust-mbps", type=float, help="the Rust bench's signatures MB/s, for the ratio")
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    name, texts = corpus(root)
    mb = sum(len(t.encode()) for t in texts) / 1e6

    import xxhash

    import datatrove.utils.hashes.xxhash as dt_xxhash

    # datatrove 0.10.1 passes str to xxhash, which xxhash >= 4 refuses ("Strings must be
    # encoded before hashing"); hash the UTF-8 bytes, which is what older xxhash did.
    dt_xxhash.xxhash64 = lambda d: xxhash.xxh64_intdigest(d.encode() if isinstance(d, str) else d)
    dt_xxhash.xxhash32 = lambda d: xxhash.xxh32_intdigest(d.encode() if isinstance(d, str) else d)
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashDedupCluster,
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.utils.hashing import HashConfig

    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, hash_config=HashConfig(precision=64, hash_fc="xxhash"))
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        with open(os.path.join(data, "corpus.jsonl"), "w") as f:
            for i, t in enumerate(texts):
                f.write(json.dumps({"text": t, "id": str(i)}) + "\n")
        sigs, buckets, clusters = (os.path.join(tmp, d) for d in ("sigs", "buckets", "clusters"))

        def run(step, tasks=1):
            LocalPipelineExecutor(pipeline=step, tasks=tasks, workers=1, logging_dir=os.path.join(tmp, "logs", str(time.time()))).run()

        t0 = time.perf_counter()
        run([JsonlReader(data), MinhashDedupSignature(output_folder=sigs, config=config)])
        t_sig = time.perf_counter() - t0
        run([MinhashDedupBuckets(input_folder=sigs, output_folder=buckets, config=config)], tasks=config.num_buckets)
        run([MinhashDedupCluster(input_folder=buckets, output_folder=clusters, config=config, save_cluster_id=True)])
        t_all = time.perf_counter() - t0

        removed = 0
        for path in glob.glob(os.path.join(clusters, "*.remove")):
            removed += os.path.getsize(path) // 4
        cluster_ids = set()
        for path in glob.glob(os.path.join(clusters, "*.clusters")):
            raw = open(path, "rb").read()
            cluster_ids |= {int.from_bytes(raw[i + 4:i + 8], "little") for i in range(0, len(raw), 8)}

    print(f"{name}: {len(texts)} documents, {mb:.2f} MB")
    print(f"datatrove signatures: {t_sig:.2f} s, {mb / t_sig:.2f} MB/s (1 worker)")
    print(f"datatrove full dedup: {t_all:.2f} s, {mb / t_all:.2f} MB/s; {len(cluster_ids)} clusters, {removed} documents removed")
    if args.rust_mbps:
        print(f"ratio (Rust signatures / datatrove signatures): {args.rust_mbps / (mb / t_sig):.1f}x")


if __name__ == "__main__":
    main()
