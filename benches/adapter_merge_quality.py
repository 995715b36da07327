#!/usr/bin/env python3
"""The safe merge path for an adapter trained over a quantized base: dequantize, merge,
requantize (`slm quantize --adapter`), optionally weighted by an importance matrix from the
task's own training data, measured as task accuracy (`slm eval`) and perplexity
(llama.cpp's `llama-perplexity`) against the adapter applied unmerged in f32.

Usage (from the repository root):
    python3 benches/adapter_merge_quality.py --adapter DIR [--types q4_1,q4_k_m,q8_0]

The adapter is a classifier LoRA from `slm finetune --labels ham,spam ...` on the curated
SpamAssassin split (its task.json gives the labels and prompt); the base is the cached
SmolLM2-135M-Instruct Q4_1 GGUF, the quantization the adapter was trained over.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
import llamacpp_perplexity as lp  # noqa: E402
import quantize_quality as qq  # noqa: E402


def slm(*args):
    return qq.slm(*args)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--types", default="q4_1,q4_k_m,q8_0")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--build", default="/tmp/slm-llamacpp-build")
    args = ap.parse_args()
    model = lp.model_path()
    out = os.path.join(ROOT, "target", "adapter-merge")
    os.makedirs(out, exist_ok=True)
    text = qq.texts(out)
    test = os.path.join(ROOT, "target", "curated", "spamassassin", "test.jsonl")
    task = json.load(open(os.path.join(os.path.dirname(os.path.abspath(args.adapter)), "task.json")))
    task_flags = ["--labels", ",".join(task["labels"]), "--instruction",
                  task["template"]["instruction"], "--seq-len", str(task["seq_len"])]
    ppl_exe = lp.build_llama_perplexity(args.build)
    subprocess.run(["cargo", "build", "--locked", "-q", "-p", "slm-cli"], cwd=ROOT, check=True)

    rows = []
    e = slm("eval", "--model", model, "--adapter", args.adapter, "--data", test, "--json")
    f32 = os.path.join(out, "merged.f32.gguf")
    slm("quantize", "--model", model, "--adapter", args.adapter, "--type", "f32", "--out", f32,
        "--no-modelfile")
    ppl = lp.run_llamacpp(ppl_exe, f32, text["test"], args.ctx, 0)
    rows.append(("Q4_1 base + adapter, unmerged (f32)", e["accuracy"], e["macro_f1"], ppl[0], ppl[1]))
    for ty in args.types.split(","):
        for imatrix in (False, True):
            if imatrix and ty == "q8_0":
                continue
            path = os.path.join(out, f"merged.{ty}{'.imatrix' if imatrix else ''}.gguf")
            extra = ["--imatrix", text["train"]] if imatrix else []
            slm("quantize", "--model", model, "--adapter", args.adapter, "--type", ty, *extra,
                "--out", path, "--no-modelfile")
            e = slm("eval", "--model", path, "--data", test, *task_flags, "--json")
            ppl = lp.run_llamacpp(ppl_exe, path, text["test"], args.ctx, 0)
            name = f"merged, {ty.upper()}" + (" + imatrix (train split)" if imatrix else "")
            rows.append((name, e["accuracy"], e["macro_f1"], ppl[0], ppl[1]))
            print(rows[-1], flush=True)
    print("\n| model | accuracy | macro-F1 | PPL (test emails) |")
    print("|---|---:|---:|---:|")
    for name, acc, f1, p, err in rows:
        print(f"| {name} | {acc:.3f} | {f1:.3f} | {p:.3f} +/- {err:.3f} |")


if __name__ == "__main__":
    main()
