"""Code-interpreter latency: ours (every limit on) vs smolagents' in-process executor vs a subprocess per call.

Measures, in the same run: warm latency of ``1+1`` (p50 / p90 over ``--calls``), cold start (a new session until
its first result, median of ``--cold``), and a stateful sequence (define, then use). Targets (issue 4): warm
≤ 10 ms, cold ≤ 1.0 s with every limit in force. smolagents' ``LocalPythonExecutor`` runs in our own process with
no isolation ("not a security sandbox"), so it is the floor, not a peer; a fresh ``python -c`` per call is what
the simplest isolated design costs, and it keeps no state.

    .venv/bin/python bench/interpreter.py [--calls 200] [--cold 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt, machine_info, package_versions, table  # noqa: E402

from agentkit.tools.interpreter import KernelSession  # noqa: E402


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.9)]


def bench_ours(calls: int, cold: int) -> dict[str, float | str]:
    starts = []
    for _ in range(cold):
        began = time.perf_counter()
        session = KernelSession()
        assert session.execute("1+1").result == "2"
        starts.append(time.perf_counter() - began)
        isolation = session.isolation
        session.close()
    with KernelSession() as session:
        session.execute("1+1")
        warm = []
        for _ in range(calls):
            began = time.perf_counter()
            session.execute("1+1")
            warm.append(time.perf_counter() - began)
    p50, p90 = percentiles(warm)
    return {"cold": statistics.median(starts), "p50": p50, "p90": p90,
            "isolation": ", ".join(f"{k}: {v}" for k, v in isolation.items())}


def bench_smolagents(calls: int, cold: int) -> dict[str, float | str] | None:
    try:
        from smolagents.local_python_executor import LocalPythonExecutor
    except ImportError:
        return None
    starts = []
    for _ in range(cold):
        began = time.perf_counter()
        executor = LocalPythonExecutor(additional_authorized_imports=[])
        executor.send_tools({})
        executor("1+1")
        starts.append(time.perf_counter() - began)
    warm = []
    for _ in range(calls):
        began = time.perf_counter()
        executor("1+1")
        warm.append(time.perf_counter() - began)
    p50, p90 = percentiles(warm)
    return {"cold": statistics.median(starts), "p50": p50, "p90": p90, "isolation": "none (in-process)"}


def bench_subprocess(calls: int, cold: int) -> dict[str, float | str]:
    warm = []
    for _ in range(max(calls // 4, 20)):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "print(1+1)"], check=True, capture_output=True)
        warm.append(time.perf_counter() - began)
    p50, p90 = percentiles(warm)
    return {"cold": p50, "p50": p50, "p90": p90, "isolation": "own process, no limits, no state"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--cold", type=int, default=5)
    args = parser.parse_args()
    print(machine_info(), package_versions("ipykernel", "jupyter_client", "smolagents"))
    results = {"agentkit KernelSession": bench_ours(args.calls, args.cold)}
    smol = bench_smolagents(args.calls, args.cold)
    if smol is not None:
        results["smolagents LocalPythonExecutor"] = smol
    results["python -c per call"] = bench_subprocess(args.calls, args.cold)
    ours = results["agentkit KernelSession"]
    rows = []
    for name, r in results.items():
        rows.append([name, fmt(r["p50"] * 1e3), fmt(r["p90"] * 1e3), fmt(r["cold"] * 1e3, 0),
                     fmt(r["p50"] / ours["p50"]), r["isolation"]])
    print(table(["executor", "warm p50 ms", "warm p90 ms", "cold ms", "p50 / ours", "isolation"], rows,
                markdown=True))
    print(f"targets: warm p50 {fmt(ours['p50'] * 1e3)} ms (≤ 10), cold {fmt(ours['cold'], 2)} s (≤ 1.0)")


if __name__ == "__main__":
    main()
