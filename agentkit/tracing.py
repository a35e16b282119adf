"""OpenTelemetry spans for agent runs, model calls and tool calls (GenAI semantic conventions).

Off unless configured: call :func:`enable_tracing` (optionally with your ``TracerProvider``), or set
``AGENTKIT_TRACING=1`` and configure OpenTelemetry as usual (e.g. ``opentelemetry-instrument``). While off, the
hooks below are a flag check and nothing else, and ``opentelemetry`` is never imported.

Spans, as the conventions name them:

* ``invoke_agent {pattern}`` around a run (``gen_ai.operation.name = invoke_agent``, the thread as
  ``gen_ai.conversation.id``, usage totals and the outcome at the end);
* ``chat {model}`` around each model call (request parameters, token usage, finish reason);
* ``execute_tool {tool}`` around each tool call (tool name, call id; error status when the tool failed).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentkit.llm import GenerationConfig
    from agentkit.messages import Message, ToolCall

_enabled: bool | None = None
_provider: Any = None

SYSTEM = "agentkit"


def enable_tracing(tracer_provider: Any = None) -> None:
    """Emit spans from now on, to ``tracer_provider`` or to OpenTelemetry's global provider."""
    global _enabled, _provider
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError as exc:
        raise ImportError("tracing needs OpenTelemetry: pip install 'agentkit[otel]'") from exc
    _provider = tracer_provider
    _enabled = True


def disable_tracing() -> None:
    global _enabled, _provider
    _enabled, _provider = False, None


def tracing_enabled() -> bool:
    global _enabled
    if _enabled is None:
        _enabled = os.environ.get("AGENTKIT_TRACING", "").lower() in ("1", "true", "yes", "on")
    return _enabled


def _tracer() -> Any:
    from opentelemetry import trace

    provider = _provider or trace.get_tracer_provider()
    return provider.get_tracer("agentkit")


@contextmanager
def _span(name: str, attributes: dict[str, Any]) -> Iterator[Any]:
    from opentelemetry.trace import SpanKind

    kind = SpanKind.INTERNAL if attributes.get("gen_ai.operation.name") != "chat" else SpanKind.CLIENT
    with _tracer().start_as_current_span(name, kind=kind, attributes=_clean(attributes),
                                         record_exception=True, set_status_on_exception=True) as span:
        yield span


def _error(span: Any, description: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, description))


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


class _Null:
    """Stands in for a span while tracing is off."""

    def set_attribute(self, key: str, value: Any) -> None:
        pass


_NULL = _Null()


@contextmanager
def agent_span(pattern: str, thread_id: str | None, model_name: str | None) -> Iterator[Any]:
    if not tracing_enabled():
        yield _NULL
        return
    with _span(f"invoke_agent {pattern}", {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.system": SYSTEM,
        "gen_ai.agent.name": pattern,
        "gen_ai.conversation.id": thread_id,
        "gen_ai.request.model": model_name,
    }) as span:
        yield span


def finish_agent_span(span: Any, result: Any) -> None:
    """Put a run's outcome and totals on its span (a no-op while tracing is off)."""
    if span is _NULL:
        return
    span.set_attribute("agentkit.outcome", result.outcome)
    span.set_attribute("agentkit.steps", result.steps)
    span.set_attribute("gen_ai.usage.input_tokens", result.usage.prompt_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", result.usage.completion_tokens)
    if result.outcome not in ("answer", "interrupted"):
        _error(span, f"run ended with outcome {result.outcome!r}")


@contextmanager
def chat_span(model_name: str | None, config: GenerationConfig | None) -> Iterator[Any]:
    if not tracing_enabled():
        yield _NULL
        return
    with _span(f"chat {model_name or 'model'}", {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": SYSTEM,
        "gen_ai.request.model": model_name,
        "gen_ai.request.max_tokens": getattr(config, "max_tokens", None),
        "gen_ai.request.temperature": getattr(config, "temperature", None),
        "gen_ai.request.top_p": getattr(config, "top_p", None),
    }) as span:
        yield span


def finish_chat_span(span: Any, reply: Message) -> None:
    if span is _NULL:
        return
    if reply.usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", reply.usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", reply.usage.completion_tokens)
    finish = reply.meta.get("finish_reason") or ("tool_calls" if reply.tool_calls else "stop")
    span.set_attribute("gen_ai.response.finish_reasons", [str(finish)])
    if reply.parse_error:
        span.set_attribute("agentkit.parse_error", reply.parse_error[:500])


@contextmanager
def tool_span(call: ToolCall) -> Iterator[Any]:
    if not tracing_enabled():
        yield _NULL
        return
    with _span(f"execute_tool {call.name}", {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.system": SYSTEM,
        "gen_ai.tool.name": call.name,
        "gen_ai.tool.call.id": call.id,
        "gen_ai.tool.type": "extension" if call.kind == "interpreter" else "function",
    }) as span:
        yield span


def finish_tool_span(span: Any, result: Message) -> None:
    if span is _NULL:
        return
    if result.meta.get("error"):
        _error(span, result.text[:500])
