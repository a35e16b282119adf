"""Turn a real conversation into a deterministic test: record a model's replies, replay them scripted.

    recorder = RecordingModel(load_model("embedded"))
    agent = create_agent("react", recorder, tools=["calculator"])
    agent.run("What is 12 * 7?")
    recorder.save("tests/data/twelve_times_seven.jsonl")

    # later, in a test — no model, same replies, same parsing:
    agent = create_agent("react", load_model("scripted:tests/data/twelve_times_seven.jsonl"), tools=["calculator"])

Completion models' replies are recorded as their raw text, so the replay goes through the same protocol parser
(parse errors and recoveries replay too); chat models' replies are recorded as messages. A recording is one
thread's replies in order: the scripted model answers the N-th assistant turn with the N-th reply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from agentkit.llm import BaseChatModel, ChatModel, GenerationConfig, MessageChunk
from agentkit.messages import Message
from agentkit.protocols.base import Protocol
from agentkit.toolspec import ToolSpec


class RecordingModel(BaseChatModel):
    """Wraps any :class:`ChatModel` and keeps every reply it returns, in order."""

    def __init__(self, model: ChatModel, *, replies: list[str | Message] | None = None):
        self.model = model
        self.model_name = getattr(model, "model_name", type(model).__name__)
        self.replies: list[str | Message] = replies if replies is not None else []

    def _keep(self, message: Message) -> Message:
        raw = message.meta.get("raw")
        self.replies.append(raw if isinstance(raw, str) else message.model_copy(deep=True))
        return message

    def generate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                 config: GenerationConfig | None = None) -> Message:
        return self._keep(self.model.generate(messages, tools=tools, config=config))

    def stream(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
               config: GenerationConfig | None = None) -> Iterator[MessageChunk]:
        for chunk in self.model.stream(messages, tools=tools, config=config):
            if chunk.message is not None:
                self._keep(chunk.message)
            yield chunk

    def batch(self, conversations: list[list[Message]], *, tools: list[ToolSpec] | None = None,
              config: GenerationConfig | None = None) -> list[Message]:
        return [self._keep(m) for m in self.model.batch(conversations, tools=tools, config=config)]

    async def agenerate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                        config: GenerationConfig | None = None) -> Message:
        return self._keep(await self.model.agenerate(messages, tools=tools, config=config))

    async def astream(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                      config: GenerationConfig | None = None) -> AsyncIterator[MessageChunk]:
        async for chunk in self.model.astream(messages, tools=tools, config=config):
            if chunk.message is not None:
                self._keep(chunk.message)
            yield chunk

    def with_protocol(self, protocol: Protocol) -> RecordingModel:
        """The bound model records into the same list, so the agent's replies land here."""
        return RecordingModel(self.model.with_protocol(protocol), replies=self.replies)

    def save(self, path: str | Path) -> Path:
        """Write the replies as a scripted-model JSONL file (atomically) and return its path."""
        from agentkit.models.scripted import dump_script

        dump_script(self.replies, path)
        return Path(path)

    def replay(self, **kwargs: Any) -> ChatModel:
        """A scripted model that answers with the recorded replies."""
        from agentkit.models.scripted import ScriptedModel

        return ScriptedModel(list(self.replies), model_name=f"replay:{self.model_name}", **kwargs)
