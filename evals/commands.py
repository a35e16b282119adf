"""CLI commands of ``agentkit.evals``: the ``eval`` group; each submodule adds its command with ``register``."""

from __future__ import annotations

import typer

from agentkit.commands import register_modules

SUBMODULES = ("agentkit.evals.math.commands", "agentkit.evals.teval.commands")


def register(app: typer.Typer) -> None:
    group = typer.Typer(name="eval", help="Evaluate agents and models (math with a code interpreter, ...).",
                        no_args_is_help=True, rich_markup_mode=None)
    register_modules(group, SUBMODULES)
    app.add_typer(group)
