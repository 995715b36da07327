#!/usr/bin/env python3
"""Reference blocks for slm-ggml's k-quant and importance-weighted quantizers, made by ggml
itself: `ggml_quantize_chunk` (the call llama-quantize makes for every tensor) from the
libggml-base.so that llama.cpp's CMake build of the llama-cpp-python 0.3.36 sdist produces
(`benches/llamacpp_perplexity.py` builds it; ggml-quants.c is compiled without -march, so
plain IEEE f32 in source order: what a port reproduces bit for bit on x86-64).

    python make_kquants.py /tmp/slm-llamacpp-build/out/bin/libggml-base.so

Writes `inputs.f32` (all cases' rows, little-endian f32), `imatrix.f32` (one weight per
column of each case), `<case>.<TYPE>.bin` (no importance matrix, the `_ref` path) and
`<case>.<TYPE>.imatrix.bin` (with it), the k-quants' dequantized values `<case>.<TYPE>.deq.f32`
(ggml's `dequantize_row_*`), and `cases.json` (shapes, offsets, sha256). numpy only.
"""
import ctypes
import hashlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TYPES = {"Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14}
SIZES = {"Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24),
         "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210)}
DEQ = {"Q4_K": "dequantize_row_q4_K", "Q5_K": "dequantize_row_q5_K", "Q6_K": "dequantize_row_q6_K"}


def cases(rng):
    n = 512
    normal = rng.standard_normal((4, n)).astype(np.float32) * 0.05
    outliers = normal.copy()
    outliers[:, ::37] *= 40.0
    skewed = (rng.random((2, n)).astype(np.float32) * 3.0 + 0.5)      # all positive: min > 0
    mixed = rng.standard_normal((2, n)).astype(np.float32)
    mixed[0, :32] = 0.0                                                 # a zero sub-block
    mixed[1, 256:] = 0.0                                                # a zero super-block
    tiny = rng.standard_normal((2, n)).astype(np.float32) * 1e-6
    const = np.full((2, n), 0.25, dtype=np.float32)
    const[1] = -3.0
    return {"normal": normal, "outliers": outliers, "skewed": skewed, "mixed": mixed,
            "tiny": tiny, "const": const}


def main():
    lib = ctypes.CDLL(sys.argv[1])
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_void_p]
    rng = np.random.default_rng(20261201)
    all_inputs, all_imatrix, spec = [], [], {}
    offset = 0
    for name, x in cases(rng).items():
        rows, cols = x.shape
        # Mean squared activations per column, as llama-imatrix collects them.
        imatrix = (rng.random(cols).astype(np.float32) * 2.0 + 0.01) ** 2
        all_inputs.append(x.tobytes())
        all_imatrix.append(imatrix.tobytes())
        entry = {"rows": rows, "cols": cols, "offset": offset,
                 "imatrix_offset": sum(len(m) for m in all_imatrix) // 4 - cols, "types": {}}
        offset += rows * cols
        for ty, gid in TYPES.items():
            block, size = SIZES[ty]
            nbytes = rows * cols // block * size
            for suffix, qw in (("", None), (".imatrix", imatrix)):
                out = np.zeros(nbytes, dtype=np.uint8)
                got = lib.ggml_quantize_chunk(
                    gid, x.ctypes.data, out.ctypes.data, 0, rows, cols,
                    None if qw is None else qw.ctypes.data)
                assert got == nbytes, (name, ty, got, nbytes)
                fname = f"{name}.{ty}{suffix}.bin"
                with open(os.path.join(HERE, fname), "wb") as f:
                    f.write(out.tobytes())
                entry["types"][ty + suffix] = {
                    "bin": fname, "bytes": nbytes,
                    "sha256": hashlib.sha256(out.tobytes()).hexdigest()}
            if not ty.endswith("_K"):
                continue
            # ggml's own dequantization of the plain k-quant blocks.
            raw = np.fromfile(os.path.join(HERE, f"{name}.{ty}.bin"), dtype=np.uint8)
            deq = np.zeros(rows * cols, dtype=np.float32)
            fn = getattr(lib, DEQ[ty])
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            fn(raw.ctypes.data, deq.ctypes.data, rows * cols)
            dname = f"{name}.{ty}.deq.f32"
            deq.tofile(os.path.join(HERE, dname))
            entry["types"][ty]["dequantized"] = dname
        spec[name] = entry
    with open(os.path.join(HERE, "inputs.f32"), "wb") as f:
        f.write(b"".join(all_inputs))
    with open(os.path.join(HERE, "imatrix.f32"), "wb") as f:
        f.write(b"".join(all_imatrix))
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        json.dump({"generator": "ggml_quantize_chunk of llama-cpp-python 0.3.36's ggml (0.25.3)",
                   "cases": spec}, f, indent=1)


if __name__ == "__main__":
    main()
