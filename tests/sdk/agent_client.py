"""What coding agents send, through switchyard, with the official SDKs.

Usage: agent_client.py BASE_URL API_KEY CLAUDE_MODEL OPENAI_MODEL
- A Claude-Code-shaped request (Anthropic SDK) to OPENAI_MODEL, an OpenAI-interface provider:
  Claude Code's `metadata.user_id` (a JSON document of about 150 characters) and betas, system
  blocks with cache_control, many tools (an MCP name over 64 characters first), thinking on, a
  history with signed thinking, a tool error and a screenshot, and a PDF; then count_tokens.
- A Cursor-shaped request (OpenAI SDK) to CLAUDE_MODEL, an Anthropic-interface provider:
  developer role, images, parallel tools with a named tool_choice, a `safety_identifier` over
  Anthropic's 256 characters, then structured output with `chat.completions.parse()`.
The mock providers refuse what the real APIs refuse (tests/common/strict.rs).
Prints one JSON object with what the SDKs saw.
"""

import json
import sys

import anthropic
import openai
import pydantic

base_url, api_key, claude, gpt = sys.argv[1:5]
seen = {}

LONG_TOOL = "mcp__acme_internal_knowledge_base__search_documents_by_semantic_similarity"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

# --- Claude Code → an OpenAI-interface model ---------------------------------------------------
ac = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=20)
tools = [{"name": LONG_TOOL, "description": "Search the knowledge base",
          "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}]
tools += [{"name": f"tool_{i}", "description": f"Tool {i}", "input_schema": {"type": "object"}}
          for i in range(20)]
messages = [
    {"role": "user", "content": "Find the retention policy and screenshot the settings page."},
    {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "I should search first.", "signature": "sig-abc"},
        {"type": "text", "text": "Searching."},
        {"type": "tool_use", "id": "toolu_a", "name": LONG_TOOL, "input": {"query": "retention"}},
        {"type": "tool_use", "id": "toolu_b", "name": "tool_1", "input": {}},
    ]},
    {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_a", "is_error": True, "content": "index offline"},
        {"type": "tool_result", "tool_use_id": "toolu_b", "content": [
            {"type": "text", "text": "settings page"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        ]},
        {"type": "document", "title": "policy.pdf",
         "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}},
        {"type": "text", "text": "<system-reminder>todo list empty</system-reminder>Try again."},
    ]},
]
system = [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}]
# What Claude Code sends as its user: device, account and session, as JSON.
USER_ID = json.dumps({"device_id": "5f0a8e2c9b7d4e1f3a6c8b0d2e4f6a8c0b2d4e6f8a0c2e4b6d8f0a2c4e6b8d0f",
                      "account_uuid": "", "session_id": "3c1e2b8a-6f4d-4a7e-9b2c-1d0e8f7a6b5c"},
                     separators=(",", ":"))
BETAS = "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
msg = ac.messages.create(model=gpt, max_tokens=32000, system=system, tools=tools, messages=messages,
                         thinking={"type": "enabled", "budget_tokens": 4000},
                         metadata={"user_id": USER_ID},
                         extra_headers={"x-mock": "tools", "anthropic-beta": BETAS})
block = msg.content[-1]
seen["claude_code"] = {"type": block.type, "name": block.name, "stop_reason": msg.stop_reason}
count = ac.messages.count_tokens(model=gpt, system=system, tools=tools, messages=messages)
seen["count_tokens"] = count.input_tokens
# The same request to Claude itself passes through.
msg = ac.messages.create(model=claude, max_tokens=32000, system=system, tools=tools, messages=messages,
                         thinking={"type": "enabled", "budget_tokens": 4000},
                         extra_headers={"x-mock": "anthropic,tools"})
seen["claude_code_native"] = {"name": msg.content[-1].name, "stop_reason": msg.stop_reason}

# --- Cursor → an Anthropic-interface model -----------------------------------------------------
oc = openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=20)
functions = [{"type": "function", "function": {"name": name, "description": name,
              "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}
             for name in ("read_file", "edit_file")]
chat = [
    {"role": "developer", "content": "You are Cursor's agent."},
    {"role": "user", "content": [
        {"type": "text", "text": "What does this diagram show? Then open main.rs."},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]},
]
done = oc.chat.completions.create(model=claude, messages=chat, tools=functions,
                                  tool_choice={"type": "function", "function": {"name": "read_file"}},
                                  parallel_tool_calls=True, extra_headers={"x-mock": "anthropic,tools"},
                                  extra_body={"safety_identifier": "cursor-" + "0123456789" * 30})
call = done.choices[0].message.tool_calls[0]
seen["cursor"] = {"name": call.function.name, "arguments": json.loads(call.function.arguments),
                  "finish_reason": done.choices[0].finish_reason}

# The same request to an OpenAI model passes through.
done = oc.chat.completions.create(model=gpt, messages=chat, tools=functions,
                                  tool_choice={"type": "function", "function": {"name": "read_file"}},
                                  parallel_tool_calls=True, extra_headers={"x-mock": "tools"})
seen["cursor_native"] = {"name": done.choices[0].message.tool_calls[0].function.name}

# The stream helper on a translated stream: a tool call whose arguments arrive in fragments.
with oc.chat.completions.stream(model=claude, messages=chat, tools=functions,
                                extra_headers={"x-mock": "anthropic,sse=1,tools,split"}) as stream:
    final = stream.get_final_completion()
call = final.choices[0].message.tool_calls[0]
seen["cursor_stream"] = {"name": call.function.name, "arguments": json.loads(call.function.arguments),
                         "finish_reason": final.choices[0].finish_reason}


class Person(pydantic.BaseModel):
    name: str


parsed = oc.chat.completions.parse(model=claude, messages=[{"role": "user", "content": "Who wrote the notes?"}],
                                   response_format=Person,
                                   extra_headers={"x-mock": 'anthropic,reply={"name": "Ada"}'})
seen["parsed"] = parsed.choices[0].message.parsed.model_dump()

print(json.dumps(seen))
