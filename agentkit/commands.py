"""How parts of agentkit add CLI commands: a module with ``register(app)``, imported only if it exists."""

from __future__ import annotations

import importlib
from collections.abc import Iterable


def register_modules(app, names: Iterable[str]) -> None:
    """Call ``register(app)`` of each named module that exists; a module that is absent adds nothing.

    Command modules import only typer at top level, so ``agentkit --help`` stays fast."""
    for name in names:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        module.register(app)
