"""Solve one GSM8K problem with an agent and the code interpreter, and show every step.

    .venv/bin/python examples/math_solver.py                       # the embedded model, first test problem
    .venv/bin/python examples/math_solver.py --model hf:PATH --index 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agentkit.budgets import Budget
from agentkit.agents import create_agent
from agentkit.evals.math import extract_answer, is_equivalent, load_gsm8k
from agentkit.evals.math.prompt import SYSTEM_PROMPT, problem_input
from agentkit.models import load_model
from agentkit.tools.interpreter import PythonInterpreter

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args()

    problem = load_gsm8k(args.data, limit=args.index + 1)[args.index]
    print(f"Problem {problem.id}: {problem.question}\n")
    with PythonInterpreter() as interpreter:
        agent = create_agent("internlm2", load_model(args.model), tools=[interpreter], system_prompt=SYSTEM_PROMPT,
                             budget=Budget(max_steps=6), checkpointer=None)
        result = agent.run(problem_input(problem))
    for message in result.messages[1:]:
        if message.role == "assistant":
            if message.text.strip():
                print(f"assistant> {message.text.strip()}")
            for call in message.tool_calls:
                print(f"  [{call.kind}] {call.arguments.get('code', call.arguments)}")
        elif message.role == "environment":
            print(f"environment> {message.text.strip()}")
    predicted = extract_answer(result.answer)
    verdict = "correct" if is_equivalent(predicted, problem.answer) else "wrong"
    print(f"\noutcome: {result.outcome}, steps: {result.steps}, predicted {predicted!r}, gold {problem.answer!r}: "
          f"{verdict}")


if __name__ == "__main__":
    main()
