"""From command-line choices to a running chat UI: the agent, its interpreter work dir, the server.

Kept apart from ``commands.py`` (which may import only typer) and testable without a terminal.
"""

from __future__ import annotations

from pathlib import Path

from agentkit.errors import ConfigError

INTERPRETER = "python_interpreter"


def default_workdir(db: Path) -> Path:
    """Uploads and the interpreter's files live next to the threads that mention them."""
    return db.parent / "ui-files"


def build_chat_app(model: str = "embedded", agent: str = "internlm2", tools: str = "calculator", *,
                   db: str | Path | None = None, workdir: str | Path | None = None, max_steps: int = 10,
                   system_prompt: str | None = None):
    """The FastAPI app for ``agentkit ui``: the named agent over an SQLite checkpointer at ``db``.

    With ``python_interpreter`` among the tools, its session runs in ``workdir`` and uploads land there."""
    from agentkit.agents import AGENTS, create_agent
    from agentkit.apps.ui.server import create_app
    from agentkit.budgets import Budget
    from agentkit.checkpoint import default_checkpoint_path, sqlite_checkpointer

    if agent not in AGENTS:  # checked before the model loads, which takes seconds
        raise ConfigError(f"unknown agent {agent!r}: use one of {', '.join(AGENTS)}")
    db_path = Path(db).expanduser() if db else default_checkpoint_path()
    names = [n.strip() for n in tools.split(",") if n.strip()]
    work = Path(workdir).expanduser() if workdir else default_workdir(db_path)
    loaded = [_load(name, work) for name in names]
    from agentkit.models import load_model

    chat_agent = create_agent(agent, load_model(model), tools=loaded, checkpointer=sqlite_checkpointer(db_path),
                              budget=Budget(max_steps=max_steps), system_prompt=system_prompt)
    return create_app(chat_agent, workdir=work if INTERPRETER in names else None)


def _load(name: str, workdir: Path):
    from agentkit.tools import load_tool

    if name == INTERPRETER:
        workdir.mkdir(parents=True, exist_ok=True)
        return load_tool(name, workdir=str(workdir), per_thread=True)  # one user's variables stay in their thread
    return load_tool(name)


def serve(app, host: str = "127.0.0.1", port: int = 8765) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning")
