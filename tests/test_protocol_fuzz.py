"""Parsers never crash on model output: 10,000 random and mutated outputs per parser.

Valid outputs (rendered by each protocol from random calls, plus hand-written near-misses) are
mutated the ways model output goes wrong: chunks deleted, inserted, duplicated, quotes swapped,
truncation, special tokens injected. Every result must be a valid assistant message: either a
parse error with no calls, or calls that each have a name and JSON-object arguments.
"""

from __future__ import annotations

import json
import random
import string

import pytest
from hypothesis import given, settings, strategies as st

from agentkit.messages import INTERPRETER_TOOL_NAME, Message, ToolCall
from agentkit.protocols import _json
from agentkit.protocols.autogpt import AutoGPTProtocol
from agentkit.protocols.internlm2 import InternLM2Protocol
from agentkit.protocols.openai_tools import OpenAIToolsProtocol, from_response
from agentkit.protocols.react import ReActProtocol

N = 10_000

TOKENS = [
    "<|im_start|>", "<|im_end|>", "<|action_start|>", "<|action_end|>", "<|plugin|>", "<|interpreter|>",
    "<|endoftext|>", "<tool_call>", "</tool_call>", "<tool_response>", "Thought:", "Action:", "Action Input:",
    "Observation:", "Final Answer:", "```", "```python\n", "```json\n", "\n", "{", "}", "[", "]", '"', "'", ",", ":",
    "\\", "\\u", "\\ud800", "True", "None", "null", '"name"', '"parameters"', '"arguments"', "python_interpreter",
    "**", "(", ")", "=", "\t", "\x00", "é", "漢", "🙂", "\ud800",
]


def _random_value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth < 3 and roll < 0.2:
        return {_random_text(rng, 6): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if depth < 3 and roll < 0.3:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return rng.choice([None, True, False, rng.randint(-10**6, 10**6), rng.uniform(-1e6, 1e6), _random_text(rng, 12)])


def _random_text(rng: random.Random, size: int) -> str:
    alphabet = string.ascii_letters + string.digits + " _-.,:;'\"{}[]\n\\<>|`" + "éü漢🙂"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, size)))


def _random_call(rng: random.Random) -> ToolCall:
    if rng.random() < 0.25:
        code = rng.choice(["print(1)", "x = 2**10\nprint(x)", "import math\nmath.sqrt(2)", _random_text(rng, 30) or "1"])
        return ToolCall(name=INTERPRETER_TOOL_NAME, arguments={"code": code}, kind="interpreter")
    name = rng.choice(["get_weather", "search", "add", "a.b", "tool-1", _random_text(rng, 10).strip() or "t"])
    return ToolCall(name=name, arguments={_random_text(rng, 8): _random_value(rng) for _ in range(rng.randint(0, 3))})


HANDWRITTEN = {
    "internlm2": [
        'I will check.<|action_start|><|plugin|>\n{"name": "get_weather", "parameters": {"city": "Paris"}}<|action_end|>',
        "Let me compute.<|action_start|><|interpreter|>\n```python\nprint(2**10)\n```<|action_end|>",
        "<|plugin|>{'name': 'f', 'arguments': '{\"a\": 1}',}",
        "The answer is 42.<|im_end|>",
    ],
    "react": [
        'Thought: I need the weather.\nAction: get_weather\nAction Input: {"city": "Paris"}',
        "Thought: done\nFinal Answer: 42",
        "Action: python_interpreter\nAction Input: ```python\nprint(1)\n```",
        "Action: search[Colorado]",
    ],
    "autogpt": [
        '{"thoughts": {"text": "search", "plan": "- look"}, "command": {"name": "get_weather", "args": {"city": "Oslo"}}}',
        "```json\n{'command': 'calculator', 'args': {'expression': '2+2',},}\n```",
        '{"command": {"name": "finish", "args": {"response": "done"}}}',
    ],
    "openai_tools": [
        'Sure.\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>',
        '{"name": "a", "arguments": {"x": 1}}',
        "Just an answer.",
    ],
}


def _valid_output(protocol, rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(HANDWRITTEN[protocol.name])
    thought = rng.choice(["", "I will use a tool.", "Let me think.\nStep by step.", _random_text(rng, 40)])
    calls = [_random_call(rng) for _ in range(rng.randint(0, 3 if protocol.name == "openai_tools" else 1))]
    return protocol.render_assistant(Message.assistant(thought, calls))


def _mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 4)):
        i = rng.randint(0, len(text))
        j = min(len(text), i + rng.randint(1, 12))
        op = rng.randrange(8)
        if op == 0:  # delete a chunk
            text = text[:i] + text[j:]
        elif op == 1:  # insert a special token or syntax
            text = text[:i] + rng.choice(TOKENS) + text[i:]
        elif op == 2:  # duplicate a chunk
            text = text[:j] + text[i:j] + text[j:]
        elif op == 3:  # swap quotes
            text = text.translate(str.maketrans({'"': "'", "'": '"'})) if rng.random() < 0.5 else text.replace('"', "'")
        elif op == 4:  # truncate
            text = text[:i]
        elif op == 5:  # random characters
            text = text[:i] + _random_text(rng, 8) + text[i:]
        elif op == 6:  # repeat a token many times
            text = text[:i] + rng.choice(TOKENS) * rng.randint(2, 50) + text[i:]
        else:  # random unicode, control characters included
            text = text[:i] + "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(1, 5))) + text[i:]
    return text


def _outputs(protocol, seed: int):
    rng = random.Random(seed)
    for k in range(N):
        if k % 10 == 0:  # pure noise
            yield "".join(rng.choice(TOKENS + list(string.printable)) for _ in range(rng.randint(0, 80)))
        else:
            yield _mutate(_valid_output(protocol, rng), rng)
    yield "[" * 5000 + "{" * 5000  # deep nesting
    yield '<|action_start|><|plugin|>{"name": "f", "parameters": ' + "[" * 3000
    yield "<tool_call>" + "{" * 3000
    yield "Action: f\nAction Input: " + "[" * 3000
    yield '{"n": 1' + "0" * 5000 + "}"


def check_message(message: Message, *, parts: bool = False) -> None:
    assert isinstance(message, Message)
    assert message.role == "assistant"
    assert isinstance(message.content, (str, list) if parts else str)
    assert "raw" not in message.meta
    if message.parse_error is not None:
        assert isinstance(message.parse_error, str) and message.parse_error
        assert message.tool_calls == []
    for call in message.tool_calls:
        assert isinstance(call.name, str) and call.name.strip() == call.name and call.name
        assert isinstance(call.arguments, dict)
        if call.kind == "interpreter":
            assert set(call.arguments) == {"code"} and isinstance(call.code, str) and call.code.strip()
    json.loads(message.model_dump_json())  # serialisable, as trajectories need


@pytest.mark.parametrize("protocol", [InternLM2Protocol(), ReActProtocol(), OpenAIToolsProtocol(), AutoGPTProtocol()],
                         ids=lambda p: p.name)
def test_parser_survives_10000_mutated_outputs(protocol):
    calls = errors = 0
    for text in _outputs(protocol, seed=len(protocol.name)):  # fixed seeds: failures reproduce
        message = protocol.parse(text)
        check_message(message)
        calls += bool(message.tool_calls)
        errors += message.parse_error is not None
    assert calls > 500 and errors > 500  # the corpus exercises both paths


def test_tolerant_json_raises_only_value_error():
    rng = random.Random(7)
    seeds = ['{"a": [1, 2.5, "x"], "b": {"c": null}}', "{'a': True, b: None,}", "[1, 2, [3, {\"k\": \"v\"}]]",
             '```json\n{"name": "f"}\n```', "prefix {\"a\": 1} suffix", '"\\u00e9\\ud83d\\ude00"']
    for k in range(N):
        text = _mutate(rng.choice(seeds), rng) if k % 5 else _random_text(rng, 60)
        try:
            value = _json.loads(text, expect=rng.choice([None, dict, list]), where="in the test")
        except ValueError as exc:
            assert str(exc)
        else:
            json.dumps(value, ensure_ascii=False).encode("utf-8")  # plain JSON data, no lone surrogates


def test_from_response_survives_random_replies():
    rng = random.Random(11)
    for _ in range(2_000):
        raw = {"role": "assistant", "content": rng.choice([None, "", _random_text(rng, 20), [{"type": "text", "text": "x"}],
                                                           [{"type": "weird"}], 5]),
               "tool_calls": rng.choice([None, [], "x", [None], [{"function": {"name": _random_call(rng).name,
                                                                              "arguments": _mutate('{"a": 1}', rng)}}],
                                         [{"id": 5, "function": {"name": None}}], [{"function": "f"}]])}
        check_message(from_response(raw), parts=True)


@settings(max_examples=500, deadline=None, database=None)
@given(text=st.text(max_size=300))
def test_any_text_parses_without_error(text):
    for protocol in (InternLM2Protocol(), ReActProtocol(), OpenAIToolsProtocol(), AutoGPTProtocol()):
        check_message(protocol.parse(text))
