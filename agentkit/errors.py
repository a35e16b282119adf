"""User-facing errors: each says what went wrong and what to do. The CLI prints them as one line."""

from __future__ import annotations


class AgentkitError(Exception):
    """Base class for errors caused by user input (a spec, a file, a flag), not by a bug."""


class ConfigError(AgentkitError, ValueError):
    """A model spec, agent name, option or file that cannot be used as given."""


class BudgetExceeded(AgentkitError):
    """A run hit one of its budgets (steps, tokens, wall time, repeated calls)."""
