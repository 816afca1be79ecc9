"""Conversations the gateway keeps for a provider without a Responses API of its own: three
turns chained by previous_response_id (JSON, JSON, the stream helper), a tool loop continued
by previous_response_id with only the function's output, and store=False, which keeps nothing.
Turns alternate between two gateway addresses (the same one, or two replicas sharing a store).

Usage: conversation_client.py BASE_URL_A BASE_URL_B MODEL; prints what it saw as JSON.
"""

import json
import sys

import openai
from openai import OpenAI

base_a, base_b, model = sys.argv[1:4]
a = OpenAI(base_url=base_a, api_key="sk-sdk", _strict_response_validation=True)
b = OpenAI(base_url=base_b, api_key="sk-sdk", _strict_response_validation=True)
seen = {}

r1 = a.responses.create(model=model, input="My name is Ada.", instructions="Be brief.",
                        extra_headers={"x-mock": "reply=Hello Ada"})
r2 = b.responses.create(model=model, input="What is my name?", previous_response_id=r1.id,
                        extra_headers={"x-mock": "reply=Ada"})
with a.responses.stream(model=model, input="Spell it.", previous_response_id=r2.id,
                        extra_headers={"x-mock": "sse=2,usage"}) as stream:
    r3 = stream.get_final_response()
seen["turns"] = [r1.output_text, r2.output_text, r3.output_text]
seen["ids_distinct"] = len({r1.id, r2.id, r3.id}) == 3

tools = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"]}}]
t1 = b.responses.create(model=model, input="Weather in Paris?", tools=tools,
                        extra_headers={"x-mock": "tools"})
call = t1.output[0]
t2 = a.responses.create(model=model, tools=tools, previous_response_id=t1.id,
                        input=[{"type": "function_call_output", "call_id": call.call_id,
                                "output": "18C, sunny"}])
seen["tool"] = {"call": call.name, "answer": t2.output_text}

unstored = a.responses.create(model=model, input="Forget this.", store=False)
try:
    b.responses.create(model=model, input="Again?", previous_response_id=unstored.id)
    seen["unstored"] = "accepted"
except openai.BadRequestError as e:
    seen["unstored"] = {"status": e.status_code, "code": e.code, "param": e.param}

print(json.dumps(seen))
