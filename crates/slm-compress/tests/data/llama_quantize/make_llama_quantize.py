#!/usr/bin/env python3
"""What llama.cpp's `llama-quantize` writes, as small reference records for slm-compress's
quantize test (tests/quantize_gguf.rs): for each file type, the GGUF's sha256, its metadata
keys in order, and every tensor's name, type, dims and sha256, in file order.

Inputs (independent of slm):
- the SmolLM2-135M-Instruct Q4_1 GGUF, dequantized to an F32 GGUF by gguf-py (reader +
  `gguf.quants.dequantize` + GGUFWriter, metadata copied key for key): `smollm2.json`;
- fixtures/quant/gguf/llama-tiny.f32.gguf (llama.cpp's converter): `llama-tiny.json`.

    python make_llama_quantize.py LLAMA_CPP_DIR BUILD_BIN_DIR SMOLLM2_Q4_1_GGUF
    # LLAMA_CPP_DIR: vendor/llama.cpp of the llama-cpp-python 0.3.36 sdist (for gguf-py)
    # BUILD_BIN_DIR: where its CMake build put llama-quantize and libllama/libggml
    #   (benches/llamacpp_perplexity.py builds them; `cmake --build out --target llama-quantize`)
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "..", "..", "..", "fixtures")
TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K"]


def f32_copy(gguf, src, dst):
    """`src` with every tensor dequantized to F32 by gguf-py, metadata as it was."""
    import numpy as np
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(name, field.contents(), vtype, sub_type=field.types[-1])
        else:
            w.add_key_value(name, field.contents(), vtype)
    for t in r.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = [int(d) for d in reversed(t.shape)]
        w.add_tensor(t.name, values.reshape(shape), raw_dtype=gguf.GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def record(gguf, path):
    r = gguf.GGUFReader(path)
    data = open(path, "rb").read()
    tensors = []
    for t in r.tensors:
        raw = bytes(t.data.tobytes())
        tensors.append({"name": t.name, "type": t.tensor_type.name,
                        "ne": [int(d) for d in t.shape],
                        "sha256": hashlib.sha256(raw).hexdigest()})
    keys = [k for k in r.fields if not k.startswith("GGUF.")]
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "metadata_keys": keys, "tensors": tensors}


def quantize_all(gguf, binary, env, f32_path, name):
    out = {"source": name, "llama_quantize": "llama-cpp-python 0.3.36 (ggml 0.25.3)", "types": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for ty in TYPES:
            dst = os.path.join(tmp, f"{ty}.gguf")
            subprocess.run([binary, f32_path, dst, ty, "2"], check=True, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out["types"][ty] = record(gguf, dst)
    return out


def main():
    llama, bindir, smollm2 = sys.argv[1:4]
    sys.path.insert(0, os.path.join(llama, "gguf-py"))
    import gguf
    env = dict(os.environ, LD_LIBRARY_PATH=bindir)
    binary = os.path.join(bindir, "llama-quantize")
    tiny = os.path.join(FIXTURES, "quant", "gguf", "llama-tiny.f32.gguf")
    with open(os.path.join(HERE, "llama-tiny.json"), "w") as f:
        json.dump(quantize_all(gguf, binary, env, tiny, "fixtures/quant/gguf/llama-tiny.f32.gguf"), f, indent=1)
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "smollm2.f32.gguf")
        f32_copy(gguf, smollm2, f32)
        rec = quantize_all(gguf, binary, env, f32, "SmolLM2-135M-Instruct.Q4_1.gguf dequantized by gguf-py")
        rec["f32_input"] = record(gguf, f32)
        with open(os.path.join(HERE, "smollm2.json"), "w") as f:
            json.dump(rec, f, indent=1)


if __name__ == "__main__":
    main()
