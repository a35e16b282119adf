"""CLI commands of ``agentkit.apps``: each submodule listed here adds its own with ``register(app)``."""

from __future__ import annotations

from agentkit.commands import register_modules

SUBMODULES = ("agentkit.apps.ui.commands", "agentkit.apps.support.commands")


def register(app) -> None:
    register_modules(app, SUBMODULES)
