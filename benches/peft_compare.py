#!/usr/bin/env python3
"""One LoRA training step on SmolLM2-135M-Instruct: slm (burn flex, `benches/lora_step.rs`)
against PyTorch + peft, side by side on the same weights, batch, machine and thread count.

Usage (from the repository root):
    python3 benches/peft_compare.py [--venv DIR] [--steps 10]

What it does:
1. creates a virtual environment (default /tmp/slm-peft-venv) with torch, transformers, peft
   and safetensors from PyPI and re-runs itself there;
2. converts the cached GGUF (``$SLM_SMOLLM2_GGUF`` or
   ~/.cache/slm/SmolLM2-135M-Instruct.Q4_1.gguf, from scripts/fetch-smollm2.sh) to an f32
   Hugging Face directory with ``slm convert`` (the weights slm trains on: the GGUF dequantized);
3. in a child process (so its peak RSS is its own), loads that directory in transformers,
   attaches ``LoraConfig(r=16, lora_alpha=32, lora_dropout=0, target_modules=<all seven>)``
   and runs ``--steps`` steps of forward, backward and ``torch.optim.AdamW(lr=2e-4,
   weight_decay=0)`` on the bench's batch (4 x 128 tokens, the same ids as lora_step.rs, labels
   = inputs), after one warm-up step, with one thread per core;
4. runs ``cargo bench --bench lora_step --profile dev`` and reads criterion's mean step time and
   the peak RSS the bench prints;
5. prints tokens/s and peak RSS of each and the ratios (slm / PyTorch).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

from pyvenv import ensure_venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS, LEN = 4, 128
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def model_path():
    if os.environ.get("SLM_SMOLLM2_GGUF"):
        return os.environ["SLM_SMOLLM2_GGUF"]
    return os.path.expanduser("~/.cache/slm/SmolLM2-135M-Instruct.Q4_1.gguf")


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def batch_ids():
    # lora_step.rs: ((r * 7919 + t * 104_729) % 49_000) + 100
    return [[(r * 7919 + t * 104_729) % 49_000 + 100 for t in range(LEN)] for r in range(ROWS)]


def hf_dir(gguf):
    out = os.path.join(target_dir(), "peft-compare", "smollm2-hf-f32")
    if not os.path.isfile(os.path.join(out, "config.json")):
        subprocess.run(["cargo", "build", "--locked", "-q", "-p", "slm-cli"], cwd=ROOT, check=True)
        slm = os.path.join(target_dir(), "debug", "slm")
        subprocess.run([slm, "convert", "--model", gguf, "--out", out], check=True, stdout=subprocess.DEVNULL)
    return out


def torch_child(model_dir, steps):
    """Runs in the child: the PyTorch + peft steps; prints one JSON line."""
    import resource

    import peft
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS))
    model.train()
    ids = torch.tensor(batch_ids())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, weight_decay=0.0)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        return loss.item()

    step()  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "torch": torch.__version__, "peft": peft.__version__,
        "seconds": sum(times) / len(times), "peak_rss": rss, "threads": torch.get_num_threads(),
    }))


def run_slm():
    proc = subprocess.run(
        ["cargo", "bench", "--locked", "--bench", "lora_step", "--profile", "dev", "--", "--noplot"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"cargo bench failed:\n{proc.stderr[-3000:]}")
    est = os.path.join(target_dir(), "criterion", "smollm2-135m_lora-r16-all_flex", "step_4x128", "new", "estimates.json")
    seconds = json.load(open(est))["mean"]["point_estimate"] / 1e9
    m = re.search(r"peak RSS ([0-9.]+) GiB", proc.stderr)
    if not m:
        sys.exit(f"the bench printed no peak RSS:\n{proc.stderr[-2000:]}")
    breakdown = re.search(r"step breakdown[^\n]*", proc.stderr)
    return seconds, float(m.group(1)) * (1 << 30), breakdown.group(0) if breakdown else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", default="/tmp/slm-peft-venv")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        torch_child(args.child, args.steps)
        return
    ensure_venv(args.venv, ["torch", "transformers", "peft", "safetensors"], "peft")
    gguf = model_path()
    if not os.path.isfile(gguf):
        sys.exit(f"{gguf} not found: run scripts/fetch-smollm2.sh")
    model_dir = hf_dir(gguf)
    child = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", model_dir, "--steps", str(args.steps)],
        capture_output=True, text=True,
    )
    if child.returncode != 0:
        sys.exit(f"the PyTorch run failed:\n{child.stderr[-3000:]}")
    torch_run = json.loads(child.stdout.strip().splitlines()[-1])
    slm_seconds, slm_rss, breakdown = run_slm()
    tokens = ROWS * LEN
    gib = 1 << 30
    print(f"one LoRA step, r=16 on all projections, batch {ROWS} x {LEN}, {os.cpu_count()} threads each")
    label = f"PyTorch {torch_run['torch']} + peft {torch_run['peft']}"
    print(f"{label:34} {tokens / torch_run['seconds']:8.1f} tokens/s  peak RSS {torch_run['peak_rss'] / gib:5.2f} GiB")
    print(f"{'slm (burn flex)':34} {tokens / slm_seconds:8.1f} tokens/s  peak RSS {slm_rss / gib:5.2f} GiB")
    if breakdown:
        print(f"slm {breakdown}")
    print(f"speed,  slm / PyTorch: {torch_run['seconds'] / slm_seconds:.2f}x")
    print(f"memory, slm / PyTorch: {slm_rss / torch_run['peak_rss']:.2f}x")


if __name__ == "__main__":
    main()
