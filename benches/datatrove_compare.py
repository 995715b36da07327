#!/usr/bin/env python3
"""slm-data's MinHash deduplication against datatrove's, side by side on the same corpus and
machine, with the same settings (5-gram word shingles, 14 buckets x 8 hashes, 64-bit xxhash).

Usage (from the repository root):
    python3 benches/datatrove_compare.py [--venv DIR] [--corpus FILE.jsonl]

What it does:
1. creates a virtual environment (default /tmp/slm-datatrove-venv) with ``datatrove==0.10.1``,
   ``xxhash`` and ``spacy`` (datatrove's English word tokenizer) and re-runs itself there;
2. picks the corpus as ``benches/common/mod.rs`` does: $SLM_SPAMASSASSIN_JSONL, else the full
   SpamAssassin import (~/.cache/slm/spamassassin/full.jsonl or target/spamassassin/full.jsonl,
   from scripts/import-spamassassin.sh), else the shipped data/spamassassin/sample.jsonl;
3. runs datatrove's three MinHash steps (signatures, buckets, clusters) on one worker and times
   the signature step alone and the whole dedup;
4. runs ``cargo bench --bench minhash --profile dev`` twice, with RAYON_NUM_THREADS=1 (one
   core, as datatrove's one worker) and with every core, and reads criterion's mean times for
   ``signatures`` and ``dedup_clusters`` from target/criterion;
5. prints MB/s of each, the ratios, and the duplicate clusters each found: how many, how many
   documents each would remove, and how many clusters are identical.

datatrove's times include its pipeline start-up (reading the JSONL, loading the spaCy
tokenizer, writing signature files), which is what a user of it pays; the signature-step ratio
isolates most of that from the bucketing.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

from pyvenv import ensure_venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ["datatrove==0.10.1", "xxhash", "spacy", "nltk", "tokenizers", "orjson"]


def corpus_path(explicit):
    if explicit:
        return explicit
    if os.environ.get("SLM_SPAMASSASSIN_JSONL"):
        return os.environ["SLM_SPAMASSASSIN_JSONL"]
    for full in (os.path.expanduser("~/.cache/slm/spamassassin/full.jsonl"), os.path.join(ROOT, "target/spamassassin/full.jsonl")):
        if os.path.isfile(full):
            return full
    return os.path.join(ROOT, "data/spamassassin/sample.jsonl")


def run_datatrove(texts):
    import xxhash

    import datatrove.utils.hashes.xxhash as dt_xxhash

    # datatrove 0.10.1 passes str to xxhash, which xxhash >= 4 refuses ("Strings must be
    # encoded before hashing"); hash the UTF-8 bytes, which is what older xxhash did.
    dt_xxhash.xxhash64 = lambda d: xxhash.xxh64_intdigest(d.encode() if isinstance(d, str) else d)
    dt_xxhash.xxhash32 = lambda d: xxhash.xxh32_intdigest(d.encode() if isinstance(d, str) else d)
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
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
            logs = os.path.join(tmp, "logs", str(time.time()))
            LocalPipelineExecutor(pipeline=step, tasks=tasks, workers=1, logging_dir=logs).run()

        t0 = time.perf_counter()
        run([JsonlReader(data), MinhashDedupSignature(output_folder=sigs, config=config)])
        t_sig = time.perf_counter() - t0
        run([MinhashDedupBuckets(input_folder=sigs, output_folder=buckets, config=config)], tasks=config.num_buckets)
        run([MinhashDedupCluster(input_folder=buckets, output_folder=clusters, config=config, save_cluster_id=True)])
        t_all = time.perf_counter() - t0

        groups = {}
        for path in glob.glob(os.path.join(clusters, "*.clusters")):
            raw = open(path, "rb").read()
            for i in range(0, len(raw), 8):
                doc, cluster = int.from_bytes(raw[i:i + 4], "little"), int.from_bytes(raw[i + 4:i + 8], "little")
                groups.setdefault(cluster, set()).add(doc)
    found = {frozenset(g) for g in groups.values() if len(g) > 1}
    return t_sig, t_all, found


def run_rust(threads):
    """Mean seconds of the Rust bench's `signatures` and `dedup_clusters`, and its clusters."""
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    env = dict(os.environ)
    if threads:
        env["RAYON_NUM_THREADS"] = str(threads)
    else:
        env.pop("RAYON_NUM_THREADS", None)
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as out:
        env["SLM_MINHASH_CLUSTERS"] = out.name
        proc = subprocess.run(
            ["cargo", "bench", "--locked", "--bench", "minhash", "--profile", "dev", "--", "--noplot"],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            sys.exit(f"cargo bench failed:\n{proc.stderr[-3000:]}")
        found = {frozenset(json.loads(line)) for line in open(out.name) if line.strip()}
    name = next(line.split(":")[0] for line in proc.stderr.splitlines() if line.startswith("spamassassin"))
    times = {}
    for fn in ("signatures", "dedup_clusters"):
        est = os.path.join(target, "criterion", f"minhash_{name}", fn, "new", "estimates.json")
        times[fn] = json.load(open(est))["mean"]["point_estimate"] / 1e9
    return name, times, found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", default="/tmp/slm-datatrove-venv")
    ap.add_argument("--corpus", help="a JSONL file with a `text` field")
    args = ap.parse_args()
    ensure_venv(args.venv, PACKAGES, "datatrove")

    path = corpus_path(args.corpus)
    texts = [json.loads(line)["text"] for line in open(path) if line.strip()]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"corpus: {path}: {len(texts)} documents, {mb:.2f} MB of text")

    dt_sig, dt_all, dt_found = run_datatrove(texts)
    os.environ["SLM_SPAMASSASSIN_JSONL"] = path
    _, one, rust_found = run_rust(1)
    _, every, _ = run_rust(None)

    rows = [
        ("datatrove 0.10.1 signatures, 1 worker", dt_sig),
        ("datatrove 0.10.1 full dedup, 1 worker", dt_all),
        ("slm-data signatures, 1 thread", one["signatures"]),
        ("slm-data full dedup, 1 thread", one["dedup_clusters"]),
        (f"slm-data signatures, {os.cpu_count()} cores", every["signatures"]),
        (f"slm-data full dedup, {os.cpu_count()} cores", every["dedup_clusters"]),
    ]
    for label, seconds in rows:
        print(f"{label:42} {seconds:9.3f} s {mb / seconds:10.2f} MB/s")
    print(f"ratio, signatures, 1 thread vs 1 worker:  {dt_sig / one['signatures']:.1f}x")
    print(f"ratio, full dedup, 1 thread vs 1 worker:  {dt_all / one['dedup_clusters']:.1f}x")
    print(f"ratio, full dedup, all cores vs 1 worker: {dt_all / every['dedup_clusters']:.1f}x")

    removed = lambda found: sum(len(c) - 1 for c in found)
    print(f"datatrove clusters: {len(dt_found)} ({removed(dt_found)} documents removed)")
    print(f"slm-data clusters:  {len(rust_found)} ({removed(rust_found)} documents removed)")
    print(f"identical clusters: {len(dt_found & rust_found)}")
    pairs = lambda found: {(a, b) for c in found for a in c for b in c if a < b}
    dt_pairs, rust_pairs = pairs(dt_found), pairs(rust_found)
    print(f"same-cluster pairs: datatrove {len(dt_pairs)}, slm-data {len(rust_pairs)}, both {len(dt_pairs & rust_pairs)}")
    for label, only in (("only datatrove", dt_found - rust_found), ("only slm-data", rust_found - dt_found)):
        for c in sorted(only, key=min)[:10]:
            print(f"  {label}: {sorted(c)}")


if __name__ == "__main__":
    main()
