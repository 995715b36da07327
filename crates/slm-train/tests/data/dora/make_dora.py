"""Reference outputs for DoRA (peft's `use_dora=True`) on fixtures/models/llama-tiny.

There is no DoRA fixture among the shared reference fixtures, so this script makes one with peft + torch
(CPU wheels from PyPI) and its outputs are committed beside it:

    python3 -m venv /tmp/peft && /tmp/peft/bin/pip install torch peft transformers safetensors
    /tmp/peft/bin/python crates/slm-train/tests/data/dora/make_dora.py   # from the repo root

Writes into this folder:
- adapter/: `LoraConfig(r=8, lora_alpha=16, target_modules=[q_proj, v_proj, down_proj],
  use_dora=True, init_lora_weights=False)`, then A ~ N(0, 0.1^2), B ~ N(0, 0.05^2) and the
  magnitude vectors multiplied by (1 + N(0, 0.1^2)), so every part of the DoRA formula matters;
  `save_pretrained` as peft writes it.
- reference.json: the batch (fixtures/lora/train_step's input ids and labels), the adapter's
  loss, the merged model's loss, the losses of 3 AdamW steps (lr 1e-3, no weight decay) on
  every DoRA parameter (A, B, magnitude) and the loss after them.
- logits.safetensors: `logits` (adapter, unmerged) and `merged_logits` (`merge_and_unload`),
  `[2, 10, 768]`, on that batch.
- grads_step0.safetensors: d loss / d param for every DoRA parameter, keys as in the adapter file.
- params_after.safetensors: every DoRA parameter after the 3 steps.
"""
import copy
import json
import os
import sys

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../../../../.."))
os.chdir(ROOT)  # relative paths in the files written (base_model_name_or_path)
FIXTURES = "fixtures"
torch.manual_seed(0)
torch.set_num_threads(1)

spec = json.load(open(os.path.join(FIXTURES, "lora/train_step/train_step.json")))
input_ids = torch.tensor(spec["input_ids"])
labels = torch.tensor(spec["labels"])

base = AutoModelForCausalLM.from_pretrained(
    os.path.join(FIXTURES, "models/llama-tiny"), dtype=torch.float32, attn_implementation="eager"
)
base.eval()
config = LoraConfig(
    r=8,
    lora_alpha=16,
    target_modules=["q_proj", "v_proj", "down_proj"],
    lora_dropout=0.0,
    use_dora=True,
    init_lora_weights=False,
)
model = get_peft_model(copy.deepcopy(base), config)
g = torch.Generator().manual_seed(1234)
with torch.no_grad():
    for name, p in model.named_parameters():
        if "lora_A" in name:
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        elif "lora_B" in name:
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    for name, p in model.named_parameters():
        if "lora_magnitude_vector" in name:
            p.mul_(1 + torch.randn(p.shape, generator=g) * 0.1)
model.eval()
adapter_dir = os.path.join(HERE, "adapter")
model.save_pretrained(adapter_dir)
os.remove(os.path.join(adapter_dir, "README.md"))  # peft's model card: nothing the tests read

# Reload as a user would, so the references are what the saved files mean.
model = PeftModel.from_pretrained(copy.deepcopy(base), adapter_dir, is_trainable=True)
model.eval()


def loss_of(m):
    return m(input_ids=input_ids, labels=labels).loss


with torch.no_grad():
    logits = model(input_ids=input_ids).logits
    adapter_loss = loss_of(model).item()
merged = PeftModel.from_pretrained(copy.deepcopy(base), adapter_dir).merge_and_unload()
with torch.no_grad():
    merged_logits = merged(input_ids=input_ids).logits
    merged_loss = loss_of(merged).item()
save_file(
    {"logits": logits.contiguous(), "merged_logits": merged_logits.contiguous()},
    os.path.join(HERE, "logits.safetensors"),
)


def peft_key(name):
    # model.named_parameters() -> the adapter file's names.
    key = name.replace(".default", "")
    if key.endswith("lora_magnitude_vector.weight"):
        key = key[: -len(".weight")]
    return key


params = {peft_key(n): p for n, p in model.named_parameters() if p.requires_grad}
opt = torch.optim.AdamW(list(params.values()), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
losses = []
for step in range(3):
    opt.zero_grad()
    loss = loss_of(model)
    losses.append(loss.item())
    loss.backward()
    if step == 0:
        save_file(
            {k: p.grad.detach().clone().contiguous() for k, p in params.items()},
            os.path.join(HERE, "grads_step0.safetensors"),
        )
    opt.step()
with torch.no_grad():
    after = loss_of(model).item()
save_file(
    {k: p.detach().clone().contiguous() for k, p in params.items()},
    os.path.join(HERE, "params_after.safetensors"),
)
json.dump(
    {
        "base": "fixtures/models/llama-tiny",
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
        "input_ids": spec["input_ids"],
        "labels": spec["labels"],
        "optimizer": {"class": "torch.optim.AdamW", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
        "adapter_loss": adapter_loss,
        "merged_loss": merged_loss,
        "loss_per_step": losses,
        "loss_after_steps": after,
        "trainable": sorted(params),
    },
    open(os.path.join(HERE, "reference.json"), "w"),
    indent=1,
)
print("adapter loss", adapter_loss, "merged", merged_loss, "steps", losses, "after", after)
