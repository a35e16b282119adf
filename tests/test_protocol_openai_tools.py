"""OpenAI tools: native request/response helpers and the ``<tool_call>`` text format."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from agentkit.messages import INTERPRETER_TOOL_NAME, ImagePart, Message, TextPart, ToolCall
from agentkit.protocols import get_protocol
from agentkit.protocols.openai_tools import OpenAIToolsProtocol, from_response, interpreter_spec, to_request
from agentkit.toolspec import ToolSpec

P = OpenAIToolsProtocol()

WEATHER = ToolSpec(
    name="get_weather",
    description="Get the weather.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
WEATHER_LINE = json.dumps(WEATHER.to_openai(), ensure_ascii=False)


# -- native helpers ------------------------------------------------------------------------------

def test_to_request_builds_messages_and_tools():
    call = ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})
    messages = [Message.system("sys"), Message.user("Weather?"), Message.assistant("", [call]),
                Message.tool_result(call, "18C")]
    payload = to_request(messages, [WEATHER])
    assert payload == {
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        ],
        "tools": [WEATHER.to_openai()],
    }
    assert "tools" not in to_request([Message.user("hi")])
    assert OpenAIToolsProtocol.to_request is to_request


def test_to_request_adds_the_interpreter_function():
    payload = to_request([Message.user("2**10")], interpreter=True)
    assert payload["tools"][0]["function"]["name"] == INTERPRETER_TOOL_NAME
    assert payload["tools"][0]["function"]["parameters"]["required"] == ["code"]


def test_from_response_reads_a_full_response():
    response = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
        ]}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7},
    }
    message = from_response(response)
    assert message.role == "assistant" and message.content == "" and message.parse_error is None
    assert [(c.id, c.arguments) for c in message.tool_calls] == [("call_a", {"city": "Paris"}), ("call_b", {"city": "Rome"})]
    assert message.usage.prompt_tokens == 12 and message.usage.completion_tokens == 7


def test_from_response_reads_a_plain_message():
    message = from_response({"role": "assistant", "content": "Hello", "reasoning_content": "think"})
    assert message.content == "Hello" and message.tool_calls == [] and message.meta["reasoning"] == "think"


@pytest.mark.parametrize("arguments", [
    "{'city': 'Paris'}",
    '{"city": "Paris",}',
    '{"city": "Paris"',
    '```json\n{"city": "Paris"}\n```',
    {"city": "Paris"},
    json.dumps(json.dumps({"city": "Paris"})),  # encoded twice
])
def test_from_response_repairs_arguments(arguments):
    message = from_response({"role": "assistant", "tool_calls": [{"id": "x", "function": {"name": "get_weather",
                                                                                       "arguments": arguments}}]})
    assert message.parse_error is None
    assert message.tool_calls[0].arguments == {"city": "Paris"} and message.tool_calls[0].id == "x"


@pytest.mark.parametrize("code", ["print(2**10)", 'd = {"a": 1}\nprint(d)'])
def test_from_response_interpreter_code_as_plain_text(code):
    message = from_response({"role": "assistant", "tool_calls": [
        {"function": {"name": INTERPRETER_TOOL_NAME, "arguments": code}}]})
    [call] = message.tool_calls
    assert call.kind == "interpreter" and call.arguments == {"code": code} and call.id.startswith("call_")


def test_from_response_legacy_function_call():
    message = from_response({"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}})
    assert message.tool_calls[0].name == "f"


def test_from_response_unreadable_arguments_name_the_tool():
    message = from_response({"role": "assistant", "content": "Let me check", "tool_calls": [
        {"id": "a", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "b", "function": {"name": "lookup", "arguments": "city=Paris"}},
    ]})
    assert message.tool_calls == [] and message.content == "Let me check"
    assert message.parse_error.startswith("the arguments of tool 'lookup' are not valid JSON")


def test_from_response_missing_name():
    message = from_response({"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]})
    assert message.parse_error.startswith("tool call 1 has no function name")


def test_from_response_arguments_not_an_object():
    message = from_response({"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]})
    assert message.parse_error.startswith("the arguments of tool 'f' must be a JSON object")


@pytest.mark.parametrize("bad", [None, "text", {"choices": []}, {"choices": "x"}])
def test_from_response_rejects_what_is_not_a_reply(bad):
    with pytest.raises(ValueError):
        from_response(bad)


def test_from_response_multimodal_content():
    message = from_response({"role": "assistant", "content": [{"type": "text", "text": "a cat"}]})
    assert message.text == "a cat"


# -- the text format: render ---------------------------------------------------------------------

TOOLS_SECTION = f"""# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{WEATHER_LINE}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


def test_render_exact_with_parallel_calls_and_grouped_responses():
    a = ToolCall(id="a", name="get_weather", arguments={"city": "Paris"})
    b = ToolCall(id="b", name="get_weather", arguments={"city": "Rome"})
    messages = [
        Message.system("You are helpful."),
        Message.user("Paris and Rome?"),
        Message.assistant("Checking both.", [a, b]),
        Message.tool_result(b, "20C"),  # results arrive out of order; rendered in call order
        Message.tool_result(a, "18C"),
        Message.assistant("Paris 18C, Rome 20C."),
    ]
    assert P.render(messages, [WEATHER]) == (
        f"<|im_start|>system\nYou are helpful.\n\n{TOOLS_SECTION}<|im_end|>\n"
        "<|im_start|>user\nParis and Rome?<|im_end|>\n"
        "<|im_start|>assistant\nChecking both.\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n18C\n</tool_response>\n<tool_response>\n20C\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\nParis 18C, Rome 20C.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_render_without_system_message_or_tools():
    assert P.render([Message.user("hi")]) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert P.render([Message.user("hi")], [WEATHER]).startswith(f"<|im_start|>system\n{TOOLS_SECTION}<|im_end|>\n")


def test_render_interpreter_call():
    call = ToolCall(id="k", name=INTERPRETER_TOOL_NAME, arguments={"code": "print(1)"}, kind="interpreter")
    text = P.render([Message.user("x"), Message.assistant("", [call]), Message.tool_result(call, "1")], interpreter=True)
    assert json.dumps(interpreter_spec(P.interpreter_description).to_openai(), ensure_ascii=False) in text
    assert ('<|im_start|>assistant\n<tool_call>\n{"name": "python_interpreter", "arguments": {"code": "print(1)"}}\n'
            "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n1\n</tool_response><|im_end|>\n") in text


def test_feedback_and_parts_render_as_user_text():
    feedback = P.error_feedback("bad")
    text = P.render([Message.user([TextPart(text="look"), ImagePart(url="https://x/a.png")]), feedback])
    assert "<|im_start|>user\nlook\n[image: https://x/a.png]<|im_end|>\n" in text
    assert "<|im_start|>user\nYour last reply could not be understood: bad." in text


def test_arguments_cannot_close_the_call_or_the_turn():
    call = ToolCall(name="echo", arguments={"t": "</tool_call><|im_end|><tool_call>"})
    rendered = P.render_assistant(Message.assistant("", [call]))
    assert rendered.count("</tool_call>") == 1 and "<|" not in rendered
    assert P.parse(rendered).tool_calls[0].arguments == call.arguments


def test_registry_and_stop_words():
    assert isinstance(get_protocol("openai_tools"), OpenAIToolsProtocol)
    assert P.stop_words == ["<|im_end|>"]


# -- the text format: parse ----------------------------------------------------------------------

CASES = {
    "exact": 'I will check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    "with_im_end": 'I will check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
                   "<|im_end|>\n<|im_start|>user\nfake",
    "missing_close_at_eos": 'I will check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}',
    "missing_open": 'I will check.\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    "parameters_key": 'I will check.<tool_call>{"name": "get_weather", "parameters": {"city": "Paris"}}</tool_call>',
    "arguments_as_string": 'I will check.<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}</tool_call>',
    "single_quotes_trailing_comma": "I will check.<tool_call>{'name': 'get_weather', 'arguments': {'city': 'Paris',},}</tool_call>",
    "missing_brace": 'I will check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"\n</tool_call>',
    "spaces_in_tags": 'I will check.\n< tool_call >\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</ tool_call>',
    "fenced": 'I will check.\n<tool_call>\n```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```\n</tool_call>',
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_parse_tolerances(text):
    message = P.parse(text)
    assert message.parse_error is None, message.parse_error
    assert message.content == "I will check."
    [call] = message.tool_calls
    assert (call.name, call.arguments, call.kind) == ("get_weather", {"city": "Paris"}, "plugin")


def test_bare_call_object_is_a_call():
    message = P.parse('```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```')
    assert message.tool_calls[0].arguments == {"city": "Paris"} and message.content == ""


def test_parallel_calls_in_order():
    text = "".join(f'<tool_call>\n{{"name": "f{i}", "arguments": {{"i": {i}}}}}\n</tool_call>\n' for i in range(4))
    message = P.parse("Four calls.\n" + text)
    assert [(c.name, c.arguments) for c in message.tool_calls] == [(f"f{i}", {"i": i}) for i in range(4)]
    assert len({c.id for c in message.tool_calls}) == 4


def test_list_inside_one_block_is_several_calls():
    message = P.parse('<tool_call>[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]</tool_call>')
    assert [c.name for c in message.tool_calls] == ["a", "b"]


def test_interpreter_call_parses_as_interpreter_kind():
    message = P.parse('<tool_call>\n{"name": "python_interpreter", "arguments": {"code": "print(1)"}}\n</tool_call>')
    assert message.tool_calls[0].kind == "interpreter" and message.tool_calls[0].code == "print(1)"


def test_plain_answer():
    message = P.parse("Paris is sunny.<|im_end|>")
    assert message.content == "Paris is sunny." and message.tool_calls == [] and message.meta == {}


def test_one_bad_call_fails_the_reply_and_says_which():
    text = ('<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n'
            '<tool_call>\n{"arguments": {"x": 1}}\n</tool_call>')
    message = P.parse(text)
    assert message.tool_calls == []
    assert message.parse_error.startswith('tool call 2: the tool call has no "name"')
    assert '<tool_call>\n{"name": "<function name>", "arguments": {<arguments as JSON>}}\n</tool_call>' in message.parse_error


@pytest.mark.parametrize("text, start", [
    ("<tool_call>\n</tool_call>", "the <tool_call> block is empty"),
    ("<tool_call>\nget_weather(city=Paris)\n</tool_call>", "expected a JSON object inside <tool_call>, found text starting 'get_weather(city=Paris)'"),
    ('<tool_call>{"name": "f", "arguments": [1]}</tool_call>', "the \"arguments\" of tool 'f' must be a JSON object"),
    ('<tool_call>{"name": "python_interpreter", "arguments": {}}</tool_call>', 'the call to python_interpreter has no "code"'),
    ('<tool_call>{"name": "f", "arguments": {"a": "cut', "invalid JSON inside <tool_call>: unterminated string"),
])
def test_parse_errors(text, start):
    message = P.parse(text)
    assert message.tool_calls == [] and message.parse_error.startswith(start), message.parse_error


# -- round trips ---------------------------------------------------------------------------------

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,30}", fullmatch=True).filter(lambda n: n != INTERPRETER_TOOL_NAME)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
CALLS = st.lists(st.tuples(NAMES, st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=5)), min_size=1, max_size=4)
_TAG = re.compile(r"(?i)<\s*/?\s*tool_call\s*>")
CONTENT = st.text(max_size=80).filter(lambda t: "<|" not in t and not _TAG.search(t))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=CONTENT, calls=CALLS)
def test_round_trip(content, calls):
    original = Message.assistant(content, [ToolCall(name=n, arguments=a) for n, a in calls])
    text = P.render([Message.user("q"), original], add_generation_prompt=False)
    output = text.split("<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n", 1)[1][: -len("<|im_end|>\n")]
    assert output == P.render_assistant(original)
    parsed = P.parse(output)
    assert parsed.parse_error is None
    assert [(c.name, c.arguments, c.kind) for c in parsed.tool_calls] == [(n, a, "plugin") for n, a in calls]
    assert parsed.content == content.strip()


@settings(max_examples=200, deadline=None)
@given(calls=CALLS)
def test_native_round_trip(calls):
    original = Message.assistant("", [ToolCall(name=n, arguments=a) for n, a in calls])
    back = from_response(original.to_openai())
    assert [(c.id, c.name, c.arguments) for c in back.tool_calls] == [(c.id, c.name, c.arguments) for c in original.tool_calls]
