"""Reference outputs for peft's `modules_to_save` (fully trained extra modules beside LoRA) on
fixtures/models/llama-tiny (separate LM head) and fixtures/models/smollm-tiny (LM head tied to
the embedding). No shared fixture covers it, so this script makes one with peft + torch (CPU
wheels from PyPI); its outputs are committed beside it:

    python3 -m venv /tmp/peft && /tmp/peft/bin/pip install torch peft transformers safetensors
    /tmp/peft/bin/python crates/slm-core/tests/data/modules_to_save/make_modules_to_save.py

For each model, `LoraConfig(r=4, lora_alpha=8, target_modules=[q_proj, v_proj],
modules_to_save=[lm_head, norm], init_lora_weights=False)`; the LoRA factors are drawn from
N(0, 0.1^2) and the saved modules' copies get N(0, 0.05^2) noise added (so the tied head's copy
no longer equals the embedding), then `save_pretrained` into `<model>/` and the adapted model's
logits on fixtures/lora/train_step's input ids into `<model>/logits.safetensors` (`logits`),
with `merge_and_unload()`'s logits as `merged_logits`.
"""
import copy
import json
import os

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../../../../.."))
os.chdir(ROOT)  # relative paths in the files written (base_model_name_or_path)
torch.set_num_threads(1)
spec = json.load(open("fixtures/lora/train_step/train_step.json"))
input_ids = torch.tensor(spec["input_ids"])

for name in ["llama-tiny", "smollm-tiny"]:
    path = f"fixtures/models/{name}"
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    base.eval()
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        modules_to_save=["lm_head", "norm"],
        init_lora_weights=False,
    )
    model = get_peft_model(copy.deepcopy(base), config)
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif "modules_to_save" in n:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    model.eval()
    out = os.path.join(HERE, name)
    model.save_pretrained(out)
    os.remove(os.path.join(out, "README.md"))  # peft's model card: nothing the tests read
    model = PeftModel.from_pretrained(copy.deepcopy(base), out)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
        merged = PeftModel.from_pretrained(copy.deepcopy(base), out).merge_and_unload()
        merged_logits = merged(input_ids=input_ids).logits
    save_file(
        {"logits": logits.contiguous(), "merged_logits": merged_logits.contiguous()},
        os.path.join(out, "logits.safetensors"),
    )
    print(name, "max |merged - adapter|", (logits - merged_logits).abs().max().item(),
          "tied head", base.config.tie_word_embeddings)
