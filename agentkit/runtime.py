"""The runtime API around a compiled agent graph: run, stream, resume (and async twins).

A run starts a thread (or continues one), invokes the graph with fresh per-run counters and a
deadline, and ends with a :class:`RunResult`. With a checkpointer every step is saved, so a run
interrupted by a crash continues with :meth:`Agent.resume` from the last finished step.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.types import Command
from pydantic import BaseModel, Field, ValidationError

from agentkit import tracing
from agentkit.agents.nodes import AgentParts, Decision, model_name
from agentkit.agents.state import RunContext
from agentkit.errors import ConfigError
from agentkit.messages import Message, ToolCall, Usage, as_messages
from agentkit.trajectory import TrajectoryRecord, append_trajectory


class RunResult(BaseModel):
    """How a run ended: the answer, why it stopped, what it did and what it cost."""

    answer: str
    outcome: str
    thread_id: str | None = None
    messages: list[Message] = Field(default_factory=list, description="this run's messages, input included")
    steps: int = 0
    usage: Usage = Field(default_factory=Usage)
    duration_s: float = 0.0
    trajectory_id: str | None = None
    pending: list[ToolCall] = Field(default_factory=list, description="calls waiting for a decision (outcome 'interrupted')")

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [c for m in self.messages if m.role == "assistant" for c in m.tool_calls]

    @property
    def ok(self) -> bool:
        return self.outcome == "answer"


class AgentEvent(BaseModel):
    """One streamed event: a model ``token``, a finished graph ``step``, or the final ``result``."""

    type: Literal["token", "step", "result"]
    node: str | None = None
    delta: str = ""
    messages: list[Message] = Field(default_factory=list)
    result: RunResult | None = None


AgentInput = str | Message | dict[str, Any] | list[Any]
DecisionInput = str | Decision | dict[str, Any]


def _decisions(decision: DecisionInput | dict[str, DecisionInput], pending: list[ToolCall]) -> dict[str, Any]:
    """Normalise what ``resume`` was given into ``{call id: Decision}`` covering every pending call.

    Accepted: ``"approve"`` / ``"reject"``, a :class:`Decision` or its dict (applies to every pending call),
    or a dict from call id to any of those."""

    def one(value: DecisionInput) -> dict[str, Any]:
        if isinstance(value, str):
            value = {"action": value}
        try:
            return Decision.model_validate(value).model_dump()
        except ValidationError as exc:
            raise ConfigError(
                f"not a decision: {value!r} ({exc.errors()[0]['msg']}); use 'approve', 'reject', "
                "{'action': 'edit', 'arguments': {...}} or {'action': 'reject', 'reason': '...'}"
            ) from None

    ids = [c.id for c in pending]
    if isinstance(decision, dict) and decision and set(decision) <= set(ids):
        missing = [i for i in ids if i not in decision]
        if missing:
            raise ConfigError(f"no decision for pending call(s) {', '.join(missing)}: decide on every pending call")
        return {call_id: one(value) for call_id, value in decision.items()}
    return {call_id: one(decision) for call_id in ids}


class Agent:
    """A compiled agent. Build one with :func:`agentkit.agents.create_agent`."""

    def __init__(self, parts: AgentParts, graph: StateGraph, *, checkpointer: BaseCheckpointSaver | None = None,
                 trajectory_path: str | Path | None = None):
        self.parts = parts
        self.checkpointer = checkpointer
        self.trajectory_path = Path(trajectory_path) if trajectory_path else None
        self.graph = graph.compile(checkpointer=checkpointer, name=parts.pattern)

    @property
    def pattern(self) -> str:
        return self.parts.pattern

    # -- plumbing ------------------------------------------------------------------------------------
    def _config(self, thread_id: str | None) -> dict[str, Any]:
        # max_concurrency sizes LangGraph's executor for parallel tasks (ReWOO's Send fan-out); Python's
        # default pool is cpu_count + 4 threads, which would run 8 parallel steps in two waves on 2 cores.
        # The recursion limit is only a backstop (budgets end runs); ReWOO needs two supersteps per plan level.
        config: dict[str, Any] = {"recursion_limit": max(100, self.parts.budget.max_steps * 3 + 10),
                                  "max_concurrency": self.parts.max_parallel_tools}
        if thread_id is not None:
            config["configurable"] = {"thread_id": thread_id}
        return config

    def _thread(self, thread_id: str | None) -> str | None:
        if thread_id is None and self.checkpointer is not None:
            return uuid.uuid4().hex
        if thread_id is not None and self.checkpointer is None:
            raise ConfigError("thread_id needs a checkpointer: create the agent with checkpointer='sqlite' or 'memory'")
        return thread_id

    def _context(self, stream_tokens: bool = False, extra: dict[str, Any] | None = None,
                 thread_id: str | None = None) -> RunContext:
        if extra is not None and not isinstance(extra, dict):
            raise ConfigError(f"context must be a dict such as {{'customer_id': 3}}, got {type(extra).__name__}")
        return RunContext(deadline=time.monotonic() + self.parts.budget.max_seconds, stream_tokens=stream_tokens,
                          extra=dict(extra or {}), thread_id=thread_id)

    def _span(self, thread_id: str | None):
        return tracing.agent_span(self.pattern, thread_id, model_name(self.parts.model))

    @staticmethod
    def _traced(span: Any, result: RunResult) -> RunResult:
        tracing.finish_agent_span(span, result)
        return result

    @staticmethod
    def _start(input: AgentInput) -> dict[str, Any]:
        messages = as_messages(input)
        if not messages:
            raise ConfigError("the agent needs an input: pass a question, a Message or a list of messages")
        return {
            "messages": messages,
            "run_input": len(messages),
            "run_start": -1,
            "steps": 0,
            "tokens": 0,
            "parse_retries": 0,
            "call_counts": {},
            "outcome": None,
        }

    def _result(self, values: dict[str, Any], thread_id: str | None, started: float) -> RunResult:
        messages: list[Message] = values.get("messages", [])
        start = values.get("run_start", -1)
        if start is None or start < 0:
            start = max(0, len(messages) - values.get("run_input", len(messages)))
        run_messages = messages[start:]
        replies = [m for m in run_messages if m.role == "assistant"]
        usage = Usage()
        for reply in replies:
            if reply.usage:
                usage = usage + reply.usage
        pending = [ToolCall.model_validate(c) for i in values.get("__interrupt__", ())
                   for c in (getattr(i, "value", None) or {}).get("pending", [])]
        outcome = values.get("outcome") or "interrupted"
        answer = replies[-1].text if replies else ""
        result = RunResult(
            answer=answer.strip(),
            outcome=outcome,
            thread_id=thread_id,
            messages=run_messages,
            steps=values.get("steps", 0),
            usage=usage,
            duration_s=time.perf_counter() - started,
            pending=pending,
        )
        if self.trajectory_path is not None and values.get("outcome"):
            record = TrajectoryRecord(
                thread_id=thread_id,
                agent=self.pattern,
                model=getattr(self.parts.model, "model_name", type(self.parts.model).__name__),
                protocol=self.parts.protocol.name,
                tools=[s.model_dump() for s in self.parts.specs],
                messages=run_messages,
                answer=result.answer,
                outcome=outcome,
                steps=result.steps,
                usage=usage,
                parse_errors=sum(1 for m in replies if m.parse_error),
                duration_s=result.duration_s,
            )
            append_trajectory(self.trajectory_path, record)
            result.trajectory_id = record.id
        return result

    # -- sync API ------------------------------------------------------------------------------------
    def run(self, input: AgentInput, thread_id: str | None = None, *, context: dict[str, Any] | None = None
            ) -> RunResult:
        """Run until an answer or a budget stops it. With a thread id, the run continues that thread.

        ``context`` is per-invocation data for tools (see :func:`agentkit.agents.state.run_context`), such as
        the signed-in user; it is not checkpointed, so pass it again to :meth:`resume`."""
        started = time.perf_counter()
        thread_id = self._thread(thread_id)
        with self._span(thread_id) as span:
            values = self.graph.invoke(self._start(input), self._config(thread_id),
                                       context=self._context(extra=context, thread_id=thread_id))
            return self._traced(span, self._result(values, thread_id, started))

    def pending(self, thread_id: str) -> list[ToolCall]:
        """Tool calls of ``thread_id`` waiting for a decision (empty when nothing waits)."""
        state = self._state(thread_id)
        return [ToolCall.model_validate(c) for i in state.interrupts for c in (i.value or {}).get("pending", [])]

    def resume(self, thread_id: str, decision: DecisionInput | dict[str, DecisionInput] | None = None, *,
               context: dict[str, Any] | None = None) -> RunResult:
        """Continue ``thread_id``: after a crash from its last checkpoint, or after an approval interrupt with
        ``decision`` (``"approve"``, ``"reject"``, a :class:`Decision`, or a dict of them by call id).

        Without a decision, a run waiting for approval stays waiting: a call that needs approval never runs."""
        started = time.perf_counter()
        config = self._config(thread_id)
        state = self._state(thread_id)
        payload = self._resume_payload(state, decision)
        if not state.next and not state.values:
            raise ConfigError(f"thread {thread_id!r} has no checkpoints: start it with run(input, thread_id=...)")
        with self._span(thread_id) as span:
            values = (self.graph.invoke(payload, config, context=self._context(extra=context, thread_id=thread_id))
                      if state.next
                      else state.values)
            return self._traced(span, self._result(values, thread_id, started))

    def _state(self, thread_id: str):
        if self.checkpointer is None:
            raise ConfigError("resume needs a checkpointer: create the agent with checkpointer='sqlite' or 'memory'")
        return self.graph.get_state(self._config(thread_id))

    @staticmethod
    def _resume_payload(state, decision) -> Command | None:
        pending = [ToolCall.model_validate(c) for i in state.interrupts for c in (i.value or {}).get("pending", [])]
        if decision is None:
            return None
        if not pending:
            raise ConfigError("nothing is waiting for a decision in this thread: call resume(thread_id) without one")
        return Command(resume=_decisions(decision, pending))

    def stream(self, input: AgentInput | None, thread_id: str | None = None, *,
               context: dict[str, Any] | None = None,
               decision: DecisionInput | dict[str, DecisionInput] | None = None) -> Iterator[AgentEvent]:
        """Yield model tokens and finished steps as they happen, then the result.

        ``input=None`` continues an interrupted run of ``thread_id``, like :meth:`resume`; with ``decision`` it
        continues past the pending approvals as ``resume(thread_id, decision)`` does, streaming what follows."""
        resume = None
        if self._continues(input, thread_id, decision):
            resume = self._resume_payload(self.graph.get_state(self._config(thread_id)), decision)
        run = _StreamedRun(self, input, thread_id, context, resume)
        with self._span(run.thread_id) as span:
            for mode, chunk in self.graph.stream(*run.args, **run.kwargs):
                if event := run.feed(mode, chunk):
                    yield event
            final = run.finish()
            self._traced(span, final.result)
        yield final

    def _continues(self, input: AgentInput | None, thread_id: str | None, decision: Any) -> bool:
        """Whether a streamed run continues past pending approvals (checked like :meth:`resume`)."""
        if decision is None:
            return False
        if input is not None or not thread_id:
            raise ConfigError("a decision continues an interrupted thread: pass input=None and its thread_id")
        if self.checkpointer is None:
            raise ConfigError("resume needs a checkpointer: create the agent with checkpointer='sqlite' or 'memory'")
        return True

    def history(self, thread_id: str) -> list[Message]:
        """Every message of a thread, across runs."""
        if self.checkpointer is None:
            raise ConfigError("history needs a checkpointer: create the agent with checkpointer='sqlite' or 'memory'")
        return list(self.graph.get_state(self._config(thread_id)).values.get("messages", []))

    # -- async API -----------------------------------------------------------------------------------
    async def arun(self, input: AgentInput, thread_id: str | None = None, *,
                   context: dict[str, Any] | None = None) -> RunResult:
        started = time.perf_counter()
        thread_id = self._thread(thread_id)
        with self._span(thread_id) as span:
            values = await self.graph.ainvoke(self._start(input), self._config(thread_id),
                                              context=self._context(extra=context, thread_id=thread_id))
            return self._traced(span, self._result(values, thread_id, started))

    async def aresume(self, thread_id: str, decision: DecisionInput | dict[str, DecisionInput] | None = None, *,
                      context: dict[str, Any] | None = None) -> RunResult:
        started = time.perf_counter()
        config = self._config(thread_id)
        if self.checkpointer is None:
            raise ConfigError("resume needs a checkpointer: create the agent with checkpointer='sqlite' or 'memory'")
        state = await self.graph.aget_state(config)
        payload = self._resume_payload(state, decision)
        with self._span(thread_id) as span:
            values = (await self.graph.ainvoke(payload, config, context=self._context(extra=context,
                                                                                        thread_id=thread_id))
                      if state.next
                      else state.values)
            return self._traced(span, self._result(values, thread_id, started))

    async def astream(self, input: AgentInput | None, thread_id: str | None = None, *,
                      context: dict[str, Any] | None = None,
                      decision: DecisionInput | dict[str, DecisionInput] | None = None) -> AsyncIterator[AgentEvent]:
        resume = None
        if self._continues(input, thread_id, decision):
            resume = self._resume_payload(await self.graph.aget_state(self._config(thread_id)), decision)
        run = _StreamedRun(self, input, thread_id, context, resume)
        with self._span(run.thread_id) as span:
            async for mode, chunk in self.graph.astream(*run.args, **run.kwargs):
                if event := run.feed(mode, chunk):
                    yield event
            final = run.finish()
            self._traced(span, final.result)
        yield final

    def __repr__(self) -> str:
        return f"Agent({self.pattern!r}, model={self.parts.model!r}, tools={list(self.parts.tools)})"


class _StreamedRun:
    """One streamed run: the graph's arguments, the events its chunks become, and the final result."""

    def __init__(self, agent: Agent, input: AgentInput | None, thread_id: str | None,
                 context: dict[str, Any] | None = None, resume: Command | None = None):
        self.agent, self.started = agent, time.perf_counter()
        self.thread_id = agent._thread(thread_id)
        payload = resume if resume is not None else None if input is None else agent._start(input)
        self.args = (payload, agent._config(self.thread_id))
        self.kwargs = {"context": agent._context(True, context, self.thread_id),
                       "stream_mode": ["custom", "updates", "values"]}
        self.values: dict[str, Any] = {}

    def feed(self, mode: str, chunk: Any) -> AgentEvent | None:
        if mode == "values":
            self.values = chunk
        elif mode == "custom" and isinstance(chunk, dict) and chunk.get("type") == "token":
            return AgentEvent(type="token", delta=chunk.get("delta", ""))
        elif mode == "updates" and isinstance(chunk, dict):
            for node, update in chunk.items():
                messages = update.get("messages", []) if isinstance(update, dict) else []
                return AgentEvent(type="step", node=node, messages=list(messages))
        return None

    def finish(self) -> AgentEvent:
        return AgentEvent(type="result", result=self.agent._result(self.values, self.thread_id, self.started))
