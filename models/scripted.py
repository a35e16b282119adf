"""A model that replays written or recorded outputs: the deterministic test double.

Outputs are raw text (parsed by the bound protocol, exactly as a real completion model's would be)
or ready-made messages. Which output answers a call is decided by the conversation, not by a
counter: the N-th assistant turn of a thread gets output N. That keeps replay right across
processes, resumed threads and concurrent threads.

JSONL file format, one output per line::

    {"text": "I will add.<|action_start|><|plugin|>\\n{\\"name\\": ...}<|action_end|>"}
    {"message": {"role": "assistant", "content": "", "tool_calls": [...]}}   # OpenAI or agentkit dict
    "a bare JSON string is text too"
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Union

from pydantic import ValidationError

from agentkit.errors import ConfigError
from agentkit.llm import Completion, CompletionModel, GenerationConfig, MessageChunk
from agentkit.messages import Message, Usage
from agentkit.protocols.base import Protocol
from agentkit.toolspec import ToolSpec

ScriptedOutput = Union[str, Message]
Script = Union[Sequence[ScriptedOutput], Callable[[list[Message]], ScriptedOutput]]

_WORD = re.compile(r"\S+\s*|\s+")


class ScriptExhausted(ConfigError):
    """The conversation asked for more outputs than the script has."""


class ScriptedModel(CompletionModel):
    """Replays ``script``: a list of outputs, or a function from the conversation to an output."""

    def __init__(self, script: Script, *, protocol: Protocol | None = None, model_name: str = "scripted",
                 on_exhausted: ScriptedOutput | None = None):
        super().__init__(protocol)
        self.script = script if callable(script) else list(script)
        self.model_name = model_name
        self.on_exhausted = on_exhausted
        self.calls = 0

    @classmethod
    def from_jsonl(cls, path: str | Path, **kwargs: Any) -> ScriptedModel:
        return cls(load_script(path), model_name=f"scripted:{path}", **kwargs)

    # -- choosing an output ------------------------------------------------------------------------
    def output_for(self, messages: list[Message]) -> ScriptedOutput:
        self.calls += 1
        if callable(self.script):
            return self.script(messages)
        turn = sum(1 for m in messages if m.role == "assistant")
        if turn < len(self.script):
            return self.script[turn]
        if self.on_exhausted is not None:
            return self.on_exhausted
        raise ScriptExhausted(
            f"the script has {len(self.script)} outputs but the conversation asks for output {turn + 1}: "
            "add outputs to the script or pass on_exhausted="
        )

    def _message(self, output: ScriptedOutput, prompt_tokens: int) -> Message:
        if isinstance(output, Message):
            message = output.model_copy(deep=True)
            message.usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=_count_tokens(message.text))
            return message
        return self._to_message(Completion(text=output, prompt_tokens=prompt_tokens,
                                           completion_tokens=_count_tokens(output)))

    # -- CompletionModel -----------------------------------------------------------------------------
    def complete(self, prompts: list[str], config: GenerationConfig) -> list[Completion]:
        raise TypeError("ScriptedModel answers conversations, not prompts: call generate() or batch()")

    def generate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                 config: GenerationConfig | None = None) -> Message:
        return self._message(self.output_for(messages), _prompt_tokens(messages))

    def batch(self, conversations: list[list[Message]], *, tools: list[ToolSpec] | None = None,
              config: GenerationConfig | None = None) -> list[Message]:
        return [self.generate(c, tools=tools, config=config) for c in conversations]

    def stream(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
               config: GenerationConfig | None = None) -> Iterator[MessageChunk]:
        output = self.output_for(messages)
        text = output.text if isinstance(output, Message) else output
        for piece in _WORD.findall(text):
            yield MessageChunk(delta=piece)
        yield MessageChunk(message=self._message(output, _prompt_tokens(messages)))


def _count_tokens(text: str) -> int:
    """A stand-in token count (words and punctuation) so budgets and usage have numbers to work with."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def _prompt_tokens(messages: list[Message]) -> int:
    """A cheap estimate (4 characters a token): exact counting of the whole conversation on every
    call would make the test double's cost grow quadratically over a long run."""
    return sum(len(m.content) if isinstance(m.content, str) else len(m.text) for m in messages) // 4 + len(messages)


def load_script(path: str | Path) -> list[ScriptedOutput]:
    """Read a scripted-model JSONL file; a bad line raises ``ConfigError`` naming the line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"scripted model file {str(path)!r} does not exist: pass the path of a JSONL file")
    outputs: list[ScriptedOutput] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            outputs.append(parse_script_line(json.loads(line)))
        except (json.JSONDecodeError, ValueError, ValidationError) as exc:
            detail = str(exc).splitlines()[0]
            raise ConfigError(
                f"{path}:{number}: not a scripted output ({detail}); each line must be a JSON string, "
                '{"text": "..."} or {"message": {...}}'
            ) from None
    if not outputs:
        raise ConfigError(f"scripted model file {str(path)!r} has no outputs: write one JSON line per model reply")
    return outputs


def parse_script_line(item: Any) -> ScriptedOutput:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        return item["text"]
    if isinstance(item, dict) and isinstance(item.get("message"), dict):
        data = item["message"]
        if "meta" in data or any(isinstance(c, dict) and "kind" in c for c in data.get("tool_calls") or []):
            return Message.model_validate(data)
        return Message.from_openai({"role": "assistant", **data})
    raise ValueError(f"expected a string, {{'text': ...}} or {{'message': ...}}, got {str(item)[:60]!r}")


def dump_script(outputs: Sequence[ScriptedOutput], path: str | Path) -> None:
    """Write outputs in the JSONL format ``load_script`` reads (atomically)."""
    from agentkit.trajectory import atomic_write_text

    lines = []
    for out in outputs:
        if isinstance(out, Message):
            lines.append(json.dumps({"message": out.model_dump(mode="json", exclude={"usage"})}, ensure_ascii=False))
        else:
            lines.append(json.dumps({"text": out}, ensure_ascii=False))
    atomic_write_text(Path(path), "\n".join(lines) + "\n")
