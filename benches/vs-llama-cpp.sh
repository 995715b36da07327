#!/usr/bin/env bash
# slm's CPU fast path against llama.cpp on the same GGUF files, machine and threads:
# `llama-bench` and `slm bench` run alternately (so both see the same machine state), pp64 and
# tg64 for SmolLM2-135M-Instruct in Q4_1 (as shipped), Q8_0 and Q4_0 (made with llama-quantize),
# at 1 and 2 threads; prints a Markdown table of tokens/s and the slm/llama.cpp ratios, then one
# of peak RSS: `slm generate` against `llama-completion` (its default context, and `-c 128`, the
# least that holds the run), 64 new tokens of the same prompt (slm on one thread per core, llama.cpp on 2).
#
#   benches/vs-llama-cpp.sh [rounds]     # rounds of alternation, default 2
#   SLM_BIN=target/debug/slm benches/vs-llama-cpp.sh   # an slm binary already built
#
# Builds llama-bench, llama-completion and llama-quantize from the llama-cpp-python sdist's vendored llama.cpp
# into $LLAMA_BUILD (default /tmp/slm-llamacpp-build, shared with the perplexity benches) once;
# needs python3, pip and a C++ compiler (cmake comes from pip when absent). LLAMA_CMAKE_ARGS adds
# cmake flags (with its own LLAMA_BUILD dir): a VM that advertises AMX but does not let programs use
# it crashes llama.cpp's native build in `ldtilecfg` (see benches/llamacpp_perplexity.py).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-2}"
build="${LLAMA_BUILD:-/tmp/slm-llamacpp-build}"
cache="${SLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slm}"
threads_list="${THREADS:-1 2}"

tool() {
  python3 -c "import sys; sys.path.insert(0, '$root/benches'); import llamacpp_perplexity as lp; print(lp.build_tool('$build', '$1'))"
}
bench="$(tool llama-bench)"
quantize="$(tool llama-quantize)"
completion="$(tool llama-completion)"
export LD_LIBRARY_PATH="$(dirname "$bench")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

base="$("$root/scripts/fetch-smollm2.sh")"
mkdir -p "$cache/bench"
models=("$base")
for t in Q8_0 Q4_0; do
  f="$cache/bench/SmolLM2-135M-Instruct.$t.gguf"
  [ -f "$f" ] || "$quantize" --allow-requantize "$base" "$f" "$t" > /dev/null 2>&1
  models+=("$f")
done

# SLM_BIN=path/to/slm skips the release build (the dev profile builds slm-ggml and slm-core
# optimised too, so its kernels are the release ones).
if [ -n "${SLM_BIN:-}" ]; then
  slm="$SLM_BIN"
else
  (cd "$root" && cargo build --release --locked -p slm-cli --quiet)
  slm="${CARGO_TARGET_DIR:-$root/target}/release/slm"
fi

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for round in $(seq "$rounds"); do
  for m in "${models[@]}"; do
    for t in $threads_list; do
      "$bench" -m "$m" -t "$t" -p 64 -n 64 -r 3 -o jsonl 2>/dev/null \
        | sed "s|^|llama $t $(basename "$m") |" >> "$out"
      "$slm" bench --model "$m" --threads "$t" --prompt-tokens 64 --gen-tokens 64 --repetitions 3 --json \
        | sed "s|^|slm $t $(basename "$m") |" >> "$out"
    done
  done
done

python3 - "$out" <<'PY'
import json, sys, collections
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    who, threads, model, data = line.split(" ", 3)
    d = json.loads(data)
    key = (model, int(threads))
    if who == "llama":
        test = "pp" if d["n_prompt"] > 0 else "tg"
        rows[key][f"llama_{test}"].append(d["avg_ts"])
    else:
        rows[key]["slm_pp"].append(d["pp"])
        rows[key]["slm_tg"].append(d["tg"])
        rows[key]["roofline"].append(d["roofline_fraction"])
        rows[key]["rss"].append(d["peak_rss_bytes"] / 2**20)
mean = lambda v: sum(v) / len(v)
print("| model | threads | pp64 slm | pp64 llama.cpp | ratio | tg64 slm | tg64 llama.cpp | ratio | slm tg / roofline | slm peak RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (model, t), r in sorted(rows.items()):
    pp, lpp, tg, ltg = (mean(r[k]) for k in ("slm_pp", "llama_pp", "slm_tg", "llama_tg"))
    print(f"| {model.replace('SmolLM2-135M-Instruct.', '').replace('.gguf', '')} | {t} | {pp:.1f} | {lpp:.1f} | {pp / lpp:.2f}x | {tg:.1f} | {ltg:.1f} | {tg / ltg:.2f}x | {100 * mean(r['roofline']):.0f}% | {mean(r['rss']):.0f} |")
PY

# Peak RSS of one command (its own, not this shell's: a fresh python waits for it).
peak_rss_mib() {
  python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
print(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f}")' "$@"
}
prompt="The capital of France is"
echo
echo "| model | slm generate peak RSS MiB | llama-completion (default context) | llama-completion -c 128 |"
echo "|---|---|---|---|"
for m in "${models[@]}"; do
  s="$(peak_rss_mib "$slm" generate --model "$m" --prompt "$prompt" --max-new-tokens 64)"
  l="$(peak_rss_mib "$completion" -m "$m" -t 2 -p "$prompt" -n 64 -no-cnv --no-warmup)"
  c="$(peak_rss_mib "$completion" -m "$m" -t 2 -p "$prompt" -n 64 -c 128 -no-cnv --no-warmup)"
  echo "| $(basename "$m" .gguf | sed 's/SmolLM2-135M-Instruct.//') | $s | $l | $c |"
done
