"""The official OpenAI and Anthropic SDKs against an Amazon Bedrock model through the gateway
(a mock that answers with Converse JSON and the binary event stream, framed and checksummed as
Bedrock frames it): chat completions, Messages and the Responses API, JSON and streamed, and a
tool call. Strict response validation on the OpenAI side.

Usage: bedrock_client.py BASE_URL MODEL; prints what the SDKs saw as JSON.
"""

import json
import sys

import anthropic
from openai import OpenAI

base_url, model = sys.argv[1:3]
oa = OpenAI(base_url=base_url + "/v1", api_key="sk-client", max_retries=0,
            _strict_response_validation=True)
an = anthropic.Anthropic(base_url=base_url, api_key="sk-client", max_retries=0, timeout=20)
seen = {}

r = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}])
seen["chat"] = {"text": r.choices[0].message.content, "prompt_tokens": r.usage.prompt_tokens}
chunks = list(oa.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Count"}], stream=True,
    stream_options={"include_usage": True}, extra_headers={"x-mock": "sse=3,split"}))
seen["chat_stream"] = {
    "text": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
    "completion_tokens": chunks[-1].usage.completion_tokens,
}
tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
r = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "Weather?"}],
                               tools=tools, extra_headers={"x-mock": "tools"})
call = r.choices[0].message.tool_calls[0]
seen["chat_tool"] = {"name": call.function.name, "arguments": json.loads(call.function.arguments)}

msg = an.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "Hello"}])
seen["messages"] = {"text": msg.content[0].text, "stop_reason": msg.stop_reason,
                    "input_tokens": msg.usage.input_tokens}
with an.messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": "Count"}],
                        extra_headers={"x-mock": "sse=2"}) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
seen["messages_stream"] = {"text": text, "output_tokens": final.usage.output_tokens}

r = oa.responses.create(model=model, input="Hello")
seen["responses"] = {"text": r.output_text, "total_tokens": r.usage.total_tokens}
with oa.responses.stream(model=model, input="Count", extra_headers={"x-mock": "sse=2"}) as stream:
    final = stream.get_final_response()
seen["responses_stream"] = {"text": final.output_text, "status": final.status}

print(json.dumps(seen))
