"""Accuracy, tool-use rate, executable rate and mean steps, as a markdown table and a PNG chart."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

from pydantic import BaseModel

from agentkit.evals.math.runner import ProblemResult
from agentkit.trajectory import atomic_write_text


class MathReport(BaseModel):
    problems: int
    accuracy: float
    tool_use_rate: float
    executable_rate: float | None
    mean_steps: float
    errors: int
    outcomes: dict[str, int]

    def markdown(self, title: str = "Math eval") -> str:
        def pct(value: float | None) -> str:
            return "-" if value is None else f"{100 * value:.1f}%"

        rows = [
            ("problems", str(self.problems)),
            ("accuracy", pct(self.accuracy)),
            ("tool-use rate (problems with ≥ 1 interpreter call)", pct(self.tool_use_rate)),
            ("executable rate (calls that ran without error)", pct(self.executable_rate)),
            ("mean steps", f"{self.mean_steps:.2f}"),
            ("runs that raised", str(self.errors)),
            ("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))),
        ]
        lines = [f"### {title}", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {name} | {value} |" for name, value in rows]
        return "\n".join(lines) + "\n"


def summarize(results: Sequence[ProblemResult]) -> MathReport:
    n = len(results)
    calls = sum(r.tool_calls for r in results)
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    return MathReport(
        problems=n,
        accuracy=sum(r.correct for r in results) / n if n else 0.0,
        tool_use_rate=sum(r.tool_calls > 0 for r in results) / n if n else 0.0,
        executable_rate=(calls - sum(r.tool_errors for r in results)) / calls if calls else None,
        mean_steps=sum(r.steps for r in results) / n if n else 0.0,
        errors=sum(r.outcome == "error" for r in results),
        outcomes=outcomes,
    )


def read_results(path: str | Path) -> list[ProblemResult]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [ProblemResult.model_validate(json.loads(line)) for line in lines if line.strip()]


def write_chart(report: MathReport, path: str | Path, title: str = "Math eval") -> Path:
    """A bar chart of the four rates, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["accuracy", "tool use", "executable", "mean steps / max"]
    values = [report.accuracy, report.tool_use_rate, report.executable_rate or 0.0,
              min(1.0, report.mean_steps / 10)]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    bars = ax.bar(names, [100 * v for v in values], color=["#4C72B0", "#55A868", "#C44E52", "#8172B2"])
    ax.bar_label(bars, labels=[f"{100 * v:.0f}%" for v in values[:3]] + [f"{report.mean_steps:.1f}"])
    ax.set_ylim(0, 110)
    ax.set_ylabel("%")
    ax.set_title(f"{title} (n={report.problems})")
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, target)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return target


def write_report(results: Sequence[ProblemResult], out: str | Path, title: str = "Math eval") -> MathReport:
    """``report.md``, ``report.json`` and ``report.png`` in ``out``."""
    report = summarize(results)
    out = Path(out)
    atomic_write_text(out / "report.md", report.markdown(title))
    atomic_write_text(out / "report.json", report.model_dump_json(indent=2))
    write_chart(report, out / "report.png", title)
    return report
