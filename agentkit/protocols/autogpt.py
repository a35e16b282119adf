"""AutoGPT's JSON-command format: every reply is thoughts plus one command, until the ``finish`` command.

    {"thoughts": {"text": "...", "reasoning": "...", "plan": "- step\\n- step", "criticism": "...",
                  "speak": "..."},
     "command": {"name": "search", "args": {"query": "..."}}}

A command other than ``finish`` becomes a tool call; ``finish`` (with ``{"response": ...}``) is the final answer.
Results come back in a user turn (``Command search returned: ...``). Turns are ChatML, like the ReAct protocol.

Parsing is tolerant of what small models write: a code fence or prose around the JSON, single quotes and
trailing commas, ``command`` given as a bare name with ``args`` at the top level, ``arguments`` / ``parameters``
for ``args``, missing ``thoughts``. Anything else is a parse error that shows the exact format.
"""

from __future__ import annotations

import re
from typing import Any

from agentkit.messages import INTERPRETER_TOOL_NAME, Message, ToolCall
from agentkit.protocols import _json
from agentkit.protocols.base import Protocol
from agentkit.protocols.internlm2 import as_tool_specs, one_call_per_turn
from agentkit.protocols.react import DEFAULT_INTERPRETER_DESCRIPTION, INTERPRETER_PARAMETERS
from agentkit.toolspec import ToolSpec

__all__ = ["AutoGPTProtocol", "FINISH"]

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
FINISH = "finish"
THOUGHT_KEYS = ("text", "reasoning", "plan", "criticism", "speak")

INSTRUCTIONS = """You work towards the user's goal on your own, one command at a time, until it is reached.

Commands:
{commands}
- {finish}: the goal is reached; args: {{"response": "the final answer for the user"}}

Reply with exactly one JSON object and nothing else:
{{"thoughts": {{"text": "what you think now", "reasoning": "why", "plan": "- short bulleted plan",
  "criticism": "what could be better", "speak": "a one-line summary for the user"}},
 "command": {{"name": "one of [{names}]", "args": {{"argument": "value"}}}}}}

Each command's result comes back to you. Keep going after a result until the goal is reached, then use {finish}."""

FORMAT_HINT = ('Reply with one JSON object: {"thoughts": {"text": "...", "reasoning": "...", "plan": "...", '
               '"criticism": "...", "speak": "..."}, "command": {"name": "<command>", "args": {...}}}; '
               f'use the command "{FINISH}" with {{"response": "<answer>"}} when the goal is reached')

_END_OF_TURN = re.compile(r"<\|im_end\|>|<\|im_start\|>|<\|endoftext\|>")
_ARG_KEYS = ("args", "arguments", "parameters", "params", "input")
_MENTIONS_COMMAND = re.compile(r"""["']command["']\s*:""")
# Names a model uses for "the goal is reached". Generic words ("answer", "done") are left out: they could be
# real tools, which a parser that does not see the tool list must not swallow.
_FINISH_NAMES = (FINISH, "task_complete", "final_answer")
_RESPONSE_KEYS = ("response", "answer", "reason", "result", "text")


class AutoGPTProtocol(Protocol):
    """Thoughts + one JSON command per reply, in ChatML turns; ``finish`` carries the final answer.

    ``system_prompt`` opens the system turn when the conversation has no system message; the
    command list and the reply format always follow it, since the model acts on its own every turn.
    """

    name = "autogpt"
    stop_words = [IM_END]

    def __init__(self, system_prompt: str | None = None):
        self.system_prompt = system_prompt

    # -- render -------------------------------------------------------------------------------------
    def render(self, messages: list[Message], tools: list[ToolSpec] | None = None, interpreter: bool | str = False,
               *, add_generation_prompt: bool = True) -> str:
        """The prompt: the system turn with the commands and the format, the goal and the history
        (each command's result as a user turn), then ``<|im_start|>assistant\\n``."""
        specs = as_tool_specs(tools)
        if interpreter and not any(s.name == INTERPRETER_TOOL_NAME for s in specs):
            description = interpreter if isinstance(interpreter, str) else DEFAULT_INTERPRETER_DESCRIPTION
            specs.append(ToolSpec(name=INTERPRETER_TOOL_NAME, description=description,
                                  parameters=INTERPRETER_PARAMETERS, kind="interpreter"))
        messages = one_call_per_turn(list(messages))
        system = self.system_prompt
        if messages and messages[0].role == "system":
            system, messages = messages[0].text, messages[1:]
        instructions = self.instructions(specs)
        system = f"{system}\n\n{instructions}" if system else instructions
        out = [_turn("system", system)]
        names = {c.id: c.name for m in messages for c in m.tool_calls}
        out.extend(self.render_message(m, names) for m in messages)
        if add_generation_prompt:
            out.append(f"{IM_START}assistant\n")
        return "".join(out)

    def instructions(self, specs: list[ToolSpec]) -> str:
        """The command list (each tool with its argument schemas, then ``finish``) and the reply format."""
        lines = [f"- {s.name}: {' '.join(s.description.split()) or '(no description)'} "
                 f"args: {_json.dumps(s.parameters.get('properties', {}))}{_required(s)}" for s in specs]
        names = ", ".join([*(s.name for s in specs), FINISH])
        return INSTRUCTIONS.format(commands="\n".join(lines) or "(none)", finish=FINISH, names=names)

    def render_message(self, message: Message, names: dict[str, str] | None = None) -> str:
        """One message as a ChatML turn; a command's result names the command (``names``: call id → name,
        for results that do not carry ``meta["tool_name"]``)."""
        if message.role == "assistant":
            return f"{IM_START}assistant\n{self.render_assistant(message)}{IM_END}\n"
        if message.role == "environment":
            if message.tool_call_id is None and message.meta.get("feedback"):
                return _turn("user", message.text)
            name = message.meta.get("tool_name") or (names or {}).get(message.tool_call_id or "") or "the command"
            return _turn("user", f"Command {name} returned: {message.text}")
        return _turn(message.role, message.text)

    def render_assistant(self, message: Message) -> str:
        """The JSON the model would have written for ``message``. A reply that could not be parsed is shown
        as the model wrote it, never dressed up as a command it did not give."""
        if message.parse_error:
            raw = message.meta.get("raw")
            return raw if isinstance(raw, str) else message.text
        thoughts = dict(message.meta.get("thoughts") or {})
        if not thoughts and message.tool_calls and message.text.strip():
            thoughts = {"text": message.text.strip()}
        if message.tool_calls:
            call = message.tool_calls[0]
            name = INTERPRETER_TOOL_NAME if call.kind == "interpreter" else call.name
            command = {"name": name, "args": call.arguments}
        else:
            command = {"name": FINISH, "args": {"response": message.text}}
        return _json.dumps({"thoughts": thoughts, "command": command})

    # -- parse --------------------------------------------------------------------------------------
    def parse(self, text: str) -> Message:
        """One command, the final answer, or ``meta["parse_error"]``; never raises.

        A ``finish`` command becomes the final answer (its ``response``), with the thoughts in
        ``meta["thoughts"]``; any other command becomes one tool call whose message text is the
        ``thoughts.text``. Every parse error ends with the exact format, so the model can fix its reply.
        """
        raw = _json.as_text(text)
        end = _END_OF_TURN.search(raw)
        body = raw[:end.start()] if end else raw
        try:
            obj = _json.loads_object(body, where="in the reply")
        except ValueError as exc:
            return _error(str(exc))
        thoughts = _thoughts(obj.get("thoughts"))
        name, args, problem = _command(obj)
        if problem and _MENTIONS_COMMAND.search(body) and "command" not in obj:
            # the object read is an inner one (e.g. "thoughts"): the outer object is broken
            problem = ('the JSON object with the "command" could not be read (is it cut off, or missing a quote, '
                       'a comma or a brace?)')
        if problem:
            return _error(problem, thoughts)
        meta: dict[str, Any] = {"thoughts": thoughts} if thoughts else {}
        if name.lower() in _FINISH_NAMES:
            response = next((args[k] for k in _RESPONSE_KEYS if k in args), None)
            if response is None and len(args) == 1:
                response = next(iter(args.values()))
            answer = response if isinstance(response, str) or response is None else _json.dumps(response)
            if answer is None or not answer.strip():
                return _error(f'the {FINISH} command needs args {{"response": "<the final answer>"}}', thoughts)
            return Message(role="assistant", content=answer.strip(), meta=meta)
        said = thoughts.get("text") or thoughts.get("speak") or ""
        if name in (INTERPRETER_TOOL_NAME, "python"):
            code = next((args[k] for k in ("code", "input", "command") if isinstance(args.get(k), str)), "")
            if not code.strip():
                return _error(f'the {INTERPRETER_TOOL_NAME} command needs args {{"code": "<Python code>"}}', thoughts)
            call = ToolCall(name=INTERPRETER_TOOL_NAME, arguments={"code": code}, kind="interpreter")
        else:
            call = ToolCall(name=name, arguments=args)
        return Message(role="assistant", content=said, tool_calls=[call], meta=meta)


def _required(spec: ToolSpec) -> str:
    required = spec.parameters.get("required")
    return f" (required: {', '.join(map(str, required))})" if isinstance(required, list) and required else ""


def _thoughts(value: Any) -> dict[str, str]:
    """The thoughts as strings (a list-valued ``plan`` becomes bullets); a bare string is the ``text``."""
    if isinstance(value, dict):
        return {k: _as_text(value[k]) for k in THOUGHT_KEYS if k in value and value[k] not in (None, "")}
    if isinstance(value, str) and value.strip():
        return {"text": value.strip()}
    return {}


def _as_text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(f"- {item}" for item in value)
    return value if isinstance(value, str) else _json.dumps(value)


def _command(obj: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    """``(name, args, problem)`` from the reply's ``command`` in any of the shapes small models write."""
    command = obj.get("command", obj.get("action"))
    args: Any = None
    if isinstance(command, list):
        commands = [c for c in command if c not in ({}, None, "")]
        if len(commands) != 1:
            return "", {}, f'found {len(commands)} commands in a list: give exactly one "command" object per reply'
        command = commands[0]
    if isinstance(command, dict):
        name = command.get("name") or command.get("command") or command.get("tool")
        args = next((command[k] for k in _ARG_KEYS if k in command), None)
    elif isinstance(command, str):
        name = command
    elif command is None and ("name" in obj):
        name = obj["name"]
    else:
        return "", {}, 'the reply has no "command" object naming the command to run'
    if args is None:
        args = next((obj[k] for k in _ARG_KEYS if k in obj), {})
    if not isinstance(name, str) or not name.strip():
        return "", {}, 'the "command" has no "name"'
    if isinstance(args, str):
        try:
            args = _json.loads_object(args, where="in args")
        except ValueError:
            args = {"input": args}
    if not isinstance(args, dict):
        return "", {}, f'"args" of {name!r} must be a JSON object of arguments'
    return name.strip(), args, None


def _turn(role: str, content: str) -> str:
    return f"{IM_START}{role}\n{content}{IM_END}\n"


def _error(problem: str, thoughts: dict[str, str] | None = None) -> Message:
    """A reply that could not be used: what was wrong, then the exact format."""
    meta: dict[str, Any] = {"parse_error": f"{problem}. {FORMAT_HINT}"}
    if thoughts:
        meta["thoughts"] = thoughts
    return Message(role="assistant", content=(thoughts or {}).get("text", ""), meta=meta)
