"""Drives a running `slm serve` with the official `openai` Python client.

    python openai_client.py BASE_URL MODEL

Checks, exiting non-zero on the first failure: /v1/models; a greedy chat answer, the same text
streamed (with a usage chunk); completions with n, a seed (repeatable) and logprobs; a JSON-schema
response that parses and validates; typed errors for an unknown model and a bad schema; 32
concurrent clients with two requests each. Prints one JSON line of what it measured.
"""

import concurrent.futures as cf
import json
import sys
import time

import openai
from openai import OpenAI

base, model = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base, api_key="not-needed", max_retries=0, timeout=300)
report = {}

ids = [m.id for m in client.models.list().data]
assert ids == [model], ids

messages = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
r = client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0)
text = r.choices[0].message.content
assert r.choices[0].message.role == "assistant"
assert r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason
assert r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0
assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
assert "Paris" in text, text
report["chat"] = text

chunks = list(
    client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
)
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert streamed == text, (streamed, text)
assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
assert finishes == [r.choices[0].finish_reason], finishes

def story(seed):
    return client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=16, temperature=0.8, seed=seed, n=2, logprobs=2
    )

a, b = story(7), story(7)
assert len(a.choices) == 2
assert [c.text for c in a.choices] == [c.text for c in b.choices], "the same seed must repeat"
lp = a.choices[0].logprobs
assert len(lp.tokens) == len(lp.token_logprobs) > 0 and all(x <= 0 for x in lp.token_logprobs)
assert all(len(t) <= 2 for t in lp.top_logprobs)
report["completions"] = [c.text for c in a.choices]

schema = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["spam", "ham"]},
        "confidence": {"type": "integer", "minimum": 0, "maximum": 100},
        "reasons": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 3},
    },
    "required": ["label", "confidence", "reasons"],
    "additionalProperties": False,
}
r = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Is 'WIN A FREE CRUISE, click now!!!' spam? Reply in JSON."}],
    max_tokens=120,
    temperature=0.7,
    seed=3,
    response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema, "strict": True}},
)
verdict = json.loads(r.choices[0].message.content)
assert verdict["label"] in ("spam", "ham"), verdict
assert 0 <= verdict["confidence"] <= 100, verdict
assert isinstance(verdict["reasons"], list) and len(verdict["reasons"]) <= 3, verdict
assert set(verdict) == {"label", "confidence", "reasons"}, verdict
report["json_schema"] = verdict

for bad in (
    dict(model="no-such-model", messages=messages),
    dict(model=model, messages=messages, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}),
):
    try:
        client.chat.completions.create(max_tokens=4, **bad)
    except openai.BadRequestError as e:
        assert e.status_code == 400
    else:
        raise AssertionError(f"accepted: {bad}")

# /v1/classify (label scoring through the engine; not part of the openai client).
import urllib.request
req = urllib.request.Request(
    base.rstrip("/") + "/classify",
    data=json.dumps({"model": model, "input": ["WIN A FREE CRUISE!!! click now", "Meeting moved to 3pm"],
                     "labels": ["spam", "ham"]}).encode(),
    headers={"Content-Type": "application/json"},
)
cls = json.load(urllib.request.urlopen(req))
assert cls["labels"] == ["spam", "ham"] and len(cls["data"]) == 2, cls
for d in cls["data"]:
    assert d["label"] in ("spam", "ham") and abs(sum(d["probs"]) - 1) < 1e-6, d
report["classify"] = [d["label"] for d in cls["data"]]

def one(i):
    out = []
    for k in range(2):
        r = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": f"Give me one word that rhymes with number {i}."}],
            max_tokens=8,
            temperature=0.5,
            seed=i * 10 + k,
        )
        out.append(r.usage.completion_tokens)
    return out

start = time.time()
with cf.ThreadPoolExecutor(max_workers=32) as ex:
    counts = list(ex.map(one, range(32)))
elapsed = time.time() - start
assert len(counts) == 32 and all(len(c) == 2 and all(n > 0 for n in c) for c in counts)
report["concurrent"] = {"clients": 32, "requests": 64, "tokens": sum(map(sum, counts)), "seconds": round(elapsed, 2)}
print(json.dumps(report))
