"""The shared nodes every agent pattern is declared from: ``call_model``, ``run_tools``, ``recover``.

Each factory returns a LangGraph node with a sync and an async implementation (the way
LangChain's own ``create_agent`` builds its nodes), so ``run`` and ``arun`` both go through
the same graph. Nodes never parse model text: the bound protocol already did, and a reply
it could not understand carries ``meta["parse_error"]``.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from langgraph._internal._runnable import RunnableCallable
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, Field

from agentkit import tracing
from agentkit.agents.state import AgentState, RunContext
from agentkit.budgets import Budget
from agentkit.llm import ChatModel, GenerationConfig
from agentkit.messages import Message, ToolCall
from agentkit.protocols.base import Protocol
from agentkit.toolspec import Tool, ToolError, ToolSpec, ainvoke_tool


@dataclass
class AgentParts:
    """Everything the nodes of one agent need; built once by :func:`agentkit.agents.create_agent`."""

    pattern: str
    model: ChatModel  # already bound to ``protocol``
    protocol: Protocol
    tools: dict[str, Tool] = field(default_factory=dict)
    budget: Budget = field(default_factory=Budget)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    system_prompt: str | None = None
    max_parallel_tools: int = 16
    history: Callable[[list[Message]], list[Message]] | None = None  # bounds the prompt (agentkit.memory.History)

    @property
    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self.tools.values()]

    def interpreter(self) -> Tool | None:
        return next((t for t in self.tools.values() if t.spec.kind == "interpreter"), None)

    def needs_approval(self, call: ToolCall) -> bool:
        """Declared on the tool: ``spec.requires_approval``, or a ``needs_approval(arguments)`` predicate."""
        tool = _resolve(call, self)
        if isinstance(tool, str):
            return False
        predicate = getattr(tool, "needs_approval", None)
        if callable(predicate):
            return bool(predicate(call.arguments))
        return tool.spec.requires_approval


class Decision(BaseModel):
    """A person's answer to a pending tool call: run it, run it with other arguments, or refuse it."""

    action: Literal["approve", "edit", "reject"]
    arguments: dict[str, Any] | None = Field(None, description="the arguments to run with, for 'edit'")
    reason: str | None = Field(None, description="why, for 'reject' (the model reads it)")


# -- call_model ----------------------------------------------------------------------------------

def budget_stop(state: AgentState, parts: AgentParts, context: RunContext) -> str | None:
    budget = parts.budget
    if state.get("steps", 0) >= budget.max_steps:
        return "max_steps"
    if state.get("tokens", 0) >= budget.max_tokens:
        return "max_tokens"
    if time.monotonic() >= context.deadline:
        return "max_seconds"
    return None


def _prompt(state: AgentState, parts: AgentParts) -> list[Message]:
    messages = state["messages"]
    if parts.system_prompt and not (messages and messages[0].role == "system"):
        messages = [Message.system(parts.system_prompt), *messages]
    return parts.history(messages) if parts.history is not None else messages


def generation_config(state: AgentState, parts: AgentParts) -> GenerationConfig:
    left = parts.budget.max_tokens - state.get("tokens", 0)
    if left < parts.generation.max_new_tokens:
        return parts.generation.model_copy(update={"max_new_tokens": max(1, left)})
    return parts.generation


def call_signature(call: ToolCall) -> str:
    """A short fixed-size key for (name, arguments): the repeat guard's counts live in every
    checkpoint, so keys must not grow with argument size (a 2 KB code cell per call would make the
    per-step checkpoint cost grow with the thread)."""
    text = call.name + "\x00" + json.dumps(call.arguments, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


def after_reply(state: AgentState, parts: AgentParts, reply: Message) -> dict[str, Any]:
    """State update for a model reply: counters, and the outcome when the run should end."""
    used = reply.usage.completion_tokens if reply.usage else 0
    messages = state["messages"]
    update: dict[str, Any] = {
        "messages": [reply],
        "steps": state.get("steps", 0) + 1,
        "tokens": state.get("tokens", 0) + used,
    }
    if state.get("run_start", -1) < 0:
        update["run_start"] = len(messages) - state.get("run_input", len(messages))
    if reply.parse_error:
        retries = state.get("parse_retries", 0) + 1
        update["parse_retries"] = retries
        if retries > parts.budget.max_parse_retries:
            update["outcome"] = "parse_error"
        return update
    update["parse_retries"] = 0
    if not reply.tool_calls:
        update["outcome"] = "answer"
        return update
    counts = dict(state.get("call_counts") or {})
    for call in reply.tool_calls:
        key = call_signature(call)
        counts[key] = counts.get(key, 0) + 1
        if counts[key] >= parts.budget.max_repeats:
            update["outcome"] = "repeated_tool_call"
    update["call_counts"] = counts
    return update


class _TokenRelay:
    """Forwards streamed deltas to the graph's stream writer and keeps the final parsed reply."""

    def __init__(self, writer: Any, model: ChatModel):
        self.writer, self.model, self.reply = writer, model, None

    def feed(self, chunk: Any) -> None:
        if chunk.delta:
            self.writer({"type": "token", "delta": chunk.delta})
        if chunk.message is not None:
            self.reply = chunk.message

    def result(self) -> Message:
        if self.reply is None:
            raise RuntimeError(f"{self.model!r} ended its stream without a final message")
        return self.reply


def model_name(model: ChatModel) -> str:
    return getattr(model, "model_name", None) or type(model).__name__


def model_reply(parts: AgentParts, messages: list[Message], config: GenerationConfig, runtime: Runtime) -> Message:
    """One model call, streaming its tokens to the graph's stream writer when the run asked for tokens."""
    with tracing.chat_span(model_name(parts.model), config) as span:
        if not runtime.context.stream_tokens:
            reply = parts.model.generate(messages, tools=parts.specs, config=config)
        else:
            relay = _TokenRelay(runtime.stream_writer, parts.model)
            for chunk in parts.model.stream(messages, tools=parts.specs, config=config):
                relay.feed(chunk)
            reply = relay.result()
        tracing.finish_chat_span(span, reply)
        return reply


async def amodel_reply(parts: AgentParts, messages: list[Message], config: GenerationConfig,
                       runtime: Runtime) -> Message:
    with tracing.chat_span(model_name(parts.model), config) as span:
        if not runtime.context.stream_tokens:
            reply = await parts.model.agenerate(messages, tools=parts.specs, config=config)
        else:
            relay = _TokenRelay(runtime.stream_writer, parts.model)
            async for chunk in parts.model.astream(messages, tools=parts.specs, config=config):
                relay.feed(chunk)
            reply = relay.result()
        tracing.finish_chat_span(span, reply)
        return reply


def call_model(parts: AgentParts) -> RunnableCallable:
    """Ask the model for the next step, unless a budget says the run is over."""

    def node(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        if stop := budget_stop(state, parts, runtime.context):
            return {"outcome": stop}
        reply = model_reply(parts, _prompt(state, parts), generation_config(state, parts), runtime)
        return after_reply(state, parts, reply)

    async def anode(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        if stop := budget_stop(state, parts, runtime.context):
            return {"outcome": stop}
        reply = await amodel_reply(parts, _prompt(state, parts), generation_config(state, parts), runtime)
        return after_reply(state, parts, reply)

    return RunnableCallable(node, anode, name="call_model", trace=False)


# -- run_tools -----------------------------------------------------------------------------------

def _resolve(call: ToolCall, parts: AgentParts) -> Tool | str:
    """The tool for ``call``, or the error text the model should read."""
    if call.kind == "interpreter":
        tool = parts.interpreter()
        return tool if tool is not None else (
            "no code interpreter is enabled in this agent; answer without running code or use one of: "
            + (", ".join(parts.tools) or "no tools")
        )
    tool = parts.tools.get(call.name)
    if tool is None:
        available = ", ".join(n for n, t in parts.tools.items() if t.spec.kind != "interpreter") or "none"
        return f"unknown tool {call.name!r}; the available tools are: {available}"
    return tool


def tool_result(call: ToolCall, output: Any = None, error: BaseException | str | None = None,
            started: float | None = None, **extra: Any) -> Message:
    meta: dict[str, Any] = dict(extra)
    if started is not None:
        meta["latency_s"] = round(time.perf_counter() - started, 6)
    if error is not None:
        if isinstance(error, ToolError):
            text = f"Error: {error}"
        elif isinstance(error, BaseException):
            text = f"Error: {type(error).__name__}: {error}"
        else:
            text = f"Error: {error}"
        return Message.tool_result(call, text, error=True, **meta)
    content = output if isinstance(output, (str, list)) else str(output)
    return Message.tool_result(call, content, **meta)


def cleared(call: ToolCall, parts: AgentParts, decisions: dict[str, Any]) -> tuple[Tool | None, ToolCall, Message | None]:
    """The tool and the call to run (arguments edited if so decided), or the message that replaces running it.

    A call whose tool needs approval runs only with an ``approve`` or ``edit`` decision on record."""
    tool = _resolve(call, parts)
    if isinstance(tool, str):
        return None, call, tool_result(call, error=tool)
    if not parts.needs_approval(call):
        return tool, call, None
    decision = decisions.get(call.id)
    if decision is None:
        return None, call, tool_result(call, error="this call needs approval and none was given; it was not run")
    decision = Decision.model_validate(decision)
    if decision.action == "reject":
        reason = f": {decision.reason}" if decision.reason else ""
        return None, call, tool_result(call, error=f"the user rejected this call{reason}", rejected=True)
    if decision.action == "edit" and decision.arguments is not None:
        return tool, call.model_copy(update={"arguments": decision.arguments}), None
    return tool, call, None


def execute(tool: Tool, call: ToolCall) -> Message:
    """Run one cleared call; a tool failure is information for the model, not a crash."""
    started = time.perf_counter()
    with tracing.tool_span(call) as span:
        try:
            result = tool_result(call, tool.invoke(call.arguments), started=started)
        except Exception as exc:
            result = tool_result(call, error=exc, started=started)
        tracing.finish_tool_span(span, result)
        return result


async def aexecute(tool: Tool, call: ToolCall) -> Message:
    started = time.perf_counter()
    with tracing.tool_span(call) as span:
        try:
            result = tool_result(call, await ainvoke_tool(tool, call.arguments), started=started)
        except Exception as exc:
            result = tool_result(call, error=exc, started=started)
        tracing.finish_tool_span(span, result)
        return result


def _invoke(call: ToolCall, parts: AgentParts, decisions: dict[str, Any]) -> Message:
    tool, call, replacement = cleared(call, parts, decisions)
    return replacement if replacement is not None else execute(tool, call)


async def _ainvoke(call: ToolCall, parts: AgentParts, decisions: dict[str, Any]) -> Message:
    tool, call, replacement = cleared(call, parts, decisions)
    return replacement if replacement is not None else await aexecute(tool, call)


def _pending_calls(state: AgentState, kind: str | None) -> list[ToolCall]:
    last = state["messages"][-1]
    return [c for c in last.tool_calls if kind is None or c.kind == kind]


def run_tools(parts: AgentParts, kind: str | None = None, name: str = "run_tools") -> RunnableCallable:
    """Run the last reply's tool calls (of ``kind``, or all): in parallel when there are several,
    results in call order. A failing tool becomes an ``environment`` message saying what went wrong."""

    def node(state: AgentState) -> dict[str, Any]:
        calls, decisions = _pending_calls(state, kind), state.get("decisions") or {}
        if len(calls) <= 1:
            return {"messages": [_invoke(c, parts, decisions) for c in calls], "decisions": {}}
        contexts = [contextvars.copy_context() for _ in calls]  # each call's span keeps this step as parent
        with ThreadPoolExecutor(max_workers=min(len(calls), parts.max_parallel_tools)) as pool:
            results = pool.map(lambda c, ctx: ctx.run(_invoke, c, parts, decisions), calls, contexts)
            return {"messages": list(results), "decisions": {}}

    async def anode(state: AgentState) -> dict[str, Any]:
        calls, decisions = _pending_calls(state, kind), state.get("decisions") or {}
        results = await asyncio.gather(*(_ainvoke(c, parts, decisions) for c in calls))
        return {"messages": list(results), "decisions": {}}

    return RunnableCallable(node, anode, name=name, trace=False)


# -- approve -------------------------------------------------------------------------------------

def ask_for_decisions(pending: list[ToolCall], decided: dict[str, Any] | None = None) -> dict[str, Any]:
    """Interrupt listing ``pending``; on resume, ``decided`` plus a validated decision per call that got one."""
    answer = interrupt({"pending": [c.model_dump() for c in pending]})
    decisions = dict(decided or {})
    for call in pending:
        decision = answer.get(call.id) if isinstance(answer, dict) else None
        if decision is not None:
            decisions[call.id] = Decision.model_validate(decision).model_dump()
    return decisions


def approve(parts: AgentParts) -> RunnableCallable:
    """Pause the run (LangGraph ``interrupt``) until someone decides on each call that needs approval.

    The interrupt's value lists the pending calls; the resume value maps each call id to a
    :class:`Decision`. The node only records decisions: ``run_tools`` enforces them."""

    def node(state: AgentState) -> dict[str, Any]:
        pending = [c for c in state["messages"][-1].tool_calls if parts.needs_approval(c)]
        return {"decisions": ask_for_decisions(pending)}

    async def anode(state: AgentState) -> dict[str, Any]:
        return node(state)

    return RunnableCallable(node, anode, name="approve", trace=False)


# -- recover -------------------------------------------------------------------------------------

def recover(parts: AgentParts) -> RunnableCallable:
    """Show the model what was wrong with its last reply so it can try again."""

    def node(state: AgentState) -> dict[str, Any]:
        error = state["messages"][-1].parse_error or "the reply was not in the expected format"
        return {"messages": [parts.protocol.error_feedback(error)]}

    async def anode(state: AgentState) -> dict[str, Any]:
        return node(state)

    return RunnableCallable(node, anode, name="recover", trace=False)


# -- routing -------------------------------------------------------------------------------------

def to_run_tools(state: AgentState) -> str:
    return "run_tools"


def by_kind(state: AgentState) -> str:
    """InternLM2 runs plugin and interpreter actions in separate nodes (one action per turn)."""
    calls = state["messages"][-1].tool_calls
    return "run_interpreter" if calls and calls[0].kind == "interpreter" else "run_plugin"


def after_model(parts: AgentParts, tools_route=to_run_tools):
    """END when the run is over, ``recover`` after unparseable output, ``approve`` when a call needs a
    decision, else wherever ``tools_route`` sends the calls."""

    def route(state: AgentState) -> str:
        if state.get("outcome"):
            return END
        last = state["messages"][-1]
        if last.parse_error:
            return "recover"
        if any(parts.needs_approval(c) for c in last.tool_calls):
            return "approve"
        return tools_route(state)

    return route
