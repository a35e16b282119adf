"""InternLM2's chat format with tool actions (InternLM ``chat/chat_format.md``).

ChatML turns plus an ``environment`` role and four action tokens::

    <|im_start|>system name=<|plugin|>
    [tool schemas as JSON]<|im_end|>
    <|im_start|>assistant
    {thought}<|action_start|><|plugin|>
    {"name": "get_current_weather", "parameters": {"location": "Shanghai"}}<|action_end|><|im_end|>
    <|im_start|>environment name=<|plugin|>
    {"temperature": 22}<|im_end|>

The format has one action per assistant turn. An assistant message with several tool calls is
rendered as consecutive turns, each call followed by its own result (matched by
``tool_call_id``), which is how the model saw parallel work in training and keeps every result
next to the call that produced it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentkit.messages import INTERPRETER_TOOL_NAME, Message, ToolCall
from agentkit.protocols import _json
from agentkit.protocols.base import Protocol
from agentkit.toolspec import ToolSpec

__all__ = [
    "InternLM2Protocol",
    "DEFAULT_INTERPRETER_PROMPT",
    "SPECIAL_TOKENS",
    "one_call_per_turn",
    "extract_code",
    "as_tool_specs",
]

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
ACTION_START, ACTION_END = "<|action_start|>", "<|action_end|>"
PLUGIN, INTERPRETER = "<|plugin|>", "<|interpreter|>"
#: The special tokens of InternLM2's chat format (ids 92538–92543 in the released tokenizer).
SPECIAL_TOKENS = (IM_START, IM_END, ACTION_START, ACTION_END, PLUGIN, INTERPRETER)

#: Shown under ``system name=<|interpreter|>`` when ``interpreter=True``.
DEFAULT_INTERPRETER_PROMPT = (
    "You can run Python code in a stateful Jupyter notebook: send code to the interpreter and it runs, "
    "keeping variables, imports and files between runs. Printed output, the value of the last line and "
    "errors come back to you. Use it for:\n"
    "- calculations and math problems (arithmetic, algebra, sympy)\n"
    "- data analysis and processing (tables, statistics, charts)\n"
    "- text processing and analysis\n"
    "- working with files (CSV, JSON and other formats)"
)

PLUGIN_FORMAT = f'{ACTION_START}{PLUGIN}\n{{"name": "<tool name>", "parameters": {{<arguments as JSON>}}}}{ACTION_END}'
INTERPRETER_FORMAT = f"{ACTION_START}{INTERPRETER}\n```python\n<code>\n```{ACTION_END}"

_NAME_TOKENS = {"plugin": PLUGIN, "interpreter": INTERPRETER}
_END_OF_TURN = re.compile(r"<\|im_end\|>|<\|im_start\|>|<\|endoftext\|>")
_ACTION = re.compile(
    r"<\|action_start\|>\s*(?:(<\|plugin\|>|<\|interpreter\|>)|(plugin|interpreter)\b[ \t]*:?)?"
    r"|<\|plugin\|>|<\|interpreter\|>",
    re.I,
)
_BODY_END = re.compile(r"<\|action_end\|>|<\|action_start\|>|<\|plugin\|>|<\|interpreter\|>")
_SPECIAL = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))
_FENCE_OPEN = re.compile(r"```[ \t]*([\w+.-]*)[ \t]*")
_CODE_LANGS = {"", "python", "py", "python3", "py3", "ipython", "ipython3", "jupyter", "code"}


class InternLM2Protocol(Protocol):
    """The InternLM2 chat format: ``<|plugin|>`` JSON tool calls and ``<|interpreter|>`` Python code.

    ``system_prompt`` is rendered first when the conversation has no system message of its own.
    ``tools_indent`` is the indentation of the tool list under ``system name=<|plugin|>``: 4, as
    in InternLM's chat_format.md and Lagent; ``None`` for one compact line (LMDeploy's choice).
    """

    name = "internlm2"
    stop_words = [IM_END, ACTION_END]

    def __init__(self, system_prompt: str | None = None, interpreter_prompt: str = DEFAULT_INTERPRETER_PROMPT,
                 tools_indent: int | None = 4):
        self.system_prompt = system_prompt
        self.interpreter_prompt = interpreter_prompt
        self.tools_indent = tools_indent

    # -- render -------------------------------------------------------------------------------------
    def render(self, messages: list[Message], tools: list[ToolSpec] | None = None, interpreter: bool | str = False,
               *, add_generation_prompt: bool = True) -> str:
        """The prompt: system turn, tool blocks, the conversation, then ``<|im_start|>assistant\\n``.

        ``interpreter`` is ``False`` (no interpreter block), ``True`` (the default description) or
        the description to show. With ``add_generation_prompt=False`` the text ends after the last
        message (for training data).
        """
        messages = one_call_per_turn(list(messages))
        out: list[str] = []
        if messages and messages[0].role == "system" and messages[0].name is None:
            out.append(_turn("system", messages[0].text))
            messages = messages[1:]
        elif self.system_prompt:
            out.append(_turn("system", self.system_prompt))
        specs = as_tool_specs(tools)
        interpreters = [s for s in specs if s.kind == "interpreter"]  # given directly rather than via prompt()
        if interpreters:
            specs = [s for s in specs if s.kind != "interpreter"]
            interpreter = interpreter or interpreters[0].description or True
        if specs:
            schemas = json.dumps([s.to_internlm2() for s in specs], ensure_ascii=False, indent=self.tools_indent)
            out.append(_turn(f"system name={PLUGIN}", schemas))
        if interpreter:
            description = interpreter if isinstance(interpreter, str) else self.interpreter_prompt
            out.append(_turn(f"system name={INTERPRETER}", description))
        out.extend(self.render_message(m) for m in messages)
        if add_generation_prompt:
            out.append(f"{IM_START}assistant\n")
        return "".join(out)

    def render_message(self, message: Message) -> str:
        """One message as a complete turn (an assistant message must carry at most one tool call)."""
        if message.role == "assistant":
            return f"{IM_START}assistant\n{self.render_assistant(message)}{IM_END}\n"
        if message.role == "environment":
            return _turn(f"environment name={_NAME_TOKENS.get(message.name or '', PLUGIN)}", message.text)
        if message.name:
            return _turn(f"{message.role} name={_NAME_TOKENS.get(message.name, message.name)}", message.text)
        return _turn(message.role, message.text)

    def render_assistant(self, message: Message) -> str:
        """What the model writes for ``message``: the thought, then its first tool call as an action."""
        text = message.text
        if not message.tool_calls:
            return text
        call = message.tool_calls[0]
        if call.kind == "interpreter":
            code = str(call.arguments.get("code", ""))
            return f"{text}{ACTION_START}{INTERPRETER}\n```python\n{code}\n```{ACTION_END}"
        payload = _json.dumps({"name": call.name, "parameters": call.arguments})
        return f"{text}{ACTION_START}{PLUGIN}\n{payload}{ACTION_END}"

    # -- parse --------------------------------------------------------------------------------------
    def parse(self, text: str) -> Message:
        """The assistant message in the model's continuation; never raises.

        Tolerates a missing ``<|action_end|>``, a missing ``<|action_start|>`` before
        ``<|plugin|>``, ``arguments`` for ``parameters``, parameters as a JSON string, small-model
        JSON, and code with or without a fence. Anything after ``<|im_end|>`` or after the action
        is ignored. What cannot be understood comes back as ``meta["parse_error"]``, no tool calls.
        """
        text = _json.as_text(text)
        end = _END_OF_TURN.search(text)
        body = text[:end.start()] if end else text
        action = _ACTION.search(body)
        if action is None:
            return Message(role="assistant", content=_clean(body))
        thought = _clean(body[:action.start()])
        rest = body[action.end():]
        stop = _BODY_END.search(rest)
        payload = rest[:stop.start()] if stop else rest
        kind = _action_kind(action, payload)
        if kind is None:
            return _error(thought, (
                f"after {ACTION_START} the action must name its kind, {PLUGIN} or {INTERPRETER}, but found "
                f"text starting {_json.snippet(payload)}. Call a tool as {PLUGIN_FORMAT} or run code as "
                f"{INTERPRETER_FORMAT}"
            ))
        if kind == "interpreter":
            code = extract_code(payload)
            if not code.strip():
                return _error(thought, f"the {INTERPRETER} action has no code. Run code as {INTERPRETER_FORMAT}")
            call = ToolCall(name=INTERPRETER_TOOL_NAME, arguments={"code": code}, kind="interpreter")
            return Message(role="assistant", content=thought, tool_calls=[call])
        try:
            expect = None if payload.lstrip().startswith("[") else dict
            obj = _json.loads(payload, expect=expect, where=f"after {PLUGIN}")
            name, arguments = _json.tool_call_fields(obj)
        except ValueError as exc:
            return _error(thought, f"{exc}. Call a tool as {PLUGIN_FORMAT}")
        if name == INTERPRETER_TOOL_NAME:  # the interpreter called like a plugin
            code = arguments.get("code", arguments.get("command"))
            if not isinstance(code, str) or not code.strip():
                return _error(thought, f"the call to {INTERPRETER_TOOL_NAME} has no code. Run code as {INTERPRETER_FORMAT}")
            call = ToolCall(name=INTERPRETER_TOOL_NAME, arguments={"code": code}, kind="interpreter")
        else:
            call = ToolCall(name=name, arguments=arguments, kind="plugin")
        return Message(role="assistant", content=thought, tool_calls=[call])


# -- helpers shared with the other text protocols ---------------------------------------------------

def as_tool_specs(tools: list[Any] | None) -> list[ToolSpec]:
    """Tool specs from specs, OpenAI tool dicts or InternLM2 plugin dicts."""
    specs = []
    for tool in tools or []:
        if isinstance(tool, ToolSpec):
            specs.append(tool)
        elif isinstance(tool, dict):
            specs.append(ToolSpec.from_openai(tool))
        elif isinstance(getattr(tool, "spec", None), ToolSpec):
            specs.append(tool.spec)
        else:
            raise ValueError(f"cannot use {type(tool).__name__} as a tool: pass a ToolSpec, a tool or a schema dict")
    return specs


def one_call_per_turn(messages: list[Message]) -> list[Message]:
    """Split assistant messages with several tool calls into one turn per call.

    Each call is followed by its result when one of the environment messages right after the
    original message answers it (by ``tool_call_id``); results that match no call keep their
    order after the last call. The thought stays on the first call's turn.
    """
    out: list[Message] = []
    i = 0
    while i < len(messages):
        message = messages[i]
        i += 1
        if message.role != "assistant" or len(message.tool_calls) <= 1:
            out.append(message)
            continue
        results: list[Message] = []
        while i < len(messages) and messages[i].role == "environment" and messages[i].tool_call_id:
            results.append(messages[i])
            i += 1
        unused = list(results)
        for k, call in enumerate(message.tool_calls):
            out.append(message.model_copy(update={"content": message.content if k == 0 else "", "tool_calls": [call]}))
            match = next((r for r in unused if r.tool_call_id == call.id), None)
            if match is not None:
                out.append(match)
                unused.remove(match)
        out.extend(unused)
    return out


def extract_code(text: str) -> str:
    """The code in an interpreter action: inside a ```python (or ```py, or bare ```) fence, or all of it."""
    opening = _FENCE_OPEN.search(text)
    if opening is None:
        code = text
    else:
        start = opening.end()
        lang = opening.group(1)
        if lang.lower() not in _CODE_LANGS and "\n" not in text[opening.start():opening.end()]:
            line_end = text.find("\n", start)
            if text[start:line_end if line_end >= 0 else len(text)].strip():
                start = opening.start() + 3  # "```print(1)```": no language tag, the code starts at once
        if text.startswith("\n", start):
            start += 1
        closing = text.find("```", start)
        code = text[start:closing] if closing >= 0 else text[start:]
    lines = code.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines).rstrip()


def _action_kind(action: re.Match[str], payload: str) -> str | None:
    token = (action.group(1) or action.group(2) or "").lower()
    if not token:
        whole = action.group(0).lower()
        token = "plugin" if whole == PLUGIN else "interpreter" if whole == INTERPRETER else ""
    if "plugin" in token:
        return "plugin"
    if "interpreter" in token:
        return "interpreter"
    start = payload.lstrip()
    if start.startswith(("{", "[")):
        return "plugin"
    if start.startswith("```"):
        return "interpreter"
    return None


def _turn(header: str, content: str) -> str:
    return f"{IM_START}{header}\n{content}{IM_END}\n"


def _clean(text: str) -> str:
    return _SPECIAL.sub("", text).strip()


def _error(content: str, problem: str) -> Message:
    return Message(role="assistant", content=content, meta={"parse_error": problem})
