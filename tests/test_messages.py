"""Messages, tool calls and content parts, and their OpenAI chat-dict conversions both ways."""

from __future__ import annotations

import base64
import json

import pytest

from agentkit.messages import (
    INTERPRETER_TOOL_NAME,
    AudioPart,
    FilePart,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    Usage,
    as_messages,
    from_openai_messages,
    to_openai_messages,
)

# -- the model -----------------------------------------------------------------------------------


def test_tool_call_defaults():
    call = ToolCall(name="search")
    assert call.id.startswith("call_") and len(call.id) == 29
    assert call.arguments == {} and call.kind == "plugin" and call.code is None
    assert ToolCall(name="x").id != call.id


def test_interpreter_call_exposes_its_code():
    call = ToolCall(name=INTERPRETER_TOOL_NAME, arguments={"code": "print(1)"}, kind="interpreter")
    assert call.code == "print(1)"
    assert ToolCall(name="p", arguments={"code": "x"}).code is None  # only interpreter calls carry code


def test_constructors_and_defaults():
    assert Message.system("s").role == "system"
    user = Message.user("hi")
    assert (user.role, user.content, user.tool_calls, user.meta, user.name) == ("user", "hi", [], {}, None)
    answer = Message.assistant("done", usage=Usage(prompt_tokens=1))
    assert answer.usage.prompt_tokens == 1 and answer.tool_calls == []
    assert Message(role="assistant", content=None).content == ""


def test_tool_result_answers_its_call():
    call = ToolCall(name=INTERPRETER_TOOL_NAME, arguments={"code": "1"}, kind="interpreter")
    result = Message.tool_result(call, "1", elapsed_s=0.1)
    assert (result.role, result.name, result.tool_call_id) == ("environment", "interpreter", call.id)
    assert result.meta == {"tool_name": INTERPRETER_TOOL_NAME, "elapsed_s": 0.1}


def test_invalid_role_and_unknown_fields_are_rejected():
    with pytest.raises(ValueError, match="role"):
        Message(role="tool", content="x")
    with pytest.raises(ValueError, match="colour"):
        Message(role="user", content="x", colour="red")
    with pytest.raises(ValueError, match="kind"):
        ToolCall(name="x", kind="shell")


def test_text_of_parts_uses_placeholders_for_non_text():
    message = Message.user([
        TextPart(text="Look:"),
        ImagePart(url="https://example.com/cat.png"),
        ImagePart(url="data:image/png;base64,AAAA"),
        AudioPart(url="clip.wav"),
        FilePart(path="/tmp/report.pdf"),
    ])
    assert message.text == ("Look:\n[image: https://example.com/cat.png]\n[image: inline]\n[audio: clip.wav]\n"
                            "[file: /tmp/report.pdf]")


def test_parts_validate_from_dicts_by_type():
    message = Message.model_validate({"role": "user", "content": [{"type": "text", "text": "a"},
                                                                    {"type": "image", "url": "u"}]})
    assert isinstance(message.content[0], TextPart) and isinstance(message.content[1], ImagePart)
    with pytest.raises(ValueError):
        Message.model_validate({"role": "user", "content": [{"type": "video", "url": "u"}]})


def test_parse_error_property():
    assert Message.assistant("x").parse_error is None
    assert Message.assistant("x", meta={"parse_error": "no name"}).parse_error == "no name"


def test_json_round_trip_of_the_model():
    call = ToolCall(name="f", arguments={"a": [1, {"b": None}]})
    message = Message.assistant("t", [call], meta={"k": 1})
    assert Message.model_validate_json(message.model_dump_json()) == message


def test_usage_adds_up():
    total = Usage(prompt_tokens=3, completion_tokens=4, latency_s=0.5) + Usage(prompt_tokens=1, completion_tokens=1)
    assert (total.prompt_tokens, total.completion_tokens, total.total_tokens, total.latency_s) == (4, 5, 9, 0.5)


# -- to OpenAI -----------------------------------------------------------------------------------


def test_environment_becomes_tool():
    call = ToolCall(id="call_1", name="f")
    assert Message.tool_result(call, "42").to_openai() == {"role": "tool", "tool_call_id": "call_1", "content": "42"}


def test_feedback_without_a_call_becomes_a_user_turn():
    feedback = Message(role="environment", name="plugin", content="try again")
    assert feedback.to_openai() == {"role": "user", "content": "try again"}


def test_assistant_tool_calls_carry_json_arguments():
    call = ToolCall(id="call_1", name="weather", arguments={"city": "上海"})
    out = Message.assistant("", [call]).to_openai()
    assert out == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "上海"}'}}],
    }
    assert Message.assistant("thinking", [call]).to_openai()["content"] == "thinking"


def test_user_name_is_kept():
    assert Message(role="user", name="alice", content="hi").to_openai() == {"role": "user", "content": "hi", "name": "alice"}


def test_multimodal_parts_to_openai(tmp_path):
    image = tmp_path / "dot.png"
    image.write_bytes(b"\x89PNG fake")
    message = Message.user([
        TextPart(text="What is this?"),
        ImagePart(url="https://example.com/cat.jpg", detail="low"),
        ImagePart(url=str(image)),
        AudioPart(url="UklGRg==", format="wav"),
        FilePart(path="/data/report.pdf", name="report.pdf"),
    ])
    parts = message.to_openai()["content"]
    assert parts[0] == {"type": "text", "text": "What is this?"}
    assert parts[1] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}}
    assert parts[2] == {"type": "image_url",
                        "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()}}
    assert parts[3] == {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    assert parts[4] == {"type": "file", "file": {"filename": "report.pdf", "file_data": "/data/report.pdf"}}


def test_missing_local_image_is_left_as_a_reference():
    assert Message.user([ImagePart(url="/no/such.png")]).to_openai()["content"][0]["image_url"]["url"] == "/no/such.png"


# -- from OpenAI ---------------------------------------------------------------------------------


def test_tool_becomes_environment():
    message = Message.from_openai({"role": "tool", "tool_call_id": "call_1", "name": "weather", "content": "18C"})
    assert (message.role, message.name, message.tool_call_id, message.text) == ("environment", "plugin", "call_1", "18C")
    assert message.meta == {"tool_name": "weather"}
    interpreter = Message.from_openai({"role": "tool", "tool_call_id": "c", "name": INTERPRETER_TOOL_NAME, "content": "1"})
    assert interpreter.name == "interpreter"


def test_developer_is_system():
    assert Message.from_openai({"role": "developer", "content": "rules"}).role == "system"


def test_tool_calls_from_openai():
    message = Message.from_openai({
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": INTERPRETER_TOOL_NAME,
                                                              "arguments": '{"code": "1+1"}'}},
            {"type": "function", "function": {"name": "now", "arguments": ""}},
            {"type": "function", "function": {"name": "dict_args", "arguments": {"x": 1}}},
        ],
    })
    assert message.content == ""
    a, b, c, d = message.tool_calls
    assert (a.id, a.name, a.arguments, a.kind) == ("call_a", "weather", {"city": "Paris"}, "plugin")
    assert (b.kind, b.code) == ("interpreter", "1+1")
    assert c.arguments == {} and c.id.startswith("call_")
    assert d.arguments == {"x": 1}


def test_custom_interpreter_names():
    message = Message.from_openai({"role": "assistant", "tool_calls": [
        {"id": "x", "function": {"name": "run_python", "arguments": '{"code": "1"}'}}]}, interpreter_names=("run_python",))
    assert message.tool_calls[0].kind == "interpreter"


def test_multimodal_parts_from_openai():
    message = Message.from_openai({"role": "user", "content": [
        {"type": "text", "text": "see"},
        {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "high"}},
        {"type": "image_url", "image_url": "https://x/b.png"},
        {"type": "input_audio", "input_audio": {"data": "AAA", "format": "mp3"}},
        {"type": "file", "file": {"file_id": "file-1", "filename": "a.pdf"}},
    ]})
    text, image, bare, audio, file = message.content
    assert text == TextPart(text="see")
    assert image == ImagePart(url="https://x/a.png", detail="high") and bare == ImagePart(url="https://x/b.png")
    assert audio == AudioPart(url="AAA", format="mp3")
    assert file == FilePart(path="file-1", name="a.pdf")


def test_round_trip_of_a_conversation():
    call = ToolCall(id="call_1", name="weather", arguments={"city": "Paris", "days": [1, 2]})
    messages = [
        Message.system("Be brief."),
        Message.user([TextPart(text="Weather?"), ImagePart(url="https://x/map.png")]),
        Message.assistant("Checking.", [call]),
        Message.tool_result(call, "18C"),
        Message.assistant("18C."),
    ]
    back = from_openai_messages(to_openai_messages(messages))
    assert [m.role for m in back] == [m.role for m in messages]
    assert back[1].content == messages[1].content
    assert back[2].tool_calls == messages[2].tool_calls and back[2].text == "Checking."
    assert (back[3].tool_call_id, back[3].name, back[3].text) == ("call_1", "plugin", "18C")
    assert to_openai_messages(back) == to_openai_messages(messages)


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("data, message", [
    ("not a dict", "an OpenAI message must be a dict, got str"),
    ({"role": "robot", "content": "x"}, "unknown role 'robot': use one of system, developer, user, assistant, tool"),
    ({"content": "x"}, "unknown role None"),
    ({"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]},
     "tool call 'f' has arguments that are not JSON"),
    ({"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1, 2]"}}]},
     "tool call 'f' has arguments that are not a JSON object"),
    ({"role": "assistant", "tool_calls": ["f()"]}, "each tool call must look like"),
    ({"role": "assistant", "tool_calls": "f()"}, "'tool_calls' must be a list"),
    ({"role": "user", "content": [{"type": "video", "url": "x"}]},
     "unsupported content part type 'video': use text, image_url, input_audio or file"),
    ({"role": "user", "content": ["hello"]}, "a content part must be a dict"),
    ({"role": "user", "content": 42}, "message content must be a string or a list of parts, got int"),
])
def test_bad_openai_input_raises_a_helpful_value_error(data, message):
    with pytest.raises(ValueError) as info:
        Message.from_openai(data)
    assert message in str(info.value)


# -- as_messages ---------------------------------------------------------------------------------


def test_as_messages_accepts_what_users_pass():
    assert as_messages("hi") == [Message.user("hi")]
    message = Message.assistant("a")
    assert as_messages(message) == [message]
    assert as_messages({"role": "user", "content": "x"}) == [Message.user("x")]
    env = {"role": "environment", "name": "plugin", "content": "r", "tool_call_id": "c"}
    assert as_messages(env)[0].role == "environment"
    assert [m.text for m in as_messages(["a", {"role": "assistant", "content": "b"}, [Message.user("c")]])] == ["a", "b", "c"]
    with pytest.raises(TypeError, match="pass a string, a Message, a dict or a list"):
        as_messages(42)


def test_openai_arguments_are_json_strings():
    out = Message.assistant("", [ToolCall(name="f", arguments={"a": 1})]).to_openai()
    assert json.loads(out["tool_calls"][0]["function"]["arguments"]) == {"a": 1}
