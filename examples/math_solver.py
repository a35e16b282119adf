"""Solve one GSM8K problem with an agent and the code interpreter, and show every step and the verdict.

    .venv/bin/python examples/math_solver.py                      # the embedded model, first GSM8K test problem
    .venv/bin/python examples/math_solver.py hf:PATH --index 3
    .venv/bin/python examples/math_solver.py scripted:script.jsonl --data my_gsm8k.jsonl

Without the GSM8K file (``../shared/data/gsm8k/test.jsonl`` next to the repository) it solves a small problem of
its own in the same format.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from agentkit.agents import create_agent
from agentkit.budgets import Budget
from agentkit.evals.math import Problem, build_messages, grade, load_gsm8k
from agentkit.models import load_model
from agentkit.tools import load_tool

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"
FALLBACK = Problem(
    id="example-0", source="gsm8k", answer="26",
    question="A baker makes 4 trays of 12 rolls. She sells 30 rolls and gives away a third of the rest. "
             "Then she bakes 14 more. How many rolls does she have now?",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="embedded", help="model spec (default: embedded)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="a GSM8K .jsonl file")
    parser.add_argument("--index", type=int, default=0, help="which problem of the file")
    parser.add_argument("--max-steps", type=int, default=6, help="model calls allowed")
    args = parser.parse_args()

    if Path(args.data).is_file():
        problem = load_gsm8k(args.data, limit=args.index + 1)[args.index]
    else:
        print(f"({args.data} not found: using a built-in problem)")
        problem = FALLBACK
    print(f"Problem {problem.id}: {problem.question}\n")

    interpreter = load_tool("python_interpreter")  # one stateful session, for this problem only
    started = time.perf_counter()
    try:
        agent = create_agent("internlm2", load_model(args.model), tools=[interpreter], checkpointer=None,
                             budget=Budget(max_steps=args.max_steps))
        run = agent.run(build_messages(problem))
    finally:
        interpreter.close()

    for message in run.messages:
        if message.role == "assistant":
            if message.text.strip():
                print(f"assistant> {message.text.strip()}")
            for call in message.tool_calls:
                print(f"  [{call.kind}]\n{call.code if call.code is not None else call.arguments}")
        elif message.role == "environment":
            label = "error" if message.meta.get("error") else "result"
            print(f"environment ({label})> {message.text.strip()}")
    result = grade(problem, run, time.perf_counter() - started)
    verdict = "correct" if result.correct else "wrong"
    print(f"\noutcome {result.outcome}, {result.steps} steps, {result.tool_calls} tool calls: "
          f"predicted {result.predicted!r}, gold {result.gold!r} → {verdict}")


if __name__ == "__main__":
    main()
