"""ReWOO's parallel fan-out vs the same steps run one by one, in the same run.

A scripted planner writes 8 independent steps; each step is a tool that sleeps 200 ms. ReWOO sends the
ready steps with LangGraph ``Send`` so they run at once; the baseline is a ReAct agent that makes the same
8 calls one per step. Target (issue 5): ReWOO ≤ 1.25 × one call (≥ 6× faster than one by one).

    .venv/bin/python bench/rewoo_parallel.py [--steps 8] [--sleep 0.2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from agentkit.agents import create_agent
from agentkit.budgets import Budget
from agentkit.messages import Message, ToolCall
from agentkit.models.scripted import ScriptedModel
from agentkit.toolspec import FunctionTool, ToolSpec


def make_tool(seconds: float) -> FunctionTool:
    def wait(text: str) -> str:
        time.sleep(seconds)
        return f"done {text}"

    spec = ToolSpec(name="wait", parameters={"type": "object", "properties": {"text": {"type": "string"}},
                                             "required": ["text"]})
    return FunctionTool(wait, spec)


def rewoo_run(steps: int, seconds: float, checkpointer: str) -> float:
    plan = "\n".join(f"Plan: step {i}\n#E{i} = wait[item {i}]" for i in range(1, steps + 1))
    agent = create_agent("rewoo", ScriptedModel([plan, "Final Answer: done"]), tools=[make_tool(seconds)],
                         checkpointer=checkpointer)
    started = time.perf_counter()
    result = agent.run("do the steps")
    assert result.outcome == "answer", result.outcome
    return time.perf_counter() - started


def sequential_run(steps: int, seconds: float, checkpointer: str) -> float:
    script = [Message.assistant("", [ToolCall(name="wait", arguments={"text": f"item {i}"})]) for i in range(steps)]
    agent = create_agent("react", ScriptedModel([*script, Message.assistant("done")]), tools=[make_tool(seconds)],
                         checkpointer=checkpointer, budget=Budget(max_steps=steps + 2))
    started = time.perf_counter()
    result = agent.run("do the steps")
    assert result.outcome == "answer", result.outcome
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--sleep", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.steps} independent steps, each a tool sleeping {args.sleep * 1000:.0f} ms; medians of {args.repeats}")
    print(f"{'checkpointer':<10} {'one by one (s)':>15} {'ReWOO (s)':>10} {'speed-up':>9} {'ReWOO / one call':>17}")
    sqlite = str(Path(tempfile.mkdtemp()) / "bench.sqlite")
    for checkpointer in ("none", "memory", sqlite):
        rewoo_run(args.steps, 0.0, checkpointer), sequential_run(args.steps, 0.0, checkpointer)  # warm up
        seq = statistics.median(sequential_run(args.steps, args.sleep, checkpointer) for _ in range(args.repeats))
        par = statistics.median(rewoo_run(args.steps, args.sleep, checkpointer) for _ in range(args.repeats))
        vs_one = par / args.sleep
        verdict = "PASS" if vs_one <= 1.25 else "FAIL"
        name = "sqlite" if checkpointer == sqlite else checkpointer
        print(f"{name:<10} {seq:>15.3f} {par:>10.3f} {seq / par:>8.1f}x {vs_one:>12.2f} {verdict} (<= 1.25)")


if __name__ == "__main__":
    main()
