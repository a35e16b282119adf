"""The graph state every agent pattern shares, and the per-invocation context."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from langgraph.channels.delta import DeltaChannel

from agentkit.messages import Message


def append_messages(state: list[Message], writes: Sequence[list[Message]]) -> list[Message]:
    """Reducer for the message log: append each write's messages in order (batching-invariant)."""
    out = list(state)
    for write in writes:
        out.extend(write)
    return out


class AgentState(TypedDict, total=False):
    """Graph state. ``messages`` is a ``DeltaChannel``: a checkpoint stores only the messages a step
    added (plus a snapshot every ``snapshot_frequency`` updates), so the per-step cost of
    checkpointing stays flat as a thread grows instead of re-writing the whole conversation."""

    messages: Annotated[list[Message], DeltaChannel(append_messages, snapshot_frequency=100)]
    run_input: int          # how many messages the current run's input added
    run_start: int          # index in ``messages`` where the current run's input begins (-1: not yet known)
    steps: int              # model calls in the current run
    tokens: int             # completion tokens in the current run
    parse_retries: int      # consecutive unparseable replies
    call_counts: dict[str, int]  # signature of each tool call made in this run → how often
    decisions: dict[str, dict[str, Any]]  # call id → Decision, for calls that need approval
    outcome: str | None     # why the run ended (see agentkit.budgets.OUTCOMES)


@dataclass
class RunContext:
    """What one invocation (run or resume) brings that is not state: its deadline, streaming wish, and
    ``extra`` — what the caller passed as ``context=`` (who the run acts for, say). Never checkpointed and
    never shown to the model, so a model cannot change it and every invocation must bring it again."""

    deadline: float = field(default_factory=lambda: time.monotonic() + 300.0)
    stream_tokens: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: the thread the run belongs to (``None`` for a run without a checkpointer)
    thread_id: str | None = None


def run_context() -> RunContext | None:
    """The context of the run the caller executes in (a node, or a tool a node runs), else ``None``.

    How a tool learns per-run facts the model must not choose, such as the signed-in customer. LangGraph keeps
    it in a context variable, so it reaches tools run inline, in the parallel tool pool and in asyncio threads,
    but not threads a tool starts itself."""
    from langgraph.runtime import get_runtime

    try:
        context = get_runtime().context
    except (RuntimeError, KeyError, AttributeError):
        return None
    return context if isinstance(context, RunContext) else None
