"""ReWOO's text format: a planner writes every tool call up front, a solver answers from the evidence.

    Plan: find the population of France.
    #E1 = search[population of France]
    Plan: compute half of it.
    #E2 = calculator[#E1 / 2]

Steps may reference earlier evidence (``#E1``); steps whose references are ready run in parallel.
The parser is tolerant (``E1 =`` without ``#``, ``Tool(args)``, JSON args, stray prose) and reports
exactly what was wrong when it cannot recover, so the planner can be asked again.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field

from agentkit.messages import Message
from agentkit.protocols._json import loads as tolerant_loads
from agentkit.toolspec import ToolSpec

_STEP = re.compile(r"^\s*#?\s*E(\d+)\s*[:=]\s*([A-Za-z_][\w\-\.]*)\s*[\[\(](.*)[\]\)]\s*$")
_PLAN = re.compile(r"^\s*(?:\d+[\.\)]\s*)?Plan\s*\d*\s*:\s*(.*)$", re.IGNORECASE)
_REF = re.compile(r"#E(\d+)")


class PlanStep(BaseModel):
    """One planned tool call. ``args`` is the raw text between the brackets, with ``#E`` references."""

    id: str
    tool: str
    args: str
    plan: str = ""
    deps: list[str] = Field(default_factory=list)


def format_hint() -> str:
    return "write each step as 'Plan: <why>' then '#E<n> = <tool>[<input>]', e.g. '#E1 = calculator[12 * 7]'"


def parse_plan(text: str, tools: list[ToolSpec] | None = None) -> tuple[list[PlanStep], str | None]:
    """The steps of a plan, and an error saying what was wrong (``None`` when the plan is usable)."""
    steps: list[PlanStep] = []
    reason = ""
    names = {t.name for t in tools or []}
    for line in text.splitlines():
        if match := _PLAN.match(line):
            reason = match.group(1).strip()
            continue
        if not (match := _STEP.match(line)):
            continue
        step_id = f"E{int(match.group(1))}"
        if any(s.id == step_id for s in steps):
            return steps, f"#{step_id} is defined twice; number the steps #E1, #E2, ... once each"
        args = match.group(3).strip()
        deps = sorted({f"E{int(n)}" for n in _REF.findall(args)}, key=lambda d: int(d[1:]))
        steps.append(PlanStep(id=step_id, tool=match.group(2), args=args, plan=reason, deps=deps))
        reason = ""
    if not steps:
        return [], f"the plan has no steps; {format_hint()}"
    defined = {s.id for s in steps}
    for step in steps:
        if names and step.tool not in names:
            return steps, f"#{step.id} uses unknown tool {step.tool!r}; the tools are: {', '.join(sorted(names))}"
        missing = [d for d in step.deps if d not in defined]
        if missing:
            return steps, f"#{step.id} refers to #{missing[0]}, which no step defines"
        if step.id in step.deps:
            return steps, f"#{step.id} refers to itself"
    if _has_cycle(steps):
        return steps, "the steps' #E references form a cycle; a step may only use evidence from other steps"
    return steps, None


def _has_cycle(steps: list[PlanStep]) -> bool:
    deps = {s.id: set(s.deps) for s in steps}
    done: set[str] = set()
    while True:
        ready = [i for i, d in deps.items() if i not in done and d <= done]
        if not ready:
            return len(done) < len(deps)
        done.update(ready)


def substitute(args: str, evidence: dict[str, str]) -> str:
    """``args`` with each ``#En`` replaced by that step's evidence."""
    return _REF.sub(lambda m: evidence.get(f"E{int(m.group(1))}", m.group(0)), args)


def step_arguments(args: str, spec: ToolSpec) -> dict[str, Any]:
    """Tool arguments for a step's input: a JSON object as given, otherwise the text as the first parameter."""
    text = args.strip()
    if text.startswith("{"):
        try:
            value = tolerant_loads(text)
            if isinstance(value, dict):
                return value
        except ValueError:
            pass
    properties = list((spec.parameters or {}).get("properties") or {})
    required = list((spec.parameters or {}).get("required") or [])
    key = required[0] if required else (properties[0] if properties else "input")
    return {key: text.strip("\"'")}


def planner_messages(task: list[Message], tools: list[ToolSpec]) -> list[Message]:
    listing = "\n".join(
        f"- {t.name}[input]: {t.description} Input: {json.dumps(t.parameters.get('properties', {}))}" for t in tools
    )
    system = (
        "Make a plan to solve the task with the tools below. For each step write one line 'Plan: <what and why>' "
        "and then one line '#E<n> = <tool>[<input>]'. A step's input may use the result of an earlier step by "
        "writing its name, e.g. #E1. Write all steps now; do not answer yet.\n\nTools:\n" + listing
    )
    return [Message.system(system), *task]


def solver_messages(history: list[Message], steps: list[PlanStep], evidence: dict[str, str]) -> list[Message]:
    """The run so far (task and plan, step results left out) and then the evidence, as the solver's prompt.

    Keeping the plan as an assistant turn makes the solver's call a continuation of the planner's, which chat
    models follow better than a fresh prompt (and which a recorded run replays in order)."""
    lines = []
    for step in steps:
        if step.plan:
            lines.append(f"Plan: {step.plan}")
        lines.append(f"#{step.id} = {step.tool}[{step.args}]")
        lines.append(f"Evidence: {evidence.get(step.id, '(not run)')}")
    system = (
        "Solve the task using the plan and the evidence each step produced. Evidence may be wrong or an error; "
        "use it with care. Reply with the answer only."
    )
    kept = [m for m in history if m.role != "environment" or m.meta.get("feedback")]
    return [Message.system(system), *kept, Message.user("Evidence:\n" + "\n".join(lines) + "\n\nNow answer the task.")]
