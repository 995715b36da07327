#!/usr/bin/env bash
# Creates (once) a virtual environment with the official `openai` Python client, pinned, in the
# cache outside the repository, and prints its python. The serve integration test drives
# `slm serve` with it (SLM_OPENAI_PYTHON). Only pip touches the network.
set -euo pipefail

cache="${SLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slm}"
version="3.57.0"
venv="$cache/venv-openai-$version"
py="$venv/bin/python"

if [ -x "$py" ] && "$py" -c "import openai, sys; sys.exit(openai.__version__ != '$version')" 2>/dev/null; then
  echo "$py"
  exit 0
fi
mkdir -p "$cache"
rm -rf "$venv"
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "openai==$version" >&2
echo "$py"
