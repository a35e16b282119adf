"""Task sets with exact verifiers for the training loop: ``load_task_set("tooluse" | "gsm8k")``."""

from __future__ import annotations

from typing import Any

from agentkit.errors import ConfigError
from agentkit.training.tasks.base import Task, TaskSet, Verdict, numeric_match, split_tasks

__all__ = ["TASK_SETS", "Task", "TaskSet", "Verdict", "load_task_set", "numeric_match", "split_tasks"]

#: Task-set names accepted by :func:`load_task_set`, with what each holds.
TASK_SETS: dict[str, str] = {
    "tooluse": "generated curriculum: calculator, unit conversion, inventory lookups, two-step, no-tool questions",
    "gsm8k": "GSM8K train questions solved with the code interpreter (path=... to the train.jsonl)",
}


def load_task_set(name: str, **options: Any) -> TaskSet:
    """Build a task set by name; ``options`` go to its generator (``per_kind``, ``seed``, ``path``, ``limit``)."""
    if name == "tooluse":
        from agentkit.training.tasks.tooluse import tooluse_task_set

        return tooluse_task_set(**options)
    if name == "gsm8k":
        from agentkit.training.tasks.gsm8k import gsm8k_task_set

        return gsm8k_task_set(**options)
    raise ConfigError(f"unknown task set {name!r}: use one of {', '.join(TASK_SETS)}")
