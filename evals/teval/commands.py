"""``agentkit eval teval``: run a model over T-Eval v1 files and report the six dimensions.

Only typer is imported here; the runner loads the data, the model and the embedder when the command runs.
"""

from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add ``teval`` to the ``eval`` command group."""

    @app.command("teval")
    def teval_eval(
        data: str = typer.Option(..., "--data", help="folder with the T-Eval v1 files (plan_json_v1.json, ...)"),
        model: str = typer.Option("embedded", "--model", "-m",
                                  help="model spec: embedded, hf:PATH, openai:BASE_URL#MODEL, scripted:FILE"),
        dims: str = typer.Option("instruct,plan,reason,retrieve,understand,review", "--dims",
                                 help="comma-separated dimensions to run"),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="only the first N samples of each file"),
        out: str = typer.Option("runs/teval", "--out", help="directory for predictions and the report"),
        embedder: str = typer.Option("auto", "--embedder",
                                     help="auto (all-mpnet-base-v2 if cached, else all-MiniLM-L6-v2), mpnet, "
                                          "minilm, or a sentence-transformers directory"),
        batch_size: int = typer.Option(8, "--batch-size", min=1, help="prompts per batch (completion models)"),
        concurrency: int = typer.Option(4, "--concurrency", min=1, help="requests at once (chat models)"),
        max_new_tokens: int = typer.Option(512, "--max-new-tokens", min=1, help="reply length cap"),
        dtype: Optional[str] = typer.Option(None, "--dtype",
                                            help="weights dtype of a local model (embedded, hf:): float32, bfloat16"),
    ) -> None:
        """Score a model on T-Eval v1; write predictions/, report.md, report.json and report.png."""
        from agentkit.errors import ConfigError
        from agentkit.evals.teval.runner import TEvalConfig, run_teval

        try:
            config = TEvalConfig(data=data, model=model, dims=[d.strip() for d in dims.split(",") if d.strip()],
                                 limit=limit, out=out, embedder=embedder, batch_size=batch_size,
                                 concurrency=concurrency, max_new_tokens=max_new_tokens, dtype=dtype)
        except ValueError as exc:  # pydantic's ValidationError: keep only what was wrong
            errors = getattr(exc, "errors", None)
            raise ConfigError(errors()[0]["msg"].removeprefix("Value error, ") if errors else str(exc)) from None

        def progress(kind: str, done: int, total: int) -> None:
            typer.echo(f"[{kind}] {done}/{total}", err=True)

        report = run_teval(config, on_progress=progress)
        typer.echo(report.markdown(f"T-Eval v1 · {report.model}"))
        typer.echo(f"embedder: {report.embedder}; wrote predictions/, report.md, report.json and report.png in {out}",
                   err=True)
