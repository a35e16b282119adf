"""The numbers of a T-Eval run as ``report.json``, ``report.md`` (tables) and ``report.png`` (bars).

Scores are percentages like T-Eval's leaderboard. Every report names the sentence embedder, because plan,
reason and understand scores move with it (T-Eval itself uses all-mpnet-base-v2). Files are replaced atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from statistics import fmean
from typing import Any

from pydantic import BaseModel

from agentkit.evals.teval.data import DIMENSIONS
from agentkit.evals.teval.scoring import dimension_scores
from agentkit.trajectory import atomic_save_figure, atomic_write_text

__all__ = ["FileReport", "TEvalReport", "build_report", "write_chart", "write_report"]


class FileReport(BaseModel):
    samples: int
    metrics: dict[str, float]  # percentages
    errors: int = 0


class TEvalReport(BaseModel):
    model: str
    embedder: str
    data: str
    limit: int | None
    dimensions: dict[str, float]  # percentages, only those with data
    overall: float | None
    overall_over: int  # how many of the six dimensions the overall averages
    files: dict[str, FileReport]
    failed_calls: list[str] = []
    elapsed_s: float = 0.0

    @property
    def partial(self) -> bool:
        return self.overall_over < len(DIMENSIONS)

    def markdown(self, title: str = "T-Eval v1") -> str:
        overall = "n/a" if self.overall is None else f"{self.overall:.1f}"
        if self.partial and self.overall is not None:
            overall += f" (mean of {self.overall_over} of 6 dimensions)"
        lines = [f"### {title}", "", f"model `{self.model}` · embedder **{self.embedder}** · data `{self.data}`"
                 + (f" · first {self.limit} samples per file" if self.limit else ""), "",
                 "| dimension | score |", "|---|---:|", f"| **overall** | {overall} |"]
        lines += [f"| {dim} | {self.dimensions[dim]:.1f} |" if dim in self.dimensions else f"| {dim} | – |"
                  for dim in DIMENSIONS]
        lines += ["", "| file | samples | metrics |", "|---|---:|---|"]
        for kind, rep in self.files.items():
            metrics = ", ".join(f"{k} {v:.1f}" for k, v in rep.metrics.items())
            failed = f" · {rep.errors} failed calls" if rep.errors else ""
            lines.append(f"| {kind} | {rep.samples} | {metrics}{failed} |")
        lines += ["", f"Scores are percentages; similarity metrics use the {self.embedder} sentence embedder "
                      "(T-Eval's own runs use all-mpnet-base-v2)."]
        return "\n".join(lines) + "\n"


def build_report(results: Sequence[Any], *, model: str, embedder: str, config: Any, elapsed_s: float) -> TEvalReport:
    """Collect :class:`~agentkit.evals.teval.runner.KindResult` s into a report."""
    files = {r.kind: r.metrics for r in results}
    dims = {dim: 100 * score for dim, score in dimension_scores(files).items()}
    return TEvalReport(
        model=model, embedder=embedder, data=str(config.data), limit=config.limit, dimensions=dims,
        overall=fmean(dims.values()) if dims else None, overall_over=len(dims),
        files={r.kind: FileReport(samples=len(r.samples), metrics={k: 100 * v for k, v in r.metrics.items()},
                                  errors=len(r.errors)) for r in results},
        failed_calls=[e for r in results for e in r.errors], elapsed_s=round(elapsed_s, 2))


def write_chart(report: TEvalReport, path: str | Path, title: str = "T-Eval v1") -> Path:
    """Dimension scores (left) and each file's parse rate (right), as a PNG moved into place."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)  # a bare Figure: no pyplot state, the process's backend is left alone
    dims_ax, parse_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    names = ["overall", *DIMENSIONS]
    values = [report.overall, *(report.dimensions.get(d) for d in DIMENSIONS)]
    bars = dims_ax.bar(names, [v or 0.0 for v in values], color=["#C44E52"] + ["#4C72B0"] * len(DIMENSIONS))
    dims_ax.bar_label(bars, labels=["–" if v is None else f"{v:.1f}" for v in values], fontsize=8)
    dims_ax.set_ylim(0, 110)
    dims_ax.set_ylabel("score (%)")
    dims_ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    dims_ax.set_title(f"embedder: {report.embedder}", fontsize=9)
    kinds = list(report.files)
    parse_ax.barh(kinds, [report.files[k].metrics.get("parse_rate", 0.0) for k in kinds], color="#55A868")
    parse_ax.set_xlim(0, 100)
    parse_ax.set_xlabel("parse rate (%)")
    parse_ax.tick_params(axis="y", labelsize=8)
    fig.suptitle(f"{title} · {report.model}")
    fig.tight_layout()
    return atomic_save_figure(fig, target)


def write_report(report: TEvalReport, out: str | Path, title: str = "T-Eval v1") -> TEvalReport:
    """``report.md``, ``report.json`` and ``report.png`` in ``out``."""
    out = Path(out)
    atomic_write_text(out / "report.md", report.markdown(title))
    atomic_write_text(out / "report.json", report.model_dump_json(indent=2) + "\n")
    write_chart(report, out / "report.png", title)
    return report
