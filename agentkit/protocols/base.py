"""What every text protocol provides: messages + tool specs → prompt, model text → assistant message."""

from __future__ import annotations

from abc import ABC, abstractmethod

from agentkit.messages import Message
from agentkit.toolspec import ToolSpec


class Protocol(ABC):
    """A tool-calling text format for completion models.

    ``render`` ends with the assistant's generation prefix, so the model's continuation is exactly
    what ``parse`` reads. ``parse`` never raises on model output: when it cannot understand the text
    it returns an assistant message with ``meta["parse_error"]`` explaining what was wrong.
    """

    #: Short name used in specs and trajectories (``internlm2``, ``react``, ``openai_tools``).
    name: str = ""
    #: Strings that end a model turn; backends stop generation at any of them.
    stop_words: list[str] = []

    @abstractmethod
    def render(self, messages: list[Message], tools: list[ToolSpec] | None = None, interpreter: bool | str = False) -> str:
        """The prompt text for ``messages``, ending where the assistant's reply begins."""

    @abstractmethod
    def parse(self, text: str) -> Message:
        """The assistant message for the model's raw continuation ``text``."""

    def prompt(self, messages: list[Message], tools: list[ToolSpec] | None = None) -> str:
        """Render with tool specs split by kind: an ``interpreter`` spec enables the interpreter block."""
        plugins = [t for t in tools or [] if t.kind != "interpreter"]
        interpreters = [t for t in tools or [] if t.kind == "interpreter"]
        interpreter: bool | str = interpreters[0].description or True if interpreters else False
        return self.render(messages, plugins or None, interpreter=interpreter)

    def error_feedback(self, error: str) -> Message:
        """The message shown to the model after output it could not parse, so it can try again."""
        return Message(
            role="environment",
            name="plugin",
            content=f"Your last reply could not be understood: {error}. Reply again in the required format.",
            meta={"feedback": "parse_error"},
        )
