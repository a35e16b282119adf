"""An OpenAI-compatible HTTP server for an :class:`~agentkit.models.serving.engine.Engine` or any chat model.

Routes: ``POST /v1/chat/completions`` (JSON or SSE stream, ``tools``), ``POST /v1/completions`` (raw
prompts, engine and completion models only), ``GET /v1/models``, ``GET /health``, ``GET /metrics``
(Prometheus text). Tools are rendered into the prompt by the model's protocol and the reply is parsed
back by the same protocol (InternLM2 actions, ``<tool_call>`` blocks ...), then sent as OpenAI
``tool_calls`` through :meth:`Message.to_openai <agentkit.messages.Message.to_openai>`: the server
adds no parsing of its own. With ``tools`` in a streamed request the reply is sent once parsed,
because whether text is a call is known only after the protocol has read it; without tools, text
streams as it is decoded.

Client errors are 4xx in OpenAI's error shape (unknown or unsupported fields included, so a caller
never believes an option took effect when it did not); a full engine queue is 503 with
``Retry-After``. With ``api_key`` set, ``/v1/*`` needs ``Authorization: Bearer <key>``; ``/health``
and ``/metrics`` stay open for probes and scrapers.

:func:`serve` runs the engine loop on the main thread and uvicorn in a background thread: uvicorn
only does I/O, while the model's matmuls run 1.5-2.4x slower off the main thread on our CPUs.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentkit.errors import AgentkitError, ConfigError
from agentkit.llm import ChatModel, Completion, CompletionModel, GenerationConfig, _iterate_in_thread
from agentkit.messages import INTERPRETER_TOOL_NAME, Message
from agentkit.models import EMBEDDED_SPECS, is_local_spec
from agentkit.models.serving.engine import Engine, EngineClosed, EngineConfig, EngineModel, QueueFull
from agentkit.models.serving.metrics import Counter, Registry
from agentkit.toolspec import ToolSpec

__all__ = ["ChatCompletionRequest", "CompletionRequest", "create_app", "serve"]

#: Seconds a client should wait after a 503 for a full queue.
RETRY_AFTER_S = 1
#: Paths counted by name in the HTTP metric (anything else is "other", so scanners cannot grow the label set).
_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics")


# -- request bodies -------------------------------------------------------------------------------------

class _Body(BaseModel):
    """Unknown fields are errors: a misspelled or unsupported option must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Body):
    include_usage: bool = False


class _SamplingBody(_Body):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n=1 is supported: send several requests for several samples")
        return value

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, value: float) -> float:
        if value != 0:
            raise ValueError("penalties are not supported: leave it at 0")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _no_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value:
            raise ValueError("logit_bias is not supported")
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 16 or any(not s for s in stops):
            raise ValueError("stop takes up to 16 non-empty strings")
        return value

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatCompletionRequest(_SamplingBody):
    """The accepted subset of OpenAI's chat-completions request."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["auto", "none"] | None = None
    parallel_tool_calls: bool | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    response_format: dict[str, Any] | None = None

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool) -> bool:
        if value:
            raise ValueError("logprobs are not supported")
        return value

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type") != "text":
            raise ValueError("only response_format {'type': 'text'} is supported")
        return value


class CompletionRequest(_SamplingBody):
    """The accepted subset of OpenAI's (legacy) completions request."""

    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for this endpoint
    echo: bool = False
    logprobs: int | None = None
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _some_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one prompt")
        return value

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo is not supported")
        return value

    @field_validator("logprobs", "suffix")
    @classmethod
    def _unsupported(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("not supported")
        return value


# -- errors -------------------------------------------------------------------------------------------

class APIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.headers = status, message, kind, code, headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": None, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        where = ".".join(loc)
        if error.get("type") == "json_invalid":
            parts.append(f"the request body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})")
        elif error.get("type") == "extra_forbidden":
            parts.append(f"unknown field {where!r}")
        elif error.get("type") == "missing":
            parts.append(f"missing field {where!r}")
        else:
            message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
            parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts) or "invalid request"


def _busy(exc: Exception) -> APIError:
    return APIError(503, f"the server is busy: {exc}", kind="server_overloaded", code="queue_full",
                    headers={"Retry-After": str(RETRY_AFTER_S)})


async def _guard(call: Callable[[], Awaitable[Any]]) -> Any:
    """Map the model's user-facing errors to HTTP statuses (a full queue to 503, bad input to 400)."""
    try:
        return await call()
    except QueueFull as exc:
        raise _busy(exc) from exc
    except EngineClosed as exc:
        raise APIError(503, f"the engine is shutting down: {exc}", kind="server_error") from exc
    except (ValueError, AgentkitError) as exc:
        raise APIError(400, str(exc)) from exc


# -- conversions --------------------------------------------------------------------------------------

def _messages(raw: list[dict[str, Any]]) -> list[Message]:
    out = []
    for index, data in enumerate(raw):
        try:
            out.append(Message.from_openai(data))
        except (ValueError, TypeError) as exc:
            detail = str(exc).splitlines()[0]
            raise APIError(400, f"messages[{index}]: {detail}") from None
    return out


def _tools(raw: list[dict[str, Any]] | None) -> list[ToolSpec] | None:
    if not raw:
        return None
    specs = []
    for index, data in enumerate(raw):
        if not isinstance(data, dict) or data.get("type", "function") != "function":
            raise APIError(400, f"tools[{index}]: only {{'type': 'function', 'function': {{...}}}} tools are supported")
        try:
            spec = ToolSpec.from_openai(data)
        except (ValueError, TypeError, AttributeError) as exc:
            raise APIError(400, f"tools[{index}]: {str(exc).splitlines()[0]}") from None
        if spec.name == INTERPRETER_TOOL_NAME:
            spec = spec.model_copy(update={"kind": "interpreter"})
        specs.append(spec)
    return specs


def _usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None) -> dict[str, Any]:
    """OpenAI's usage object; ``prompt_tokens_details.cached_tokens`` where the model reports prefix-cache hits."""
    usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                             "total_tokens": prompt_tokens + completion_tokens}
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return usage


def _message_usage(message: Message) -> dict[str, Any]:
    usage = message.usage
    return _usage(usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0,
                  message.meta.get("cached_prompt_tokens"))


def _completions_usage(results: list[Completion]) -> dict[str, Any]:
    cached = [c.meta.get("cached_prompt_tokens") for c in results]
    return _usage(sum(c.prompt_tokens for c in results), sum(c.completion_tokens for c in results),
                  None if None in cached else sum(cached))


def _assistant_dict(message: Message) -> dict[str, Any]:
    """The reply as an OpenAI message; a reply the protocol could not read is shown as the model wrote it."""
    data = message.to_openai()
    data.pop("name", None)
    if message.parse_error and isinstance(message.meta.get("raw"), str):
        data["content"] = message.meta["raw"]
    return data


def _finish_reason(message: Message) -> str:
    if message.tool_calls:
        return "tool_calls"
    reason = message.meta.get("finish_reason", "stop")
    return reason if reason in ("stop", "length") else "stop"


def _sse(data: dict[str, Any] | str) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"


# -- the app ------------------------------------------------------------------------------------------

class _CountRequests:
    """Pure ASGI middleware counting responses by route and status (safe for streaming responses)."""

    def __init__(self, app: Any, counter: Counter):
        self.app = app
        self.counter = counter

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_counting(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        finally:
            route = scope.get("path", "") if scope.get("path") in _ROUTES else "other"
            self.counter.inc(route=route, code=str(status["code"]))


def create_app(engine_or_model: Engine | ChatModel, model_name: str, api_key: str | None = None) -> FastAPI:
    """The FastAPI app serving ``engine_or_model`` as ``model_name``.

    An :class:`Engine` is wrapped in an :class:`EngineModel` with its loaded protocol; it must be
    driven by :meth:`Engine.run_forever` on some thread (:func:`serve` does it on the main thread),
    or the request handlers step it themselves on the event-loop thread. Any other chat model is
    called through its async methods.
    """
    engine = engine_or_model if isinstance(engine_or_model, Engine) else None
    model: ChatModel
    if engine is not None:
        model = EngineModel(engine, model_name=model_name, wait_when_full=False)
    elif isinstance(engine_or_model, EngineModel):
        engine = engine_or_model.engine
        model = EngineModel(engine, engine_or_model.protocol, model_name=model_name, wait_when_full=False)
    else:
        model = engine_or_model
    created = int(time.time())
    default_max_tokens = engine.config.max_new_tokens if engine is not None else GenerationConfig().max_new_tokens

    app = FastAPI(title="agentkit serve", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    http_requests = Counter("agentkit_http_requests_total", "HTTP responses by route and status code.",
                            ["route", "code"])
    registry = Registry([http_requests, *(engine.metrics.metrics if engine is not None else [])])
    app.add_middleware(_CountRequests, counter=http_requests)
    app.state.model = model
    app.state.engine = engine

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return APIError(400, _validation_message(exc)).response()

    async def authorized(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                           kind="authentication_error", code="invalid_api_key")

    def check_model(name: str) -> None:
        if name != model_name:
            raise APIError(404, f"model {name!r} is not served here: use {model_name!r} (GET /v1/models)",
                           code="model_not_found")

    def config_for(body: _SamplingBody, max_tokens: int | None) -> GenerationConfig:
        try:
            return GenerationConfig(max_new_tokens=max_tokens or default_max_tokens, temperature=body.temperature,
                                    top_p=body.top_p, stop=body.stops(), seed=body.seed)
        except ValidationError as exc:
            raise APIError(400, str(exc).splitlines()[0]) from None

    @app.get("/health")
    async def health() -> JSONResponse:
        if engine is None:
            return JSONResponse({"status": "ok", "model": model_name})
        return JSONResponse({"status": "ok", "model": model_name, "running": engine.num_running,
                             "queued": engine.num_waiting})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(registry.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    async def models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [
            {"id": model_name, "object": "model", "created": created, "owned_by": "agentkit"}]})

    @app.post("/v1/chat/completions", dependencies=[Depends(authorized)])
    async def chat(body: ChatCompletionRequest) -> Response:
        check_model(body.model)
        messages = _messages(body.messages)
        tools = None if body.tool_choice == "none" else _tools(body.tools)
        config = config_for(body, body.max_completion_tokens or body.max_tokens)
        reply_id, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not body.stream:
            message = await _guard(lambda: model.agenerate(messages, tools=tools, config=config))
            return JSONResponse({
                "id": reply_id, "object": "chat.completion", "created": now, "model": model_name,
                "choices": [{"index": 0, "message": _assistant_dict(message), "finish_reason": _finish_reason(message),
                             "logprobs": None}],
                "usage": _message_usage(message),
            })

        async def opened() -> Any:
            return model.astream(messages, tools=tools, config=config)

        chunks = await _guard(opened)  # an engine submits here: a full queue is a 503, not a broken stream
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _event_stream(_chat_events(chunks, reply_id, now, model_name, buffered=tools is not None,
                                          include_usage=include_usage))

    @app.post("/v1/completions", dependencies=[Depends(authorized)])
    async def completions(body: CompletionRequest) -> Response:
        check_model(body.model)
        if not isinstance(model, CompletionModel):
            raise APIError(400, f"{model_name} is a chat model: use /v1/chat/completions")
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        config = config_for(body, body.max_tokens)
        reply_id, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            if len(prompts) != 1:
                raise APIError(400, "stream one prompt at a time")
            pieces = await _guard(lambda: _open_completion_stream(model, prompts[0], config))
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _event_stream(_completion_events(pieces, reply_id, now, model_name, include_usage))
        results = await _guard(lambda: _complete_all(model, prompts, config))
        return JSONResponse({
            "id": reply_id, "object": "text_completion", "created": now, "model": model_name,
            "choices": [{"index": i, "text": c.text, "finish_reason": _completion_finish(c), "logprobs": None}
                        for i, c in enumerate(results)],
            "usage": _completions_usage(results),
        })

    return app


def _completion_finish(completion: Completion) -> str:
    return "length" if completion.meta.get("finish_reason") == "length" else "stop"


async def _complete_all(model: CompletionModel, prompts: list[str], config: GenerationConfig) -> list[Completion]:
    if isinstance(model, EngineModel):
        return list(await asyncio.gather(*(model.acomplete(p, config) for p in prompts)))
    try:
        return await asyncio.to_thread(model.complete, prompts, config)
    except TypeError as exc:  # a model that answers conversations only (the scripted double)
        raise APIError(400, str(exc)) from None


async def _open_completion_stream(model: CompletionModel, prompt: str,
                                  config: GenerationConfig) -> AsyncIterator[str | Completion]:
    if isinstance(model, EngineModel):
        return model.astream_complete(prompt, config)
    return _iterate_in_thread(lambda: model.stream_complete(prompt, config))


def _event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _stream_error(exc: Exception) -> str:
    """An error after the stream started: sent as an OpenAI-style error event, then the stream ends."""
    if isinstance(exc, QueueFull):
        error = _busy(exc)
    elif isinstance(exc, (ValueError, AgentkitError)):
        error = APIError(400, str(exc))
    else:
        error = APIError(500, f"{type(exc).__name__}: {exc}", kind="server_error")
    return _sse(error.body())


async def _chat_events(chunks: AsyncIterator[Any], reply_id: str, created: int, model_name: str, *,
                       buffered: bool, include_usage: bool) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return _sse({"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model_name,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]})

    yield chunk({"role": "assistant", "content": ""})
    final: Message | None = None
    try:
        async for piece in chunks:
            if piece.message is not None:
                final = piece.message
            elif piece.delta and not buffered:
                yield chunk({"content": piece.delta})
    except Exception as exc:  # noqa: BLE001 - the status line is sent: the client learns of it in-band
        yield _stream_error(exc)
        return
    finally:
        await _aclose(chunks)
    if final is None:
        return
    if buffered:
        reply = _assistant_dict(final)
        if reply.get("content"):
            yield chunk({"content": reply["content"]})
        for index, call in enumerate(reply.get("tool_calls") or []):
            yield chunk({"tool_calls": [{"index": index, **call}]})
    yield chunk({}, _finish_reason(final))
    if include_usage:
        yield _sse({"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model_name,
                    "choices": [], "usage": _message_usage(final)})
    yield _sse("[DONE]")


async def _completion_events(pieces: AsyncIterator[str | Completion], reply_id: str, created: int, model_name: str,
                             include_usage: bool) -> AsyncIterator[str]:
    def chunk(text: str, finish: str | None = None) -> str:
        return _sse({"id": reply_id, "object": "text_completion", "created": created, "model": model_name,
                     "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]})

    final: Completion | None = None
    try:
        async for piece in pieces:
            if isinstance(piece, Completion):
                final = piece
            elif piece:
                yield chunk(piece)
    except Exception as exc:  # noqa: BLE001 - see _chat_events
        yield _stream_error(exc)
        return
    finally:
        await _aclose(pieces)
    if final is None:
        return
    yield chunk("", _completion_finish(final))
    if include_usage:
        yield _sse({"id": reply_id, "object": "text_completion", "created": created, "model": model_name,
                    "choices": [], "usage": _completions_usage([final])})
    yield _sse("[DONE]")


async def _aclose(iterator: Any) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


# -- running it ---------------------------------------------------------------------------------------

def _default_name(spec: str) -> str:
    kind, _, rest = spec.split(",")[0].partition(":")
    if kind == "hf" and rest:
        return Path(rest).expanduser().name or rest
    return kind if kind in EMBEDDED_SPECS else spec


def serve(spec: str, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None, *,
          config: EngineConfig | None = None, model_name: str | None = None, protocol: str | None = None,
          log_level: str = "info", ready: Callable[[str], None] | None = None) -> None:
    """Serve ``spec`` until interrupted (Ctrl-C or SIGTERM).

    ``embedded`` and ``hf:PATH`` run on an :class:`Engine` whose loop owns the main thread, with
    uvicorn in a background thread; other specs (``scripted:FILE``, ``openai:...``) are served by
    uvicorn on the main thread. ``ready`` is called with the base URL once the port is open.
    """
    import uvicorn

    name = model_name or _default_name(spec)
    engine: Engine | None = None
    if is_local_spec(spec):
        engine = Engine.from_spec(spec, config, protocol=protocol)
        app = create_app(engine, name, api_key)
    else:
        from agentkit.models import load_model

        model = load_model(spec)
        if protocol is not None:
            from agentkit.protocols import get_protocol

            model = model.with_protocol(get_protocol(protocol))
        app = create_app(model, name, api_key)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="off",
                                           timeout_graceful_shutdown=5))
    url = f"http://{host}:{port}/v1"
    if engine is None:
        if ready is not None:
            threading.Thread(target=_announce, args=(server, url, ready), daemon=True).start()
        server.run()
        return

    def run_http() -> None:
        try:
            server.run()
        except SystemExit:  # uvicorn's exit when it cannot bind (it has logged why); the main thread raises
            pass
        finally:
            engine.shutdown()  # the HTTP side is gone (stopped, or it could not bind): stop the loop too

    http = threading.Thread(target=run_http, name="agentkit-http", daemon=True)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    http.start()
    try:
        if not _wait_started(server, http):
            raise ConfigError(f"could not start the HTTP server on {host}:{port} (is the port in use?)")
        if ready is not None:
            ready(url)
        engine.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.should_exit = True
        engine.shutdown()
        http.join(timeout=10)
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _wait_started(server: Any, http: threading.Thread) -> bool:
    while not server.started:
        if not http.is_alive():
            return False
        time.sleep(0.05)
    return True


def _announce(server: Any, url: str, ready: Callable[[str], None]) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if server.started:
        ready(url)
