"""Bounded history: what the model sees of a long thread.

A thread keeps every message in its checkpoint (nothing is lost); :class:`History` decides the prompt. It keeps
the leading system messages, then the most recent *whole turns* (a turn starts at a user message, so a tool call
is never separated from its result) that fit ``max_tokens``. The current turn is always kept, even when it alone is
over the budget. What was cut can be replaced by a summary (``summarize=``), made once per cut and reused.

Pass one to :func:`agentkit.agents.create_agent` as ``history=History(...)`` or just ``history=2048``.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentkit.errors import ConfigError
from agentkit.messages import Message

#: Tokens a chat template adds around each message (role markers, separators), a rough figure.
MESSAGE_OVERHEAD = 4

TextCounter = Callable[[str], int]
Summarizer = Callable[[list[Message]], str]


def approx_tokens(text: str) -> int:
    """About one token per four characters: the usual figure for English with BPE tokenizers."""
    return (len(text) + 3) // 4


def message_tokens(message: Message, count: TextCounter = approx_tokens) -> int:
    """Tokens of a message as the model reads it: its text, its tool calls' JSON, and the template's overhead."""
    total = MESSAGE_OVERHEAD + count(message.text)
    for call in message.tool_calls:
        total += count(call.name + json.dumps(call.arguments, ensure_ascii=False, default=str))
    return total


@dataclass
class History:
    """Keep the prompt within ``max_tokens`` by dropping (or summarising) the oldest whole turns.

    Args:
        max_tokens: the most tokens of conversation the model is shown (tool schemas not included).
        count: tokens of a text; by default the model's own ``count_tokens`` when it has one, else ~4 chars/token.
        summarize: turns the dropped messages into a short text shown in the system message; ``None`` only trims.
    """

    max_tokens: int = 2048
    count: TextCounter | None = None
    summarize: Summarizer | None = None
    cache_size: int = 256
    _summaries: OrderedDict[str, str] = field(default_factory=OrderedDict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_tokens < 16:
            raise ConfigError(f"history max_tokens must be at least 16, got {self.max_tokens}: give a token budget "
                              "such as 2048")

    def tokens(self, messages: Sequence[Message]) -> int:
        count = self.count or approx_tokens
        return sum(message_tokens(m, count) for m in messages)

    def __call__(self, messages: list[Message]) -> list[Message]:
        head = 0
        while head < len(messages) and messages[head].role == "system":
            head += 1
        system, rest = messages[:head], messages[head:]
        cut = self._cut(rest, self.max_tokens - self.tokens(system))
        if cut == 0:
            return messages
        dropped, kept = rest[:cut], rest[cut:]
        if self.summarize is None:
            return [*system, *kept]
        note = f"Summary of the earlier conversation: {self._summary(dropped)}"
        if system:
            first = system[0]
            merged = first.model_copy(update={"content": f"{first.text}\n\n{note}"})
            return [merged, *system[1:], *kept]
        return [Message.system(note), *kept]

    def _cut(self, rest: list[Message], budget: int) -> int:
        """Index of the earliest turn start from which the rest fits ``budget``; the last turn start if none does."""
        starts = [i for i, m in enumerate(rest) if m.role == "user"]
        if not starts:
            return 0
        count = self.count or approx_tokens
        suffix = [0] * (len(rest) + 1)
        for i in range(len(rest) - 1, -1, -1):
            suffix[i] = suffix[i + 1] + message_tokens(rest[i], count)
        if suffix[0] <= budget:
            return 0
        return next((i for i in starts if suffix[i] <= budget), starts[-1])

    def _summary(self, dropped: list[Message]) -> str:
        """The summary of ``dropped``, built on the longest already-summarised prefix so each turn is read once."""
        keys, digest = [], hashlib.blake2b(digest_size=16)
        for message in dropped:
            digest.update(message.model_dump_json(include={"role", "content", "tool_calls"}).encode("utf-8"))
            keys.append(digest.hexdigest())
        if keys[-1] in self._summaries:
            self._summaries.move_to_end(keys[-1])
            return self._summaries[keys[-1]]
        start, earlier = 0, None
        for i in range(len(keys) - 2, -1, -1):
            if keys[i] in self._summaries:
                start, earlier = i + 1, self._summaries[keys[i]]
                break
        new = dropped[start:]
        prompt = ([Message.system(f"Summary so far: {earlier}")] if earlier else []) + new
        assert self.summarize is not None
        text = self.summarize(prompt).strip()
        self._summaries[keys[-1]] = text
        while len(self._summaries) > self.cache_size:
            self._summaries.popitem(last=False)
        return text


SUMMARY_INSTRUCTION = (
    "Summarise the conversation below for an assistant who will continue it. Keep names, numbers, decisions and "
    "open questions; drop pleasantries. Write at most five sentences."
)


def model_summarizer(model: Any, max_new_tokens: int = 160) -> Summarizer:
    """A summarizer that asks ``model`` (a :class:`~agentkit.llm.ChatModel`) to condense the dropped turns."""
    from agentkit.llm import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_new_tokens)

    def summarize(messages: list[Message]) -> str:
        transcript = "\n".join(f"{m.role}: {m.text}" for m in messages if m.text.strip())
        reply = model.generate([Message.system(SUMMARY_INSTRUCTION), Message.user(transcript)], config=config)
        return reply.text

    return summarize


def as_history(spec: History | int | None, model: Any = None) -> History | None:
    """``create_agent``'s ``history=`` argument as a :class:`History` counting with ``model``'s tokenizer."""
    if spec is None:
        return None
    if isinstance(spec, bool) or not isinstance(spec, (History, int)):
        raise ConfigError(f"history must be a token budget (int) or a History, got {spec!r}")
    history = History(max_tokens=spec) if isinstance(spec, int) else spec
    if history.count is None and callable(getattr(model, "count_tokens", None)):
        history.count = model.count_tokens
    return history
