"""The ``agentkit`` command: run an agent once, chat in a persistent thread, list model specs.

User errors (an unknown spec, a missing file, a bad flag) print one line saying what to do and
exit with status 2; tracebacks are for bugs only.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from agentkit.commands import register_modules
from agentkit.errors import AgentkitError, ConfigError

try:  # typer ≥ 0.20 vendors click; older releases use the click package
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    import click.exceptions as click_exceptions

app = typer.Typer(
    name="agentkit",
    help="Agents where the model is one pluggable part.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

MODEL_HELP = "model spec: embedded, hf:PATH, openai:BASE_URL#MODEL, scripted:FILE (see 'agentkit models')"
AGENT_HELP = "agent pattern: internlm2 (the default model is tuned for it), react, rewoo or autogpt"
TOOLS_HELP = "comma-separated tool names, e.g. calculator ('' for none)"
CHECKPOINT_HELP = "where threads persist: sqlite (default file), memory, none, or a path to a .sqlite file"


def _build_agent(model: str, agent: str, tools: str, checkpoint: str, max_steps: int, trajectory: Optional[str]):
    from agentkit.agents import AGENTS, create_agent
    from agentkit.budgets import Budget
    from agentkit.models import load_model

    if agent not in AGENTS:  # checked before the model loads, which takes seconds
        raise ConfigError(f"unknown agent {agent!r}: use one of {', '.join(AGENTS)}")
    with err.status(f"loading model {model} …", spinner="dots"):
        chat_model = load_model(model)
    return create_agent(
        agent,
        chat_model,
        tools=tools or None,
        checkpointer=checkpoint,
        budget=Budget(max_steps=max_steps),
        trajectory_path=trajectory,
    )


def _show_step(node: str | None, messages) -> None:
    for message in messages:
        if message.role == "assistant":
            if message.parse_error:
                out.print(f"[yellow]⚠ unparseable reply:[/] {escape(message.parse_error)}")
                raw = message.meta.get("raw", message.text)
                if raw:
                    out.print(f"[dim]{escape(raw.strip())}[/]")
                continue
            if message.text.strip() and message.tool_calls:
                out.print(f"[cyan]Thought:[/] {escape(message.text.strip())}")
            for call in message.tool_calls:
                if call.kind == "interpreter":
                    out.print(f"[magenta]Action (interpreter):[/]\n{escape(call.arguments.get('code', ''))}")
                else:
                    args = json.dumps(call.arguments, ensure_ascii=False)
                    out.print(f"[magenta]Action:[/] {escape(call.name)} {escape(args)}")
        elif message.role == "environment":
            label = "Error" if message.meta.get("error") else "Result"
            style = "red" if message.meta.get("error") else "green"
            source = message.meta.get("feedback") or message.meta.get("tool_name") or message.name
            out.print(f"[{style}]{label} ({escape(str(source))}):[/] {escape(message.text)}")


@app.command()
def run(
    question: str = typer.Argument(..., help="what to ask the agent"),
    model: str = typer.Option("embedded", "--model", "-m", help=MODEL_HELP),
    agent: str = typer.Option("internlm2", "--agent", "-a", help=AGENT_HELP),
    tools: str = typer.Option("calculator", "--tools", "-t", help=TOOLS_HELP),
    thread: Optional[str] = typer.Option(None, "--thread", help="continue this thread (id printed by earlier runs)"),
    trace: bool = typer.Option(False, "--trace", help="also print every raw model token as it streams"),
    max_steps: int = typer.Option(10, "--max-steps", min=1, help="model calls allowed in this run"),
    checkpoint: str = typer.Option("sqlite", "--checkpoint", help=CHECKPOINT_HELP),
    trajectory: Optional[str] = typer.Option(None, "--trajectory", help="append this run's trajectory to a JSONL file"),
) -> None:
    """Run an agent once: print its steps (thought, action, result) and the answer."""
    built = _build_agent(model, agent, tools, checkpoint, max_steps, trajectory)
    thread_id = thread or (uuid.uuid4().hex[:12] if checkpoint != "none" else None)
    result = None
    streaming = False
    for event in built.stream(question, thread_id=thread_id):
        if event.type == "token" and trace:
            if not streaming:
                out.print("[dim]model:[/] ", end="")
                streaming = True
            out.print(escape(event.delta), end="", style="dim")
        elif event.type == "step":
            if streaming:
                out.print()
                streaming = False
            _show_step(event.node, event.messages)
        elif event.type == "result":
            result = event.result
    assert result is not None
    out.print(f"[bold]Answer:[/] {escape(result.answer)}")
    usage = result.usage
    note = f"outcome={result.outcome} steps={result.steps} tokens={usage.prompt_tokens}+{usage.completion_tokens}"
    note += f" time={result.duration_s:.1f}s"
    if thread_id:
        note += f" thread={thread_id}"
    err.print(f"[dim]{note}[/]")


@app.command()
def chat(
    model: str = typer.Option("embedded", "--model", "-m", help=MODEL_HELP),
    agent: str = typer.Option("internlm2", "--agent", "-a", help=AGENT_HELP),
    tools: str = typer.Option("calculator", "--tools", "-t", help=TOOLS_HELP),
    thread: Optional[str] = typer.Option(None, "--thread", help="resume this thread instead of starting one"),
    max_steps: int = typer.Option(10, "--max-steps", min=1, help="model calls allowed per turn"),
    checkpoint: str = typer.Option("sqlite", "--checkpoint", help=CHECKPOINT_HELP),
) -> None:
    """Chat with an agent in a persistent thread, answers streaming as they are written."""
    if checkpoint == "none":
        raise AgentkitError("chat keeps a thread and needs a checkpointer: use --checkpoint sqlite or memory")
    built = _build_agent(model, agent, tools, checkpoint, max_steps, None)
    thread_id = thread or uuid.uuid4().hex[:12]
    if thread:
        history = built.history(thread_id)
        err.print(f"[dim]resumed thread {thread_id} ({len(history)} messages)[/]")
    else:
        err.print(f"[dim]thread {thread_id} — resume it later with: agentkit chat --thread {thread_id}[/]")
    err.print("[dim]type your message; an empty line or Ctrl-D quits[/]")
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            out.print()
            break
        if not line.strip():
            break
        out.print("[bold]agent>[/] ", end="")
        at_line_start = False
        for event in built.stream(line, thread_id=thread_id):
            if event.type == "token":
                out.print(escape(event.delta), end="")
                at_line_start = event.delta.endswith("\n")
            elif event.type == "step" and event.node != "call_model":
                if not at_line_start:
                    out.print()
                _show_step(event.node, event.messages)
                out.print("[bold]agent>[/] ", end="")
                at_line_start = False
            elif event.type == "result" and event.result is not None and event.result.outcome != "answer":
                out.print()
                err.print(f"[dim](stopped: {event.result.outcome})[/]")
        out.print()


@app.command()
def models() -> None:
    """List the model specs --model accepts."""
    from agentkit.models import MODEL_SPECS

    for spec, description in MODEL_SPECS.items():
        out.print(f"[bold]{escape(spec)}[/]  {escape(description)}")


#: Modules that add commands to the CLI with ``register(app)``. They must import only typer at module level
#: (heavy work happens inside the commands), so ``agentkit --help`` stays fast.
COMMAND_MODULES = (
    "agentkit.models.commands",
    "agentkit.tools.commands",
    "agentkit.evals.commands",
    "agentkit.training.commands",
    "agentkit.apps.commands",
)


register_modules(app, COMMAND_MODULES)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line and exit status 2 for user errors, 130 on Ctrl-C."""
    try:
        # without standalone mode click returns a typer.Exit's code instead of raising it
        result = app(args=argv, prog_name="agentkit", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except click_exceptions.UsageError as exc:
        if isinstance(exc, getattr(click_exceptions, "NoArgsIsHelpError", ())):
            err.print(exc.format_message())
            return 2
        command = exc.ctx.command_path if exc.ctx else "agentkit"
        err.print(f"error: {escape(exc.format_message())} (see '{command} --help')")
        return 2
    except typer.Abort:
        err.print("aborted")
        return 130
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except AgentkitError as exc:
        err.print(f"error: {escape(str(exc))}")
        return 2
    return result if isinstance(result, int) else 0


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
