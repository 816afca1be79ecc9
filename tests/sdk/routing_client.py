"""Preference routing seen from the official OpenAI Python SDK: a quick question and a long
document, each with the route the gateway reports.

Usage: routing_client.py BASE_URL
Prints one JSON object; exits non-zero if the SDK raised.
"""

import json
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-client", max_retries=0, timeout=20)
seen = {}
document = "Clause {}: the supplier shall deliver the goods described in annex A. " * 400
for name, text in [
    ("quick", "What is the capital of France?"),
    ("long", "Summarize this contract:\n" + document.format(*range(400))),
]:
    raw = client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": text}],
    )
    completion = raw.parse()
    seen[name] = {
        "route": raw.headers.get("x-switchyard-route"),
        "content": completion.choices[0].message.content,
    }
print(json.dumps(seen))
