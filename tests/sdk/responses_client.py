"""The OpenAI SDK's Responses API through the gateway, translated to chat-completions and
Anthropic upstreams (mock providers): what the SDK hands the user, with strict response
validation, and every raw stream held to the rules the SDK's stream helper and Codex enforce.

Usage: responses_client.py BASE_URL CHAT_MODEL ANTHROPIC_MODEL; prints what it saw as JSON.
"""

import json
import sys

import openai
import pydantic
from openai import OpenAI

base_url, chat_model, anthropic_model = sys.argv[1:4]
client = OpenAI(base_url=base_url, api_key="sk-sdk", _strict_response_validation=True)
seen = {}

TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


def check_stream(events):
    """The rules of a Responses stream; returns the event types in order."""
    types = [e.type for e in events]
    assert types[0] == "response.created", types
    assert [e.sequence_number for e in events] == list(range(len(events))), types
    ids = {e.response.id for e in events if e.type.startswith("response.") and hasattr(e, "response")}
    assert len(ids) == 1, ids
    assert sum(t in TERMINAL for t in types) == 1 and types[-1] in TERMINAL, types
    added, done, parts = {}, {}, set()
    for e in events:
        if e.type == "response.output_item.added":
            assert e.output_index not in added, "duplicate output_index"
            added[e.output_index] = e.item
        elif e.type == "response.output_item.done":
            done[e.output_index] = e.item
        elif e.type == "response.content_part.added":
            parts.add(e.item_id)
        elif e.type == "response.output_text.delta":
            assert e.item_id in parts, "text delta before content_part.added"
    assert set(added) == set(done), (added, done)
    final = events[-1].response
    # The terminal response carries every item whole, as the done events gave them.
    assert [i.model_dump() for i in final.output] == [done[k].model_dump() for k in sorted(done)]
    return types


def raw_stream(**kwargs):
    events = list(client.responses.create(stream=True, **kwargs))
    return check_stream(events), events[-1].response


# 1. JSON, through a chat-completions upstream.
r = client.responses.create(model=chat_model, input="Hello", instructions="Be brief.")
seen["json"] = {"text": r.output_text, "status": r.status, "usage": r.usage.model_dump(),
                "id_prefix": r.id[:5], "instructions": r.instructions}

# 2. A stream with the SDK's helper, and raw.
with client.responses.stream(model=chat_model, input="Count",
                             extra_headers={"x-mock": "sse=3,usage"}) as stream:
    final = stream.get_final_response()
seen["stream"] = {"text": final.output_text, "status": final.status,
                  "total_tokens": final.usage.total_tokens}
types, final = raw_stream(model=chat_model, input="Count", extra_headers={"x-mock": "sse=2,usage"})
seen["stream_events"] = types

# 3. A function-tool loop: the call, then its output in the next turn.
tools = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"]}},
         {"type": "web_search"}]
raw = client.responses.with_raw_response.create(model=chat_model, input="Weather in Paris?",
                                                tools=tools, extra_headers={"x-mock": "tools"})
first = raw.parse()
call = first.output[0]
seen["tool_call"] = {"type": call.type, "name": call.name, "arguments": json.loads(call.arguments),
                     "dropped": raw.headers.get("x-switchyard-dropped-tools")}
second = client.responses.create(
    model=chat_model, tools=tools[:1],
    input=[{"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True),
           {"type": "function_call_output", "call_id": call.call_id, "output": "18C, sunny"}])
seen["tool_answer"] = second.output_text
types, final = raw_stream(model=chat_model, input="Weather?", tools=tools[:1],
                          extra_headers={"x-mock": "sse=2,tools,usage"})
seen["tool_stream"] = {"events": types, "arguments": json.loads(final.output[0].arguments)}


# 4. Structured output with responses.parse.
class City(pydantic.BaseModel):
    city: str


parsed = client.responses.parse(model=chat_model, input="Where?", text_format=City,
                                extra_headers={"x-mock": 'reply={"city":"Paris"}'})
seen["parsed"] = parsed.output_parsed.city

# 5. Anthropic upstream, JSON and streamed (thinking-free text).
r = client.responses.create(model=anthropic_model, input="Hello", max_output_tokens=100,
                            extra_headers={"x-mock": "anthropic"})
seen["anthropic_json"] = {"text": r.output_text, "usage": r.usage.model_dump()}
types, final = raw_stream(model=anthropic_model, input="Count", extra_headers={"x-mock": "anthropic,sse=2"})
seen["anthropic_stream"] = {"events": types, "text": final.output_text}

# 6. A conversation this gateway does not keep: OpenAI's error.
try:
    client.responses.create(model=chat_model, input="again", previous_response_id="resp_unknown")
    seen["previous"] = "accepted"
except openai.BadRequestError as e:
    seen["previous"] = {"status": e.status_code, "code": e.code, "param": e.param}

print(json.dumps(seen))
