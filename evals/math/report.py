"""The numbers of a math run, as ``report.md`` (a markdown table), ``report.json`` and ``report.png``.

- accuracy: problems whose predicted answer is equivalent to the gold one, over all problems (a run that raised
  counts as wrong);
- tool-use rate: problems with at least one tool call, over all problems;
- executable rate: tool calls whose result was not an error, over all tool calls (undefined without calls);
- mean steps: model calls per problem.

Files are replaced atomically, so a reader never sees half a report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from agentkit.evals.math.runner import ProblemResult
from agentkit.trajectory import atomic_save_figure, atomic_write_text


class MathReport(BaseModel):
    problems: int
    correct: int
    accuracy: float
    tool_use_rate: float
    tool_calls: int
    executable_rate: float | None
    mean_steps: float
    errors: int
    outcomes: dict[str, int]
    by_subject: dict[str, float] = {}

    def markdown(self, title: str = "Math eval") -> str:
        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{100 * value:.1f}%"

        rows = [
            ("problems", str(self.problems)),
            ("accuracy", pct(self.accuracy)),
            ("tool-use rate (problems with ≥ 1 tool call)", pct(self.tool_use_rate)),
            ("executable rate (tool calls without error)", pct(self.executable_rate)),
            ("tool calls", str(self.tool_calls)),
            ("mean steps", f"{self.mean_steps:.2f}"),
            ("runs that raised", str(self.errors)),
            ("outcomes", ", ".join(f"{name} {count}" for name, count in sorted(self.outcomes.items())) or "-"),
        ]
        lines = [f"### {title}", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {name} | {value} |" for name, value in rows]
        if self.by_subject:
            lines += ["", "| subject | accuracy |", "|---|---:|"]
            lines += [f"| {name} | {pct(value)} |" for name, value in sorted(self.by_subject.items())]
        return "\n".join(lines) + "\n"


def summarize(results: Sequence[ProblemResult]) -> MathReport:
    n = len(results)
    calls = sum(r.tool_calls for r in results)
    outcomes: dict[str, int] = {}
    subjects: dict[str, list[bool]] = {}
    for r in results:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
        if r.subject:
            subjects.setdefault(r.subject, []).append(r.correct)
    correct = sum(r.correct for r in results)
    return MathReport(
        problems=n,
        correct=correct,
        accuracy=correct / n if n else 0.0,
        tool_use_rate=sum(r.tool_calls > 0 for r in results) / n if n else 0.0,
        tool_calls=calls,
        executable_rate=(calls - sum(r.tool_errors for r in results)) / calls if calls else None,
        mean_steps=sum(r.steps for r in results) / n if n else 0.0,
        errors=sum(r.outcome == "error" for r in results),
        outcomes=outcomes,
        by_subject={name: sum(marks) / len(marks) for name, marks in subjects.items()},
    )


def read_results(path: str | Path) -> list[ProblemResult]:
    """The results of a run from its ``results.jsonl``."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [ProblemResult.model_validate(json.loads(line)) for line in lines if line.strip()]


def write_chart(report: MathReport, path: str | Path, title: str = "Math eval") -> Path:
    """Rates as bars (left) and how runs ended (right), as a PNG written to a temp file and moved into place."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    names = ["accuracy", "tool use", "executable"]
    values = [report.accuracy, report.tool_use_rate, report.executable_rate]
    # A bare Figure on an Agg canvas: no pyplot state, and the process's chosen backend is left alone.
    fig = Figure(figsize=(8, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    rates, ends = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    bars = rates.bar(names, [100 * (v or 0.0) for v in values], color=["#4C72B0", "#55A868", "#C44E52"])
    rates.bar_label(bars, labels=["n/a" if v is None else f"{100 * v:.1f}%" for v in values])
    rates.set_ylim(0, 115)
    rates.set_ylabel("% of problems / of tool calls")
    rates.set_title(f"mean steps {report.mean_steps:.2f}", fontsize=9)
    outcomes = sorted(report.outcomes.items())
    ends.barh([name for name, _ in outcomes], [count for _, count in outcomes], color="#8172B2")
    ends.set_xlabel("problems")
    ends.set_title("outcomes", fontsize=9)
    fig.suptitle(f"{title} (n={report.problems})")
    fig.tight_layout()
    return atomic_save_figure(fig, target)


def write_report(results: Sequence[ProblemResult], out: str | Path, title: str = "Math eval") -> MathReport:
    """``report.md``, ``report.json`` and ``report.png`` in ``out``; returns the numbers."""
    report = summarize(results)
    out = Path(out)
    atomic_write_text(out / "report.md", report.markdown(title))
    atomic_write_text(out / "report.json", report.model_dump_json(indent=2) + "\n")
    write_chart(report, out / "report.png", title)
    return report
