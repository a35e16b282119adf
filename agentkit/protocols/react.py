"""ReAct text format (Thought / Action / Action Input / Observation) for models with no tool tokens.

Any instruction-following model can follow it, so it is the protocol for small general models
such as the embedded SmolLM2. Turns are wrapped in ChatML (``<|im_start|>role ... <|im_end|>``),
the template those models know. A reply either acts::

    Thought: I need the weather in Shanghai.
    Action: get_current_weather
    Action Input: {"location": "Shanghai"}

or answers::

    Thought: I know the answer now.
    Final Answer: It is 22 °C in Shanghai.

Tool results come back in a user turn as ``Observation: ...``. One action per reply: an assistant
message with several tool calls is rendered as consecutive turns, each call followed by its
observation (see :func:`~agentkit.protocols.internlm2.one_call_per_turn`).
"""

from __future__ import annotations

import re
from typing import Any

from agentkit.messages import INTERPRETER_TOOL_NAME, Message, ToolCall
from agentkit.protocols import _json
from agentkit.protocols.base import Protocol
from agentkit.protocols.internlm2 import as_tool_specs, extract_code, one_call_per_turn
from agentkit.toolspec import ToolSpec

__all__ = ["ReActProtocol", "DEFAULT_INTERPRETER_DESCRIPTION", "INTERPRETER_PARAMETERS"]

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

#: Description of the ``python_interpreter`` tool when ``interpreter=True``.
DEFAULT_INTERPRETER_DESCRIPTION = (
    "Runs Python code in a stateful Jupyter notebook (variables and imports persist between calls) and "
    "returns what it prints. Use it for calculations, math and data processing."
)
INTERPRETER_PARAMETERS = {
    "type": "object",
    "properties": {"code": {"type": "string", "description": "the Python code to run"}},
    "required": ["code"],
}

INSTRUCTIONS = """You can use these tools:
{tools}

To use a tool, reply in exactly this format and then stop:
Thought: what you need to find out and which tool helps
Action: the tool name, one of [{names}]
Action Input: the tool's arguments as a JSON object, e.g. {{"argument": "value"}}

The tool's result comes back to you as:
Observation: the result

When you know the answer, or need no tool, reply:
Thought: how you got the answer
Final Answer: the answer for the user"""

FORMAT_HINT = (
    'Reply as "Thought: ...\\nAction: <tool name>\\nAction Input: {<arguments as JSON>}" to use a tool, '
    'or as "Thought: ...\\nFinal Answer: <answer>" to answer'
)

_END_OF_TURN = re.compile(r"<\|im_end\|>|<\|im_start\|>|<\|endoftext\|>")
_OBSERVATION = re.compile(r"^[ \t*#>-]*observation[ \t*]*:", re.I | re.M)
# A label may be bold (**Action:** or **Action**:); the bold after the colon is eaten only then.
_BOLD_END = r"(?:\*\*)?[ \t]*:[ \t]*(?(b)(?:\*\*)?[ \t]*)"
_ACTION = re.compile(r"^[ \t#>-]*(?P<b>\*\*)?action" + _BOLD_END + r"(?P<name>.*)$", re.I | re.M)
_ACTION_INPUT = re.compile(r"^[ \t#>-]*(?P<b>\*\*)?action[ \t_]*input" + _BOLD_END, re.I | re.M)
_FINAL = re.compile(r"(?P<b>\*\*)?final[ \t_]*answer" + _BOLD_END, re.I)
_THOUGHT = re.compile(r"^[ \t#>-]*(?P<b>\*\*)?thought" + _BOLD_END, re.I)
_ANY_THOUGHT = re.compile(r"^[ \t*#>-]*thought[ \t*]*:", re.I | re.M)
_NEXT_MARKER = re.compile(r"^[ \t*#>-]*(?:thought|action|action[ \t_]*input|final[ \t_]*answer)[ \t*]*:", re.I | re.M)
_AFTER_ANSWER = re.compile(r"^[ \t*#>-]*(?:thought|action|action[ \t_]*input)[ \t*]*:", re.I | re.M)
_INLINE_ARGS = re.compile(r"^([^\s(\[{]+)\s*(?:\((.*)\)|\[(.*)\]|(\{.*\}?))\s*$", re.S)
_SPECIAL = re.compile(r"<\|(?:im_start|im_end|action_start|action_end|plugin|interpreter|endoftext)\|>")
_INTERPRETER_NAMES = {INTERPRETER_TOOL_NAME, "python"}
_NO_ACTION = {"none", "n/a", "no action", "null", "nothing", "-"}


class ReActProtocol(Protocol):
    """Thought / Action / Action Input / Observation / Final Answer, in ChatML turns.

    ``system_prompt`` opens the system turn when the conversation has no system message.
    """

    name = "react"
    stop_words = ["Observation:", IM_END]

    def __init__(self, system_prompt: str | None = None,
                 interpreter_description: str = DEFAULT_INTERPRETER_DESCRIPTION):
        self.system_prompt = system_prompt
        self.interpreter_description = interpreter_description

    # -- render -------------------------------------------------------------------------------------
    def render(self, messages: list[Message], tools: list[ToolSpec] | None = None, interpreter: bool | str = False,
               *, add_generation_prompt: bool = True) -> str:
        """The prompt: one system turn (with the tool list and format when there are tools), the
        conversation, then ``<|im_start|>assistant\\n``. ``interpreter`` adds a
        ``python_interpreter`` tool (``True``: default description; a string: that description)."""
        specs = as_tool_specs(tools)
        if interpreter and not any(s.name == INTERPRETER_TOOL_NAME for s in specs):
            description = interpreter if isinstance(interpreter, str) else self.interpreter_description
            specs.append(ToolSpec(name=INTERPRETER_TOOL_NAME, description=description,
                                  parameters=INTERPRETER_PARAMETERS, kind="interpreter"))
        messages = one_call_per_turn(list(messages))
        system = self.system_prompt
        if messages and messages[0].role == "system":
            system = messages[0].text
            messages = messages[1:]
        if specs:
            instructions = self.instructions(specs)
            system = f"{system}\n\n{instructions}" if system else instructions
        out = [_turn("system", system)] if system else []
        acting = bool(specs)
        out.extend(self.render_message(m, acting=acting) for m in messages)
        if add_generation_prompt:
            out.append(f"{IM_START}assistant\n")
        return "".join(out)

    def instructions(self, specs: list[ToolSpec]) -> str:
        """The tool list and the reply format, as shown in the system turn."""
        lines = []
        for spec in specs:
            description = " ".join(spec.description.split()) or "(no description)"
            lines.append(f"- {spec.name}: {description} Parameters: {_json.dumps(spec.parameters)}")
        return INSTRUCTIONS.format(tools="\n".join(lines), names=", ".join(s.name for s in specs))

    def render_message(self, message: Message, *, acting: bool = True) -> str:
        """One message as a ChatML turn. ``acting``: tools are in play, so answers carry ``Final Answer:``."""
        if message.role == "assistant":
            return f"{IM_START}assistant\n{self.render_assistant(message, acting=acting)}{IM_END}\n"
        if message.role == "environment":
            if message.tool_call_id is None and message.meta.get("feedback"):
                return _turn("user", message.text)
            return _turn("user", f"Observation: {message.text}")
        return _turn(message.role, message.text)

    def render_assistant(self, message: Message, *, acting: bool = True) -> str:
        """What the model writes for ``message`` (its first tool call, or its answer)."""
        thought = message.text.strip()
        if not message.tool_calls:
            if not acting or message.parse_error:
                return message.text
            return f"Final Answer: {message.text}"
        call = message.tool_calls[0]
        arguments = {"code": call.arguments.get("code", "")} if call.kind == "interpreter" else call.arguments
        name = INTERPRETER_TOOL_NAME if call.kind == "interpreter" else call.name
        head = f"Thought: {thought}\n" if thought else ""
        return f"{head}Action: {name}\nAction Input: {_json.dumps(arguments)}"

    # -- parse --------------------------------------------------------------------------------------
    def parse(self, text: str) -> Message:
        """The assistant message in the model's continuation; never raises.

        Case-insensitive markers; a missing ``Thought:`` is fine; ``Action Input`` that is not a
        JSON object goes under ``{"input": ...}`` (noted in ``meta["parse_warning"]``); a missing
        Action Input means ``{}``; a hallucinated ``Observation:`` and all after it is dropped.
        Text with no markers at all is taken as the answer. The thought before a Final Answer is
        kept in ``meta["thought"]``. Otherwise ``meta["parse_error"]``.
        """
        text = _json.as_text(text)
        end = _END_OF_TURN.search(text)
        if end:
            text = text[:end.start()]
        observation = _OBSERVATION.search(text)
        if observation:
            text = text[:observation.start()]
        text = _SPECIAL.sub("", text)
        action = _ACTION.search(text)
        final = _FINAL.search(text)
        if final and (action is None or final.start() < action.start()):
            thought = _thought(text[:final.start()])
            answer = text[final.end():]
            continued = _AFTER_ANSWER.search(answer)  # the model went on to act after answering
            answer = (answer[:continued.start()] if continued else answer).strip()
            if not answer:
                return _error(thought, f'"Final Answer:" is empty. {FORMAT_HINT}')
            return Message(role="assistant", content=answer, meta={"thought": thought} if thought else {})
        if action is None:
            stripped = text.strip()
            if _ACTION_INPUT.search(text):
                return _error(_thought(text[:_ACTION_INPUT.search(text).start()]),  # type: ignore[union-attr]
                              f'the reply has an "Action Input:" but no "Action:" line naming the tool. {FORMAT_HINT}')
            if not stripped:
                return _error("", f"the reply is empty. {FORMAT_HINT}")
            if _ANY_THOUGHT.search(text):
                return _error(_thought(text), f'the reply has a "Thought:" but neither an "Action:" nor a '
                                              f'"Final Answer:". {FORMAT_HINT}')
            return Message(role="assistant", content=stripped,
                           meta={"parse_warning": 'no "Final Answer:" marker; the whole reply was taken as the answer'})
        return self._action(text, action)

    def _action(self, text: str, action: re.Match[str]) -> Message:
        thought = _thought(text[:action.start()])
        after = text[action.end():]
        name = action.group("name").strip()
        if not name:  # "Action:" alone on its line, the name on the next
            following = after.lstrip("\r\n")
            line = following.split("\n", 1)[0]
            if line.strip() and not _NEXT_MARKER.match(line) and not _ACTION_INPUT.match(line):
                name = line.strip()
                after = following[len(line):]
        inline: str | None = None
        inline_match = _INLINE_ARGS.match(name)
        if inline_match:
            name = inline_match.group(1)
            inline = next(g for g in inline_match.groups()[1:] if g is not None)
        name = name.strip().strip("`'\"*.,;:").strip()
        if not name or name.lower() in _NO_ACTION:
            return _error(thought, f'the "Action:" line does not name a tool. {FORMAT_HINT}')
        input_match = _ACTION_INPUT.search(after)
        if input_match is not None:
            raw = after[input_match.end():]
            following = _NEXT_MARKER.search(raw)
            if following:
                raw = raw[:following.start()]
        else:
            raw = inline or ""
        is_interpreter = name in _INTERPRETER_NAMES or name.lower() in _INTERPRETER_NAMES
        meta: dict[str, Any] = {}
        try:
            arguments = _arguments(raw, name, meta, code=is_interpreter)
        except ValueError as exc:
            return _error(thought, f"{exc}. {FORMAT_HINT}")
        if is_interpreter:
            code = next((arguments[k] for k in ("code", "input", "command") if isinstance(arguments.get(k), str)), "")
            if not code.strip():
                return _error(thought, f'the Action Input for {INTERPRETER_TOOL_NAME} has no code: write '
                                       f'Action Input: {{"code": "<Python code>"}}')
            meta.pop("parse_warning", None)
            call = ToolCall(name=INTERPRETER_TOOL_NAME, arguments={"code": code}, kind="interpreter")
        else:
            call = ToolCall(name=name, arguments=arguments, kind="plugin")
        return Message(role="assistant", content=thought, tool_calls=[call], meta=meta)


def _arguments(raw: str, name: str, meta: dict[str, Any], *, code: bool) -> dict[str, Any]:
    """Action Input text → arguments; non-JSON input goes under ``"input"`` (or ``"code"``)."""
    fenced = raw.strip()
    body = _json.strip_fences(fenced).strip()
    if not body:
        return {}
    if body[0] in "{[":
        try:
            value = _json.loads(body, where=f"in the Action Input of {name!r}")
        except ValueError:
            if code:
                return {"code": extract_code(fenced)}
            raise
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        if code:  # e.g. a list comprehension
            return {"code": extract_code(fenced)}
        meta["parse_warning"] = f"the Action Input of {name!r} was not a JSON object; it was passed as {{\"input\": ...}}"
        return {"input": value}
    if code:
        if body[0] in "\"'":
            try:
                value = _json.loads(body)
            except ValueError:
                value = None
            if isinstance(value, str):
                return {"code": value}
        return {"code": extract_code(fenced)}
    if body[0] in "\"'":
        try:
            value = _json.loads(body)
        except ValueError:
            value = body
        body = value if isinstance(value, str) else body
    meta["parse_warning"] = f"the Action Input of {name!r} was not a JSON object; it was passed as {{\"input\": ...}}"
    return {"input": body}


def _thought(text: str) -> str:
    return _THOUGHT.sub("", text.strip(), count=1).strip()


def _turn(role: str, content: str) -> str:
    return f"{IM_START}{role}\n{content}{IM_END}\n"


def _error(content: str, problem: str) -> Message:
    return Message(role="assistant", content=content, meta={"parse_error": problem})
