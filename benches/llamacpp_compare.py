#!/usr/bin/env python3
"""SmolLM2-135M-Instruct prompt (prefill) and decode speed on the CPU: slm (burn flex) against
llama.cpp (through llama-cpp-python), side by side on the same GGUF, machine and thread count.

Usage (from the repository root):
    python3 benches/llamacpp_compare.py [--venv DIR] [--steps 32] [--repeats 10]

What it does:
1. creates a virtual environment (default /tmp/slm-llamacpp-venv) with ``llama-cpp-python``
   (built from source by pip: a few minutes on 2 cores) and re-runs itself there;
2. runs ``cargo bench --bench decode --profile dev`` and reads criterion's mean times for
   ``prefill_<N>_tokens`` and ``decode_1_token_after_<N>`` from target/criterion;
3. loads the same GGUF (``$SLM_SMOLLM2_GGUF`` or ~/.cache/slm/SmolLM2-135M-Instruct.Q4_1.gguf,
   from scripts/fetch-smollm2.sh) in llama.cpp with one thread per core, tokenizes the same
   chat prompt, and times the prompt evaluation (``--repeats`` times, after a reset) and
   ``--steps`` single-token decode steps after it;
4. prints tokens/s of each and the ratios.

The two differ in what the weights are while computing: llama.cpp multiplies the Q4_1 blocks
directly, slm dequantizes them to f32 at load time today. The Rust decode bench also clones
the prompt's KV cache per iteration (measured inside its time).
"""
import argparse
import json
import os
import subprocess
import sys
import time

from pyvenv import ensure_venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "Write one sentence about why small language models save energy."
# SmolLM2-135M-Instruct's chat template for one user turn with its default system prompt
# (what slm's Tokenizer::apply_chat_template renders for the decode bench).
CHAT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n"
)


def model_path():
    if os.environ.get("SLM_SMOLLM2_GGUF"):
        return os.environ["SLM_SMOLLM2_GGUF"]
    return os.path.expanduser("~/.cache/slm/SmolLM2-135M-Instruct.Q4_1.gguf")


def run_slm():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    proc = subprocess.run(
        ["cargo", "bench", "--locked", "--bench", "decode", "--profile", "dev", "--", "--noplot"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"cargo bench failed:\n{proc.stderr[-3000:]}")
    group = os.path.join(target, "criterion", "smollm2-135m_flex")
    times = {}
    for name in os.listdir(group):
        est = os.path.join(group, name, "new", "estimates.json")
        if os.path.exists(est):
            times[name] = json.load(open(est))["mean"]["point_estimate"] / 1e9
    prefill = next(k for k in times if k.startswith("prefill_"))
    decode = next(k for k in times if k.startswith("decode_1_token_after_"))
    n = int(prefill.split("_")[1])
    return n, times[prefill], times[decode]


def run_llamacpp(path, steps, repeats):
    import llama_cpp

    threads = os.cpu_count()
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    tokens = llm.tokenize(CHAT.encode(), add_bos=False, special=True)
    llm.reset()
    llm.eval(tokens)  # warm-up
    prefill = []
    for _ in range(repeats):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        prefill.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(steps):
        llm.eval([28])
    decode = (time.perf_counter() - t0) / steps
    return llama_cpp.__version__, len(tokens), sum(prefill) / len(prefill), decode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", default="/tmp/slm-llamacpp-venv")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    ensure_venv(args.venv, ["llama-cpp-python"], "llama_cpp")
    path = model_path()
    if not os.path.isfile(path):
        sys.exit(f"{path} not found: run scripts/fetch-smollm2.sh")

    version, n_llama, llama_prefill, llama_decode = run_llamacpp(path, args.steps, args.repeats)
    n_slm, slm_prefill, slm_decode = run_slm()
    print(f"model: {path}; {os.cpu_count()} threads each")
    print(f"prompt tokens: slm {n_slm}, llama.cpp {n_llama}")
    rows = [
        (f"llama.cpp {version} prefill", llama_prefill, n_llama / llama_prefill),
        ("slm (flex) prefill", slm_prefill, n_slm / slm_prefill),
        (f"llama.cpp {version} decode", llama_decode, 1 / llama_decode),
        ("slm (flex) decode", slm_decode, 1 / slm_decode),
    ]
    for label, seconds, tps in rows:
        print(f"{label:34} {seconds * 1e3:9.1f} ms {tps:9.1f} tokens/s")
    print(f"prefill, slm / llama.cpp tokens/s: {(n_slm / slm_prefill) / (n_llama / llama_prefill):.2f}x")
    print(f"decode,  slm / llama.cpp tokens/s: {llama_decode / slm_decode:.2f}x")


if __name__ == "__main__":
    main()
