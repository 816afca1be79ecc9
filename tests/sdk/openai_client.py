"""Drives switchyard with the official OpenAI Python SDK, as an application would.

Usage: openai_client.py BASE_URL API_KEY ANTHROPIC_MODEL
Prints one JSON object with what the SDK saw; exits non-zero if the SDK raised unexpectedly.
ANTHROPIC_MODEL names a model on an Anthropic-interface provider (translated both ways).
"""

import json
import sys

import openai

base_url, api_key, claude = sys.argv[1], sys.argv[2], sys.argv[3]
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

tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

# An Anthropic provider behind the OpenAI SDK: tools, not streamed.
reply = client.chat.completions.create(
    model=claude, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools,
    extra_headers={"x-mock": "anthropic,tools"},
)
call = reply.choices[0].message.tool_calls[0]
seen["claude_tools"] = {
    "finish_reason": reply.choices[0].finish_reason,
    "content": reply.choices[0].message.content,
    "name": call.function.name,
    "arguments": json.loads(call.function.arguments),
    "prompt_tokens": reply.usage.prompt_tokens,
}

# Streamed text, and a streamed tool call whose arguments arrive in fragments.
stream = client.chat.completions.create(
    model=claude, messages=[{"role": "user", "content": "Count"}], stream=True,
    stream_options={"include_usage": True}, extra_headers={"x-mock": "anthropic,sse=3,split"},
)
text, usage = "", None
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage.completion_tokens
seen["claude_stream"] = {"text": text, "completion_tokens": usage}

stream = client.chat.completions.create(
    model=claude, messages=[{"role": "user", "content": "Weather?"}], tools=tools, stream=True,
    extra_headers={"x-mock": "anthropic,sse=1,tools,split"},
)
name, args, finish = None, "", None
for chunk in stream:
    choice = chunk.choices[0]
    for tc in choice.delta.tool_calls or []:
        name = tc.function.name or name
        args += tc.function.arguments or ""
    finish = choice.finish_reason or finish
seen["claude_stream_tools"] = {"name": name, "arguments": json.loads(args), "finish_reason": finish}

# The SDK closes its connection as soon as it has read `[DONE]`; the gateway must still count
# every one of these streams as a success, also when the upstream ends its body later (half of
# them: 50 ms after `[DONE]`).
done = 0
for i in range(20):
    for _ in client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "again"}], stream=True,
        extra_headers={"x-mock": "sse=2" + (",late_end_ms=50" if i % 2 else "")},
    ):
        pass
    done += 1
seen["streams_done"] = done

print(json.dumps(seen))
