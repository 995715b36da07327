#!/usr/bin/env python3
"""Reference data for model coverage (Phi-3, Llama 3.x, Qwen2.5, Mistral GGUFs and HF dirs).

Everything here is produced by code nobody on the slm team wrote: transformers, torch,
sentencepiece and llama.cpp's own converter (`convert_hf_to_gguf.py` as vendored in the
llama-cpp-python sdist). The Rust tests in `crates/slm-core/tests/coverage_*.rs` compare against
it; never edit the outputs by hand, rerun this script.

    python3 -m venv venv && venv/bin/pip install torch transformers gguf sentencepiece tokenizers safetensors numpy protobuf
    pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d /tmp/sdist && tar xzf ...
    venv/bin/python generate.py --llama-cpp /tmp/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp

Outputs, beside this script:
- `vocab/ggml-vocab-{llama-spm,phi-3}.gguf` (+ `.inp`/`.out`): llama.cpp's vocabulary-only GGUFs of
  Llama 2 and Phi-3 (SentencePiece BPE, 32000 / 32064 tokens) with llama.cpp's own expected ids,
  copied unchanged; `vocab/<name>.cases.json`: for each string, the ids transformers gives
  (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`, with and without special tokens), the ids
  sentencepiece gives for a ModelProto rebuilt from the same pieces/scores/types, and the decoded
  text.
- `models/<name>/`: tiny random checkpoints (`save_pretrained`, float32) for each new rope and
  attention variant, with `expected/` logits of a left-padded batch and a greedy run, in the same
  layout and with the same inputs as `fixtures/models/*` (see fixtures/README.md section 2).
- `gguf/<name>.f32.gguf`: tiny models (new ones and some fixture ones) converted by llama.cpp's
  converter; their expected logits are the HF model's (an f32 conversion is lossless).
- `templates/*.jinja`: chat templates of these families from llama.cpp's `models/templates`
  (their transformers renders: `render_templates.py`, which needs no torch).
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import sentencepiece as spm
import torch
import transformers
from safetensors.torch import save_file
from sentencepiece import sentencepiece_model_pb2 as sp_pb2
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.integrations.gguf.gguf_tokenizer_mapping import add_gguf_special_tokens, get_gguf_tokenizer, phi3_tokenizer

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[4]
FIXTURES = REPO / "fixtures"

# Strings for the SentencePiece vocabularies, beyond llama.cpp's own `.inp` cases: whitespace
# runs, digits, emoji, CJK, leading spaces, byte fallback, special-token text.
EXTRA_STRINGS = [
    "Hello world",
    " Hello world",
    "  two leading spaces",
    "trailing spaces   ",
    "tabs\tand\nnewlines\n\n\nthree",
    "    indented code:\n        return x",
    "1234567890 3.14159 1,000,000",
    "emoji 🦙🔥👍🏽 and flags 🇩🇪",
    "中文分词测试，日本語のテキスト、한국어 텍스트",
    "Ünïcödé àccents çà et là",
    "\u00a0non-breaking\u2009thin\u200bzero-width",
    "<s> inside text </s> and <unk>",
    "<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>",
    "x" * 40,
    "!!!???...---",
    "",
    " ",
    "\n",
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- SentencePiece vocabularies


def read_vocab(gguf_path):
    from gguf import GGUFReader

    r = GGUFReader(str(gguf_path))

    def field(name):
        f = r.fields.get(name)
        if f is None:
            return None
        return f.contents()

    return {
        "tokens": field("tokenizer.ggml.tokens"),
        "scores": field("tokenizer.ggml.scores"),
        "types": field("tokenizer.ggml.token_type"),
        "add_space_prefix": field("tokenizer.ggml.add_space_prefix"),
        "bos": field("tokenizer.ggml.bos_token_id"),
        "eos": field("tokenizer.ggml.eos_token_id"),
        "unk": field("tokenizer.ggml.unknown_token_id"),
        "add_bos": field("tokenizer.ggml.add_bos_token"),
        "add_eos": field("tokenizer.ggml.add_eos_token"),
        "architecture": field("general.architecture"),
    }


def sentencepiece_from_vocab(v):
    """A SentencePiece BPE ModelProto with the GGUF's pieces, scores and types (GGUF token types
    1..6 are sentencepiece's NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE)."""
    m = sp_pb2.ModelProto()
    m.trainer_spec.model_type = sp_pb2.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.vocab_size = len(v["tokens"])
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = bool(v["add_space_prefix"]) if v["add_space_prefix"] is not None else True
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    kinds = {
        1: sp_pb2.ModelProto.SentencePiece.NORMAL,
        2: sp_pb2.ModelProto.SentencePiece.UNKNOWN,
        3: sp_pb2.ModelProto.SentencePiece.CONTROL,
        4: sp_pb2.ModelProto.SentencePiece.USER_DEFINED,
        5: sp_pb2.ModelProto.SentencePiece.UNUSED,
        6: sp_pb2.ModelProto.SentencePiece.BYTE,
    }
    for i, (t, s, ty) in enumerate(zip(v["tokens"], v["scores"], v["types"])):
        p = m.pieces.add()
        p.piece = t
        p.score = float(s)
        # Holes llama.cpp typed UNKNOWN ([PAD32011]...) are unused pieces: one unk only.
        p.type = kinds[int(ty)] if int(ty) != 2 or i == v["unk"] else kinds[5]
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(m.SerializeToString())
    return sp


def vocab_cases(llama_cpp, out):
    (out / "vocab").mkdir(parents=True, exist_ok=True)
    for name in ["llama-spm", "phi-3"]:
        base = f"ggml-vocab-{name}.gguf"
        for suffix in ["", ".inp", ".out"]:
            shutil.copyfile(llama_cpp / "models" / (base + suffix), out / "vocab" / (base + suffix))
        gguf_path = out / "vocab" / base
        inp = (out / "vocab" / (base + ".inp")).read_text(encoding="utf-8")
        llama_cpp_strings = inp.split("\n__ggml_vocab_test__\n")
        llama_cpp_strings[-1] = llama_cpp_strings[-1].rstrip("\n").removesuffix("\n__ggml_vocab_test__")
        strings = llama_cpp_strings + [s for s in EXTRA_STRINGS if s not in llama_cpp_strings]

        v = read_vocab(gguf_path)
        sp = sentencepiece_from_vocab(v)
        with tempfile.TemporaryDirectory() as d:
            shutil.copyfile(gguf_path, Path(d) / base)
            tok = AutoTokenizer.from_pretrained(d, gguf_file=base)
        # The layout of the original models' tokenizer.json (Llama 2, TinyLlama, Mistral v0.1,
        # Phi-3): Prepend + Replace normalizers, no Metaspace. transformers builds it for phi3
        # GGUFs; for llama GGUFs it builds Metaspace(prepend_scheme=first), which drops the
        # space-prefix token before a leading space (" Hello" -> [15043], where the original
        # tokenizer, sentencepiece and llama.cpp give [29871, 15043]).
        _, tdict, _ = get_gguf_tokenizer(str(gguf_path))
        legacy = add_gguf_special_tokens(phi3_tokenizer(tdict), tdict).backend_tokenizer
        cases = []
        for s in strings:
            ids = tok.encode(s, add_special_tokens=False)
            cases.append(
                {
                    "text": s,
                    "ids": ids,
                    "ids_with_special": tok.encode(s),
                    "legacy_ids": legacy.encode(s, add_special_tokens=False).ids,
                    "sentencepiece_ids": sp.encode(s),
                    "decoded": tok.decode(ids, skip_special_tokens=True),
                }
            )
        json.dump(
            {
                "source": base,
                "sha256": sha256(gguf_path),
                "architecture": v["architecture"],
                "tokenizer_class": type(tok).__name__,
                "add_space_prefix": v["add_space_prefix"],
                "call": "AutoTokenizer.from_pretrained(dir, gguf_file=...): encode(text, add_special_tokens=False), encode(text), decode(ids, skip_special_tokens=True)",
                "legacy_call": "transformers' phi3_tokenizer builder (gguf_tokenizer_mapping.py) on this vocabulary + add_gguf_special_tokens: backend_tokenizer.encode(text, add_special_tokens=False).ids",
                "sentencepiece_call": "SentencePieceProcessor on a BPE ModelProto rebuilt from the GGUF pieces/scores/types (byte_fallback, identity normalizer, add_dummy_prefix = add_space_prefix, remove_extra_whitespaces false): encode(text)",
                "cases": cases,
            },
            open(out / "vocab" / f"{name}.cases.json", "w"),
            indent=1,
            ensure_ascii=False,
        )
        agree = sum(c["ids"] == c["sentencepiece_ids"] for c in cases)
        legacy_agree = sum(c["legacy_ids"] == c["sentencepiece_ids"] for c in cases)
        log(f"{name}: {len(cases)} cases, sentencepiece == transformers on {agree}, == legacy layout on {legacy_agree}")


# ---------------------------------------------------------------- tiny checkpoints

BASE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=768,
    rms_norm_eps=1e-5,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=2,
    tie_word_embeddings=False,
    hidden_act="silu",
)

# name -> (model_type, extra config). The sizes make each variant matter on the 12-token
# padded batch and the 4 + 16 token greedy run of fixtures/models (see each comment).
MODELS = {
    # Linear position interpolation (rope_type linear, factor 4).
    "llama-linear-tiny": ("llama", dict(max_position_embeddings=256, rope_parameters=dict(rope_type="linear", factor=4.0, rope_theta=10000.0))),
    # Dynamic NTK: no effect up to 12 positions (the batch), growing during the greedy run.
    "llama-dynamic-tiny": ("llama", dict(max_position_embeddings=12, rope_parameters=dict(rope_type="dynamic", factor=2.0, rope_theta=10000.0))),
    # Qwen2.5's YaRN (factor 4 over an original 16-token context).
    "qwen2-yarn-tiny": ("qwen2", dict(rms_norm_eps=1e-6, max_position_embeddings=64, rope_parameters=dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=16, rope_theta=1000000.0))),
    # Phi-3.5's longrope: short factors up to 4 positions, long ones past it (both batch rows
    # and every greedy step after the prompt use long), attention factor from 64 / 4.
    "phi3-longrope-tiny": ("phi3", dict(max_position_embeddings=64, original_max_position_embeddings=4, rope_parameters=dict(rope_type="longrope", rope_theta=10000.0, short_factor=[1.0, 1.1, 1.3, 1.6, 2.0, 2.5, 3.1, 3.8], long_factor=[1.0, 1.5, 2.5, 4.0, 6.0, 9.0, 13.0, 18.0], original_max_position_embeddings=4))),
    # Phi-4-mini's partial rotary (75% of each head rotated).
    "phi3-partial-tiny": ("phi3", dict(max_position_embeddings=128, original_max_position_embeddings=128, rope_parameters=dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.75))),
    # Mistral's sliding window (4 tokens) on every layer.
    "mistral-swa-tiny": ("mistral", dict(max_position_embeddings=128, sliding_window=4, head_dim=16, rope_parameters=dict(rope_type="default", rope_theta=10000.0))),
    # Qwen2 with use_sliding_window: layers from max_window_layers = 1 on slide (window 4).
    "qwen2-swa-tiny": ("qwen2", dict(rms_norm_eps=1e-6, max_position_embeddings=128, use_sliding_window=True, sliding_window=4, max_window_layers=1, rope_parameters=dict(rope_type="default", rope_theta=1000000.0))),
}


def seeded_init(model, name):
    g = torch.Generator().manual_seed(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
    with torch.no_grad():
        for pname, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=g) * 0.1
            p.copy_(1.0 + noise if "norm" in pname else noise)


def run_expected(model, out_dir):
    """The fixtures' padded-batch and greedy calls (fixtures/README.md section 2)."""
    inputs = json.load(open(FIXTURES / "models/llama-tiny/expected/inputs.json"))
    gen_in = json.load(open(FIXTURES / "models/llama-tiny/expected/generate.json"))
    exp = out_dir / "expected"
    exp.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor(inputs["input_ids"])
    mask = torch.tensor(inputs["attention_mask"])
    pos = torch.tensor(inputs["position_ids"])
    with torch.no_grad():
        logits = model(ids, attention_mask=mask, position_ids=pos).logits.clone()
    logits[mask == 0] = 0.0
    save_file({"logits": logits.contiguous()}, str(exp / "logits.safetensors"))
    json.dump(inputs, open(exp / "inputs.json", "w"), indent=1)

    prompt = torch.tensor([gen_in["prompt_ids"]])
    n = gen_in["max_new_tokens"]
    gc = transformers.GenerationConfig(pad_token_id=2)
    with torch.no_grad():
        r = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, num_beams=1, max_new_tokens=n, output_logits=True, return_dict_in_generate=True, generation_config=gc)
    steps = torch.stack([s[0] for s in r.logits])
    new_ids = r.sequences[0, prompt.shape[1]:].tolist()
    assert new_ids == steps.argmax(-1).tolist()
    save_file({"step_logits": steps.contiguous()}, str(exp / "generate_logits.safetensors"))
    top2 = steps.topk(2, -1).values
    json.dump(
        {
            "prompt_ids": gen_in["prompt_ids"],
            "new_ids": new_ids,
            "max_new_tokens": n,
            "top1_minus_top2_margin_per_step": (top2[:, 0] - top2[:, 1]).tolist(),
            "call": "model.generate(ids, attention_mask=ones, do_sample=False, num_beams=1, max_new_tokens=16, output_logits=True, return_dict_in_generate=True, generation_config=GenerationConfig(pad_token_id=2))",
        },
        open(exp / "generate.json", "w"),
        indent=1,
    )


def tiny_models(out):
    torch.set_num_threads(1)
    for name, (model_type, extra) in MODELS.items():
        cfg = AutoConfig.for_model(model_type, **{**BASE, **extra})
        cfg.dtype = torch.float32
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32)
        seeded_init(model, name)
        model.eval()
        d = out / "models" / name
        if d.exists():
            shutil.rmtree(d)
        model.save_pretrained(d)
        for f in ["tokenizer.json", "tokenizer_config.json"]:
            shutil.copyfile(FIXTURES / "tokenizer" / f, d / f)
        # Reload from disk, as a user would, before computing the expected outputs.
        model = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager", dtype=torch.float32).eval()
        run_expected(model, d)
        log(f"model {name}: {model_type} {extra}")


# ---------------------------------------------------------------- GGUF conversions


def tiny_spm_tokenizer(target):
    """A 768-piece SentencePiece BPE (byte fallback) for the Phi-3 converter, which needs a
    `tokenizer.model`; trained on the fixture tokenizer's test strings and this repo's README."""
    text = [c["text"] for c in json.load(open(FIXTURES / "tokenizer/cases.json"))["cases"]]
    text += (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    with tempfile.TemporaryDirectory() as d:
        corpus = Path(d) / "corpus.txt"
        corpus.write_text("\n".join(t for t in text if t.strip()), encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(d) / "sp"), vocab_size=768, model_type="bpe",
            byte_fallback=True, character_coverage=1.0, bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
            num_threads=1, split_digits=True, allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
            minloglevel=2,
        )
        shutil.copyfile(Path(d) / "sp.model", target)


# The converter recognises a BPE pre-tokenizer by hashing what it does to a test string; the
# fixture tokenizer is unknown to it, so (as for fixtures/quant/gguf) `get_vocab_base_pre` is
# patched to name the pre-tokenizer the architecture's real models use.
RUN_CONVERTER = """
import runpy, sys
sys.path.insert(0, sys.argv[1])
import conversion.base as base
pre = sys.argv[2]
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
script = sys.argv[1] + "/convert_hf_to_gguf.py"
sys.argv = [script] + sys.argv[3:]
runpy.run_path(script, run_name="__main__")
"""


def convert(llama_cpp, hf_dir, out_path, pre="llama-bpe"):
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)
    subprocess.run(
        [sys.executable, "-c", RUN_CONVERTER, str(llama_cpp), pre, str(hf_dir), "--outtype", "f32", "--outfile", str(out_path)],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )


def ggufs(llama_cpp, out):
    g = out / "gguf"
    g.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        # Phi-3 needs a SentencePiece tokenizer.model: the fixture's weights with a tiny SPM vocab.
        phi3 = Path(d) / "phi3-tiny"
        shutil.copytree(FIXTURES / "models/phi3-tiny", phi3, ignore=shutil.ignore_patterns("expected", "tokenizer*"))
        tiny_spm_tokenizer(phi3 / "tokenizer.model")
        convert(llama_cpp, phi3, g / "phi3-tiny.f32.gguf")
        for name in ["phi3-longrope-tiny", "phi3-partial-tiny"]:
            src = Path(d) / name
            shutil.copytree(out / "models" / name, src, ignore=shutil.ignore_patterns("expected", "tokenizer*"))
            shutil.copyfile(phi3 / "tokenizer.model", src / "tokenizer.model")
            convert(llama_cpp, src, g / f"{name}.f32.gguf")
    convert(llama_cpp, FIXTURES / "models/llama3-rope-tiny", g / "llama3-rope-tiny.f32.gguf")
    # qwen2-yarn-tiny is not converted (the Qwen2 converter asserts on the fixture tokenizer), nor
    # mistral-swa-tiny: the converter writes no sliding window for `llama`, so llama.cpp runs
    # Mistral GGUFs with full attention.
    for name, pre in [("llama-linear-tiny", "llama-bpe")]:
        convert(llama_cpp, out / "models" / name, g / f"{name}.f32.gguf", pre)
    for p in sorted(g.glob("*.gguf")):
        log(f"gguf {p.name}: {p.stat().st_size} bytes")


TEMPLATES = [
    "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "microsoft-Phi-3.5-mini-instruct.jinja",
    "Qwen-Qwen2.5-7B-Instruct.jinja",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
]


def templates(llama_cpp, out):
    (out / "templates").mkdir(parents=True, exist_ok=True)
    for t in TEMPLATES:
        src = llama_cpp / "models/templates" / t
        if src.exists():
            shutil.copyfile(src, out / "templates" / t)
        else:
            log(f"template {t}: not in this llama.cpp")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", type=Path, required=True, help="vendor/llama.cpp of the llama-cpp-python sdist")
    ap.add_argument("--only", choices=["vocab", "models", "gguf", "templates"])
    a = ap.parse_args()
    steps = {"vocab": vocab_cases, "models": tiny_models, "gguf": ggufs, "templates": templates}
    for k, f in steps.items():
        if a.only in (None, k):
            f(a.llama_cpp, HERE) if k != "models" else f(HERE)
    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentencepiece": spm.__version__,
        "llama-cpp-python sdist": "0.3.36",
        "convert_hf_to_gguf.py sha256": sha256(a.llama_cpp / "convert_hf_to_gguf.py"),
    }
    json.dump(versions, open(HERE / "versions.json", "w"), indent=1)


if __name__ == "__main__":
    main()
