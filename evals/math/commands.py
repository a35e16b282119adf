"""``agentkit eval math``: solve GSM8K / MATH problems with an agent and a code interpreter, then report.

Only typer is imported here; the runner loads the dataset, the model and the interpreter when the command runs.
Bad input (a missing file, an unknown agent or model spec) raises ``ConfigError``, which ``agentkit`` prints as
one line with exit status 2.
"""

from __future__ import annotations

from enum import Enum
from typing import Optional

import typer


class Dataset(str, Enum):
    gsm8k = "gsm8k"
    math = "math"


def register(app: typer.Typer) -> None:
    """Add ``math`` to the ``eval`` command group."""

    @app.command("math")
    def math_eval(
        dataset: Dataset = typer.Option(Dataset.gsm8k, "--dataset", help="which loader reads --data"),
        data: str = typer.Option(..., "--data", help="the dataset's .jsonl file, e.g. ../shared/data/gsm8k/test.jsonl"),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="only the first N problems"),
        model: str = typer.Option("embedded", "--model", "-m",
                                  help="model spec: embedded, hf:PATH, openai:BASE_URL#MODEL, scripted:FILE"),
        concurrency: int = typer.Option(4, "--concurrency", min=1, help="problems solved at once"),
        out: str = typer.Option("runs/math", "--out", help="directory for results, trajectories and the report"),
        agent: str = typer.Option("internlm2", "--agent", "-a", help="agent pattern"),
        max_steps: int = typer.Option(6, "--max-steps", min=1, help="model calls allowed per problem"),
        max_tokens: int = typer.Option(2048, "--max-tokens", min=1, help="new tokens allowed per problem"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace results already in --out"),
    ) -> None:
        """Solve math problems with a code interpreter; write results.jsonl, trajectories.jsonl, report.md/json/png."""
        from agentkit.evals.math.report import write_report
        from agentkit.evals.math.runner import MathEvalConfig, run_math_eval

        config = MathEvalConfig(dataset=dataset.value, data=data, limit=limit, model=model, agent=agent,
                                concurrency=concurrency, max_steps=max_steps, max_tokens=max_tokens, out=out,
                                overwrite=overwrite)
        done = 0

        def progress(result) -> None:
            nonlocal done
            done += 1
            mark = "ok " if result.correct else ("ERR" if result.outcome == "error" else "no ")
            detail = f" ({result.error})" if result.error else ""
            typer.echo(f"[{done}] {mark} {result.id}: predicted {result.predicted!r}, gold {result.gold!r}{detail}",
                       err=True)

        results = run_math_eval(config, on_result=progress)
        title = f"{dataset.value} · {model} · {agent}"
        report = write_report(results, out, title=title)
        typer.echo(report.markdown(title))
        typer.echo(f"wrote results.jsonl, trajectories.jsonl, report.md, report.json and report.png in {out}", err=True)
