"""CLI commands of ``agentkit.models``: each submodule listed here adds its own with ``register(app)``."""

from __future__ import annotations

from agentkit.commands import register_modules

SUBMODULES = ("agentkit.models.internlm2.commands", "agentkit.models.serving.commands")


def register(app) -> None:
    register_modules(app, SUBMODULES)
