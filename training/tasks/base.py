"""What a task set is: questions with exact verifiers, the tools to solve them, and a fixed split.

A :class:`Task` carries its expected answer and, when the generator knows how to solve it, a
*reference* solution (the messages an ideal agent would write). The loop uses references for tasks
the model never solved on its own, so a model that does not yet know the action format still gets
training data in its first round.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentkit.messages import Message
from agentkit.toolspec import Tool, ToolSpec

__all__ = ["Task", "TaskSet", "Verdict", "numbers_in", "numeric_match", "split_tasks"]

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")


@dataclass(frozen=True)
class Verdict:
    """A verifier's judgement of one finished run."""

    success: bool
    reason: str = ""


@dataclass
class Task:
    """One question with an exact check.

    ``answer`` is the expected final answer (a number or a word). ``needs_tool`` says whether a correct
    run must call a tool (``False`` for questions that should be answered directly). ``reference`` is
    a complete solution conversation after the user turn (assistant and environment messages), if known.
    """

    id: str
    question: str
    answer: str
    kind: str
    needs_tool: bool = True
    tolerance: float = 1e-6
    reference: list[Message] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def check(self, answer: str, messages: Sequence[Message] = ()) -> Verdict:
        """Is ``answer`` (the agent's final text) right, and did the run use tools as this task requires?"""
        calls = [c for m in messages if m.role == "assistant" for c in m.tool_calls]
        if not self.needs_tool and calls:
            return Verdict(False, "called a tool on a question that needs none")
        if self.needs_tool and not calls:
            return Verdict(False, "answered without calling a tool")
        try:
            expected = float(self.answer)
        except ValueError:
            ok = re.search(rf"\b{re.escape(self.answer.lower())}\b", answer.lower()) is not None
            return Verdict(ok, "" if ok else f"expected {self.answer!r} in the answer")
        ok = numeric_match(answer, expected, self.tolerance)
        return Verdict(ok, "" if ok else f"expected {self.answer} as the last number of the answer")


def numbers_in(text: str) -> list[float]:
    """Every number written in ``text`` (thousands separators allowed)."""
    out = []
    for raw in _NUMBER.findall(text):
        try:
            out.append(float(raw.replace(",", "")))
        except ValueError:
            continue
    return out


def numeric_match(text: str, expected: float, tolerance: float = 1e-6) -> bool:
    """The last number in ``text`` equals ``expected`` within a relative ``tolerance``."""
    found = numbers_in(text)
    if not found:
        return False
    value = found[-1]
    return abs(value - expected) <= max(tolerance * max(abs(expected), 1.0), 1e-9)


def split_tasks(tasks: Sequence[Task], held_out: float | int, seed: int) -> tuple[list[Task], list[Task]]:
    """A fixed (train, held-out) split: the same tasks and seed always give the same split.

    ``held_out`` is a fraction (``0.2``) or a count (``50``); the held-out part keeps the mix of kinds.
    """
    by_kind: dict[str, list[Task]] = {}
    for task in sorted(tasks, key=lambda t: t.id):
        by_kind.setdefault(task.kind, []).append(task)
    rng = random.Random(seed)
    total = len(tasks)
    want = round(held_out * total) if isinstance(held_out, float) else int(held_out)
    if not 0 < want < total:
        raise ValueError(f"held_out={held_out} leaves no train or no held-out tasks out of {total}: "
                         "use a fraction between 0 and 1 or a count below the number of tasks")
    train: list[Task] = []
    test: list[Task] = []
    for kind, group in sorted(by_kind.items()):
        rng.shuffle(group)
        share = round(want * len(group) / total)
        test.extend(group[:share])
        train.extend(group[share:])
    return train, test


@dataclass
class TaskSet:
    """Tasks plus the tools an agent needs for them and the system prompt it runs with."""

    name: str
    tasks: list[Task]
    make_tools: Callable[[], list[Tool]]
    system_prompt: str | None = None
    #: other specs of the same tools (by tool name), e.g. agentkit's built-in calculator with its longer
    #: description: training prompts sometimes show these, so the model does not learn one wording only
    spec_variants: dict[str, list[ToolSpec]] = field(default_factory=dict)
    #: release resources the tools hold (an interpreter kernel); called once the set is done with
    close: Callable[[], None] | None = None

    def split(self, held_out: float | int = 0.25, seed: int = 0) -> tuple[list[Task], list[Task]]:
        return split_tasks(self.tasks, held_out, seed)

    def by_id(self) -> dict[str, Task]:
        return {t.id: t for t in self.tasks}
