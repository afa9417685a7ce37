"""The Anthropic Messages API through the official `anthropic` SDK against glm-server.

Run by server/tests/anthropic_api.rs with GLM_BASE_URL, GLM_API_KEY, GLM_MODEL set; the
server has a scripted token source. Prints ALL OK on success.
"""
import os

import anthropic

client = anthropic.Anthropic(base_url=os.environ["GLM_BASE_URL"], api_key=os.environ["GLM_API_KEY"])
MODEL = os.environ["GLM_MODEL"]
TOOLS = [
    {"name": "get_weather", "description": "Weather",
     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}},
    {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}},
    {"name": "now", "input_schema": {"type": "object", "properties": {}}},
]


def user(text):
    return [{"role": "user", "content": text}]


def dump(message):
    """Comparable form: ids dropped (they differ per request)."""
    out = []
    for b in message.content:
        d = b.model_dump()
        d.pop("id", None)
        d.pop("citations", None)
        out.append(d)
    return out, message.stop_reason, message.stop_sequence


for trigger, types, stop in [
    ("SCRIPT weather", ["thinking", "tool_use"], "tool_use"),
    ("SCRIPT two-calls", ["thinking", "text", "tool_use", "tool_use"], "tool_use"),
    ("SCRIPT no-args", ["thinking", "tool_use"], "tool_use"),
    ("SCRIPT hello", ["thinking", "text"], "end_turn"),
]:
    full = client.messages.create(model=MODEL, max_tokens=200, messages=user(trigger), tools=TOOLS,
                                  system="You are a test.")
    assert [b.type for b in full.content] == types, (trigger, full.content)
    assert full.stop_reason == stop, full
    assert full.usage.input_tokens > 10 and full.usage.output_tokens > 3, full.usage
    with client.messages.stream(model=MODEL, max_tokens=200, messages=user(trigger), tools=TOOLS,
                                system="You are a test.") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and "message_stop" in kinds, kinds
    assert dump(final) == dump(full), (dump(final), dump(full))
    print("ok", trigger)

full = client.messages.create(model=MODEL, max_tokens=200, messages=user("SCRIPT weather"), tools=TOOLS)
tool = full.content[1]
assert tool.name == "get_weather" and tool.input == {"city": "Paris", "days": 3}, tool
assert full.content[0].thinking == "The user wants the weather, so I call the tool."
# Send the SDK's own blocks back with a tool result (what Claude Code does).
second = client.messages.create(model=MODEL, max_tokens=100, tools=TOOLS, messages=[
    {"role": "user", "content": "SCRIPT weather"},
    {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in full.content]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "SCRIPT sunny-result"}]},
])
assert second.content[-1].text.strip() == "It is sunny in Paris.", second
print("ok tool_result")

stopped = client.messages.create(model=MODEL, max_tokens=100, messages=user("SCRIPT stopseq"), stop_sequences=["END"])
assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "END", stopped
nothink = client.messages.create(model=MODEL, max_tokens=100, messages=user("SCRIPT nothink"),
                                 thinking={"type": "disabled"})
assert [b.type for b in nothink.content] == ["text"], nothink
count = client.messages.count_tokens(model=MODEL, messages=user("hello there"), tools=TOOLS)
plain = client.messages.count_tokens(model=MODEL, messages=user("hello there"))
assert count.input_tokens > plain.input_tokens > 5, (count, plain)
print("ok count_tokens")

try:
    client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}])
    raise AssertionError("expected a 400")
except anthropic.BadRequestError as e:
    assert e.body["error"]["type"] == "invalid_request_error", e.body
try:
    anthropic.Anthropic(base_url=os.environ["GLM_BASE_URL"], api_key="wrong").messages.create(
        model=MODEL, max_tokens=10, messages=user("x"))
    raise AssertionError("expected a 401")
except anthropic.AuthenticationError:
    pass
print("ok errors")
print("ALL OK")
