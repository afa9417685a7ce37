#!/usr/bin/env python3
"""Writes vllm_corpus.json: GLM model outputs run through vLLM's own parsers.

For every case the expectations come from the installed `vllm` package (0.32.0 was used):
`ParserManager.get_parser(...)` composes the same parser the OpenAI server builds for
`--reasoning-parser glm45 --tool-call-parser glm45|glm47 --enable-auto-tool-choice`, and its
`parse(model_output, request, enable_auto_tools=True)` gives (reasoning, content, tool_calls),
exactly what a non-streaming chat completion returns. Three configurations per case:

- combined:        reasoning parser glm45 + tool parser
- tool_only:       tool parser only (think tags are plain text)
- reasoning_only:  reasoning parser only (tool markup stays in content)

and both tool parser names (glm45, glm47; the results are recorded per name).

Usage (needs the vLLM venv from server/fixtures/README.md):
    /root/venv-vllm/bin/python make_vllm_corpus.py [--tokenizer DIR] [--out FILE] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_TOKENIZER = HERE.parents[2] / "fixtures" / "tokenizer"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "date": {"type": "string"},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "description": "Current time", "parameters": {"type": "object", "properties": {}}},
}
NOARGS = {"type": "function", "function": {"name": "list_files"}}
TYPED = {
    "type": "function",
    "function": {
        "name": "configure",
        "parameters": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "count": {"type": "integer"},
                "ratio": {"type": "number"},
                "enabled": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "options": {"type": "object"},
                "note": {"type": ["string", "null"]},
                "mode": {"enum": ["fast", "slow"]},
                "level": {"enum": [1, 2, 3]},
                "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "size": {"type": "int"},
                "any": {},
            },
        },
    },
}
WRITE = {
    "type": "function",
    "function": {
        "name": "write_file",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
}
BASH = {
    "type": "function",
    "function": {
        "name": "bash",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}}},
    },
}
ALL = [WEATHER, TIME, NOARGS, TYPED, WRITE, BASH]

def call45(name, *pairs):
    body = "".join(f"<arg_key>{k}</arg_key>\n<arg_value>{v}</arg_value>\n" for k, v in pairs)
    return f"<tool_call>{name}\n{body}</tool_call>"

def call47(name, *pairs):
    body = "".join(f"<arg_key>{k}</arg_key><arg_value>{v}</arg_value>" for k, v in pairs)
    return f"<tool_call>{name}{body}</tool_call>"

CODE = 'def main():\n    print("hi <b>&amp;</b>")\n\tif x < 3 and y > 2:\n        return {"a": [1, 2]}\n'

CASES = [
    # ---- GLM-4.5 layout -------------------------------------------------------------
    ("glm45_single_call_cjk", "<think>用户想知道天气。</think>\n" + call45("get_weather", ("city", "北京"), ("date", "2024-06-27")), [WEATHER]),
    ("glm45_content_before_call", "<think>Need the weather.</think>\nLet me check that for you.\n" + call45("get_weather", ("city", "Paris"), ("days", "3")), [WEATHER]),
    ("glm45_two_calls", "<think>Two cities.</think>\n" + call45("get_weather", ("city", "Tokyo")) + "\n" + call45("get_weather", ("city", "Osaka"), ("days", "2")), [WEATHER]),
    ("glm45_no_arg_tool", "<think>time</think>\n<tool_call>get_time\n</tool_call>", [WEATHER, TIME]),
    ("glm45_no_arg_tool_no_newline", "<think></think><tool_call>list_files</tool_call>", ALL),
    ("glm45_multiline_code_value", "<think>write it</think>\n" + call45("write_file", ("path", "src/main.py"), ("content", CODE)), ALL),
    ("glm45_typed_values", "<think>cfg</think>\n" + call45("configure", ("name", " spaced "), ("count", "42"), ("ratio", "0.75"), ("enabled", "true"), ("tags", '["a", "b"]'), ("options", '{"depth": 2, "nested": {"x": null}}'), ("note", "null")), ALL),
    ("glm45_typed_edge_numbers", "<think>n</think>\n" + call45("configure", ("count", " 1_000 "), ("ratio", "3.0"), ("size", "7"), ("level", "2"), ("limit", "null"), ("mode", "fast")), ALL),
    ("glm45_typed_failures_stay_strings", "<think>n</think>\n" + call45("configure", ("count", "many"), ("ratio", "inf"), ("enabled", "yes"), ("tags", "[1, 2"), ("options", "{bad json}")), ALL),
    ("glm45_integer_from_float_text", "<think>n</think>\n" + call45("configure", ("count", "3.5"), ("ratio", "1e3"), ("enabled", "0")), ALL),
    ("glm45_big_numbers", "<think>n</think>\n" + call45("configure", ("count", "123456789012345678901234567890"), ("ratio", "1e20"), ("any", "17")), ALL),
    ("glm45_unknown_argument", "<think>x</think>\n" + call45("get_weather", ("city", "Rome"), ("unit", "celsius"), ("days", "5")), [WEATHER]),
    ("glm45_unknown_tool", "<think>x</think>\nI will try.\n" + call45("get_stock", ("symbol", "AAPL")), [WEATHER]),
    ("glm45_unknown_then_known", "<think>x</think>\nTrying.\n" + call45("get_stock", ("symbol", "AAPL")) + "\nbetween\n" + call45("get_weather", ("city", "Rome")), [WEATHER]),
    ("glm45_no_tools_in_request", "<think>x</think>\n" + call45("anything", ("a", "1"), ("b", "[1]")), None),
    ("glm45_cut_after_name", "<think>x</think>\nChecking.\n<tool_call>get_weather\n", [WEATHER]),
    ("glm45_cut_inside_value", "<think>x</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>San Fran", [WEATHER]),
    ("glm45_cut_after_first_pair", "<think>x</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n<arg_key>da", [WEATHER]),
    ("glm45_cut_in_closing_tag", "<think>x</think>\n" + call45("get_weather", ("city", "Oslo"))[:-4], [WEATHER]),
    ("glm45_cut_right_after_open", "<think>x</think>\nSure.\n<tool_call>", [WEATHER]),
    ("glm45_spaces_instead_of_newlines", "<think>x</think>\n<tool_call>bash <arg_key>command</arg_key> <arg_value>ls -la</arg_value> </tool_call>", ALL),
    ("glm45_crlf_and_tabs", "<think>x</think>\r\n<tool_call>get_weather\r\n\t<arg_key>city</arg_key>\r\n\t<arg_value>Lima</arg_value>\r\n</tool_call>", [WEATHER]),
    ("glm45_literal_backslash_n", "<think>x</think>\n<tool_call>get_weather\\n<arg_key>city</arg_key>\\n<arg_value>Kyiv</arg_value>\\n</tool_call>", [WEATHER]),
    ("glm45_literal_backslash_n_no_tools", "<think>x</think>\n<tool_call>get_weather\\n<arg_key>city</arg_key>\\n<arg_value>Kyiv</arg_value>\\n</tool_call>", None),
    ("glm45_text_after_call", "<think>x</think>\n" + call45("get_weather", ("city", "Cairo")) + "\nDone, waiting for the result.", [WEATHER]),
    ("glm45_key_with_spaces", "<think>x</think>\n<tool_call>get_weather\n<arg_key> city </arg_key>\n<arg_value>Bern</arg_value>\n</tool_call>", [WEATHER]),
    ("glm45_duplicate_key", "<think>x</think>\n" + call45("get_weather", ("city", "A"), ("days", "1"), ("city", "B")), [WEATHER]),
    ("glm45_empty_value", "<think>x</think>\n" + call45("get_weather", ("city", ""), ("days", "")), [WEATHER]),
    ("glm45_value_with_markup", "<think>x</think>\n" + call45("write_file", ("path", "a.html"), ("content", "<div class=\"x\">a &lt; b</div>\n<arg_key>not a key</div>")), ALL),
    ("glm45_value_looks_like_json_string_param", "<think>x</think>\n" + call45("write_file", ("path", "x.json"), ("content", '{"k": [1, 2, 3]}')), ALL),
    ("glm45_number_param_with_space", "<think>x</think>\n" + call45("bash", ("command", "sleep 1"), ("timeout", " 2.5\n")), ALL),
    ("glm45_observation_token_after_call", "<think>x</think>\n" + call45("get_weather", ("city", "Lagos")) + "<|observation|>", [WEATHER]),
    ("glm45_special_tokens_in_text", "<think>a<|user|>b</think>\nHello<|endoftext|> world", [WEATHER]),
    # ---- reasoning shapes -------------------------------------------------------------
    ("reasoning_plain_answer", "<think>Let me think about it.\nStep 1.\n</think>\nThe answer is 4.", None),
    ("reasoning_without_open_tag", "The user asks for 2+2. Simple.</think>\n\n4", None),
    ("reasoning_unclosed", "<think>I am still thinking about this and the output was cut", None),
    ("reasoning_unclosed_without_open_tag", "thinking without tags and no end", None),
    ("reasoning_empty_block", "<think></think>\nHi there!", None),
    ("reasoning_trailing_whitespace", "<think>Plan:  \n\n</think>  Answer with spaces  ", None),
    ("reasoning_two_blocks", "<think>first</think>A<think>second</think>B", None),
    ("reasoning_close_twice", "<think>r</think>x</think>y", None),
    ("reasoning_open_twice", "<think>a<think>b</think>c", None),
    ("reasoning_tool_call_inside", "<think>I should call the tool <tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Nice</arg_value>\n</tool_call>", [WEATHER]),
    ("reasoning_tool_call_inside_then_close", "<think>plan <tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Nice</arg_value>\n</tool_call></think>after", [WEATHER]),
    ("reasoning_only_whitespace", "<think>   </think>   ", None),
    ("empty_output", "", None),
    ("plain_text_no_tags", "Just an answer without any tags.", [WEATHER]),
    ("partial_tags_in_text", "a <thin b </tool_ca c <arg_key d", [WEATHER]),
    ("stray_close_tool_call", "<think>r</think>oops </tool_call> text", [WEATHER]),
    # ---- GLM-4.7 layout ---------------------------------------------------------------
    ("glm47_single_call", "The user wants weather.</think>" + call47("get_weather", ("city", "北京"), ("days", "3")), [WEATHER]),
    ("glm47_content_and_two_calls", "Two lookups.</think>Checking both." + call47("get_weather", ("city", "Seoul")) + call47("get_weather", ("city", "Busan")), [WEATHER]),
    ("glm47_no_arg", "time please</think>" + call47("get_time"), [WEATHER, TIME]),
    ("glm47_typed", "cfg</think>" + call47("configure", ("count", "5"), ("enabled", "false"), ("tags", '["x"]'), ("options", '{"a": 1.50}')), ALL),
    ("glm47_emoji_and_newlines_in_value", "w</think>" + call47("write_file", ("path", "notes.md"), ("content", "# Title 😀\n\n- item ✓\n- 項目\n")), ALL),
    ("glm47_cut_inside_second_call", "x</think>" + call47("get_weather", ("city", "Lyon")) + "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Ni", [WEATHER]),
    ("glm47_whitespace_between_pairs", "x</think>" + "<tool_call>get_weather <arg_key>city</arg_key> \n <arg_value>Turin</arg_value>\n<arg_key>days</arg_key>\t<arg_value>4</arg_value></tool_call>", [WEATHER]),
    ("glm47_name_only_whitespace", "x</think><tool_call> \n </tool_call>", [WEATHER]),
    ("glm47_json_inside_tool_call", 'x</think><tool_call>{"name": "get_weather", "arguments": {"city": "Bonn"}}</tool_call>', [WEATHER]),
    ("glm47_json_inside_tool_call_no_tools", 'x</think><tool_call>{"name": "get_weather", "arguments": {"city": "Bonn"}}</tool_call>', None),
    ("glm47_missing_name", "x</think><tool_call><arg_key>city</arg_key><arg_value>Graz</arg_value></tool_call>", [WEATHER]),
    ("glm47_content_only_after_think", "quick</think>No tool needed: 42.", [WEATHER]),
]

# Cases also run with thinking disabled (chat_template_kwargs enable_thinking=false) and
# with tool_choice "none".
THINKING_OFF = {
    "thinking_off_plain": ("Hello! How can I help?", [WEATHER]),
    "thinking_off_think_tags_are_text": ("<think></think>\nHello", None),
    "thinking_off_tool_call": ("Sure.\n" + call45("get_weather", ("city", "Quito")), [WEATHER]),
}
TOOL_CHOICE_NONE = {
    "tool_choice_none_strips_markup": ("<think>r</think>\nText before.\n" + call45("get_weather", ("city", "Riga")) + "\nText after.", [WEATHER]),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER))
    ap.add_argument("--out", default=str(HERE / "vllm_corpus.json"))
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs")
    args = ap.parse_args()

    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import vllm
    from transformers import AutoTokenizer
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.parser.parser_manager import ParserManager

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)

    def run(text, tools, mode, tool_name, thinking=True, tool_choice=None):
        reasoning_name = "glm45" if mode in ("combined", "reasoning_only") else None
        tool_parser = tool_name if mode in ("combined", "tool_only") else None
        parser_cls = ParserManager.get_parser(
            tool_parser_name=tool_parser,
            reasoning_parser_name=reasoning_name,
            enable_auto_tools=True,
            tokenizer=tokenizer,
        )
        kwargs = {} if thinking else {"chat_template_kwargs": {"enable_thinking": False}}
        req = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        if tools:
            req["tools"] = tools
        if tool_choice:
            req["tool_choice"] = tool_choice
        if not thinking:
            req["chat_template_kwargs"] = {"enable_thinking": False}
        request = ChatCompletionRequest(**req)
        parser = parser_cls(tokenizer, request.tools, **kwargs)
        reasoning, content, calls = parser.parse(text, request, enable_auto_tools=True)
        return {
            "reasoning": reasoning,
            "content": content,
            "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in (calls or [])],
        }

    out_cases = []

    def add(name, text, tools, thinking=True, tool_choice=None):
        expected = {}
        for mode in ("combined", "tool_only", "reasoning_only"):
            for tool_name in ("glm45", "glm47"):
                if mode == "reasoning_only" and tool_name == "glm47":
                    continue
                key = mode if mode == "reasoning_only" else f"{mode}/{tool_name}"
                expected[key] = run(text, tools, mode, tool_name, thinking, tool_choice)
        case = {"name": name, "text": text, "tools": tools, "thinking": thinking}
        if tool_choice:
            case["tool_choice"] = tool_choice
        case["expected"] = expected
        out_cases.append(case)

    for name, text, tools in CASES:
        add(name, text, tools)
    for name, (text, tools) in THINKING_OFF.items():
        add(name, text, tools, thinking=False)
    for name, (text, tools) in TOOL_CHOICE_NONE.items():
        add(name, text, tools, tool_choice="none")

    corpus = {
        "about": "GLM outputs parsed by vLLM's own parsers (Parser.parse, non-streaming). "
        "Keys of `expected`: combined/<tool parser> = --reasoning-parser glm45 + --tool-call-parser; "
        "tool_only/<tool parser>; reasoning_only. Tool-call ids are random in vLLM and not recorded.",
        "generator": "make_vllm_corpus.py",
        "source": "vllm",
        "vllm": vllm.__version__,
        "tokenizer": "server/fixtures/tokenizer",
        "drop_tokens": sorted(t for t in tokenizer.all_special_tokens),
        "cases": out_cases,
    }
    text = json.dumps(corpus, ensure_ascii=False, indent=1) + "\n"
    if args.check:
        current = Path(args.out).read_text() if Path(args.out).exists() else ""
        if current != text:
            print(f"{args.out} is out of date", file=sys.stderr)
            return 1
        print("up to date")
        return 0
    Path(args.out).write_text(text)
    print(f"wrote {len(out_cases)} cases to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
