"""Chat backend for any OpenAI-compatible server (vLLM, ``lmdeploy serve api_server``, ``agentkit serve``, OpenAI).

Plain httpx, so the openai SDK is not needed. Messages and tool schemas go over the wire natively
(``tool_calls`` in, ``tool_calls`` out); no text protocol is involved, so :meth:`with_protocol`
returns the model itself. Rate limits (429), server errors (5xx) and dropped connections are retried
with exponential backoff; any other HTTP error becomes a :class:`ModelHTTPError` that names the status,
the URL and what the server said.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from agentkit.errors import AgentkitError, ConfigError
from agentkit.llm import BaseChatModel, GenerationConfig, MessageChunk
from agentkit.messages import INTERPRETER_TOOL_NAME, Message, Usage, new_call_id
from agentkit.protocols.openai_tools import from_response
from agentkit.toolspec import ToolSpec

__all__ = ["ModelHTTPError", "OpenAIChatModel", "message_from_openai_response"]

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
_MAX_BACKOFF_S = 30.0


class ModelHTTPError(AgentkitError):
    """A chat-completions request failed; ``status`` is ``None`` when the server could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "", url: str = ""):
        super().__init__(message)
        self.status = status
        self.body = body
        self.url = url


def _server_text(body: str) -> str:
    """The server's own error message when it sent OpenAI-style JSON, else its text (shortened)."""
    try:
        data = json.loads(body)
        err = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
        if isinstance(err, str):
            return err[:500]
    except (json.JSONDecodeError, AttributeError):
        pass
    return body.strip()[:500] or "(empty response)"


def _http_error(status: int, body: str, url: str) -> ModelHTTPError:
    hint = {
        401: "set OPENAI_API_KEY or pass api_key=",
        403: "the key is not allowed to use this model: check the key and the model name",
        404: "check the base URL (it usually ends in /v1) and the model name (GET /v1/models lists them)",
        429: "rate limited even after retries: wait, or lower concurrency",
    }.get(status, "see the server's log" if status >= 500 else "check the request settings")
    return ModelHTTPError(f"POST {url} failed with HTTP {status}: {_server_text(body)} ({hint})",
                          status=status, body=body, url=url)


def _connection_error(exc: Exception, url: str) -> ModelHTTPError:
    return ModelHTTPError(f"could not reach {url}: {type(exc).__name__}: {exc or 'no detail'} "
                          "(is the server running and the base URL right?)", url=url)


def message_from_openai_response(data: dict[str, Any], *,
                                 interpreter_names: Iterable[str] = (INTERPRETER_TOOL_NAME,)) -> Message:
    """The assistant :class:`Message` for a reply's ``choices[i].message`` dict.

    The conversion is the ``openai_tools`` protocol's, so native and text tool calls read the same way:
    arguments that are not quite JSON are repaired, and a call that cannot be read turns the reply into
    a ``meta["parse_error"]`` naming the tool (no calls), so an agent can ask again. Calls to any tool
    declared with ``kind="interpreter"`` get that kind.
    """
    message = from_response(data)
    names = set(interpreter_names)
    for call in message.tool_calls:
        if call.name in names:
            call.kind = "interpreter"
    return message


class _StreamAssembler:
    """Builds the final message from SSE chunks: text deltas, tool-call deltas by index, usage."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.chunks = 0

    def feed(self, event: dict[str, Any]) -> str:
        """Take one parsed chunk; return its text delta (may be empty)."""
        if event.get("error"):
            raise ModelHTTPError(f"the server reported an error mid-stream: {_server_text(json.dumps(event))}")
        if event.get("usage"):
            self.usage = event["usage"]
        delta_text = ""
        for choice in event.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            self.chunks += 1
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            delta = choice.get("delta") or {}
            if delta.get("content"):
                delta_text += delta["content"]
            if delta.get("reasoning_content"):
                self.reasoning.append(delta["reasoning_content"])
            for part in delta.get("tool_calls") or []:
                index = part.get("index", len(self.calls))
                slot = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                if part.get("id"):
                    slot["id"] = part["id"]
                fn = part.get("function") or {}
                name = fn.get("name")
                if name and name != slot["name"]:  # most servers send it once; some repeat it whole
                    slot["name"] += name
                args = fn.get("arguments")
                if isinstance(args, dict):
                    slot["arguments"] = json.dumps(args)
                elif args:
                    slot["arguments"] += args
        self.text.append(delta_text)
        return delta_text

    def message(self, interpreter_names: tuple[str, ...], latency_s: float) -> Message:
        data: dict[str, Any] = {"role": "assistant", "content": "".join(self.text)}
        if self.calls:
            data["tool_calls"] = [
                {"id": slot["id"] or new_call_id(), "type": "function",
                 "function": {"name": slot["name"], "arguments": slot["arguments"]}}
                for _, slot in sorted(self.calls.items())
            ]
        if self.reasoning:
            data["reasoning_content"] = "".join(self.reasoning)
        message = message_from_openai_response(data, interpreter_names=interpreter_names)
        if self.usage:
            message.usage = Usage(prompt_tokens=self.usage.get("prompt_tokens") or 0,
                                  completion_tokens=self.usage.get("completion_tokens") or 0, latency_s=latency_s)
        else:  # the server ignored stream_options.include_usage: count chunks as an estimate
            message.usage = Usage(completion_tokens=self.chunks, latency_s=latency_s)
            message.meta["usage_estimated"] = True
        if self.finish_reason:
            message.meta["finish_reason"] = self.finish_reason
        return message


_DONE = object()


def _sse_event(line: str) -> Any:
    """The parsed ``data:`` payload of one SSE line; ``_DONE`` for ``[DONE]``; ``None`` for anything else."""
    if not line.startswith("data:"):
        return None  # comments (": keep-alive"), event names, blank separators
    payload = line[5:].strip()
    if payload == "[DONE]":
        return _DONE
    if not payload:
        return None
    try:
        return json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ModelHTTPError(f"the server sent a stream chunk that is not JSON ({exc}): "
                             f"{payload[:200]!r}") from None


def _is_json(response: httpx.Response) -> bool:
    """A server that ignores ``stream: true`` answers with one plain JSON completion."""
    return response.headers.get("content-type", "").split(";")[0].strip() == "application/json"


class OpenAIChatModel(BaseChatModel):
    """A model behind ``POST {base_url}/chat/completions``.

    ``api_key`` defaults to ``$OPENAI_API_KEY`` (local servers usually need none). ``transport`` replaces
    httpx's network transport (tests). ``extra_body`` is merged into every request, for server-specific
    options (``{"max_completion_tokens": ...}``, ``{"top_k": 20}``). ``max_concurrency`` bounds the
    parallel requests of :meth:`batch` / :meth:`abatch`.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 60,
                 transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None, max_retries: int = 2,
                 retry_backoff_s: float = 0.5, extra_body: dict[str, Any] | None = None,
                 max_concurrency: int = 8, headers: dict[str, str] | None = None):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base URL {base_url!r} must start with http:// or https://, "
                              "e.g. http://localhost:8000/v1")
        if not model:
            raise ConfigError("no model name given: use openai:BASE_URL#MODEL, e.g. openai:http://localhost:8000/v1#internlm2")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, got {max_retries}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.model_name = f"openai:{self.base_url}#{model}"
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.extra_body = dict(extra_body or {})
        self.max_concurrency = max(1, max_concurrency)
        self.transport = transport
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if self.api_key:
            self._headers["Authorization"] = f"Bearer {self.api_key}"
        self._client: httpx.Client | None = None

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> OpenAIChatModel:
        """``BASE_URL#MODEL``, the part of an ``openai:`` model spec after the colon."""
        base_url, sep, model = spec.rpartition("#")
        if not sep or not base_url or not model:
            raise ConfigError(f"openai model spec {spec!r} needs a base URL and a model: "
                              "openai:BASE_URL#MODEL, e.g. openai:http://localhost:8000/v1#internlm2")
        return cls(base_url, model, **kwargs)

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    # -- request / response ------------------------------------------------------------------------
    def request_body(self, messages: list[Message], tools: list[ToolSpec] | None,
                     config: GenerationConfig | None, *, stream: bool = False) -> dict[str, Any]:
        """The JSON sent for one call (public so callers can log or inspect it)."""
        config = config or GenerationConfig()
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_openai() for m in messages],
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
        }
        if tools:
            body["tools"] = [t.to_openai() for t in tools]
        if config.stop:
            body["stop"] = list(config.stop)
        if config.seed is not None:
            body["seed"] = config.seed
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        body.update(self.extra_body)
        return body

    @staticmethod
    def _interpreter_names(tools: list[ToolSpec] | None) -> tuple[str, ...]:
        names = tuple(t.name for t in tools or [] if t.kind == "interpreter")
        return names or (INTERPRETER_TOOL_NAME,)

    def _parse_response(self, response: httpx.Response, tools: list[ToolSpec] | None, latency_s: float) -> Message:
        try:
            data = response.json()
            choice = data["choices"][0]
            raw = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ModelHTTPError(f"POST {self.url} returned something that is not a chat completion: "
                                 f"{response.text[:300]!r}", status=response.status_code, body=response.text,
                                 url=self.url) from None
        message = message_from_openai_response(raw, interpreter_names=self._interpreter_names(tools))
        usage = data.get("usage") or {}
        message.usage = Usage(prompt_tokens=usage.get("prompt_tokens") or 0,
                              completion_tokens=usage.get("completion_tokens") or 0, latency_s=latency_s)
        if choice.get("finish_reason"):
            message.meta["finish_reason"] = choice["finish_reason"]
        return message

    def _backoff(self, attempt: int, response: httpx.Response | None) -> float:
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after:
            try:
                return min(float(retry_after), _MAX_BACKOFF_S)
            except ValueError:
                pass
        return min(self.retry_backoff_s * (2 ** attempt), _MAX_BACKOFF_S) * (1 + 0.1 * random.random())

    # -- sync ---------------------------------------------------------------------------------------
    def _sync_client(self) -> httpx.Client:
        if self._client is None:
            transport = self.transport if isinstance(self.transport, httpx.BaseTransport) else None
            self._client = httpx.Client(timeout=self.timeout, headers=self._headers, transport=transport)
        return self._client

    def close(self) -> None:
        """Close the pooled HTTP connections (the model stays usable; a new pool opens on the next call)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> OpenAIChatModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, body: dict[str, Any], *, stream: bool) -> httpx.Response:
        """Send with retries; the returned response has a 2xx status (a stream is still open)."""
        client = self._sync_client()
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = client.send(client.build_request("POST", self.url, json=body), stream=stream)
            except httpx.TransportError as exc:
                if last:
                    raise _connection_error(exc, self.url) from exc
                time.sleep(self._backoff(attempt, None))
                continue
            if response.status_code < 400:
                return response
            text = response.read().decode("utf-8", "replace")
            response.close()
            if response.status_code in _RETRY_STATUS and not last:
                time.sleep(self._backoff(attempt, response))
                continue
            raise _http_error(response.status_code, text, self.url)
        raise AssertionError("unreachable")  # the loop returns or raises

    def generate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                 config: GenerationConfig | None = None) -> Message:
        start = time.perf_counter()
        response = self._send(self.request_body(messages, tools, config), stream=False)
        return self._parse_response(response, tools, time.perf_counter() - start)

    def stream(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
               config: GenerationConfig | None = None) -> Iterator[MessageChunk]:
        """Text deltas as they arrive, then the complete message (tool calls assembled, usage set).

        Retries cover opening the stream only; a stream that breaks after text was yielded raises.
        """
        start = time.perf_counter()
        response = self._send(self.request_body(messages, tools, config, stream=True), stream=True)
        if _is_json(response):
            response.read()
            response.close()
            yield from self._whole(self._parse_response(response, tools, time.perf_counter() - start))
            return
        assembler = _StreamAssembler()
        try:
            for line in response.iter_lines():
                event = _sse_event(line)
                if event is _DONE:
                    break
                if event is not None and (delta := assembler.feed(event)):
                    yield MessageChunk(delta=delta)
        except httpx.TransportError as exc:
            raise _connection_error(exc, self.url) from exc
        finally:
            response.close()
        yield MessageChunk(message=assembler.message(self._interpreter_names(tools), time.perf_counter() - start))

    @staticmethod
    def _whole(message: Message) -> Iterator[MessageChunk]:
        if message.text:
            yield MessageChunk(delta=message.text)
        yield MessageChunk(message=message)

    def batch(self, conversations: list[list[Message]], *, tools: list[ToolSpec] | None = None,
              config: GenerationConfig | None = None) -> list[Message]:
        """Concurrent requests (up to ``max_concurrency``): servers batch them on their side."""
        if len(conversations) <= 1:
            return [self.generate(c, tools=tools, config=config) for c in conversations]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(conversations))) as pool:
            return list(pool.map(lambda c: self.generate(c, tools=tools, config=config), conversations))

    # -- async --------------------------------------------------------------------------------------
    def _async_client(self) -> httpx.AsyncClient:
        # One client per call: an AsyncClient belongs to the event loop that created it.
        transport = self.transport if isinstance(self.transport, httpx.AsyncBaseTransport) else None
        return httpx.AsyncClient(timeout=self.timeout, headers=self._headers, transport=transport)

    async def _asend(self, client: httpx.AsyncClient, body: dict[str, Any], *, stream: bool) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = await client.send(client.build_request("POST", self.url, json=body), stream=stream)
            except httpx.TransportError as exc:
                if last:
                    raise _connection_error(exc, self.url) from exc
                await asyncio.sleep(self._backoff(attempt, None))
                continue
            if response.status_code < 400:
                return response
            text = (await response.aread()).decode("utf-8", "replace")
            await response.aclose()
            if response.status_code in _RETRY_STATUS and not last:
                await asyncio.sleep(self._backoff(attempt, response))
                continue
            raise _http_error(response.status_code, text, self.url)
        raise AssertionError("unreachable")

    async def agenerate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                        config: GenerationConfig | None = None) -> Message:
        start = time.perf_counter()
        async with self._async_client() as client:
            response = await self._asend(client, self.request_body(messages, tools, config), stream=False)
        return self._parse_response(response, tools, time.perf_counter() - start)

    async def astream(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                      config: GenerationConfig | None = None) -> AsyncIterator[MessageChunk]:
        start = time.perf_counter()
        assembler = _StreamAssembler()
        async with self._async_client() as client:
            response = await self._asend(client, self.request_body(messages, tools, config, stream=True), stream=True)
            if _is_json(response):
                await response.aread()
                await response.aclose()
                for chunk in self._whole(self._parse_response(response, tools, time.perf_counter() - start)):
                    yield chunk
                return
            try:
                async for line in response.aiter_lines():
                    event = _sse_event(line)
                    if event is _DONE:
                        break
                    if event is not None and (delta := assembler.feed(event)):
                        yield MessageChunk(delta=delta)
            except httpx.TransportError as exc:
                raise _connection_error(exc, self.url) from exc
            finally:
                await response.aclose()
        yield MessageChunk(message=assembler.message(self._interpreter_names(tools), time.perf_counter() - start))

    async def abatch(self, conversations: list[list[Message]], *, tools: list[ToolSpec] | None = None,
                     config: GenerationConfig | None = None) -> list[Message]:
        limit = asyncio.Semaphore(self.max_concurrency)

        async def one(conversation: list[Message]) -> Message:
            async with limit:
                return await self.agenerate(conversation, tools=tools, config=config)

        return list(await asyncio.gather(*(one(c) for c in conversations)))
