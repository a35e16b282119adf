"""``agentkit eval math``: solve GSM8K / MATH problems with an agent and a code interpreter, then report.

Only typer is imported here; the runner loads the model and the interpreter when the command runs.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add ``math`` to the ``eval`` command group."""

    @app.command("math")
    def math_eval(
        dataset: str = typer.Option("gsm8k", "--dataset", help="gsm8k or math"),
        data: str = typer.Option(..., "--data", help="the dataset's .jsonl file"),
        limit: int = typer.Option(None, "--limit", help="only the first N problems"),
        model: str = typer.Option("embedded", "--model", help="model spec: embedded, hf:PATH, openai:NAME, ..."),
        agent: str = typer.Option("internlm2", "--agent", help="agent pattern"),
        concurrency: int = typer.Option(4, "--concurrency", min=1, help="problems solved at once"),
        max_steps: int = typer.Option(6, "--max-steps", min=1, help="model calls per problem"),
        out: str = typer.Option("runs/math", "--out", help="directory for results, trajectories and the report"),
    ) -> None:
        """Solve math problems with the code interpreter; write results.jsonl, trajectories.jsonl, report.md/png."""
        from agentkit.evals.math.report import write_report
        from agentkit.evals.math.runner import MathEvalConfig, run_from_config

        config = MathEvalConfig(dataset=dataset, data=data, limit=limit, model=model, agent=agent,
                                concurrency=concurrency, max_steps=max_steps, out=out)
        done = 0

        def progress(result) -> None:
            nonlocal done
            done += 1
            mark = "ok " if result.correct else ("ERR" if result.outcome == "error" else "no ")
            typer.echo(f"[{done}] {mark} {result.id}: predicted {result.predicted!r}, gold {result.gold!r}", err=True)

        results = run_from_config(config, on_result=progress)
        report = write_report(results, out, title=f"{dataset} · {model} · {agent}")
        typer.echo(report.markdown(f"{dataset} · {model} · {agent}"))
        typer.echo(f"wrote {out}/results.jsonl, trajectories.jsonl, report.md, report.png")
