"""Drives switchyard with the official Anthropic Python SDK, as an application would.

Usage: anthropic_client.py BASE_URL API_KEY CLAUDE_MODEL OPENAI_MODEL
CLAUDE_MODEL is on an Anthropic-interface provider (passed through), OPENAI_MODEL on an
OpenAI-interface one (translated both ways). Prints one JSON object with what the SDK saw.
"""

import json
import sys

import anthropic

base_url, api_key, claude, gpt = sys.argv[1:5]
client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=20)
seen = {}
tools = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
ask = [{"role": "user", "content": "Weather in Paris?"}]

# Same API: passed through.
msg = client.messages.create(model=claude, max_tokens=64, messages=ask, extra_headers={"x-mock": "anthropic"})
seen["claude"] = {"text": msg.content[0].text, "input_tokens": msg.usage.input_tokens,
                  "cache_read": msg.usage.cache_read_input_tokens, "stop_reason": msg.stop_reason}

with client.messages.stream(model=claude, max_tokens=64, messages=ask,
                            extra_headers={"x-mock": "anthropic,sse=2"}) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
seen["claude_stream"] = {"text": text, "output_tokens": final.usage.output_tokens}

# An OpenAI-interface provider behind the Anthropic SDK: tools, then streams.
msg = client.messages.create(model=gpt, max_tokens=64, messages=ask, tools=tools,
                             system="Be brief.", extra_headers={"x-mock": "tools"})
block = msg.content[0]
seen["gpt_tools"] = {"type": block.type, "name": block.name, "input": block.input,
                     "stop_reason": msg.stop_reason}

with client.messages.stream(model=gpt, max_tokens=64, messages=ask,
                            extra_headers={"x-mock": "sse=3,usage,split"}) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
seen["gpt_stream"] = {"text": text, "stop_reason": final.stop_reason,
                      "output_tokens": final.usage.output_tokens}

with client.messages.stream(model=gpt, max_tokens=64, messages=ask, tools=tools,
                            extra_headers={"x-mock": "sse=1,tools,usage,split"}) as stream:
    final = stream.get_final_message()
block = final.content[0]
seen["gpt_stream_tools"] = {"type": block.type, "name": block.name, "input": block.input,
                            "stop_reason": final.stop_reason}

try:
    client.messages.create(model="no-such-model", max_tokens=5, messages=ask)
    seen["unknown_model"] = "no error"
except anthropic.NotFoundError as e:
    seen["unknown_model"] = {"status": e.status_code, "type": e.body["error"]["type"]}

try:
    client.messages.create(model=gpt, max_tokens=5, messages=ask, extra_headers={"x-mock": "status=429"})
    seen["rate_limited"] = "no error"
except anthropic.RateLimitError as e:
    seen["rate_limited"] = {"status": e.status_code, "type": e.body["error"]["type"]}

print(json.dumps(seen))
