"""OpenCompass bridge: OpenCompass evaluates any agentkit model through ``agentkit serve``.

OpenCompass 0.5.4 pins numpy<2 and datasets<4, so it cannot share agentkit's environment. It runs from its own
virtual environment and reaches the model over HTTP (the OpenAI-compatible ``/v1/chat/completions``):

- ``configs/agentkit_api.py``: the OpenCompass *model* config (``OpenAISDK`` pointed at ``agentkit serve``; the
  address, model name, key and tokenizer come from ``AGENTKIT_BASE_URL``, ``AGENTKIT_MODEL_NAME``,
  ``AGENTKIT_API_KEY``, ``AGENTKIT_TOKENIZER``);
- ``configs/tiny_choice.py``: a six-question multiple-choice dataset shipped here (no hub download);
- ``configs/eval_agentkit_smoke.py``: both together, the run config;
- ``smoke.sh``: builds OpenCompass's venv, starts the server on the embedded model, runs the smoke config and
  stops the server (``make opencompass-smoke``).

``config_dir()`` tells other tools where the configs are installed.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["config_dir", "config_path"]


def config_dir() -> Path:
    """The folder holding the OpenCompass config files (package data)."""
    return Path(__file__).resolve().parent / "configs"


def config_path(name: str = "eval_agentkit_smoke.py") -> Path:
    """One config file by name; a clear error if it is not there."""
    from agentkit.errors import ConfigError

    path = config_dir() / name
    if not path.is_file():
        shipped = ", ".join(sorted(p.name for p in config_dir().glob("*.py")))
        raise ConfigError(f"no OpenCompass config {name!r}: the shipped ones are {shipped}")
    return path
