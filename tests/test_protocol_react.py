"""ReAct protocol: exact renders, tolerant parses, clear errors, render → parse round trips."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from agentkit.messages import INTERPRETER_TOOL_NAME, Message, ToolCall
from agentkit.protocols import get_protocol
from agentkit.protocols.react import INTERPRETER_PARAMETERS, ReActProtocol
from agentkit.toolspec import ToolSpec

P = ReActProtocol()

WEATHER = ToolSpec(
    name="get_weather",
    description="Get the current weather\n  in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)

SYSTEM_WITH_TOOLS = """<|im_start|>system
You are a helpful assistant.

You can use these tools:
- get_weather: Get the current weather in a city. Parameters: {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

To use a tool, reply in exactly this format and then stop:
Thought: what you need to find out and which tool helps
Action: the tool name, one of [get_weather]
Action Input: the tool's arguments as a JSON object, e.g. {"argument": "value"}

The tool's result comes back to you as:
Observation: the result

When you know the answer, or need no tool, reply:
Thought: how you got the answer
Final Answer: the answer for the user<|im_end|>
"""


def test_render_exact_conversation():
    call = ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"})
    messages = [
        Message.system("You are a helpful assistant."),
        Message.user("Weather in Paris?"),
        Message.assistant("I need the weather.", [call]),
        Message.tool_result(call, "18 °C, sunny"),
        Message.assistant("It is 18 °C and sunny."),
        Message.user("Thanks"),
    ]
    assert P.render(messages, [WEATHER]) == SYSTEM_WITH_TOOLS + (
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\nThought: I need the weather.\nAction: get_weather\n"
        'Action Input: {"city": "Paris"}<|im_end|>\n'
        "<|im_start|>user\nObservation: 18 °C, sunny<|im_end|>\n"
        "<|im_start|>assistant\nFinal Answer: It is 18 °C and sunny.<|im_end|>\n"
        "<|im_start|>user\nThanks<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_without_tools_it_is_plain_chatml():
    messages = [Message.system("Be brief."), Message.user("Hi"), Message.assistant("Hello"), Message.user("Bye")]
    assert P.render(messages) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    )


def test_interpreter_is_listed_as_a_tool_and_calls_render_as_code_json():
    call = ToolCall(id="k", name=INTERPRETER_TOOL_NAME, arguments={"code": "print(2**10)"}, kind="interpreter")
    text = P.render([Message.user("2**10?"), Message.assistant("", [call]), Message.tool_result(call, "1024")],
                    interpreter="Runs Python.")
    assert "- python_interpreter: Runs Python. Parameters: " in text
    assert "one of [python_interpreter]" in text
    assert ('<|im_start|>assistant\nAction: python_interpreter\nAction Input: {"code": "print(2**10)"}<|im_end|>\n'
            "<|im_start|>user\nObservation: 1024<|im_end|>\n") in text
    assert INTERPRETER_PARAMETERS["required"] == ["code"]


def test_prompt_uses_interpreter_specs():
    interpreter = ToolSpec(name=INTERPRETER_TOOL_NAME, description="Py.", kind="interpreter")
    assert "- python_interpreter: Py. Parameters:" in P.prompt([Message.user("x")], [WEATHER, interpreter])


def test_several_calls_render_as_consecutive_turns_with_their_observations():
    a = ToolCall(id="a", name="get_weather", arguments={"city": "Paris"})
    b = ToolCall(id="b", name="get_weather", arguments={"city": "Rome"})
    text = P.render([Message.user("?"), Message.assistant("Both.", [a, b]),
                     Message.tool_result(b, "20"), Message.tool_result(a, "18")], [WEATHER])
    assert text.endswith(
        '<|im_start|>assistant\nThought: Both.\nAction: get_weather\nAction Input: {"city": "Paris"}<|im_end|>\n'
        "<|im_start|>user\nObservation: 18<|im_end|>\n"
        '<|im_start|>assistant\nAction: get_weather\nAction Input: {"city": "Rome"}<|im_end|>\n'
        "<|im_start|>user\nObservation: 20<|im_end|>\n<|im_start|>assistant\n"
    )


def test_parse_error_feedback_renders_as_a_user_turn():
    text = P.render([Message.user("?"), Message.assistant("junk", meta={"parse_error": "x"}), P.error_feedback("x")],
                    [WEATHER])
    assert text.endswith("<|im_start|>assistant\njunk<|im_end|>\n<|im_start|>user\nYour last reply could not be "
                         "understood: x. Reply again in the required format.<|im_end|>\n<|im_start|>assistant\n")


def test_stop_words_and_registry():
    assert "Observation:" in P.stop_words and "<|im_end|>" in P.stop_words
    assert isinstance(get_protocol("react"), ReActProtocol)


# -- tolerant parses -----------------------------------------------------------------------------

CALL_CASES = {
    "exact": 'Thought: I need the weather.\nAction: get_weather\nAction Input: {"city": "Paris"}',
    "hallucinated_observation": 'Thought: I need the weather.\nAction: get_weather\nAction Input: {"city": "Paris"}\n'
                                "Observation: sunny\nThought: done\nFinal Answer: sunny",
    "lower_case": 'thought: I need the weather.\naction: get_weather\naction input: {"city": "Paris"}',
    "upper_case_and_spaces": 'THOUGHT :  I need the weather.\nACTION :  get_weather \nACTION INPUT :  {"city": "Paris"} ',
    "single_quotes_trailing_comma": "Thought: I need the weather.\nAction: get_weather\nAction Input: {'city': 'Paris',}",
    "fenced_input": 'Thought: I need the weather.\nAction: get_weather\nAction Input: ```json\n{"city": "Paris"}\n```',
    "quoted_name": 'Thought: I need the weather.\nAction: `get_weather`\nAction Input: {"city": "Paris"}',
    "markdown_bold": '**Thought:** I need the weather.\n**Action:** get_weather\n**Action Input:** {"city": "Paris"}',
    "im_end_and_junk": 'Thought: I need the weather.\nAction: get_weather\nAction Input: {"city": "Paris"}<|im_end|>blah',
    "name_on_next_line": 'Thought: I need the weather.\nAction:\nget_weather\nAction Input: {"city": "Paris"}',
    "multiline_json": 'Thought: I need the weather.\nAction: get_weather\nAction Input: {\n  "city": "Paris"\n}\n',
    "inline_call": "Thought: I need the weather.\nAction: get_weather({\"city\": \"Paris\"})",
    "missing_brace": 'Thought: I need the weather.\nAction: get_weather\nAction Input: {"city": "Paris"',
}


@pytest.mark.parametrize("text", CALL_CASES.values(), ids=CALL_CASES.keys())
def test_call_tolerances(text):
    message = P.parse(text)
    assert message.parse_error is None, message.parse_error
    assert message.content == "I need the weather."
    [call] = message.tool_calls
    assert (call.name, call.arguments, call.kind) == ("get_weather", {"city": "Paris"}, "plugin")
    assert "parse_warning" not in message.meta


def test_missing_thought_is_fine():
    message = P.parse('Action: get_weather\nAction Input: {"city": "Paris"}')
    assert message.content == "" and message.tool_calls[0].arguments == {"city": "Paris"}


def test_missing_action_input_means_no_arguments():
    message = P.parse("Thought: what time is it?\nAction: now")
    assert message.parse_error is None and message.tool_calls[0].arguments == {}


def test_plain_text_input_goes_under_input_with_a_note():
    message = P.parse("Thought: search\nAction: search\nAction Input: weather in Paris today")
    assert message.tool_calls[0].arguments == {"input": "weather in Paris today"}
    assert "not a JSON object" in message.meta["parse_warning"]


def test_quoted_string_input_is_unquoted():
    message = P.parse('Action: search\nAction Input: "weather in Paris"')
    assert message.tool_calls[0].arguments == {"input": "weather in Paris"}


def test_non_object_json_input_goes_under_input():
    message = P.parse("Action: total\nAction Input: [1, 2, 3]")
    assert message.tool_calls[0].arguments == {"input": [1, 2, 3]} and "parse_warning" in message.meta


def test_original_paper_bracket_syntax():
    message = P.parse("Thought: look it up\nAction: search[Colorado orogeny]")
    assert message.tool_calls[0].name == "search"
    assert message.tool_calls[0].arguments == {"input": "Colorado orogeny"}


def test_interpreter_code_that_looks_like_json_is_code():
    [call] = P.parse("Action: python_interpreter\nAction Input: [x * 2 for x in range(3)]").tool_calls
    assert call.arguments == {"code": "[x * 2 for x in range(3)]"}


@pytest.mark.parametrize("text", [
    'Action: python_interpreter\nAction Input: {"code": "print(2**10)"}',
    "Action: python_interpreter\nAction Input: ```python\nprint(2**10)\n```",
    "Action: python_interpreter\nAction Input: print(2**10)",
    'Action: python\nAction Input: {"input": "print(2**10)"}',
    "Action: python_interpreter\nAction Input: \"print(2**10)\"",
])
def test_interpreter_calls(text):
    message = P.parse(text)
    assert message.parse_error is None, message.parse_error
    [call] = message.tool_calls
    assert call.kind == "interpreter" and call.name == INTERPRETER_TOOL_NAME
    assert call.arguments == {"code": "print(2**10)"}
    assert "parse_warning" not in message.meta


@pytest.mark.parametrize("text, answer", [
    ("Thought: I know it.\nFinal Answer: 42", "42"),
    ("final answer: 42", "42"),
    ("Thought: easy. Final Answer: 42<|im_end|>", "42"),
    ("Final Answer: line one\nline two", "line one\nline two"),
    ("Thought: done\nFinal Answer: 42\nObservation: nothing", "42"),
])
def test_final_answers(text, answer):
    message = P.parse(text)
    assert message.parse_error is None and message.tool_calls == [] and message.content == answer


def test_final_answer_keeps_the_thought_in_meta():
    assert P.parse("Thought: 6*7\nFinal Answer: 42").meta["thought"] == "6*7"


def test_the_first_of_action_and_final_answer_wins():
    assert P.parse("Action: f\nAction Input: {}\nFinal Answer: 1").tool_calls[0].name == "f"
    assert P.parse("Final Answer: 1\nAction: f").content == "1"


def test_unmarked_prose_is_taken_as_the_answer():
    message = P.parse("Paris is the capital of France.")
    assert message.content == "Paris is the capital of France." and message.parse_error is None
    assert "no \"Final Answer:\" marker" in message.meta["parse_warning"]


# -- parse errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, start", [
    ("", "the reply is empty"),
    ("Thought: I should look this up.", 'the reply has a "Thought:" but neither an "Action:" nor a "Final Answer:"'),
    ('Action Input: {"city": "Paris"}', 'the reply has an "Action Input:" but no "Action:" line'),
    ("Action: \nAction Input: {}", 'the "Action:" line does not name a tool'),
    ("Action: None\nFinal", 'the "Action:" line does not name a tool'),
    ('Action: f\nAction Input: {"city": Paris}', "invalid JSON in the Action Input of 'f': unquoted text 'Paris'"),
    ("Thought: x\nFinal Answer:   ", '"Final Answer:" is empty'),
    ('Action: python_interpreter\nAction Input: {"x": 1}', "the Action Input for python_interpreter has no code"),
])
def test_parse_errors(text, start):
    message = P.parse(text)
    assert message.tool_calls == []
    assert message.parse_error.startswith(start), message.parse_error


def test_errors_show_the_format():
    error = P.parse("Thought: hmm").parse_error
    assert "Action: <tool name>" in error and "Final Answer: <answer>" in error


# -- render → parse round trips ------------------------------------------------------------------

_MARKERS = re.compile(r"(?i)(thought|action|final[ \t_]*answer|observation)")
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,30}", fullmatch=True).filter(
    lambda n: not n.endswith(".") and n.lower() not in {INTERPRETER_TOOL_NAME, "python", "none", "null", "nothing"})
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
ARGUMENTS = st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=5)
THOUGHTS = st.text(max_size=80).filter(lambda t: "<|" not in t and not _MARKERS.search(t))


def assistant_part(message: Message, tools: list[ToolSpec]) -> str:
    text = P.render([Message.user("q"), message], tools, add_generation_prompt=False)
    part = text.split("<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n", 1)[1]
    return part[: -len("<|im_end|>\n")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(thought=THOUGHTS, name=NAMES, arguments=ARGUMENTS)
def test_call_round_trip(thought, name, arguments):
    original = Message.assistant(thought, [ToolCall(name=name, arguments=arguments)])
    output = assistant_part(original, [WEATHER])
    assert output == P.render_assistant(original)
    for text in (output, output + "\nObservation: made up", output + "<|im_end|>"):
        parsed = P.parse(text)
        assert parsed.parse_error is None, parsed.parse_error
        [call] = parsed.tool_calls
        assert (call.name, call.arguments, call.kind) == (name, arguments, "plugin")
        assert parsed.content == thought.strip()


@settings(max_examples=200, deadline=None)
@given(thought=THOUGHTS, code=st.text(min_size=1, max_size=100).filter(str.strip))
def test_interpreter_round_trip(thought, code):
    call = ToolCall(name=INTERPRETER_TOOL_NAME, arguments={"code": code}, kind="interpreter")
    parsed = P.parse(assistant_part(Message.assistant(thought, [call]), [WEATHER]))
    assert parsed.parse_error is None
    assert parsed.tool_calls[0].kind == "interpreter" and parsed.tool_calls[0].arguments == {"code": code}


@settings(max_examples=200, deadline=None)
@given(answer=THOUGHTS.filter(str.strip))
def test_answer_round_trip(answer):
    parsed = P.parse(assistant_part(Message.assistant(answer), [WEATHER]))
    assert parsed.parse_error is None and parsed.content == answer.strip()
