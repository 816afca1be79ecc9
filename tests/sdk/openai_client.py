"""Drives switchyard with the official OpenAI Python SDK, as an application would.

Usage: openai_client.py BASE_URL API_KEY
Prints one JSON object with what the SDK saw; exits non-zero if the SDK raised unexpectedly.
"""

import json
import sys

import openai

base_url, api_key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=20)
seen = {}

completion = client.chat.completions.create(
    model="openai/gpt-4o",
    messages=[{"role": "user", "content": "hello"}],
    extra_body={"x_vendor_field": {"keep": True}},
)
seen["chat"] = {
    "content": completion.choices[0].message.content,
    "model": completion.model,
    "total_tokens": completion.usage.total_tokens,
}

stream = client.chat.completions.create(
    model="gpt-4o",
    messages=[{"role": "user", "content": "stream please"}],
    stream=True,
    extra_headers={"x-mock": "sse=4,gap_ms=20"},
)
seen["stream"] = [chunk.choices[0].delta.content for chunk in stream]

seen["models"] = [m.id for m in client.models.list()]

try:
    client.chat.completions.create(model="no-such-model", messages=[])
    seen["unknown_model"] = "no error"
except openai.NotFoundError as e:
    seen["unknown_model"] = {"status": e.status_code, "code": e.code}

try:
    client.chat.completions.create(
        model="gpt-4o", messages=[], extra_headers={"x-mock": "status=429"}
    )
    seen["rate_limited"] = "no error"
except openai.RateLimitError as e:
    seen["rate_limited"] = {"status": e.status_code}

print(json.dumps(seen))
