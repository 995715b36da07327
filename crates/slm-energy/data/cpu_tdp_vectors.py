"""Prints CodeCarbon's CPU-model match for each line of a file, as JSON [model, match, tdp].

The expected values in `src/meters/tdp_table.rs` (`CODECARBON_MATCHES`) come from this script,
which is `TDP._get_matching_cpu` of codecarbon 3.3.2 (`codecarbon/core/cpu.py`) without pandas:

    pip download codecarbon==3.3.2 --no-deps && pip install rapidfuzz
    python cpu_tdp_vectors.py models.txt   # one CPU model name per line
"""
import csv, json, os, re, sys
from rapidfuzz import fuzz, process, utils
CSV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cpu_tdp.csv")
rows = [r for r in csv.reader(open(CSV, encoding="utf-8")) if not r[0].startswith("#")][1:]
names = [r[0] for r in rows]; tdp = {}
for n, t in rows:
    tdp.setdefault(n, t)
def match(model_raw):
    d = process.extractOne(model_raw, names, processor=lambda s: s.lower(), scorer=fuzz.ratio, score_cutoff=100)
    if d: return d[0]
    model_raw = model_raw.replace("(R)", "")
    s = model_raw.find(" CPU @ ")
    if s > 0: model_raw = model_raw[0:s]
    model_raw = model_raw.replace(" CPU", "")
    model_raw = re.sub(r" @\s*\d+\.\d+GHz", "", model_raw)
    d = process.extractOne(model_raw, names, processor=lambda s: s.lower(), scorer=fuzz.ratio, score_cutoff=100)
    if d: return d[0]
    ind = process.extract(model_raw, names, processor=utils.default_process, scorer=fuzz.token_set_ratio, score_cutoff=100)
    if ind:
        if len(ind) == 1 or ind[0][1] != ind[1][1]:
            return ind[0][0]
    return None
models = [l.rstrip('\n') for l in open(sys.argv[1])]
for m in models:
    r = match(m)
    print(json.dumps([m, r, tdp[r] if r else None]))
