#!/usr/bin/env bash
# Checks the project's copy of the reference fixtures (fixtures/): every file has the size and
# sha256 that fixtures/MANIFEST.json records, no file is missing or extra, and, when the shared
# originals sit beside the clone (../shared/fixtures, or $SLM_SHARED_FIXTURES), the two trees are
# byte-identical. The copy is never edited by hand: refresh it with `cp -r` from the originals.
#
#   scripts/check-fixtures.sh      # exit 1 naming each file that differs
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${SLM_SHARED_FIXTURES:-../shared/fixtures}"
python3 - fixtures "$shared" <<'PY'
import hashlib, json, os, sys

copy, shared = sys.argv[1], sys.argv[2]

def tree(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = p
    return out

def sha(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

problems = []
manifest = json.load(open(os.path.join(copy, "MANIFEST.json")))
files = tree(copy)
listed = {e["path"] for e in manifest} | {"MANIFEST.json"}
for e in manifest:
    p = files.get(e["path"])
    if p is None:
        problems.append(f"{copy}/{e['path']}: missing")
    elif os.path.getsize(p) != e["bytes"] or sha(p) != e["sha256"]:
        problems.append(f"{copy}/{e['path']}: differs from MANIFEST.json")
problems += [f"{copy}/{f}: not in MANIFEST.json" for f in sorted(set(files) - listed)]
compared = "no shared originals beside the clone"
if os.path.isdir(shared):
    theirs = tree(shared)
    for f in sorted(set(files) | set(theirs)):
        if f not in theirs:
            problems.append(f"{copy}/{f}: not in {shared}")
        elif f not in files:
            problems.append(f"{shared}/{f}: missing from {copy}")
        elif sha(files[f]) != sha(theirs[f]):
            problems.append(f"{copy}/{f}: differs from {shared}/{f}")
    compared = f"byte-identical to {shared}"
if problems:
    print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
    sys.exit(1)
print(f"fixtures: {len(manifest)} files match MANIFEST.json; {compared}")
PY
