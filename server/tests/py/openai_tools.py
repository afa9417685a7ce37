"""Tool calls and reasoning through the official `openai` SDK against glm-server.

Run by server/tests/tools_api.rs with GLM_BASE_URL, GLM_API_KEY, GLM_MODEL set; the server
has a scripted token source, so the outputs below are known. Prints ALL OK on success.
"""
import json
import os

import openai

client = openai.OpenAI(base_url=os.environ["GLM_BASE_URL"] + "/v1", api_key=os.environ["GLM_API_KEY"])
MODEL = os.environ["GLM_MODEL"]
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}},
    {"type": "function", "function": {"name": "get_time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
]


def ask(trigger, **kw):
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": trigger}],
                                          tools=TOOLS, max_tokens=200, **kw)


def streamed(trigger, **kw):
    reasoning, content, calls, finish = "", "", {}, None
    for chunk in ask(trigger, stream=True, **kw):
        for choice in chunk.choices:
            d = choice.delta
            reasoning += getattr(d, "reasoning", None) or ""
            content += d.content or ""
            for tc in d.tool_calls or []:
                if tc.function and tc.function.name:
                    assert tc.index not in calls, f"name sent twice for call {tc.index}"
                    calls[tc.index] = {"id": tc.id, "name": tc.function.name, "arguments": ""}
                calls[tc.index]["arguments"] += (tc.function.arguments or "") if tc.function else ""
            if choice.finish_reason:
                finish = choice.finish_reason
    return reasoning, content, [calls[i] for i in sorted(calls)], finish


for trigger, expected in [
    ("SCRIPT weather", [("get_weather", {"city": "Paris", "days": 3})]),
    ("SCRIPT two-calls", [("get_weather", {"city": '北京 "centre"\nline 2'}), ("get_time", {"tz": "Asia/Shanghai"})]),
    ("SCRIPT no-args", [("now", {})]),
]:
    full = ask(trigger)
    choice = full.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    got = [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls]
    assert got == expected, (trigger, got)
    reasoning = getattr(choice.message, "reasoning", None)
    assert reasoning, choice.message
    s_reasoning, s_content, s_calls, s_finish = streamed(trigger)
    assert s_finish == "tool_calls", s_finish
    assert s_reasoning == reasoning, (s_reasoning, reasoning)
    assert "<tool_call" not in s_content, s_content
    assert (s_content or "").strip() == (choice.message.content or "").strip(), (s_content, choice.message.content)
    assert [c["name"] for c in s_calls] == [c.function.name for c in choice.message.tool_calls]
    assert [c["arguments"] for c in s_calls] == [c.function.arguments for c in choice.message.tool_calls]
    print("ok", trigger)

# Reasoning field, and thinking off.
full = ask("SCRIPT hello")
assert full.choices[0].message.reasoning == "Just greet.", full
assert full.choices[0].message.content.strip() == "Hello! I am a GLM test model."
assert full.choices[0].finish_reason == "stop"
full = ask("SCRIPT nothink", extra_body={"chat_template_kwargs": {"enable_thinking": False}})
assert full.choices[0].message.content == "Plain answer without thinking.", full
print("ok reasoning")

# Tool result round trip: the SDK's own message objects go back as history.
first = ask("SCRIPT weather")
call = first.choices[0].message.tool_calls[0]
history = [
    {"role": "user", "content": "SCRIPT weather"},
    first.choices[0].message.model_dump(exclude_none=True),
    {"role": "tool", "tool_call_id": call.id, "content": "SCRIPT sunny-result"},
]
second = client.chat.completions.create(model=MODEL, messages=history, tools=TOOLS, max_tokens=100)
assert second.choices[0].message.content.strip() == "It is sunny in Paris.", second
print("ok history")

# A 400 names the field.
try:
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], tools=TOOLS,
                                   tool_choice={"type": "function", "function": {"name": "missing"}})
    raise AssertionError("expected a 400")
except openai.BadRequestError as e:
    assert "missing" in str(e), e
print("ok errors")
print("ALL OK")
