"""OpenAI-style tool calls: native payloads for chat APIs, and the ``<tool_call>`` text format for
completion models.

Chat APIs (OpenAI, vLLM, ``lmdeploy serve``, ``agentkit serve``) take tools and return calls as
JSON: :func:`to_request` builds the request payload and :func:`from_response` reads the reply,
repairing arguments that are not quite JSON.

Completion models that learned the Hermes / Qwen2.5 convention get the same calls as text, in
ChatML turns: the tool schemas inside ``<tools></tools>`` in the system turn, each call as::

    <tool_call>
    {"name": "get_current_weather", "arguments": {"location": "Shanghai"}}
    </tool_call>

several per reply (parallel calls), and their results in one user turn of ``<tool_response>``
blocks, in call order.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentkit.messages import INTERPRETER_TOOL_NAME, Message, ToolCall, Usage, new_call_id
from agentkit.protocols import _json
from agentkit.protocols.base import Protocol
from agentkit.protocols.internlm2 import as_tool_specs
from agentkit.toolspec import ToolSpec

__all__ = ["OpenAIToolsProtocol", "to_request", "from_response", "TOOLS_PROMPT", "interpreter_spec"]

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

#: The tool section of the system turn, in the wording Hermes / Qwen2.5 models were trained on.
TOOLS_PROMPT = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""

CALL_FORMAT = '<tool_call>\n{"name": "<function name>", "arguments": {<arguments as JSON>}}\n</tool_call>'
DEFAULT_INTERPRETER_DESCRIPTION = (
    "Run Python code in a stateful Jupyter notebook (variables and imports persist between calls) and "
    "return what it prints. Use it for calculations, math and data processing."
)

_GUARD = ("<|", "<tool_call", "</tool_call", "</tool_response")
_END_OF_TURN = re.compile(r"<\|im_end\|>|<\|im_start\|>|<\|endoftext\|>")
_OPEN = re.compile(r"<\s*tool_call\s*>", re.I)
_CLOSE = re.compile(r"<\s*/\s*tool_call\s*>", re.I)
_SPECIAL = re.compile(r"<\|(?:im_start|im_end|endoftext)\|>")


def interpreter_spec(description: str = DEFAULT_INTERPRETER_DESCRIPTION) -> ToolSpec:
    """The code interpreter as a function tool taking ``{"code": ...}``."""
    return ToolSpec(
        name=INTERPRETER_TOOL_NAME,
        description=description,
        parameters={
            "type": "object",
            "properties": {"code": {"type": "string", "description": "the Python code to run"}},
            "required": ["code"],
        },
        kind="interpreter",
    )


# -- native chat APIs -------------------------------------------------------------------------------

def to_request(messages: list[Message], tools: list[ToolSpec] | None = None,
               interpreter: bool | str = False) -> dict[str, Any]:
    """The ``messages`` (and ``tools``, when there are any) of a chat-completions request."""
    specs = as_tool_specs(tools)
    if interpreter and not any(s.name == INTERPRETER_TOOL_NAME for s in specs):
        specs.append(interpreter_spec(interpreter if isinstance(interpreter, str) else DEFAULT_INTERPRETER_DESCRIPTION))
    payload: dict[str, Any] = {"messages": [m.to_openai() for m in messages]}
    if specs:
        payload["tools"] = [s.to_openai() for s in specs]
    return payload


def from_response(data: dict[str, Any]) -> Message:
    """The assistant message in a chat-completions reply (a response, a choice or a message dict).

    Arguments that are not valid JSON are repaired when possible (single quotes, trailing commas,
    ...); code for ``python_interpreter`` may come as plain text. A call that cannot be read makes
    the whole message a parse error naming the tool, with no calls, so the agent asks again.
    Raises ``ValueError`` only when ``data`` is not a chat reply at all.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a chat-completions reply must be a dict, got {type(data).__name__}")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    if "choices" in data:
        choices = data["choices"]
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ValueError("the reply has no choices: expected {'choices': [{'message': {...}}]}")
        data = choices[0]
    if isinstance(data.get("message"), dict):
        data = data["message"]
    elif isinstance(data.get("delta"), dict):
        data = data["delta"]
    content = _content(_json.clean(data.get("content")))
    meta: dict[str, Any] = {}
    reasoning = data.get("reasoning_content") or data.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        meta["reasoning"] = _json.as_text(reasoning)
    raw_calls = data.get("tool_calls") or []
    if not raw_calls and isinstance(data.get("function_call"), dict):
        raw_calls = [{"function": data["function_call"]}]
    if not isinstance(raw_calls, list):
        raw_calls = [raw_calls]
    calls: list[ToolCall] = []
    errors: list[str] = []
    for index, raw in enumerate(raw_calls, 1):
        fn = raw.get("function") if isinstance(raw, dict) else None
        if not isinstance(fn, dict):
            fn = raw if isinstance(raw, dict) else {}
        name = _json.clean(fn.get("name"))
        if not isinstance(name, str) or not name.strip():
            errors.append(f"tool call {index} has no function name")
            continue
        name = name.strip()
        try:
            arguments = _response_arguments(_json.clean(fn.get("arguments", fn.get("parameters"))), name)
            if name == INTERPRETER_TOOL_NAME:
                arguments = _interpreter_arguments(arguments)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        call_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw.get("id") else None
        calls.append(_make_call(name, arguments, call_id))
    message = Message(role="assistant", content=content, meta=meta)
    if usage is not None:
        message.usage = Usage(prompt_tokens=_int(usage.get("prompt_tokens")),
                              completion_tokens=_int(usage.get("completion_tokens")))
    if errors:
        message.meta["parse_error"] = "; ".join(errors) + ". Call tools with arguments as a JSON object"
    else:
        message.tool_calls = calls
    return message


def _response_arguments(args: Any, name: str) -> dict[str, Any]:
    if args is None:
        return {}
    if isinstance(args, dict):
        return args
    if isinstance(args, str):
        if not args.strip():
            return {}
        if name == INTERPRETER_TOOL_NAME and not args.lstrip().startswith(("{", '"')):
            return {"code": args}  # plain code, which may hold braces of its own
        try:
            value = _json.loads(args, expect=None if args.lstrip()[:1] in ("[", '"') else dict)
        except ValueError as exc:
            if name == INTERPRETER_TOOL_NAME:
                return {"code": args}
            raise ValueError(f"the arguments of tool {name!r} are not valid JSON ({exc})") from None
        if isinstance(value, str) and name != INTERPRETER_TOOL_NAME:
            try:  # arguments encoded twice
                value = _json.loads(value, expect=dict)
            except ValueError:
                pass
        if isinstance(value, dict):
            return value
        if isinstance(value, str) and name == INTERPRETER_TOOL_NAME:
            return {"code": value}
        raise ValueError(f"the arguments of tool {name!r} must be a JSON object, got {type(value).__name__}")
    raise ValueError(f"the arguments of tool {name!r} must be a JSON object, got {type(args).__name__}")


def _content(content: Any) -> Any:
    if content is None or isinstance(content, str):
        return content or ""
    try:
        return Message.from_openai({"role": "assistant", "content": content}).content
    except (ValueError, AttributeError, TypeError):
        if isinstance(content, list):
            return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        return str(content)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _make_call(name: str, arguments: dict[str, Any], call_id: str | None = None) -> ToolCall:
    kind = "interpreter" if name == INTERPRETER_TOOL_NAME else "plugin"
    return ToolCall(id=call_id or new_call_id(), name=name, arguments=arguments, kind=kind)


# -- the text format --------------------------------------------------------------------------------

class OpenAIToolsProtocol(Protocol):
    """``<tool_call>`` JSON in ChatML turns (Hermes / Qwen2.5 style); parallel calls allowed.

    ``to_request`` and ``from_response`` are the native-API helpers of this module.
    """

    name = "openai_tools"
    stop_words = [IM_END]

    to_request = staticmethod(to_request)
    from_response = staticmethod(from_response)

    def __init__(self, system_prompt: str | None = None,
                 interpreter_description: str = DEFAULT_INTERPRETER_DESCRIPTION):
        self.system_prompt = system_prompt
        self.interpreter_description = interpreter_description

    def render(self, messages: list[Message], tools: list[ToolSpec] | None = None, interpreter: bool | str = False,
               *, add_generation_prompt: bool = True) -> str:
        """The prompt: the system turn with the ``<tools>`` section, the conversation, then
        ``<|im_start|>assistant\\n``. ``interpreter`` adds a ``python_interpreter`` function."""
        specs = as_tool_specs(tools)
        if interpreter and not any(s.name == INTERPRETER_TOOL_NAME for s in specs):
            specs.append(interpreter_spec(interpreter if isinstance(interpreter, str) else self.interpreter_description))
        messages = list(messages)
        system = self.system_prompt
        if messages and messages[0].role == "system":
            system = messages[0].text
            messages = messages[1:]
        if specs:
            listing = "\n".join(json.dumps(s.to_openai(), ensure_ascii=False) for s in specs)
            section = TOOLS_PROMPT.format(tools=listing)
            system = f"{system}\n\n{section}" if system else section
        out = [f"{IM_START}system\n{system}{IM_END}\n"] if system else []
        i = 0
        call_order: dict[str, int] = {}
        while i < len(messages):
            message = messages[i]
            if message.role == "environment" and message.tool_call_id is not None:
                group = []
                while i < len(messages) and messages[i].role == "environment" and messages[i].tool_call_id is not None:
                    group.append(messages[i])
                    i += 1
                group.sort(key=lambda m: call_order.get(m.tool_call_id or "", len(call_order)))  # stable: call order
                responses = "".join(f"\n<tool_response>\n{m.text}\n</tool_response>" for m in group)
                out.append(f"{IM_START}user{responses}{IM_END}\n")
                continue
            if message.role == "assistant":
                call_order = {c.id: k for k, c in enumerate(message.tool_calls)}
            out.append(self.render_message(message))
            i += 1
        if add_generation_prompt:
            out.append(f"{IM_START}assistant\n")
        return "".join(out)

    def render_message(self, message: Message) -> str:
        """One message as a ChatML turn (a tool result alone as one ``<tool_response>``)."""
        if message.role == "assistant":
            return f"{IM_START}assistant\n{self.render_assistant(message)}{IM_END}\n"
        if message.role == "environment":
            if message.tool_call_id is None:
                return f"{IM_START}user\n{message.text}{IM_END}\n"
            return f"{IM_START}user\n<tool_response>\n{message.text}\n</tool_response>{IM_END}\n"
        return f"{IM_START}{message.role}\n{message.text}{IM_END}\n"

    def render_assistant(self, message: Message) -> str:
        """What the model writes for ``message``: its text, then each call in a ``<tool_call>`` block."""
        parts = [message.text] if message.text else []
        for call in message.tool_calls:
            arguments = {"code": call.arguments.get("code", "")} if call.kind == "interpreter" else call.arguments
            name = INTERPRETER_TOOL_NAME if call.kind == "interpreter" else call.name
            payload = _json.dumps({"name": name, "arguments": arguments}, guard=_GUARD)
            parts.append(f"<tool_call>\n{payload}\n</tool_call>")
        return "\n".join(parts)

    def parse(self, text: str) -> Message:
        """All ``<tool_call>`` blocks of the continuation, in order; never raises.

        Tolerates a missing ``</tool_call>`` at the end, a missing ``<tool_call>`` before a closing
        tag, a bare ``{"name", "arguments"}`` object as the whole reply, ``parameters`` for
        ``arguments``, arguments as a JSON string and small-model JSON. One unreadable call makes the
        whole reply a parse error (no calls run), saying which call and what was wrong.
        """
        text = _json.as_text(text)
        end = _END_OF_TURN.search(text)
        if end:
            text = text[:end.start()]
        opens = list(_OPEN.finditer(text))
        if not opens:
            close = _CLOSE.search(text)
            brace = text.find("{")
            if close is not None and 0 <= brace < close.start():
                text = f"{text[:brace]}<tool_call>{text[brace:]}"
                opens = list(_OPEN.finditer(text))
            else:
                return self._bare_call(text)
        content = _SPECIAL.sub("", text[:opens[0].start()]).strip()
        calls: list[ToolCall] = []
        errors: list[str] = []
        for index, opening in enumerate(opens):
            stop = opens[index + 1].start() if index + 1 < len(opens) else len(text)
            region = text[opening.end():stop]
            close = _CLOSE.search(region)
            body = region[:close.start()] if close else region
            label = f"tool call {index + 1}: " if len(opens) > 1 else ""
            if not body.strip():
                errors.append(f"{label}the <tool_call> block is empty")
                continue
            try:
                calls.extend(_calls_from_text(body))
            except ValueError as exc:
                errors.append(f"{label}{exc}")
        if errors:
            return Message(role="assistant", content=content,
                           meta={"parse_error": "; ".join(errors) + f". Write each call as {CALL_FORMAT}"})
        return Message(role="assistant", content=content, tool_calls=calls)

    def _bare_call(self, text: str) -> Message:
        """A reply that is nothing but a call object is a call; anything else is an answer."""
        body = _json.strip_fences(text.strip()).strip()
        if body.startswith("{") and body.endswith("}"):
            try:
                obj = _json.loads(body, expect=dict)
            except ValueError:
                obj = None
            if isinstance(obj, dict) and "name" in obj and ("arguments" in obj or "parameters" in obj):
                try:
                    return Message(role="assistant", content="", tool_calls=_calls_from_text(body))
                except ValueError as exc:
                    return Message(role="assistant", content="",
                                   meta={"parse_error": f"{exc}. Write each call as {CALL_FORMAT}"})
        return Message(role="assistant", content=_SPECIAL.sub("", text).strip())


def _calls_from_text(body: str) -> list[ToolCall]:
    """The call(s) in one ``<tool_call>`` body: an object, or a list of objects."""
    expect = None if body.lstrip().startswith("[") else dict
    obj = _json.loads(body, expect=expect, where="inside <tool_call>")
    items = obj if isinstance(obj, list) else [obj]
    if not items:
        raise ValueError("found an empty list where a call object was expected")
    calls = []
    for item in items:
        name, arguments = _json.tool_call_fields(item, arguments_key="arguments")
        if name == INTERPRETER_TOOL_NAME:
            arguments = _interpreter_arguments(arguments)
        calls.append(_make_call(name, arguments))
    return calls


def _interpreter_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """``{"code": ...}`` for the interpreter, accepting ``input`` or ``command`` for ``code``."""
    code = next((arguments[k] for k in ("code", "input", "command") if isinstance(arguments.get(k), str)), None)
    if not code or not code.strip():
        raise ValueError(f'the call to {INTERPRETER_TOOL_NAME} has no "code" argument')
    return {"code": code}
