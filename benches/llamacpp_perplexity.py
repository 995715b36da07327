#!/usr/bin/env python3
"""`slm perplexity` against llama.cpp's `llama-perplexity` on the same GGUF, text, context and
threads: the perplexity of each, their ratio and time.

Usage (from the repository root):
    python3 benches/llamacpp_perplexity.py [--text FILE] [--ctx 256] [--chunks N] [--build DIR]

What it does:
1. builds `llama-perplexity` once from the llama.cpp vendored in the `llama-cpp-python` sdist
   (``pip download --no-deps --no-binary llama-cpp-python llama-cpp-python``; CMake from
   PyPI when none is installed) into ``--build`` (default /tmp/slm-llamacpp-build): a few
   minutes on 2 cores;
2. runs it on the cached GGUF (``$SLM_SMOLLM2_GGUF`` or
   ~/.cache/slm/SmolLM2-135M-Instruct.Q4_1.gguf) and ``--text`` (README.md by default) with
   ``-c CTX -b CTX -t <cores>`` and reads its ``Final estimate: PPL = x +/- y``;
3. runs ``slm perplexity --json`` with the same model, text, context and chunks;
4. prints both and the relative difference (the issue asks for at most 1%).

The two differ in arithmetic: llama.cpp multiplies the quantized blocks with 8-bit
activations, slm dequantizes the weights to f32 and multiplies in f32.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSION = "0.3.36"


def model_path():
    if os.environ.get("SLM_SMOLLM2_GGUF"):
        return os.environ["SLM_SMOLLM2_GGUF"]
    return os.path.expanduser("~/.cache/slm/SmolLM2-135M-Instruct.Q4_1.gguf")


def build_llama_perplexity(build):
    return build_tool(build, "llama-perplexity")


def build_tool(build, target):
    """Builds one llama.cpp tool (llama-perplexity, llama-bench, llama-quantize) from the
    vendored sources of the llama-cpp-python sdist into `build` once; returns its path (the
    build's own output goes to stderr, so a shell can capture the path alone)."""
    exe = os.path.join(build, "out", "bin", target)
    if os.path.exists(exe):
        return exe
    os.makedirs(build, exist_ok=True)
    src = os.path.join(build, f"llama_cpp_python-{VERSION}")
    if not os.path.isdir(src):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python",
             f"llama-cpp-python=={VERSION}", "-d", build],
            check=True, stdout=sys.stderr,
        )
        with tarfile.open(glob.glob(os.path.join(build, "llama_cpp_python-*.tar.gz"))[0]) as t:
            t.extractall(build)
    cmake = shutil.which("cmake")
    if cmake is None:
        venv = os.path.join(build, "venv")
        if not os.path.exists(os.path.join(venv, "bin", "cmake")):
            subprocess.run([sys.executable, "-m", "venv", venv], check=True, stdout=sys.stderr)
            subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "cmake"], check=True, stdout=sys.stderr)
        cmake = os.path.join(venv, "bin", "cmake")
    llama = os.path.join(src, "vendor", "llama.cpp")
    out = os.path.join(build, "out")
    subprocess.run(
        [cmake, "-S", llama, "-B", out, "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
         "-DGGML_NATIVE=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
         "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_TOOLS=ON"]
        # Extra cmake flags, after the defaults (so they win): e.g. on a VM that advertises AMX
        # without letting programs use it, the native build dies in `ldtilecfg`:
        # LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
        # -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_BF16=ON".
        + os.environ.get("LLAMA_CMAKE_ARGS", "").split(),
        check=True, stdout=sys.stderr,
    )
    subprocess.run(
        [cmake, "--build", out, "--target", target, "-j", str(os.cpu_count())],
        check=True, stdout=sys.stderr,
    )
    return exe


def run_llamacpp(exe, model, text, ctx, chunks):
    args = [exe, "-m", model, "-f", text, "-c", str(ctx), "-b", str(ctx), "-t", str(os.cpu_count())]
    if chunks:
        args += ["--chunks", str(chunks)]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", proc.stdout + proc.stderr)
    if not m:
        sys.exit(f"llama-perplexity printed no estimate:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return float(m.group(1)), float(m.group(2)), seconds


def run_slm(model, text, ctx, chunks):
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    subprocess.run(["cargo", "build", "--locked", "-q", "-p", "slm-cli"], cwd=ROOT, check=True)
    args = [os.path.join(target, "debug", "slm"), "perplexity", "--model", model, "--text", text,
            "--ctx", str(ctx), "--json"]
    if chunks:
        args += ["--chunks", str(chunks)]
    t0 = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out), time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--text", default=os.path.join(ROOT, "README.md"))
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--chunks", type=int, default=0)
    ap.add_argument("--build", default="/tmp/slm-llamacpp-build")
    args = ap.parse_args()
    model = model_path()
    if not os.path.isfile(model):
        sys.exit(f"{model} not found: run scripts/fetch-smollm2.sh")
    exe = build_llama_perplexity(args.build)
    ppl_l, err_l, sec_l = run_llamacpp(exe, model, args.text, args.ctx, args.chunks)
    slm, sec_s = run_slm(model, args.text, args.ctx, args.chunks)
    print(f"model {model}, text {args.text}, ctx {args.ctx}, {os.cpu_count()} threads")
    print(f"llama.cpp {VERSION} llama-perplexity: PPL = {ppl_l:.4f} +/- {err_l:.5f} ({sec_l:.1f} s)")
    print(f"slm perplexity:                PPL = {slm['ppl']:.4f} +/- {slm['stderr']:.5f} "
          f"({slm['chunks']} chunks, {slm['tokens']} tokens, {sec_s:.1f} s)")
    print(f"relative difference: {abs(slm['ppl'] - ppl_l) / ppl_l * 100:.3f}%")


if __name__ == "__main__":
    main()
