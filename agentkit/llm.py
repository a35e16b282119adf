"""The ChatModel interface and the two base classes every backend builds on.

*Chat models* (OpenAI-compatible HTTP) take messages and tool schemas natively.
*Completion models* (transformers, LMDeploy pipeline, the scripted double) produce raw text;
``CompletionModel`` renders the prompt and parses the reply with a :class:`Protocol`, so a
backend only implements ``complete``. Agents bind their protocol with ``with_protocol``.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol as TypingProtocol, runtime_checkable

from pydantic import BaseModel, Field

from agentkit.messages import Message, Usage
from agentkit.protocols.base import Protocol
from agentkit.toolspec import ToolSpec


class GenerationConfig(BaseModel):
    """Sampling settings. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = Field(512, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None

    def with_stop(self, extra: list[str]) -> GenerationConfig:
        stops = list(dict.fromkeys([*self.stop, *extra]))
        return self.model_copy(update={"stop": stops})


class MessageChunk(BaseModel):
    """A piece of a streamed reply. The last chunk has ``message`` set to the complete, parsed reply."""

    delta: str = ""
    message: Message | None = None

    @property
    def done(self) -> bool:
        return self.message is not None


@runtime_checkable
class ChatModel(TypingProtocol):
    """What agents call. Every returned message carries ``usage``."""

    def generate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                 config: GenerationConfig | None = None) -> Message: ...

    def stream(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
               config: GenerationConfig | None = None) -> Iterator[MessageChunk]: ...

    async def agenerate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                        config: GenerationConfig | None = None) -> Message: ...

    def astream(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                config: GenerationConfig | None = None) -> AsyncIterator[MessageChunk]: ...

    def batch(self, conversations: list[list[Message]], *, tools: list[ToolSpec] | None = None,
              config: GenerationConfig | None = None) -> list[Message]: ...

    def with_protocol(self, protocol: Protocol) -> ChatModel: ...


class BaseChatModel(ABC):
    """Defaults for everything but ``generate``: streaming as one chunk, batch as a loop, async in a thread."""

    #: Human-readable identity, recorded in trajectories.
    model_name: str = "model"

    @abstractmethod
    def generate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                 config: GenerationConfig | None = None) -> Message: ...

    def stream(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
               config: GenerationConfig | None = None) -> Iterator[MessageChunk]:
        message = self.generate(messages, tools=tools, config=config)
        yield MessageChunk(delta=message.text, message=message)

    def batch(self, conversations: list[list[Message]], *, tools: list[ToolSpec] | None = None,
              config: GenerationConfig | None = None) -> list[Message]:
        return [self.generate(c, tools=tools, config=config) for c in conversations]

    async def agenerate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                        config: GenerationConfig | None = None) -> Message:
        return await asyncio.to_thread(self.generate, messages, tools=tools, config=config)

    async def astream(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                      config: GenerationConfig | None = None) -> AsyncIterator[MessageChunk]:
        async for chunk in _iterate_in_thread(lambda: self.stream(messages, tools=tools, config=config)):
            yield chunk

    async def abatch(self, conversations: list[list[Message]], *, tools: list[ToolSpec] | None = None,
                     config: GenerationConfig | None = None) -> list[Message]:
        return await asyncio.to_thread(self.batch, conversations, tools=tools, config=config)

    def with_protocol(self, protocol: Protocol) -> BaseChatModel:
        """Chat models call tools natively and ignore text protocols."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_name!r})"


@dataclass
class Completion:
    """Raw output of a completion backend for one prompt."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


class CompletionModel(BaseChatModel):
    """A text-in, text-out model; the bound protocol renders prompts and parses replies."""

    protocol: Protocol

    def __init__(self, protocol: Protocol | None = None):
        if protocol is None:
            from agentkit.protocols.internlm2 import InternLM2Protocol

            protocol = InternLM2Protocol()
        self.protocol = protocol

    # -- what a backend implements -------------------------------------------------------------
    @abstractmethod
    def complete(self, prompts: list[str], config: GenerationConfig) -> list[Completion]:
        """Continue each prompt, stopping at ``config.stop`` (the stop word itself is not returned)."""

    def stream_complete(self, prompt: str, config: GenerationConfig) -> Iterator[str | Completion]:
        """Yield text pieces, then the final :class:`Completion`. Default: one piece."""
        completion = self.complete([prompt], config)[0]
        yield completion.text
        yield completion

    # -- ChatModel ---------------------------------------------------------------------------------
    def with_protocol(self, protocol: Protocol) -> CompletionModel:
        bound = copy.copy(self)
        bound.protocol = protocol
        return bound

    def render(self, messages: list[Message], tools: list[ToolSpec] | None = None) -> str:
        return self.protocol.prompt(messages, tools)

    def _config(self, config: GenerationConfig | None) -> GenerationConfig:
        return (config or GenerationConfig()).with_stop(self.protocol.stop_words)

    def _to_message(self, completion: Completion) -> Message:
        message = self.protocol.parse(completion.text)
        message.usage = Usage(
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            latency_s=completion.latency_s,
        )
        message.meta.setdefault("raw", completion.text)
        return message

    def generate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                 config: GenerationConfig | None = None) -> Message:
        return self.batch([messages], tools=tools, config=config)[0]

    def batch(self, conversations: list[list[Message]], *, tools: list[ToolSpec] | None = None,
              config: GenerationConfig | None = None) -> list[Message]:
        prompts = [self.render(c, tools) for c in conversations]
        completions = self.complete(prompts, self._config(config))
        return [self._to_message(c) for c in completions]

    def stream(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
               config: GenerationConfig | None = None) -> Iterator[MessageChunk]:
        prompt = self.render(messages, tools)
        for piece in self.stream_complete(prompt, self._config(config)):
            if isinstance(piece, Completion):
                yield MessageChunk(message=self._to_message(piece))
            elif piece:
                yield MessageChunk(delta=piece)


async def _iterate_in_thread(make_iter) -> AsyncIterator[Any]:
    """Drive a blocking iterator in a worker thread and hand its items to the event loop."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    done = object()
    stop = threading.Event()

    def put(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is gone: nobody is listening any more
            stop.set()

    def produce() -> None:
        try:
            for item in make_iter():
                if stop.is_set():
                    break
                put(item)
        except BaseException as exc:  # surfaced to the consumer
            put(exc)
        finally:
            put(done)

    threading.Thread(target=produce, daemon=True).start()
    try:
        while True:
            item = await queue.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
