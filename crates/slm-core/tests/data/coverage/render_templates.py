#!/usr/bin/env python3
"""Reference renders of the chat templates in `templates/` (Llama 3.1 / 3.2 with their date and
tool preamble, Phi-3.5, Qwen2.5, Mistral Nemo), made by transformers' own
`render_jinja_template` (what `apply_chat_template(..., tokenize=False)` runs), into
`templates/renders.json`. The Rust test `crates/slm-core/tests/coverage_templates.rs` renders the
same conversations with slm's `ChatTemplate` and must give the same bytes. Never edit the
output by hand; rerun this script (it needs no torch):

    python3 -m venv venv && venv/bin/pip install transformers jinja2
    venv/bin/python render_templates.py
"""

import json
from pathlib import Path

import jinja2
import transformers
from transformers.utils.chat_template_utils import render_jinja_template

HERE = Path(__file__).resolve().parent

# template file -> the special tokens its tokenizer passes to the template.
TEMPLATES = {
    "meta-llama-Llama-3.1-8B-Instruct.jinja": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "meta-llama-Llama-3.2-3B-Instruct.jinja": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "microsoft-Phi-3.5-mini-instruct.jinja": {"bos_token": "<s>", "eos_token": "<|endoftext|>"},
    "Qwen-Qwen2.5-7B-Instruct.jinja": {"bos_token": None, "eos_token": "<|im_end|>"},
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": {"bos_token": "<s>", "eos_token": "</s>"},
}

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CONVERSATIONS = [
    ("one user turn", [{"role": "user", "content": "Hello!"}]),
    ("system and user", [SYSTEM, {"role": "user", "content": "What is 2+2?"}]),
    (
        "multi-turn",
        [
            SYSTEM,
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3+3?"},
        ],
    ),
    (
        "unicode and whitespace",
        [{"role": "user", "content": "  Übersetze:\n\n„Hallo“ 🦙\t中文  "}],
    ),
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city, e.g. Paris"}},
            "required": ["city"],
        },
    },
}
# Templates that take a `tools` list.
TOOL_TEMPLATES = [
    "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "Qwen-Qwen2.5-7B-Instruct.jinja",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
]


def render(source, messages, add_generation_prompt, tools, extra):
    out, _ = render_jinja_template(
        conversations=[messages],
        tools=tools,
        chat_template=source,
        add_generation_prompt=add_generation_prompt,
        **extra,
    )
    return out[0]


def main():
    cases = []
    for name, special in TEMPLATES.items():
        source = (HERE / "templates" / name).read_text(encoding="utf-8")
        # The Llama 3.x preamble dates itself with strftime_now unless date_string is given.
        extra = dict(special, date_string="26 Jul 2024")
        for title, messages in CONVERSATIONS:
            for gen in (True, False):
                cases.append(
                    {
                        "template": name,
                        "title": title,
                        "messages": messages,
                        "add_generation_prompt": gen,
                        "tools": None,
                        "extra": extra,
                        "rendered": render(source, messages, gen, None, extra),
                    }
                )
        if name in TOOL_TEMPLATES:
            messages = [{"role": "user", "content": "What is the weather in Paris?"}]
            cases.append(
                {
                    "template": name,
                    "title": "tools",
                    "messages": messages,
                    "add_generation_prompt": True,
                    "tools": [WEATHER_TOOL],
                    "extra": extra,
                    "rendered": render(source, messages, True, [WEATHER_TOOL], extra),
                }
            )
    json.dump(
        {
            "call": "transformers.utils.chat_template_utils.render_jinja_template(conversations=[messages], tools=tools, chat_template=source, add_generation_prompt=..., **extra)[0][0]",
            "transformers": transformers.__version__,
            "jinja2": jinja2.__version__,
            "cases": cases,
        },
        open(HERE / "templates" / "renders.json", "w", encoding="utf-8"),
        indent=1,
        ensure_ascii=False,
    )
    print(f"{len(cases)} renders")


if __name__ == "__main__":
    main()
