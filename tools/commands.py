"""``agentkit tools``: list, search and serve tools.

Only typer is imported here; the registry and the server (FastAPI, uvicorn) load when a command runs.
"""

from __future__ import annotations

import re
from typing import Optional

import typer

_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)")
API_KEY_HELP = "require this key from clients (Authorization: Bearer or X-API-Key); also read from $AGENTKIT_TOOLS_API_KEY"


def one_line(description: str, width: int = 100) -> str:
    """The first sentence of a description, cut to ``width`` characters: enough to pick a tool by."""
    text = " ".join(description.split())
    match = _SENTENCE.match(text)
    text = match.group(1) if match else text
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def register(app: typer.Typer) -> None:
    """Add the ``tools`` command group to the agentkit CLI."""
    tools = typer.Typer(name="tools", help="List, search and serve tools.", no_args_is_help=True,
                        rich_markup_mode=None)

    @tools.command("list")
    def list_() -> None:
        """List every tool --tools accepts, with a one-line description."""
        from agentkit.tools.registry import describe_tool, list_tools

        from agentkit.errors import ConfigError

        names = list_tools()
        width = max((len(n) for n in names), default=0)
        for name in names:
            try:
                line = one_line(describe_tool(name))
            except ConfigError as exc:
                line = f"(unavailable: {one_line(str(exc))})"
            typer.echo(f"{name:<{width}}  {line}")

    @tools.command("search")
    def search(
        query: str = typer.Argument(..., help="what the tool should do, e.g. 'arithmetic' or 'run python'"),
        limit: int = typer.Option(5, "--limit", "-k", min=1, help="most tools to show"),
    ) -> None:
        """Find tools whose name or description fit QUERY, best first."""
        from agentkit.tools.registry import search_tool

        hits = search_tool(query, k=limit)
        if not hits:
            typer.echo(f"no tool matches {query!r}; see 'agentkit tools list'")
            return
        width = max(len(h.name) for h in hits)
        for hit in hits:
            typer.echo(f"{hit.name:<{width}}  {hit.score:.2f}  {one_line(hit.description)}")

    @tools.command("serve")
    def serve(
        names: str = typer.Option(..., "--tools", "-t", help="comma-separated tool names, e.g. calculator"),
        port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="port to listen on"),
        host: str = typer.Option("127.0.0.1", "--host", help="address to bind (0.0.0.0 for every interface)"),
        api_key: Optional[str] = typer.Option(None, "--api-key", envvar="AGENTKIT_TOOLS_API_KEY", help=API_KEY_HELP),
        timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="seconds one call may take (then 504)"),
    ) -> None:
        """Serve tools over HTTP: POST /tools/NAME per tool, docs at /docs; RemoteTool calls them."""
        from agentkit.tools.registry import load_tools

        from agentkit.errors import ConfigError

        try:
            from agentkit.tools.server import serve_tools
        except ImportError as exc:
            raise ConfigError(f"serving tools needs the serve extra ({exc}): pip install 'agentkit[serve]'") from exc
        loaded = load_tools(names)
        if not loaded:
            raise ConfigError("no tools to serve: name at least one, e.g. --tools calculator")
        if not api_key and host not in ("127.0.0.1", "localhost", "::1"):
            typer.echo(f"warning: serving on {host} without an API key; anyone who can reach it can call the tools",
                       err=True)
        typer.echo(f"serving {', '.join(t.spec.name for t in loaded)} on http://{host}:{port} (docs at /docs)",
                   err=True)
        serve_tools(loaded, host=host, port=port, api_key=api_key, call_timeout=timeout)

    app.add_typer(tools, name="tools")
