"""``agentkit ui``: serve the web chat. Only typer is imported here; FastAPI and the model load when it runs."""

from __future__ import annotations

from typing import Optional

import typer

AGENT_HELP = "agent pattern: internlm2 (the default model is tuned for it), react, rewoo or autogpt"
TOOLS_HELP = "comma-separated tool names, e.g. calculator,python_interpreter ('' for none)"


def register(app: typer.Typer) -> None:
    """Add the ``ui`` command to the agentkit CLI."""

    @app.command("ui")
    def ui(
        model: str = typer.Option("embedded", "--model", "-m", help="model spec (see 'agentkit models')"),
        agent: str = typer.Option("internlm2", "--agent", "-a", help=AGENT_HELP),
        tools: str = typer.Option("calculator", "--tools", "-t", help=TOOLS_HELP),
        port: int = typer.Option(8765, "--port", "-p", min=0, max=65535, help="port to listen on"),
        host: str = typer.Option("127.0.0.1", "--host", help="address to bind (0.0.0.0 for every interface)"),
        db: Optional[str] = typer.Option(None, "--db", help="SQLite file the threads live in (default: the "
                                         "agentkit checkpoint file, $AGENTKIT_HOME/checkpoints.sqlite)"),
        workdir: Optional[str] = typer.Option(None, "--workdir", help="the code interpreter's work dir, where "
                                              "uploads go (default: ui-files next to --db)"),
        max_steps: int = typer.Option(10, "--max-steps", min=1, help="model calls allowed per turn"),
    ) -> None:
        """Serve a web chat with the agent: streaming, threads, approvals, uploads, images."""
        from agentkit.errors import ConfigError

        try:
            from agentkit.apps.ui.launch import build_chat_app, serve
        except ImportError as exc:
            raise ConfigError(f"the chat UI needs the serve extra ({exc}): pip install 'agentkit[serve]'") from exc
        if host not in ("127.0.0.1", "localhost", "::1"):
            typer.echo(f"warning: serving on {host} without authentication; anyone who can reach it can run the "
                       "agent and its tools", err=True)
        app = build_chat_app(model, agent, tools, db=db, workdir=workdir, max_steps=max_steps)
        typer.echo(f"agentkit chat ({agent}, {model}) on http://{host}:{port}  (Ctrl-C stops)", err=True)
        serve(app, host=host, port=port)
