"""CLI commands of ``agentkit.evals``: each submodule listed here adds its own with ``register(app)``."""

from __future__ import annotations

from agentkit.commands import register_modules

SUBMODULES = ("agentkit.evals.math.commands",)


def register(app) -> None:
    register_modules(app, SUBMODULES)
