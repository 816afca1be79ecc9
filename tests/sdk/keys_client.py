"""Gateway keys with the official SDKs: each sends its API key its own way (OpenAI: Authorization:
Bearer; Anthropic: x-api-key), and each turns the gateway's 401 and 403 into its own error types.

Usage: keys_client.py BASE_URL GOOD_KEY OPENAI_MODEL FORBIDDEN_MODEL CLAUDE_MODEL
Prints one JSON object with what the SDKs saw.
"""

import json
import sys

import anthropic
import openai

base_url, key, gpt, forbidden, claude = sys.argv[1:6]
seen = {}
hi = [{"role": "user", "content": "hi"}]


def outcome(call):
    try:
        call()
        return "ok"
    except openai.APIStatusError as e:
        return {"status": e.status_code, "error": type(e).__name__}
    except anthropic.APIStatusError as e:
        return {"status": e.status_code, "error": type(e).__name__}


def oc(k):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=k, max_retries=0, timeout=20)


def ac(k):
    return anthropic.Anthropic(base_url=base_url, api_key=k, max_retries=0, timeout=20)


seen["openai_right"] = outcome(lambda: oc(key).chat.completions.create(model=gpt, messages=hi))
seen["openai_wrong"] = outcome(lambda: oc("sk-gw-wrong").chat.completions.create(model=gpt, messages=hi))
seen["openai_forbidden"] = outcome(lambda: oc(key).chat.completions.create(model=forbidden, messages=hi))
seen["anthropic_right"] = outcome(lambda: ac(key).messages.create(
    model=claude, max_tokens=5, messages=hi, extra_headers={"x-mock": "anthropic"}))
seen["anthropic_wrong"] = outcome(lambda: ac("sk-gw-wrong").messages.create(model=claude, max_tokens=5, messages=hi))
seen["anthropic_forbidden"] = outcome(lambda: ac(key).messages.create(model=forbidden, max_tokens=5, messages=hi))
print(json.dumps(seen))
