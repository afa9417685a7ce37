"""Forced tool calls through the official `openai` and `anthropic` SDKs against a running
glm-server (random weights, `--tool-call-parser` set): every answer is a call to an allowed
tool whose arguments validate against its schema. Exits non-zero on failure.

usage: python structured_tools.py BASE_URL MODEL SEEDS
"""
import json
import sys

import anthropic
from openai import OpenAI

base, model, seeds = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
aclient = anthropic.Anthropic(base_url=base, api_key="unused", max_retries=0, timeout=120)
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


weather = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"type": "string", "enum": ["c", "f"]},
        "hourly": {"type": "boolean"},
    },
    "required": ["city", "days"],
}
clock = {"type": "object", "properties": {"tz": {"type": "string", "pattern": "^[A-Z]{3}$"}}, "required": ["tz"]}
tools = [
    {"type": "function", "function": {"name": "get_weather", "parameters": weather}},
    {"type": "function", "function": {"name": "get_time", "parameters": clock}},
]
schemas = {"get_weather": weather, "get_time": clock}
no_think = {"chat_template_kwargs": {"enable_thinking": False}}


def valid_args(name, args):
    s = schemas[name]
    check(set(s["required"]) <= set(args) <= set(s["properties"]), (name, args))
    if name == "get_weather":
        check(isinstance(args["city"], str) and len(args["city"]) <= 12, args)
        check(isinstance(args["days"], int) and 1 <= args["days"] <= 7, args)
        check(args.get("unit", "c") in ("c", "f"), args)
        check(isinstance(args.get("hourly", True), bool), args)
    else:
        check(isinstance(args["tz"], str) and len(args["tz"]) == 3 and args["tz"].isupper(), args)


msgs = [{"role": "user", "content": "What is the weather?"}]
for seed in range(seeds):
    # OpenAI: required (any tool, possibly several calls) and a named function.
    for choice in ("required", {"type": "function", "function": {"name": "get_time"}}):
        # One call per answer: random weights would chain parallel calls up to max_tokens
        # (several calls in a row are covered by the unit test of the grammar).
        r = client.chat.completions.create(model=model, messages=msgs, tools=tools, tool_choice=choice,
                                           temperature=1.0, seed=seed, max_tokens=300,
                                           parallel_tool_calls=False, extra_body=no_think)
        c = r.choices[0]
        check(c.finish_reason == "tool_calls", f"seed {seed} {choice}: {c}")
        check(len(c.message.tool_calls) >= 1, c)
        for call in c.message.tool_calls:
            if choice != "required":
                check(call.function.name == "get_time", call)
            valid_args(call.function.name, json.loads(call.function.arguments))
    # Anthropic: {"type": "tool", "name": ...} and {"type": "any"}.
    atools = [{"name": t["function"]["name"], "input_schema": t["function"]["parameters"]} for t in tools]
    for choice in ({"type": "tool", "name": "get_weather"}, {"type": "any"}):
        choice = dict(choice, disable_parallel_tool_use=True)
        m = aclient.messages.create(model=model, max_tokens=300, messages=msgs, tools=atools,
                                    tool_choice=choice, thinking={"type": "disabled"})
        check(m.stop_reason == "tool_use", f"{choice}: {m}")
        uses = [b for b in m.content if b.type == "tool_use"]
        check(len(uses) >= 1, m)
        for u in uses:
            if choice["type"] == "tool":
                check(u.name == "get_weather", u)
            valid_args(u.name, u.input)

print(f"{checks} checks passed")
