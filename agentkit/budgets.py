"""Run budgets. On by default: LangGraph's recursion limit is 10,000 steps, so stopping runaway loops is ours."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Budget(BaseModel):
    """Limits for one run of an agent. A run that hits one stops with ``outcome`` naming it."""

    max_steps: int = Field(10, ge=1, description="model calls per run")
    max_tokens: int = Field(4096, ge=1, description="new tokens the model may generate per run")
    max_seconds: float = Field(300.0, gt=0, description="wall-clock time per run (or per resume)")
    max_repeats: int = Field(3, ge=2, description="stop when the same tool call (name + arguments) is made this often")
    max_parse_retries: int = Field(2, ge=0, description="times unparseable output is shown to the model before giving up")


#: Outcomes a run can end with (``RunResult.outcome`` and trajectory records).
OUTCOMES = (
    "answer",             # the model replied without a tool call
    "max_steps",
    "max_tokens",
    "max_seconds",
    "repeated_tool_call",
    "parse_error",        # the model's output could not be parsed even after retries
    "interrupted",        # waiting for a decision (approvals)
    "error",              # the model backend raised
)
