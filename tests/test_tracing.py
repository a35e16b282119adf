"""OpenTelemetry spans (GenAI conventions) from real runs, exported to the SDK's in-memory exporter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402

from agentkit import tracing  # noqa: E402
from agentkit.agents import create_agent  # noqa: E402
from agentkit.messages import Message, ToolCall  # noqa: E402
from agentkit.models.scripted import ScriptedModel  # noqa: E402
from agentkit.tools import tool  # noqa: E402


@tool
def square(x: float) -> float:
    """Square a number."""
    return x * x


@tool
def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable_tracing(provider)
    yield exporter
    tracing.disable_tracing()


def by_operation(finished, operation):
    return [s for s in finished if s.attributes.get("gen_ai.operation.name") == operation]


def test_run_emits_agent_chat_and_tool_spans_in_one_trace(spans):
    script = [
        Message.assistant("", [ToolCall(name="square", arguments={"x": 3}),
                               ToolCall(name="explode", arguments={"reason": "boom"})]),
        Message.assistant("9"),
    ]
    agent = create_agent("react", ScriptedModel(script, model_name="scripted-test"), tools=[square, explode],
                         checkpointer="memory")
    result = agent.run("square 3", thread_id="t-1")
    finished = spans.get_finished_spans()
    [run] = by_operation(finished, "invoke_agent")
    chats = by_operation(finished, "chat")
    tools = by_operation(finished, "execute_tool")
    assert run.name == "invoke_agent react"
    assert run.attributes["gen_ai.conversation.id"] == "t-1"
    assert run.attributes["agentkit.outcome"] == "answer" and run.attributes["agentkit.steps"] == result.steps
    assert run.attributes["gen_ai.usage.output_tokens"] == result.usage.completion_tokens > 0
    assert [c.name for c in chats] == ["chat scripted-test"] * 2
    assert sum(c.attributes["gen_ai.usage.output_tokens"] for c in chats) == result.usage.completion_tokens
    assert chats[0].attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert sorted(t.name for t in tools) == ["execute_tool explode", "execute_tool square"]
    for span in chats + tools:
        assert span.context.trace_id == run.context.trace_id
        assert span.parent is not None and span.parent.span_id == run.context.span_id
    failed = next(t for t in tools if t.attributes["gen_ai.tool.name"] == "explode")
    assert failed.status.status_code is StatusCode.ERROR and "boom" in failed.status.description
    ok = next(t for t in tools if t.attributes["gen_ai.tool.name"] == "square")
    assert ok.status.status_code is StatusCode.UNSET
    assert ok.attributes["gen_ai.tool.call.id"] == result.tool_calls[0].id


async def test_async_stream_is_traced_too(spans):
    script = [Message.assistant("", [ToolCall(name="square", arguments={"x": 2})]), Message.assistant("4")]
    agent = create_agent("react", ScriptedModel(script), tools=[square], checkpointer="memory")
    events = [e async for e in agent.astream("square 2")]
    assert events[-1].result.answer == "4"
    finished = spans.get_finished_spans()
    [run] = by_operation(finished, "invoke_agent")
    assert len(by_operation(finished, "chat")) == 2
    assert all(s.context.trace_id == run.context.trace_id for s in finished)


def test_a_budget_stop_marks_the_run_span_as_error(spans):
    loop = Message.assistant("", [ToolCall(name="square", arguments={"x": 1})])
    agent = create_agent("react", ScriptedModel(lambda messages: loop), tools=[square], checkpointer="memory")
    result = agent.run("loop")
    assert result.outcome != "answer"
    [run] = by_operation(spans.get_finished_spans(), "invoke_agent")
    assert run.status.status_code is StatusCode.ERROR and result.outcome in run.status.description


@pytest.mark.parametrize(("env_value", "expected"), [(None, 0), ("1", 3)])
def test_off_unless_configured_even_with_a_global_provider(env_value, expected):
    """With an application-wide provider set, agentkit stays silent until AGENTKIT_TRACING=1 (or enable_tracing)."""
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "exporter = InMemorySpanExporter(); provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter)); trace.set_tracer_provider(provider)\n"
        "from agentkit.agents import create_agent\n"
        "from agentkit.messages import Message, ToolCall\n"
        "from agentkit.models.scripted import ScriptedModel\n"
        "from agentkit.tools import Calculator\n"
        "script = [Message.assistant('', [ToolCall(name='calculator', arguments={'expression': '2+2'})]),\n"
        "          Message.assistant('4')]\n"
        "create_agent('react', ScriptedModel(script), tools=[Calculator()], checkpointer=None).run('x')\n"
        "names = sorted({s.attributes.get('gen_ai.operation.name') for s in exporter.get_finished_spans()})\n"
        "print(len(names))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AGENTKIT_TRACING"}
    if env_value is not None:
        env["AGENTKIT_TRACING"] = env_value
    out = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    assert int(out.stdout.strip()) == expected
