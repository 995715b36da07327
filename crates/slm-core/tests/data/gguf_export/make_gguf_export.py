#!/usr/bin/env python3
"""Reference GGUFs for slm-core's GGUF export test (tests/gguf_export.rs): the tiny fixture
models converted by llama.cpp's own `convert_hf_to_gguf.py`, as vendored in the
llama-cpp-python 0.3.36 sdist, with the converter's output types slm must match byte for byte.

    pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d /tmp/x
    tar xzf /tmp/x/llama_cpp_python-0.3.36.tar.gz -C /tmp/x
    # python with torch (CPU wheel) 2.15, transformers 5.24, numpy 2.4, safetensors, sentencepiece
    python make_gguf_export.py /tmp/x/llama_cpp_python-0.3.36/vendor/llama.cpp

As for ../../../../../fixtures/quant/gguf, `get_vocab_base_pre` is patched to return
'llama-bpe': the fixture tokenizer (Llama-3 split regex) is not in llama.cpp's hash table.
"""
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "..", "..", "..", "..", "fixtures", "models")
CASES = [
    ("llama3-rope-tiny", "f16"),    # llama3 rope scaling: rope_freqs.weight; F16 rounding
    ("smollm-tiny", "bf16"),        # tied embeddings (no output.weight), 1 KV head; BF16
    ("llama-tiny-sharded", "q8_0"), # shard order; Q8_0
]


def main():
    llama = sys.argv[1]
    sys.path.insert(0, os.path.join(llama, "gguf-py"))
    sys.path.insert(0, llama)
    import conversion.base as base

    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "llama-bpe"
    script = os.path.join(llama, "convert_hf_to_gguf.py")
    for model, outtype in CASES:
        out = os.path.join(HERE, f"{model}.{outtype}.gguf")
        sys.argv = [script, os.path.join(MODELS, model), "--outfile", out, "--outtype", outtype]
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            if e.code:
                raise
        print(out, os.path.getsize(out))


if __name__ == "__main__":
    main()
