"""Drives a running glm-server with the official `openai` SDK; exits non-zero on failure.

usage: python openai_client.py BASE_URL API_KEY MODEL
"""
import sys

import openai
from openai import OpenAI

base, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


# models
models = client.models.list()
check([m.id for m in models.data] == [model], f"models: {models}")

# chat, non-streaming
msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
r = client.chat.completions.create(model=model, messages=msgs, max_tokens=8, temperature=0)
check(r.object == "chat.completion", r)
check(r.choices[0].message.role == "assistant", r)
check(isinstance(r.choices[0].message.content, str), r)
check(r.choices[0].finish_reason in ("stop", "length"), r)
check(r.usage.completion_tokens >= 1 and r.usage.prompt_tokens > 0, r.usage)
check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage)
whole = r.choices[0].message.content

# chat, streaming with usage; streamed text equals the non-streamed text (greedy)
stream = client.chat.completions.create(
    model=model, messages=msgs, max_tokens=8, temperature=0, stream=True,
    stream_options={"include_usage": True},
)
parts, roles, finish, usage = [], [], None, None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.role:
            roles.append(c.delta.role)
        if c.delta.content:
            parts.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
check(roles == ["assistant"], roles)
check("".join(parts) == whole, ("".join(parts), whole))
check(finish == r.choices[0].finish_reason, finish)
check(usage is not None and usage.completion_tokens == r.usage.completion_tokens, usage)

# logprobs, n, seed, vLLM extras through extra_body
r = client.chat.completions.create(
    model=model, messages=msgs, max_completion_tokens=4, n=2, seed=7, temperature=0.8,
    logprobs=True, top_logprobs=2, extra_body={"top_k": 20, "min_p": 0.01, "repetition_penalty": 1.1},
)
check(len(r.choices) == 2, r)
check(all(len(c.logprobs.content) >= 1 for c in r.choices), r)
check(all(len(t.top_logprobs) == 2 for t in r.choices[0].logprobs.content), r)

# completions: string, list, token ids; streaming
c = client.completions.create(model=model, prompt="Once upon a time", max_tokens=6, temperature=0)
check(c.object == "text_completion" and isinstance(c.choices[0].text, str), c)
check(c.usage.completion_tokens >= 1, c.usage)
c2 = client.completions.create(model=model, prompt=["a", "b"], max_tokens=3, temperature=0)
check([x.index for x in c2.choices] == [0, 1], c2)
c3 = client.completions.create(model=model, prompt=[11, 12, 13], max_tokens=3, temperature=0)
check(len(c3.choices) == 1, c3)
text = "".join(
    x.choices[0].text
    for x in client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=6, temperature=0, stream=True
    )
    if x.choices
)
check(text == c.choices[0].text, (text, c.choices[0].text))

# errors
try:
    client.chat.completions.create(model=model, messages=msgs, temperature=-1)
    check(False, "temperature -1 accepted")
except openai.BadRequestError as e:
    check(e.status_code == 400, e)
    check(e.body.get("param") == "temperature", e.body)
try:
    client.chat.completions.create(model=model, messages=msgs, max_tokens=10**7)
    check(False, "huge max_tokens accepted")
except openai.BadRequestError as e:
    check(e.body.get("param") == "max_tokens", e.body)
try:
    client.chat.completions.create(model="no-such-model", messages=msgs)
    check(False, "unknown model accepted")
except openai.NotFoundError as e:
    check(e.status_code == 404, e)
try:
    OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).models.list()
    check(False, "wrong key accepted")
except openai.AuthenticationError as e:
    check(e.status_code == 401, e)

print(f"openai SDK {openai.__version__}: {checks} checks passed")
