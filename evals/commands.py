"""CLI commands of ``agentkit.evals``: each submodule listed here adds its own with ``register(app)``."""

from __future__ import annotations

import importlib

SUBMODULES = ("agentkit.evals.math.commands",)


def register(app) -> None:
    for name in SUBMODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        module.register(app)
