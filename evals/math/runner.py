"""Run an agent with a code interpreter over many problems at once and record what happened.

Each problem gets its own agent run and its own interpreter from ``tool_factory()``: the interpreter is stateful,
so a shared one would leak variables from one problem into the next. It is closed when its problem ends. A
problem whose run raises is recorded with outcome ``error`` and the others go on.

Problems run in a thread pool of ``concurrency`` workers (the model is shared, so it must accept calls from
several threads; remote models and the scripted model do). With ``concurrency=1`` they run on the calling thread:
a local torch model decodes markedly slower in a worker thread on the CPUs we measured.

Files in ``out``: ``trajectories.jsonl`` (one :class:`~agentkit.trajectory.TrajectoryRecord` per finished run,
``meta`` naming the problem, gold and predicted answers and the verdict, for training) and ``results.jsonl`` (one
:class:`ProblemResult` per problem). Both are appended as each problem finishes, so a killed run keeps what it did.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agentkit.budgets import Budget
from agentkit.errors import ConfigError
from agentkit.evals.math.answers import extract_answer, is_equivalent, last_boxed
from agentkit.evals.math.data import DATASETS, Problem, load_dataset
from agentkit.evals.math.prompt import SYSTEM_PROMPT, build_messages
from agentkit.toolspec import Tool
from agentkit.trajectory import TrajectoryRecord, append_trajectory

ToolFactory = Callable[[], Tool]
RESULTS_FILE, TRAJECTORIES_FILE = "results.jsonl", "trajectories.jsonl"


def default_tool_factory() -> Tool:
    """A fresh ``python_interpreter`` session (the local Jupyter kernel, or E2B when configured)."""
    from agentkit.tools import load_tool

    return load_tool("python_interpreter")


@dataclass
class MathEvalConfig:
    """What to solve, with what, and where the results go."""

    dataset: str = "gsm8k"
    data: str | None = None
    limit: int | None = None
    model: str = "embedded"
    agent: str = "internlm2"
    concurrency: int = 4
    max_steps: int = 6
    max_tokens: int = 2048
    timeout_s: float = 300.0
    out: str = "runs/math"
    system_prompt: str | None = SYSTEM_PROMPT
    overwrite: bool = False

    def validate(self) -> None:
        """Fail on a bad setting before anything slow (loading a model) starts."""
        from agentkit.agents import AGENTS

        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}: use one of {', '.join(DATASETS)}")
        if self.agent not in AGENTS:
            raise ConfigError(f"unknown agent {self.agent!r}: use one of {', '.join(AGENTS)}")
        for name in ("concurrency", "max_steps", "max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.timeout_s <= 0:
            raise ConfigError(f"timeout_s must be positive, got {self.timeout_s}")


class ProblemResult(BaseModel):
    """How one problem went; one line of ``results.jsonl``."""

    id: str
    source: str = ""
    gold: str
    predicted: str | None
    correct: bool
    outcome: str
    steps: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    completion_tokens: int = 0
    duration_s: float = 0.0
    level: str | None = None
    subject: str | None = None
    trajectory_id: str | None = None
    error: str | None = None


def grade(problem: Problem, run: Any, duration_s: float = 0.0) -> ProblemResult:
    """Score a finished :class:`~agentkit.runtime.RunResult`.

    A run that ended with an answer is read with :func:`extract_answer` (boxed, ``####``, "the answer is", last
    number). A run stopped by a budget only counts a ``\\boxed{}`` in its last reply: that text is a thought
    before a tool call, and its last number is not an answer."""
    predicted = extract_answer(run.answer) if run.outcome == "answer" else last_boxed(run.answer)
    results = [m for m in run.messages if m.role == "environment" and m.tool_call_id]
    return ProblemResult(
        id=problem.id, source=problem.source, gold=problem.answer, predicted=predicted,
        correct=is_equivalent(predicted, problem.answer), outcome=run.outcome, steps=run.steps,
        tool_calls=len(run.tool_calls), tool_errors=sum(1 for m in results if m.meta.get("error")),
        completion_tokens=run.usage.completion_tokens, duration_s=duration_s,
        level=problem.level, subject=problem.subject,
    )


def _trajectory(agent: Any, run: Any, result: ProblemResult) -> TrajectoryRecord:
    from agentkit.agents.nodes import model_name

    parts = agent.parts
    return TrajectoryRecord(
        agent=parts.pattern, model=model_name(parts.model), protocol=parts.protocol.name,
        tools=[s.model_dump() for s in parts.specs], messages=run.messages, answer=run.answer, outcome=run.outcome,
        steps=run.steps, usage=run.usage, parse_errors=sum(1 for m in run.messages if m.parse_error),
        duration_s=run.duration_s,
        meta={"task": "math", "problem_id": result.id, "source": result.source, "gold": result.gold,
              "predicted": result.predicted, "correct": result.correct},
    )


def _close(tool: Any) -> str | None:
    close = getattr(tool, "close", None)
    if not callable(close):
        return None
    try:
        close()
    except Exception as exc:  # a session that will not close must not take the result with it
        return f"closing the interpreter failed: {type(exc).__name__}: {exc}"
    return None


def solve(problem: Problem, model: Any, config: MathEvalConfig, tool_factory: ToolFactory = default_tool_factory,
          trajectory_path: Path | None = None) -> ProblemResult:
    """One problem: one fresh interpreter, one agent run, a graded result. Never raises for the problem's sake."""
    from agentkit.agents import create_agent

    started = time.perf_counter()
    tool = None
    try:
        tool = tool_factory()
        budget = Budget(max_steps=config.max_steps, max_tokens=config.max_tokens, max_seconds=config.timeout_s)
        agent = create_agent(config.agent, model, tools=[tool], budget=budget, checkpointer=None)
        run = agent.run(build_messages(problem, config.system_prompt))
        result = grade(problem, run)
        if trajectory_path is not None:
            record = _trajectory(agent, run, result)
            append_trajectory(trajectory_path, record)
            result.trajectory_id = record.id
    except Exception as exc:  # one problem's failure is a result, not the end of the run
        result = ProblemResult(id=problem.id, source=problem.source, gold=problem.answer, predicted=None,
                               correct=False, outcome="error", level=problem.level, subject=problem.subject,
                               error=f"{type(exc).__name__}: {exc}")
    finally:
        close_error = _close(tool)
    if close_error and not result.error:
        result.error = close_error
    result.duration_s = time.perf_counter() - started
    return result


def _prepare_out(config: MathEvalConfig) -> tuple[Path, Path]:
    out = Path(config.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    results, trajectories = out / RESULTS_FILE, out / TRAJECTORIES_FILE
    existing = [p for p in (results, trajectories) if p.exists() and p.stat().st_size > 0]
    if existing and not config.overwrite:
        raise ConfigError(f"{existing[0]} already has results: choose a new --out directory or pass --overwrite")
    for path in existing:
        path.unlink()
    return results, trajectories


def run_math_eval(problems: Sequence[Problem] | MathEvalConfig | None = None, model: Any = None,
                  config: MathEvalConfig | None = None, tool_factory: ToolFactory | None = None,
                  on_result: Callable[[ProblemResult], None] | None = None) -> list[ProblemResult]:
    """Solve problems with up to ``config.concurrency`` at once; results in problem order.

    Either ``run_math_eval(config)``, which loads the dataset and the model ``config`` names, or
    ``run_math_eval(problems, model, config)`` with problems and a model (or model spec) of your own.
    ``tool_factory`` makes one interpreter per problem (default: the ``python_interpreter`` tool).
    ``on_result`` is called with each result as it is written, from one thread at a time."""
    if isinstance(problems, MathEvalConfig):
        if config is not None:
            raise ConfigError("pass the config once: run_math_eval(config) or run_math_eval(problems, model, config)")
        problems, config = None, problems
    config = config or MathEvalConfig()
    config.validate()
    if problems is None:
        if not config.data:
            raise ConfigError("no problems: pass them, or set the dataset file (--data PATH)")
        problems = load_dataset(config.dataset, config.data, config.limit)
    if model is None or isinstance(model, str):
        from agentkit.models import load_model

        model = load_model(model or config.model)
    factory = tool_factory or default_tool_factory
    results_path, trajectories_path = _prepare_out(config)
    lock = threading.Lock()

    def one(problem: Problem) -> ProblemResult:
        result = solve(problem, model, config, factory, trajectories_path)
        with lock:
            with results_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(result.model_dump(), ensure_ascii=False) + "\n")
            if on_result is not None:
                on_result(result)
        return result

    if config.concurrency == 1:
        return [one(problem) for problem in problems]
    pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="math")
    futures: list[Future[ProblemResult]] = []
    try:
        futures = [pool.submit(one, problem) for problem in problems]
        return [future.result() for future in futures]
    finally:  # on Ctrl-C, problems not yet started are dropped; running ones finish and close their sessions
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)
