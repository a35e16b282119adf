"""Per-step overhead of agentkit's ReAct graph vs LangChain's ``create_agent``.

Both sides run the same conversation with a zero-latency scripted model and a no-op tool:
the model asks for ``noop(i=k)`` at step k until N steps are done, then answers. A *step* is one
model call plus one tool call; ms/step = wall time of the whole run / N (the final answer call
is included in the run, on both sides). Each (side x checkpointer) pair is a *variant*.

    create_agent: langchain.agents.create_agent(model=<fake BaseChatModel>, tools=[@tool noop])
    agentkit:     agentkit.agents.create_agent("react", model=ScriptedModel(fn), tools=[FunctionTool noop])

Checkpointers: none; in-memory (LangGraph ``InMemorySaver()`` for create_agent,
``agentkit.checkpoint.memory_checkpointer()`` for agentkit, plus agentkit on a stock
``InMemorySaver()`` so "same checkpointer" is answered exactly); SQLite on a fresh temp file
(``SqliteSaver`` on a connection opened with the same settings as ``sqlite_checkpointer``:
WAL, synchronous=NORMAL, timeout 30 s, check_same_thread=False).

Targets (issue): agentkit <= 1.2x create_agent with the same checkpointer, and a flat per-step
cost (200-step run <= 1.3x the per-step cost of a 10-step run). PASS/FAIL is printed; the exit
status is 0 either way.

    python bench/runtime_overhead.py                      # full (~1 min on 2 cores)
    python bench/runtime_overhead.py --quick              # CI smoke: 1 repetition, one process (~6 s)
    python bench/runtime_overhead.py --mode isolated      # each variant alone in a fresh process
    python bench/runtime_overhead.py --steps 10,50,200 --repeats 5 --json out.json
    python bench/runtime_overhead.py --profile agentkit:sqlite --steps 200
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, machine_info, median, package_versions, table  # noqa: E402

SIDES = ("create_agent", "agentkit")
#: Fixed run order. "memory-stock" is agentkit on LangGraph's own InMemorySaver() (default serde).
VARIANTS: list[tuple[str, str]] = [
    ("create_agent", "none"),
    ("agentkit", "none"),
    ("create_agent", "memory"),
    ("agentkit", "memory"),
    ("agentkit", "memory-stock"),
    ("create_agent", "sqlite"),
    ("agentkit", "sqlite"),
]
#: Which create_agent checkpointer each agentkit checkpointer is compared with.
BASELINE_FOR = {"none": "none", "memory": "memory", "memory-stock": "memory", "sqlite": "sqlite"}
CKPT_LABEL = {
    "none": "none",
    "memory": "in-memory",
    "memory-stock": "in-memory (stock InMemorySaver on both)",
    "sqlite": "SQLite (WAL, synchronous=NORMAL)",
}
RATIO_TARGET = 1.2
#: Extra bytes in each tool call's arguments (``--arg-bytes``): 0 gives ``{"i": k}``; N adds ``"code": "#" * N``,
#: the size of a code-interpreter cell, to show what grows with argument size.
ARG_BYTES = 0


def _args(k: int) -> dict[str, Any]:
    return {"i": k, "code": "#" * ARG_BYTES} if ARG_BYTES else {"i": k}
GROWTH_TARGET = 1.3


# -- the sqlite connection both sides use --------------------------------------------------------------

def _sqlite_conn(path: Path) -> sqlite3.Connection:
    """Opened exactly as ``agentkit.checkpoint.sqlite_checkpointer`` opens its own."""
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


# -- create_agent side ---------------------------------------------------------------------------------

def build_create_agent(ckpt: str, tmpdir: Path) -> tuple[Callable[[int], None], Callable[[], None]]:
    from langchain.agents import create_agent
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.tools import tool

    class ZeroLatencyChatModel(BaseChatModel):
        """Asks for noop(i=k) at step k (k from the conversation length), then answers."""

        steps: int = 10

        @property
        def _llm_type(self) -> str:
            return "zero-latency-fake"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
            k = (len(messages) - 1) // 2  # [user, (ai, tool) * k]
            if k < self.steps:
                msg = AIMessage(content="", tool_calls=[
                    {"name": "noop", "args": _args(k), "id": f"call_{k}", "type": "tool_call"}])
            else:
                msg = AIMessage(content="done")
            return ChatResult(generations=[ChatGeneration(message=msg)])

        def bind_tools(self, tools, **kwargs):
            return self

    @tool
    def noop(i: int, code: str = "") -> str:
        """Does nothing."""
        return "ok"

    saver: Any = None
    cleanup = lambda: None  # noqa: E731
    if ckpt == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        saver = InMemorySaver()
    elif ckpt == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = _sqlite_conn(tmpdir / "create_agent.sqlite")
        saver = SqliteSaver(conn)
        saver.setup()
        cleanup = conn.close
    elif ckpt != "none":
        raise ValueError(f"create_agent has no checkpointer variant {ckpt!r}")

    model = ZeroLatencyChatModel()
    graph = create_agent(model=model, tools=[noop], checkpointer=saver)

    def run(steps: int) -> None:
        model.steps = steps
        config: dict[str, Any] = {"recursion_limit": 4 * steps + 20}
        if saver is not None:
            config["configurable"] = {"thread_id": uuid.uuid4().hex}
        out = graph.invoke({"messages": [HumanMessage("go")]}, config)
        msgs = out["messages"]
        if len(msgs) != 2 * steps + 2 or msgs[-1].content != "done":
            raise AssertionError(f"create_agent ran {len(msgs)} messages, expected {2 * steps + 2}")

    return run, cleanup


# -- agentkit side -------------------------------------------------------------------------------------

def _protocol() -> tuple[Any, str]:
    """The ``react`` protocol when it exists; otherwise a no-op stand-in (ScriptedModel messages bypass it)."""
    from agentkit.protocols import get_protocol

    try:
        return get_protocol("react"), "react"
    except Exception:  # agentkit.protocols.react not written yet (ImportError) or not registered
        from agentkit.messages import Message
        from agentkit.protocols.base import Protocol

        class BenchProtocol(Protocol):
            name = "bench"

            def render(self, messages, tools=None, interpreter=False) -> str:
                return ""

            def parse(self, text: str) -> Message:
                return Message.assistant(text)

        return BenchProtocol(), "bench stand-in (agentkit.protocols.react missing)"


def build_agentkit(ckpt: str, tmpdir: Path) -> tuple[Callable[[int], None], Callable[[], None]]:
    from agentkit.agents import create_agent
    from agentkit.budgets import Budget
    from agentkit.checkpoint import memory_checkpointer, sqlite_checkpointer
    from agentkit.messages import Message, ToolCall
    from agentkit.models.scripted import ScriptedModel
    from agentkit.toolspec import FunctionTool, ToolSpec

    target = {"steps": 10}

    def script(messages: list[Message]) -> Message:
        k = (len(messages) - 1) // 2  # [user, (assistant, environment) * k]
        if k < target["steps"]:
            return Message.assistant("", tool_calls=[ToolCall(id=f"call_{k}", name="noop", arguments=_args(k))])
        return Message.assistant("done")

    noop = FunctionTool(lambda i, code="": "ok", ToolSpec(
        name="noop", description="Does nothing.",
        parameters={"type": "object", "properties": {"i": {"type": "integer"}, "code": {"type": "string"}},
                    "required": ["i"]}))

    saver: Any
    cleanup = lambda: None  # noqa: E731
    if ckpt == "none":
        saver = None
    elif ckpt == "memory":
        saver = memory_checkpointer()
    elif ckpt == "memory-stock":
        from langgraph.checkpoint.memory import InMemorySaver

        saver = InMemorySaver()
    elif ckpt == "sqlite":
        saver = sqlite_checkpointer(tmpdir / "agentkit.sqlite")
        cleanup = saver.conn.close
    else:
        raise ValueError(f"agentkit has no checkpointer variant {ckpt!r}")

    protocol, _ = _protocol()
    agent = create_agent(
        "react", model=ScriptedModel(script, protocol=protocol), tools=[noop], protocol=protocol,
        checkpointer=saver,
        budget=Budget(max_steps=100_000, max_tokens=10**12, max_seconds=10**6, max_repeats=10**9),
    )

    def run(steps: int) -> None:
        target["steps"] = steps
        result = agent.run("go")
        if result.outcome != "answer" or len(result.messages) != 2 * steps + 2:
            raise AssertionError(f"agentkit ended {result.outcome!r} with {len(result.messages)} messages")

    return run, cleanup


BUILDERS = {"create_agent": build_create_agent, "agentkit": build_agentkit}


# -- measuring -----------------------------------------------------------------------------------------

def repeats_for(steps: int, repeats: int | None, quick: bool) -> int:
    if repeats is not None:
        return repeats
    if quick:
        return 1
    return 5 if steps >= 200 else 7 if steps >= 50 else 11


def measure_group(variants: list[tuple[str, str]], steps_list: list[int], repeats: int | None,
                  quick: bool) -> list[dict[str, Any]]:
    """Build the variants, warm each up, then time them interleaved: for each step count and repetition,
    one run of every variant, the order rotating by one each repetition, so a slow spell of the machine
    (2 shared cores) lands on all of them rather than on one. Returns ms/step samples and medians."""
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        built = [BUILDERS[side](ckpt, Path(tmp)) for side, ckpt in variants]
        try:
            for run, _ in built:
                for n in (10, 10) if quick else (10, 50, 10):  # warmup: imports, caches, first-call paths
                    run(n)
            out = [{"side": side, "checkpointer": ckpt, "ms_per_step": {}, "samples": {}} for side, ckpt in variants]
            for steps in steps_list:
                samples: list[list[float]] = [[] for _ in variants]
                for rep in range(repeats_for(steps, repeats, quick)):
                    for j in range(len(variants)):
                        i = (j + rep) % len(variants)
                        gc.collect()
                        t0 = time.perf_counter()
                        built[i][0](steps)
                        samples[i].append((time.perf_counter() - t0) * 1000 / steps)
                for res, s in zip(out, samples):
                    res["samples"][str(steps)] = [round(x, 4) for x in s]
                    res["ms_per_step"][str(steps)] = round(median(s), 4)
            return out
        finally:
            for _, cleanup in built:
                cleanup()


def measure_subprocess(variants: list[tuple[str, str]], args: argparse.Namespace) -> list[dict[str, Any]]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--variant", ",".join(f"{s}:{c}" for s, c in variants),
           "--steps", args.steps]
    if args.repeats is not None:
        cmd += ["--repeats", str(args.repeats)]
    if args.quick:
        cmd.append("--quick")
    cmd += ["--arg-bytes", str(args.arg_bytes)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"variants {variants} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- reporting -----------------------------------------------------------------------------------------

def summarize(results: list[dict[str, Any]], steps_list: list[int]) -> dict[str, Any]:
    by = {(r["side"], r["checkpointer"]): r["ms_per_step"] for r in results}
    rows, checks = [], []
    for ckpt in ("none", "memory", "memory-stock", "sqlite"):
        ours = by.get(("agentkit", ckpt))
        theirs = by.get(("create_agent", BASELINE_FOR[ckpt]))
        if ours is None or theirs is None:
            continue
        for steps in steps_list:
            a, b = ours.get(str(steps)), theirs.get(str(steps))
            ratio = a / b if a and b else None
            rows.append({"checkpointer": ckpt, "steps": steps, "create_agent": b, "agentkit": a, "ratio": ratio})
            if ratio is not None:
                checks.append({"target": f"ratio <= {RATIO_TARGET}", "checkpointer": ckpt, "steps": steps,
                               "value": round(ratio, 3), "pass": ratio <= RATIO_TARGET})
    growth = []
    lo, hi = min(steps_list), max(steps_list)
    if hi > lo:
        for (side, ckpt), ms in by.items():
            g = ms[str(hi)] / ms[str(lo)]
            growth.append({"side": side, "checkpointer": ckpt, "from": lo, "to": hi, "growth": round(g, 3)})
            if side == "agentkit":
                checks.append({"target": f"growth {hi}/{lo} <= {GROWTH_TARGET}", "checkpointer": ckpt,
                               "steps": hi, "value": round(g, 3), "pass": g <= GROWTH_TARGET})
    return {"rows": rows, "growth": growth, "checks": checks}


def render(summary: dict[str, Any], steps_list: list[int], markdown: bool = False) -> str:
    growth = {(g["side"], g["checkpointer"]): g["growth"] for g in summary["growth"]}
    lo, hi = min(steps_list), max(steps_list)
    rows = []
    for r in summary["rows"]:
        ckpt = r["checkpointer"]
        last = r["steps"] == hi
        rows.append([
            CKPT_LABEL[ckpt] if r["steps"] == steps_list[0] else "",
            r["steps"], fmt(r["create_agent"]), fmt(r["agentkit"]),
            (fmt(r["ratio"]) + ("" if r["ratio"] is None else (" ok" if r["ratio"] <= RATIO_TARGET else " over"))),
            fmt(growth.get(("create_agent", BASELINE_FOR[ckpt]))) if last else "",
            fmt(growth.get(("agentkit", ckpt))) if last else "",
        ])
    headers = ["checkpointer", "steps", "create_agent ms/step", "agentkit ms/step",
               f"ratio (target <= {RATIO_TARGET})", f"growth {hi}/{lo} create_agent",
               f"growth {hi}/{lo} agentkit (target <= {GROWTH_TARGET})"]
    return table(headers, rows, markdown=markdown)


MODES = {
    "paired": "each checkpointer's variants together in a fresh subprocess, runs interleaved",
    "isolated": "each variant alone in a fresh subprocess",
    "in-process": "all variants in this one process, each checkpointer's variants interleaved",
}


def plan(mode: str) -> list[list[tuple[str, str]]]:
    """The groups of variants measured together, in run order."""
    if mode == "isolated":
        return [[v] for v in VARIANTS]
    groups: dict[str, list[tuple[str, str]]] = {}
    for side, ckpt in VARIANTS:
        groups.setdefault(BASELINE_FOR[ckpt], []).append((side, ckpt))
    return list(groups.values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", default="10,50,200", help="comma-separated step counts (default 10,50,200)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per step count (default 11 at 10 steps, 7 at 50, 5 at >= 200; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="CI smoke: 1 repetition, short warmup, --mode in-process")
    p.add_argument("--mode", choices=list(MODES), default=None,
                   help="; ".join(f"{k}: {v}" for k, v in MODES.items()) + " (default paired; in-process with --quick)")
    p.add_argument("--arg-bytes", type=int, default=0, metavar="N",
                   help="pad each tool call's arguments with an N-byte 'code' string (default 0: {'i': k})")
    p.add_argument("--json", metavar="PATH", help="write results as JSON")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--variant", help=argparse.SUPPRESS)  # SIDE:CKPT[,SIDE:CKPT...]: one group, in a subprocess
    p.add_argument("--profile", metavar="SIDE:CKPT", help="cProfile one variant at the largest step count")
    args = p.parse_args(argv)
    steps_list = sorted({int(s) for s in args.steps.split(",") if s.strip()})
    global ARG_BYTES
    ARG_BYTES = args.arg_bytes

    if args.variant:
        group = [tuple(v.split(":")) for v in args.variant.split(",")]
        print(json.dumps(measure_group(group, steps_list, args.repeats, args.quick)))  # type: ignore[arg-type]
        return 0

    if args.profile:
        import cProfile
        import pstats

        side, ckpt = args.profile.split(":")
        with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
            run, cleanup = BUILDERS[side](ckpt, Path(tmp))
            run(10)
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(args.repeats or 3):
                run(max(steps_list))
            prof.disable()
            cleanup()
        print("(cProfile sees the main thread only: checkpoint writes run in LangGraph's background thread)")
        stats = pstats.Stats(prof)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)
        return 0

    mode = args.mode or ("in-process" if args.quick else "paired")
    info = machine_info()
    _, protocol_name = _protocol()
    print(f"agent runtime overhead: {info['cpu']}, {info['cores']} cores, Python {info['python']}, {info['date']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in package_versions(
        "langgraph", "langchain", "langchain-core", "langgraph-checkpoint", "langgraph-checkpoint-sqlite").items()))
    print(f"agentkit protocol: {protocol_name}; tool-call arguments: "
          + (f"{{'i': k, 'code': <{ARG_BYTES} bytes>}}" if ARG_BYTES else "{'i': k}"))
    print(f"mode {mode}: {MODES[mode]}; fixed order "
          + " | ".join(", ".join(f"{s}:{c}" for s, c in g) for g in plan(mode))
          + "; medians of " + ", ".join(f"{repeats_for(n, args.repeats, args.quick)} runs at {n}" for n in steps_list)
          + " steps, after warmup runs", flush=True)

    started = time.perf_counter()
    results = []
    for group in plan(mode):
        t0 = time.perf_counter()
        res = measure_group(group, steps_list, args.repeats, args.quick) if mode == "in-process" \
            else measure_subprocess(group, args)
        results.extend(res)
        for r in res:
            print(f"  {r['side']:>12}:{r['checkpointer']:<12} " + "  ".join(
                f"{n}: {r['ms_per_step'][str(n)]:5.2f}" for n in steps_list) + " ms/step", flush=True)
        print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
    summary = summarize(results, steps_list)
    print()
    print(render(summary, steps_list, markdown=args.markdown))
    print()
    for c in summary["checks"]:
        print(f"{'PASS' if c['pass'] else 'FAIL'}  {c['target']:<22} {CKPT_LABEL[c['checkpointer']]:<40} "
              f"steps={c['steps']:<4} value={c['value']:.2f}")
    if args.quick:
        print("(--quick: one run per step count, so PASS/FAIL is indicative only; use the full mode for figures)")
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": info, "protocol": protocol_name, "mode": mode, "steps": steps_list, "arg_bytes": ARG_BYTES,
            "variants": results, **summary,
        }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
