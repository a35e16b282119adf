"""LangChain chat models ⇄ agentkit chat models, and messages both ways.

- :class:`AgentkitChatModel` is any agentkit :class:`~agentkit.llm.ChatModel` (the embedded model, a scripted one,
  an InternLM2 checkpoint with its protocol) as a LangChain chat model: ``invoke`` / ``stream`` / async,
  ``bind_tools``, ``with_structured_output``, so it drops into ``langchain.agents.create_agent`` or LCEL.
- :class:`LangChainChatModel` is any LangChain chat model as an agentkit ChatModel, for agentkit agents.
- :func:`to_langchain_messages` / :func:`from_langchain_messages` convert conversations: ``environment`` ⇄
  ``ToolMessage``, tool calls both ways, images / audio / files as standard content blocks.

This module imports langchain-core; ``import agentkit`` does not import it.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel as LangChainBaseChatModel
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, model_validator

from agentkit.errors import ConfigError
from agentkit.llm import BaseChatModel, ChatModel, CompletionModel, GenerationConfig, MessageChunk
from agentkit.messages import (
    INTERPRETER_TOOL_NAME,
    AudioPart,
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    Usage,
    new_call_id,
)
from agentkit.protocols import get_protocol
from agentkit.toolspec import ToolSpec

__all__ = [
    "AgentkitChatModel",
    "LangChainChatModel",
    "as_tool_spec",
    "from_langchain_message",
    "from_langchain_messages",
    "to_langchain_message",
    "to_langchain_messages",
]

#: ``additional_kwargs`` key for what LangChain messages have no field for (``meta``, the environment kind).
EXTRA_KEY = "agentkit"

# -- messages: agentkit → LangChain -------------------------------------------------------------


def to_langchain_messages(messages: Sequence[Message]) -> list[BaseMessage]:
    return [to_langchain_message(m) for m in messages]


def to_langchain_message(message: Message) -> BaseMessage:
    """One message as its LangChain type; ``meta`` travels in ``additional_kwargs["agentkit"]``."""
    content = _content_to_langchain(message.content)
    extra: dict[str, Any] = {"meta": dict(message.meta)} if message.meta else {}
    if message.role == "system":
        return SystemMessage(content, name=message.name, additional_kwargs=_wrap(extra))
    if message.role == "user":
        return HumanMessage(content, name=message.name, additional_kwargs=_wrap(extra))
    if message.role == "assistant":
        return AIMessage(**_ai_fields(message, content))
    extra["name"] = message.name
    if message.tool_call_id is None:  # feedback not tied to a call (a parse error): a chat API wants a user turn
        return HumanMessage(content, additional_kwargs=_wrap({**extra, "role": "environment"}))
    return ToolMessage(
        content,
        tool_call_id=message.tool_call_id,
        name=message.meta.get("tool_name"),
        status="error" if message.meta.get("error") else "success",
        additional_kwargs=_wrap(extra),
    )


def _wrap(extra: dict[str, Any]) -> dict[str, Any]:
    return {EXTRA_KEY: extra} if extra else {}


def _ai_fields(message: Message, content: Any) -> dict[str, Any]:
    """The fields of an ``AIMessage`` for an assistant message (a parse error becomes an invalid tool call)."""
    extra: dict[str, Any] = {"meta": dict(message.meta)} if message.meta else {}
    interpreter = [c.id for c in message.tool_calls if c.kind == "interpreter" and c.name != INTERPRETER_TOOL_NAME]
    if interpreter:
        extra["interpreter_calls"] = interpreter
    fields: dict[str, Any] = {
        "content": content,
        "name": message.name,
        "tool_calls": [{"type": "tool_call", "id": c.id, "name": c.name, "args": c.arguments}
                       for c in message.tool_calls],
        "additional_kwargs": _wrap(extra),
    }
    if message.parse_error:
        raw = message.meta.get("raw")
        fields["invalid_tool_calls"] = [{"type": "invalid_tool_call", "id": None, "name": None,
                                         "args": raw if isinstance(raw, str) else None,
                                         "error": message.parse_error}]
    if message.usage is not None:
        fields["usage_metadata"] = {"input_tokens": message.usage.prompt_tokens,
                                    "output_tokens": message.usage.completion_tokens,
                                    "total_tokens": message.usage.total_tokens}
        fields["response_metadata"] = {"latency_s": message.usage.latency_s}
    return fields


def _content_to_langchain(content: str | list[ContentPart]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    return [_block(part) for part in content]


def _block(part: ContentPart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        block = _media_block("image", part.url, None)
        if part.detail:
            block["extras"] = {"detail": part.detail}
        return block
    if isinstance(part, AudioPart):
        return _media_block("audio", part.url, f"audio/{part.format}" if part.format else None)
    block = _media_block("file", part.path, part.mime_type)
    if part.name:
        block["extras"] = {"filename": part.name}
    return block


def _media_block(kind: str, ref: str, mime: str | None) -> dict[str, Any]:
    """A standard LangChain block for a reference. Local files are inlined as base64, because the model behind
    a LangChain chat model is usually remote and cannot open a path (agentkit's OpenAI conversion does the same)."""
    block: dict[str, Any] = {"type": kind}
    if ref.startswith("data:"):
        header, _, data = ref.partition(",")
        block["mime_type"] = header[5:].split(";")[0] or mime or "application/octet-stream"
        if ";base64" in header:
            block["base64"] = data
        else:
            block["url"] = ref
        return block
    path = Path(ref.removeprefix("file://"))
    if not ref.startswith(("http://", "https://")) and _is_file(path):
        block["base64"] = base64.b64encode(path.read_bytes()).decode()
        block["mime_type"] = mime or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return block
    block["url"] = ref
    if mime:
        block["mime_type"] = mime
    return block


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL in it: not a file
        return False


# -- messages: LangChain → agentkit -------------------------------------------------------------

_CHAT_ROLES = {"user": "user", "human": "user", "system": "system", "developer": "system",
               "assistant": "assistant", "ai": "assistant"}
#: Block types that are not message content: tool calls travel in ``tool_calls``, the rest is provider data.
_NOT_CONTENT = {"tool_call", "tool_call_chunk", "invalid_tool_call", "server_tool_call", "server_tool_call_chunk",
                "server_tool_result"}


def from_langchain_messages(messages: Sequence[BaseMessage | dict[str, Any] | tuple[str, str] | str]
                            ) -> list[Message]:
    """LangChain messages (or anything ``convert_to_messages`` takes: dicts, ``(role, text)`` pairs, strings)."""
    return [from_langchain_message(m) for m in convert_to_messages(messages)]


def from_langchain_message(message: BaseMessage) -> Message:
    """One LangChain message as an agentkit message; raises ``ValueError`` saying what cannot be converted."""
    extra = message.additional_kwargs.get(EXTRA_KEY) or {}
    meta = dict(extra.get("meta") or {})
    if isinstance(message, AIMessage):
        return _from_ai(message, extra, meta)
    content, _ = _content_from_langchain(message, assistant=False)
    if isinstance(message, ToolMessage):
        tool_name = message.name or meta.get("tool_name")
        derived: dict[str, Any] = {"tool_name": tool_name} if tool_name else {}
        if message.status == "error":
            derived["error"] = True
        kind = extra.get("name") or ("interpreter" if tool_name == INTERPRETER_TOOL_NAME else "plugin")
        return Message(role="environment", name=kind, tool_call_id=message.tool_call_id, content=content,
                       meta={**derived, **meta})
    if isinstance(message, FunctionMessage):
        return Message(role="environment", name="plugin", content=content, meta={"tool_name": message.name, **meta})
    if isinstance(message, HumanMessage):
        if extra.get("role") == "environment":
            return Message(role="environment", name=extra.get("name"), content=content, meta=meta)
        return Message(role="user", content=content, name=message.name, meta=meta)
    if isinstance(message, SystemMessage):
        return Message(role="system", content=content, name=message.name, meta=meta)
    if isinstance(message, ChatMessage) and message.role in _CHAT_ROLES:
        role = _CHAT_ROLES[message.role]
        return Message(role=role, content=content, name=message.name, meta=meta)  # type: ignore[arg-type]
    role = getattr(message, "role", message.type)
    raise ValueError(f"cannot convert a LangChain {type(message).__name__} with role {role!r}: "
                     "use system, human/user, ai/assistant or tool messages")


def _from_ai(message: AIMessage, extra: dict[str, Any], meta: dict[str, Any]) -> Message:
    content, reasoning = _content_from_langchain(message, assistant=True)
    interpreter = set(extra.get("interpreter_calls") or [])
    calls = [
        ToolCall(id=c.get("id") or new_call_id(), name=c["name"], arguments=dict(c.get("args") or {}),
                 kind="interpreter" if c["name"] == INTERPRETER_TOOL_NAME or c.get("id") in interpreter else "plugin")
        for c in message.tool_calls
    ]
    derived: dict[str, Any] = {}
    if reasoning:
        derived["reasoning"] = reasoning
    if message.invalid_tool_calls:
        derived["parse_error"] = "; ".join(
            f"tool call {c.get('name') or '(unnamed)'!r}: {c.get('error') or 'arguments are not a JSON object'}"
            for c in message.invalid_tool_calls
        ) + ". Call tools with arguments as a JSON object"
    usage = None
    if message.usage_metadata is not None:
        usage = Usage(prompt_tokens=message.usage_metadata.get("input_tokens", 0),
                      completion_tokens=message.usage_metadata.get("output_tokens", 0),
                      latency_s=float(message.response_metadata.get("latency_s", 0.0)))
    return Message(role="assistant", content=content, name=message.name, tool_calls=calls, usage=usage,
                   meta={**derived, **meta})


def _content_from_langchain(message: BaseMessage, *, assistant: bool) -> tuple[str | list[ContentPart], str]:
    """The content as agentkit content, and any reasoning text (kept in ``meta`` for assistant replies)."""
    if isinstance(message.content, str):
        return message.content, ""
    parts: list[ContentPart] = []
    reasoning: list[str] = []
    for block in message.content_blocks:
        kind = block.get("type")
        if kind == "text":
            parts.append(TextPart(text=block.get("text", "")))
        elif kind == "text-plain":
            parts.append(TextPart(text=block.get("text") or ""))
        elif kind in ("image", "audio", "file"):
            parts.append(_part(kind, block))
        elif kind == "reasoning":
            reasoning.append(block.get("reasoning") or "")
        elif kind in _NOT_CONTENT or (assistant and kind == "non_standard"):
            continue
        else:
            value = block.get("value", block) if kind == "non_standard" else block
            raise ValueError(f"unsupported content block {json.dumps(value, default=str)[:80]} in a "
                             f"{type(message).__name__}: use text, image, audio or file blocks")
    return parts, "\n".join(r for r in reasoning if r)


def _part(kind: str, block: dict[str, Any]) -> ContentPart:
    extras = block.get("extras") or {}
    mime = block.get("mime_type")
    if block.get("base64"):
        ref = f"data:{mime or 'application/octet-stream'};base64,{block['base64']}"
    else:
        ref = block.get("url") or block.get("file_id") or ""
    if kind == "image":
        return ImagePart(url=ref, detail=extras.get("detail"))
    if kind == "audio":
        return AudioPart(url=ref, format=mime.split("/", 1)[1] if mime and "/" in mime else None)
    return FilePart(path=ref, mime_type=mime, name=extras.get("filename"))


# -- tools -------------------------------------------------------------------------------------


def as_tool_spec(tool: Any) -> ToolSpec:
    """A ToolSpec from what ``bind_tools`` accepts: an agentkit tool or spec, a LangChain tool, an OpenAI tool
    dict, a JSON schema, a pydantic model, a TypedDict or a typed function."""
    if isinstance(tool, ToolSpec):
        return tool
    spec = getattr(tool, "spec", None)
    if isinstance(spec, ToolSpec):
        return spec
    try:
        function = convert_to_openai_tool(tool)["function"]
    except (ValueError, TypeError, KeyError) as exc:
        raise TypeError(f"cannot use {tool!r:.80} as a tool ({exc}): pass an agentkit or LangChain tool, an "
                        "OpenAI tool dict, a JSON schema, a pydantic model or a typed function") from None
    marks = (getattr(tool, "metadata", None) or {}).get(EXTRA_KEY) or {}
    name = function["name"]
    return ToolSpec(
        name=name,
        description=function.get("description") or "",
        parameters=function.get("parameters") or {"type": "object", "properties": {}},
        kind=marks.get("kind") or ("interpreter" if name == INTERPRETER_TOOL_NAME else "plugin"),
    )


def _chosen(tools: Sequence[Any] | None, tool_choice: Any) -> list[ToolSpec] | None:
    """The specs a call offers the model. A text protocol cannot force a call, so ``"any"`` / ``"required"``
    offer every tool and a named choice offers that tool alone."""
    specs = [as_tool_spec(t) for t in tools or []]
    if tool_choice in (None, True, "auto", "any", "required"):
        return specs or None
    if tool_choice in (False, "none"):
        return None
    name = tool_choice.get("function", tool_choice).get("name") if isinstance(tool_choice, dict) else tool_choice
    chosen = [s for s in specs if s.name == name]
    if not chosen:
        raise ValueError(f"tool_choice {tool_choice!r} names no bound tool: use one of "
                         f"{', '.join(s.name for s in specs) or '(none bound)'}, 'auto', 'any' or 'none'")
    return chosen


# -- agentkit model as a LangChain chat model ------------------------------------------------------


class AgentkitChatModel(LangChainBaseChatModel):
    """An agentkit ChatModel as a LangChain chat model.

    ``AgentkitChatModel(ScriptedModel(...), protocol="openai_tools")`` or ``AgentkitChatModel("embedded")``.
    ``protocol`` binds a text protocol to a completion model (``internlm2``, ``react``, ``openai_tools``); a
    model's default otherwise. Tools bound with ``bind_tools`` reach the model as tool specs, and the calls it
    writes come back as ``AIMessage.tool_calls``; ``with_structured_output`` is LangChain's own, built on those
    calls (a text protocol cannot force a call, so the model must choose to make it). Sampling settings are ``generation``; LangChain's ``stop`` words are added to them.

    Streaming: chat backends stream their text deltas as chunks. A completion model's raw text also holds its
    protocol's markup (``<tool_call>…``, ``Action:``), which is not message content and cannot be taken back
    once streamed, so it is streamed as one chunk holding the parsed reply.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: ChatModel = Field(description="the agentkit ChatModel (or a model spec for agentkit.models.load_model)")
    protocol: Any = Field(None, description="a Protocol or protocol name bound to a completion model")
    generation: GenerationConfig = Field(default_factory=GenerationConfig)

    def __init__(self, model: ChatModel | str | None = None, /, **data: Any):
        if model is not None:
            data["model"] = model
        super().__init__(**data)

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "model" not in data:
            return data
        model = data["model"]
        if isinstance(model, str):
            from agentkit.models import load_model

            model = load_model(model)
        if not isinstance(model, ChatModel):
            raise TypeError(
                f"AgentkitChatModel wraps an agentkit ChatModel or a model spec, got {type(model).__name__}")
        protocol = data.get("protocol")
        if protocol is not None:
            model = model.with_protocol(get_protocol(protocol) if isinstance(protocol, str) else protocol)
        return {**data, "model": model}

    @property
    def _llm_type(self) -> str:
        return "agentkit"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        protocol = getattr(self.model, "protocol", None)
        return {"model_name": getattr(self.model, "model_name", type(self.model).__name__),
                "protocol": getattr(protocol, "name", None)}

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
                   ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools of any kind :func:`as_tool_spec` takes; ``tool_choice`` may narrow them (see ``_chosen``)."""
        specs = [as_tool_spec(t) for t in tools]
        _chosen(specs, tool_choice)  # a bad choice fails here, not at the first call
        return self.bind(tools=[s.to_openai() for s in specs], tool_choice=tool_choice, **kwargs)

    def _call_args(self, messages: list[BaseMessage], stop: list[str] | None,
                   kwargs: dict[str, Any]) -> tuple[list[Message], list[ToolSpec] | None, GenerationConfig]:
        config = self.generation.with_stop(stop) if stop else self.generation
        return from_langchain_messages(messages), _chosen(kwargs.get("tools"), kwargs.get("tool_choice")), config

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        history, specs, config = self._call_args(messages, stop, kwargs)
        return self._result(self.model.generate(history, tools=specs, config=config))

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        history, specs, config = self._call_args(messages, stop, kwargs)
        return self._result(await self.model.agenerate(history, tools=specs, config=config))

    def _result(self, reply: Message) -> ChatResult:
        message = to_langchain_message(reply)
        message.response_metadata["model_name"] = self._identifying_params["model_name"]
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        history, specs, config = self._call_args(messages, stop, kwargs)
        relay = _ChunkRelay(stream_text=not isinstance(self.model, CompletionModel))
        for chunk in self.model.stream(history, tools=specs, config=config):
            yield from relay.feed(chunk)
        relay.check()

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
                       ) -> AsyncIterator[ChatGenerationChunk]:
        history, specs, config = self._call_args(messages, stop, kwargs)
        relay = _ChunkRelay(stream_text=not isinstance(self.model, CompletionModel))
        async for chunk in self.model.astream(history, tools=specs, config=config):
            for out in relay.feed(chunk):
                yield out
        relay.check()


class _ChunkRelay:
    """Our MessageChunks as LangChain chunks: text deltas as they come (when they are content), then one last
    chunk with whatever content is still missing, the tool calls, usage and ``meta``."""

    def __init__(self, stream_text: bool):
        self.stream_text = stream_text
        self.sent = ""
        self.done = False

    def feed(self, chunk: MessageChunk) -> Iterator[ChatGenerationChunk]:
        if chunk.delta and self.stream_text and chunk.message is None:
            self.sent += chunk.delta
            yield ChatGenerationChunk(message=AIMessageChunk(content=chunk.delta))
        if chunk.message is not None:
            self.done = True
            yield ChatGenerationChunk(message=self._last(chunk.message))

    def _last(self, message: Message) -> AIMessageChunk:
        if isinstance(message.content, str):
            content: Any = message.content[len(self.sent):] if message.content.startswith(self.sent) else ""
        else:
            content = _content_to_langchain(message.content) if not self.sent else []
        fields = _ai_fields(message, content)
        fields.pop("invalid_tool_calls", None)  # a last chunk derives them from tool_call_chunks; meta keeps the error
        calls = fields.pop("tool_calls")
        fields["tool_call_chunks"] = [
            {"type": "tool_call_chunk", "id": c["id"], "name": c["name"], "args": json.dumps(c["args"]), "index": i}
            for i, c in enumerate(calls)
        ]
        return AIMessageChunk(**fields, chunk_position="last")

    def check(self) -> None:
        if not self.done:
            raise RuntimeError("the agentkit model ended its stream without a final message")


# -- LangChain model as an agentkit ChatModel ------------------------------------------------------


class LangChainChatModel(BaseChatModel):
    """Any LangChain chat model as an agentkit ChatModel (``create_agent("react", LangChainChatModel(llm))``).

    Tools are bound with the model's own ``bind_tools``; ``bind_tools=False`` calls it without tool schemas (a
    model whose prompt already lists the tools, or a fake one in tests). Sampling settings belong to the LangChain
    model (its ``temperature``, ``max_tokens``); of :class:`GenerationConfig` only ``stop`` is passed on. Usage
    comes from ``usage_metadata``, latency is measured here.
    """

    def __init__(self, model: LangChainBaseChatModel, *, bind_tools: bool = True, model_name: str | None = None):
        if not isinstance(model, (LangChainBaseChatModel, Runnable)):
            raise TypeError(f"LangChainChatModel wraps a LangChain chat model, got {type(model).__name__}")
        self.model = model
        self.bind_tools = bind_tools
        self.model_name = model_name or _langchain_name(model)

    def _runnable(self, tools: list[ToolSpec] | None, config: GenerationConfig | None
                  ) -> tuple[Runnable[Any, Any], dict[str, Any]]:
        runnable: Runnable[Any, Any] = self.model
        if tools and self.bind_tools:
            try:
                runnable = self.model.bind_tools([t.to_openai() for t in tools])  # type: ignore[attr-defined]
            except (NotImplementedError, AttributeError):
                raise ConfigError(
                    f"{type(self.model).__name__} cannot take tools (its bind_tools is not implemented): use a model "
                    "with tool calling, or LangChainChatModel(..., bind_tools=False) to call it without tool schemas"
                ) from None
        return runnable, ({"stop": list(config.stop)} if config is not None and config.stop else {})

    def generate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                 config: GenerationConfig | None = None) -> Message:
        runnable, kwargs = self._runnable(tools, config)
        started = time.perf_counter()
        return _reply(runnable.invoke(to_langchain_messages(messages), **kwargs), started)

    async def agenerate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                        config: GenerationConfig | None = None) -> Message:
        runnable, kwargs = self._runnable(tools, config)
        started = time.perf_counter()
        return _reply(await runnable.ainvoke(to_langchain_messages(messages), **kwargs), started)

    def batch(self, conversations: list[list[Message]], *, tools: list[ToolSpec] | None = None,
              config: GenerationConfig | None = None) -> list[Message]:
        runnable, kwargs = self._runnable(tools, config)
        started = time.perf_counter()
        replies = runnable.batch([to_langchain_messages(c) for c in conversations], **kwargs)
        return [_reply(r, started) for r in replies]

    async def abatch(self, conversations: list[list[Message]], *, tools: list[ToolSpec] | None = None,
                     config: GenerationConfig | None = None) -> list[Message]:
        runnable, kwargs = self._runnable(tools, config)
        started = time.perf_counter()
        replies = await runnable.abatch([to_langchain_messages(c) for c in conversations], **kwargs)
        return [_reply(r, started) for r in replies]

    def stream(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
               config: GenerationConfig | None = None) -> Iterator[MessageChunk]:
        runnable, kwargs = self._runnable(tools, config)
        started = time.perf_counter()
        total: BaseMessage | None = None
        for piece in runnable.stream(to_langchain_messages(messages), **kwargs):
            total = piece if total is None else total + piece  # type: ignore[operator]
            if text := str(piece.text):
                yield MessageChunk(delta=text)
        yield MessageChunk(message=_reply(total if total is not None else AIMessage(""), started))

    async def astream(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                      config: GenerationConfig | None = None) -> AsyncIterator[MessageChunk]:
        runnable, kwargs = self._runnable(tools, config)
        started = time.perf_counter()
        total: BaseMessage | None = None
        async for piece in runnable.astream(to_langchain_messages(messages), **kwargs):
            total = piece if total is None else total + piece  # type: ignore[operator]
            if text := str(piece.text):
                yield MessageChunk(delta=text)
        yield MessageChunk(message=_reply(total if total is not None else AIMessage(""), started))


def _reply(output: Any, started: float) -> Message:
    if not isinstance(output, AIMessage):
        raise TypeError(f"the LangChain model returned {type(output).__name__}, not an AIMessage")
    message = from_langchain_message(output)
    usage = message.usage or Usage()
    message.usage = usage.model_copy(update={"latency_s": time.perf_counter() - started})
    return message


def _langchain_name(model: Any) -> str:
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return f"langchain:{value}"
    return f"langchain:{type(model).__name__}"
