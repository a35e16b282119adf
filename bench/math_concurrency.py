"""GSM8K agent runs with many interpreter sessions at once vs one at a time, same run.

Each run is the internlm2 agent with its own local kernel (cold start, one code action, a boxed answer), the model
scripted so that the measurement is the runtime plus the interpreter, not a model: 64 problems at concurrency 16
vs concurrency 1. Prints wall time, runs/s and the ratio.

    .venv/bin/python bench/math_concurrency.py [--problems 64] [--concurrency 16] [--data PATH]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt, machine_info, table  # noqa: E402

from agentkit.evals.math import load_gsm8k  # noqa: E402
from agentkit.evals.math.report import summarize  # noqa: E402
from agentkit.evals.math.runner import MathEvalConfig, run_math_eval  # noqa: E402
from agentkit.messages import Message  # noqa: E402
from agentkit.models.scripted import ScriptedModel  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"


def scripted_solver(answers: dict[str, str]) -> ScriptedModel:
    """Writes code that computes the gold answer from the question's numbers, then boxes the printed value."""

    def reply(messages: list[Message]) -> str:
        question = next(m.text for m in messages if m.role == "user")
        if sum(m.role == "assistant" for m in messages) == 0:
            numbers = re.findall(r"\d+", question)[:3]
            code = f"values = [{', '.join(numbers) or '0'}]\nprint({answers[question]})"
            return f"<|action_start|><|interpreter|>\n```python\n{code}\n```<|action_end|>"
        return f"So the answer is \\boxed{{{messages[-1].text.strip()}}}."

    return ScriptedModel(reply)


def run(problems, concurrency: int, out: Path) -> tuple[float, float]:
    from agentkit.evals.math.prompt import problem_input

    answers = {problem_input(p): p.answer for p in problems}
    config = MathEvalConfig(concurrency=concurrency, out=str(out), max_steps=4)
    started = time.perf_counter()
    results = run_math_eval(problems, scripted_solver(answers), config)
    elapsed = time.perf_counter() - started
    return elapsed, summarize(results).accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    args = parser.parse_args()
    print(machine_info())
    problems = load_gsm8k(args.data, limit=args.problems)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        timings = {}
        for concurrency in (1, args.concurrency):
            elapsed, accuracy = run(problems, concurrency, Path(tmp) / f"c{concurrency}")
            timings[concurrency] = elapsed
            rows.append([f"concurrency {concurrency}", fmt(elapsed), fmt(len(problems) / elapsed),
                         fmt(timings[1] / elapsed), f"{100 * accuracy:.0f}%"])
    print(table(["runs", "wall s", "runs/s", "speed-up", "accuracy (scripted)"], rows, markdown=True))


if __name__ == "__main__":
    main()
