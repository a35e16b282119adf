"""Scores of an evaluation pass and the before/after report (markdown table + PNG chart).

Definitions (per held-out task, one greedy run each):
- **task success**: the verifier accepts the final answer and the run used tools as the task requires
  (no call on no-tool questions, at least one call otherwise);
- **tool-call validity**: on tasks that need a tool, the run made at least one call and every call attempt
  parsed, named a real tool and ran without error;
- **mean steps**: model calls per run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentkit.trajectory import TrajectoryRecord, atomic_save_figure, atomic_write_text

__all__ = ["EvalScores", "score_records", "write_report"]


@dataclass
class EvalScores:
    """Rates in [0, 1] over one evaluation pass."""

    runs: int
    success: float
    validity: float
    mean_steps: float
    parse_error_rate: float
    by_kind: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalScores:
        return cls(**data)


def _rate(values: Sequence[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


def score_records(records: Sequence[TrajectoryRecord]) -> EvalScores:
    """Aggregate the scored records of an evaluation pass (``meta`` as the rollout writes it)."""
    def summary(group: Sequence[TrajectoryRecord]) -> dict[str, float]:
        tool_tasks = [r for r in group if r.meta.get("needs_tool")]
        replies = sum(1 for r in group for m in r.messages if m.role == "assistant")
        return {
            "runs": len(group),
            "success": _rate([bool(r.meta.get("success")) for r in group]),
            "validity": _rate([bool(r.meta.get("valid_tool_use")) for r in tool_tasks]),
            "mean_steps": sum(r.steps for r in group) / len(group) if group else 0.0,
            "parse_error_rate": sum(r.parse_errors for r in group) / replies if replies else 0.0,
        }

    kinds: dict[str, list[TrajectoryRecord]] = {}
    for record in records:
        kinds.setdefault(record.meta.get("kind", "?"), []).append(record)
    overall = summary(records)
    return EvalScores(runs=int(overall["runs"]), success=overall["success"], validity=overall["validity"],
                      mean_steps=overall["mean_steps"], parse_error_rate=overall["parse_error_rate"],
                      by_kind={k: summary(v) for k, v in sorted(kinds.items())})


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _delta(after: float, before: float, percent: bool = True) -> str:
    d = after - before
    return f"{100 * d:+.1f} pts" if percent else f"{d:+.2f}"


def write_report(out_dir: Path, title: str, before: EvalScores, rounds: Sequence[tuple[str, EvalScores]],
                 details: dict[str, Any]) -> tuple[Path, Path | None]:
    """Write ``report.md`` (and ``report.png`` when matplotlib is installed); return their paths."""
    lines = [f"# {title}", ""]
    for key, value in details.items():
        lines.append(f"- {key}: {value}")
    lines += ["", "| metric | before | " + " | ".join(name for name, _ in rounds) + " | change (last) |",
              "|---|---|" + "---|" * len(rounds) + "---|"]
    last = rounds[-1][1] if rounds else before
    metrics = (("task success", "success", True), ("tool-call validity", "validity", True),
               ("mean steps", "mean_steps", False), ("parse errors / reply", "parse_error_rate", True))
    for label, attr, percent in metrics:
        fmt = _pct if percent else (lambda x: f"{x:.2f}")
        cells = [fmt(getattr(before, attr))] + [fmt(getattr(s, attr)) for _, s in rounds]
        change = _delta(getattr(last, attr), getattr(before, attr), percent)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {change} |")
    lines += ["", "Task success by kind:", "", "| kind | runs | before | " + " | ".join(n for n, _ in rounds) + " |",
              "|---|---|---|" + "---|" * len(rounds)]
    for kind, row in before.by_kind.items():
        cells = [_pct(s.by_kind.get(kind, {}).get("success", 0.0)) for _, s in rounds]
        lines.append(f"| {kind} | {int(row['runs'])} | {_pct(row['success'])} | " + " | ".join(cells) + " |")
    md = out_dir / "report.md"
    atomic_write_text(md, "\n".join(lines) + "\n")
    scores = {"before": before.to_dict(), **{name: s.to_dict() for name, s in rounds}}
    atomic_write_text(out_dir / "report.json", json.dumps({"details": details, "scores": scores}, indent=2) + "\n")
    return md, _chart(out_dir / "report.png", title, before, rounds)


def _chart(path: Path, title: str, before: EvalScores, rounds: Sequence[tuple[str, EvalScores]]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    stages = [("before", before), *rounds]
    metrics = [("task success", "success"), ("tool-call validity", "validity")]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(stages)
    for i, (name, scores) in enumerate(stages):
        values = [100 * getattr(scores, attr) for _, attr in metrics]
        bars = ax.bar([m + i * width for m in range(len(metrics))], values, width, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks([m + width * (len(stages) - 1) / 2 for m in range(len(metrics))], [m for m, _ in metrics])
    ax.set_ylabel("% of held-out tasks")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        return atomic_save_figure(fig, path)
    finally:
        plt.close(fig)
