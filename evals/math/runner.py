"""Run an agent with a code interpreter over many problems at once and record what happened.

Each problem gets its own agent run and its own interpreter session (the interpreter is stateful, so sharing one
would leak variables between problems); sessions are closed when their problem ends. A problem whose run raises
is recorded as ``error`` and the others go on. Trajectories go to ``trajectories.jsonl`` (for training) and one
line per problem to ``results.jsonl``, both appended as each problem finishes, so a killed run keeps what it did.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from pydantic import BaseModel

from agentkit.budgets import Budget
from agentkit.evals.math.answers import extract_answer, is_equivalent
from agentkit.evals.math.data import Problem, load_dataset
from agentkit.evals.math.prompt import SYSTEM_PROMPT, problem_input
from agentkit.toolspec import Tool

ToolFactory = Callable[[], Tool]


def default_tool_factory() -> Tool:
    from agentkit.tools import load_tool

    return load_tool("python_interpreter")


@dataclass
class MathEvalConfig:
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
    system_prompt: str = SYSTEM_PROMPT
    extra: dict[str, Any] = field(default_factory=dict)


class ProblemResult(BaseModel):
    id: str
    gold: str
    predicted: str | None
    correct: bool
    outcome: str
    steps: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    completion_tokens: int = 0
    duration_s: float = 0.0
    error: str | None = None


def solve(problem: Problem, model: Any, tool_factory: ToolFactory, config: MathEvalConfig,
          trajectory_path: Path | None) -> ProblemResult:
    """One problem, one agent run, one interpreter session."""
    from agentkit.agents import create_agent

    started = time.perf_counter()
    tool = None
    try:
        tool = tool_factory()
        budget = Budget(max_steps=config.max_steps, max_tokens=config.max_tokens, max_seconds=config.timeout_s)
        agent = create_agent(config.agent, model, tools=[tool], system_prompt=config.system_prompt, budget=budget,
                             checkpointer=None, trajectory_path=trajectory_path)
        run = agent.run(problem_input(problem))
        predicted = extract_answer(run.answer)
        env = [m for m in run.messages if m.role == "environment" and m.tool_call_id]
        return ProblemResult(
            id=problem.id, gold=problem.answer, predicted=predicted,
            correct=is_equivalent(predicted, problem.answer), outcome=run.outcome, steps=run.steps,
            tool_calls=len(run.tool_calls), tool_errors=sum(1 for m in env if m.meta.get("error")),
            completion_tokens=run.usage.completion_tokens, duration_s=time.perf_counter() - started,
        )
    except Exception as exc:  # one problem's failure is a result, not the end of the run
        return ProblemResult(id=problem.id, gold=problem.answer, predicted=None, correct=False, outcome="error",
                             duration_s=time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}")
    finally:
        close = getattr(tool, "close", None)
        if callable(close):
            close()


def run_math_eval(problems: Sequence[Problem], model: Any, config: MathEvalConfig,
                  tool_factory: ToolFactory = default_tool_factory,
                  on_result: Callable[[ProblemResult], None] | None = None) -> list[ProblemResult]:
    """Solve ``problems`` with up to ``config.concurrency`` at once; results in problem order."""
    if config.concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    trajectories, results_file = out / "trajectories.jsonl", out / "results.jsonl"
    lock = threading.Lock()

    def one(problem: Problem) -> ProblemResult:
        result = solve(problem, model, tool_factory, config, trajectories)
        with lock:
            with results_file.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(result.model_dump()) + "\n")
            if on_result is not None:
                on_result(result)
        return result

    with ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="math") as pool:
        return list(pool.map(one, problems))


def run_from_config(config: MathEvalConfig, tool_factory: ToolFactory = default_tool_factory,
                    on_result: Callable[[ProblemResult], None] | None = None) -> list[ProblemResult]:
    """Load the dataset and the model named in ``config``, then :func:`run_math_eval`."""
    from agentkit.errors import ConfigError
    from agentkit.models import load_model

    if not config.data:
        raise ConfigError("--data is required: the path of the dataset's .jsonl file")
    problems = load_dataset(config.dataset, config.data, config.limit)
    model = load_model(config.model)
    return run_math_eval(problems, model, config, tool_factory, on_result)
