#!/usr/bin/env python3
"""What each GGUF file type costs in quality, for files written by `slm quantize`, scored by
llama.cpp's own `llama-perplexity` (so the files are also shown to run in llama.cpp), with and
without an importance matrix from calibration text; and, beside each plain file, whether
`llama-quantize` writes the same bytes from the same F32 input.

Usage (from the repository root, after `slm data curate --config data/spamassassin/curate.toml`):
    python3 benches/quantize_quality.py [--types q8_0,q6_k,...] [--ctx 512] [--build DIR]

1. builds `llama-perplexity` and `llama-quantize` once (benches/llamacpp_perplexity.py's build);
2. writes the curated SpamAssassin test split as the evaluation text and the train split as
   the calibration text (`"\\n\\n".join(inputs) + "\\n\\n"`), under target/quantize-quality/;
3. `slm quantize --model SmolLM2 --type T` (and `--imatrix train.txt` for the 4- and 5-bit
   types), timing each; `slm quantize --type f32` gives llama-quantize's input;
4. `llama-quantize f32.gguf T` and compares bytes;
5. `llama-perplexity -f test.txt -c CTX` on every file, prints a Markdown table.
"""
import argparse
import filecmp
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
import llamacpp_perplexity as lp  # noqa: E402

WEIGHTED = {"q4_0", "q4_1", "q5_0", "q5_1", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k"}


def texts(out):
    paths = {}
    for split in ("train", "test"):
        src = os.path.join(ROOT, "target", "curated", "spamassassin", f"{split}.jsonl")
        if not os.path.exists(src):
            sys.exit(f"{src} not found: run `slm data curate --config data/spamassassin/curate.toml`")
        with open(src) as f:
            rows = [json.loads(line)["input"] for line in f]
        path = os.path.join(out, f"{split}.txt")
        with open(path, "w") as f:
            f.write("\n\n".join(rows) + "\n\n")
        paths[split] = path
    return paths


def build_quantize(build):
    exe = os.path.join(build, "out", "bin", "llama-quantize")
    if not os.path.exists(exe):
        cmake = lp.shutil.which("cmake") or os.path.join(build, "venv", "bin", "cmake")
        subprocess.run([cmake, "--build", os.path.join(build, "out"), "--target",
                        "llama-quantize", "-j", str(os.cpu_count())], check=True)
    return exe


def slm(*args):
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    t0 = time.perf_counter()
    out = subprocess.run([os.path.join(target, "debug", "slm"), *args], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1]), time.perf_counter() - t0


def perplexity(exe, model, text, ctx):
    ppl, err, _ = lp.run_llamacpp(exe, model, text, ctx, 0)
    return ppl, err


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--types", default="q8_0,q6_k,q5_k_m,q5_0,q4_k_m,q4_k_s,q4_0")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--build", default="/tmp/slm-llamacpp-build")
    args = ap.parse_args()
    model = lp.model_path()
    out = os.path.join(ROOT, "target", "quantize-quality")
    os.makedirs(out, exist_ok=True)
    text = texts(out)
    ppl_exe = lp.build_llama_perplexity(args.build)
    q_exe = build_quantize(args.build)
    subprocess.run(["cargo", "build", "--locked", "-q", "-p", "slm-cli"], cwd=ROOT, check=True)
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(q_exe))

    f32 = os.path.join(out, "f32.gguf")
    slm("quantize", "--model", model, "--type", "f32", "--out", f32, "--no-modelfile")
    base_ppl, base_err = perplexity(ppl_exe, f32, text["test"], args.ctx)
    rows = [("F32 (the Q4_1 weights dequantized)", os.path.getsize(f32), base_ppl, base_err,
             None, None, None, None)]
    for ty in args.types.split(","):
        path = os.path.join(out, f"{ty}.gguf")
        report, secs = slm("quantize", "--model", model, "--type", ty, "--out", path,
                           "--no-modelfile")
        theirs = os.path.join(out, f"{ty}.llama-quantize.gguf")
        t0 = time.perf_counter()
        subprocess.run([q_exe, f32, theirs, ty.upper(), str(os.cpu_count())], env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        their_secs = time.perf_counter() - t0
        same = filecmp.cmp(path, theirs, shallow=False)
        ppl, err = perplexity(ppl_exe, path, text["test"], args.ctx)
        weighted = None
        if ty in WEIGHTED:
            wpath = os.path.join(out, f"{ty}.imatrix.gguf")
            slm("quantize", "--model", model, "--type", ty, "--imatrix", text["train"],
                "--out", wpath, "--no-modelfile")
            weighted = perplexity(ppl_exe, wpath, text["test"], args.ctx)
        rows.append((ty.upper(), report["bytes"], ppl, err, weighted, same, secs, their_secs))
        print(ty, rows[-1], flush=True)

    print(f"\nSmolLM2-135M-Instruct, llama-perplexity on the SpamAssassin test split, ctx {args.ctx}")
    print("| type | bytes | bits/weight | PPL | PPL with imatrix | = llama-quantize | slm s | llama-quantize s |")
    print("|---|---:|---:|---:|---:|:---:|---:|---:|")
    params = 134515008
    for name, size, ppl, err, weighted, same, secs, their in rows:
        w = "" if weighted is None else f"{weighted[0]:.4f} +/- {weighted[1]:.3f}"
        s = "" if same is None else ("yes" if same else "**no**")
        t = "" if secs is None else f"{secs:.1f}"
        tt = "" if their is None else f"{their:.1f}"
        print(f"| {name} | {size:,} | {8 * size / params:.2f} | {ppl:.4f} +/- {err:.3f} | {w} | {s} | {t} | {tt} |")


if __name__ == "__main__":
    main()
