"""``agentkit support``: create the support database, list its customers, and chat as one of them.

Only typer is imported here; the agent, the database layer and the models load when a command runs. Bad input
raises :class:`~agentkit.errors.ConfigError`, which the CLI prints as one line with exit status 2.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Optional

import typer

MODEL_HELP = "model spec: embedded, hf:PATH, openai:URL#MODEL, scripted:FILE.jsonl"


def register(app: typer.Typer) -> None:
    """Add the ``support`` command group to the agentkit CLI."""
    support = typer.Typer(name="support", help="Customer-service kit: database, customers, chat.",
                          no_args_is_help=True, rich_markup_mode=None)

    @support.command("init-db")
    def init_db_(
        path: Path = typer.Argument(..., help="the SQLite file to create"),
        customers: int = typer.Option(20, "--customers", "-n", min=1, help="how many customers to seed"),
        seed: int = typer.Option(0, "--seed", help="random seed of the generated data (same seed, same data)"),
        force: bool = typer.Option(False, "--force", help="replace the file if it exists"),
    ) -> None:
        """Create a support database at PATH with seeded customers and orders."""
        from agentkit.apps.support.db import init_db

        counts = init_db(path, customers, seed, force)
        typer.echo(f"created {path}: " + ", ".join(f"{n} {table}" for table, n in counts.items()))

    @support.command("customers")
    def customers_(db: Path = typer.Option(..., "--db", help="the support database")) -> None:
        """List the customers (id, name, email, number of orders): pick one for 'support chat --customer'."""
        from agentkit.apps.support.db import SupportDB

        database = SupportDB(db)
        with database.connect() as conn:
            rows = conn.execute("SELECT c.id, c.name, c.email, COUNT(o.id) FROM customers c "
                                "LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id ORDER BY c.id").fetchall()
        for cid, name, email, orders in rows:
            typer.echo(f"{cid:>4}  {name:<20} {email:<36} {orders} order(s)")

    @support.command("chat")
    def chat(
        db: Path = typer.Option(..., "--db", help="the support database (agentkit support init-db PATH)"),
        customer: int = typer.Option(..., "--customer", help="the signed-in customer's id"),
        model: str = typer.Option("embedded", "--model", "-m", help=MODEL_HELP),
        thread: Optional[str] = typer.Option(None, "--thread", help="continue this conversation"),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint",
                                                  help="SQLite file for conversations (default: next to --db)"),
        router: str = typer.Option("keywords", "--router", help="keywords or model: who picks the specialist"),
        max_steps: int = typer.Option(8, "--max-steps", min=1, help="model calls allowed per message"),
    ) -> None:
        """Chat with the support agent as CUSTOMER; you approve or reject refunds and address changes."""
        from agentkit.apps.support.agent import create_support_agent
        from agentkit.apps.support.db import SupportDB

        database = SupportDB(db)
        person = database.customer(customer)
        if person is None:
            raise typer.BadParameter(f"no customer {customer} in {db}; see 'agentkit support customers --db {db}'",
                                     param_hint="--customer")
        store = checkpoint or db.with_name(db.name + ".threads.sqlite")
        agent = create_support_agent(database, model, router=router, checkpointer=store,
                                     budget={"max_steps": max_steps})
        thread_id = thread or uuid.uuid4().hex[:12]
        context = {"customer_id": customer}
        typer.echo(f"signed in as {person['name']} (customer {customer}); thread {thread_id}", err=True)
        typer.echo("type your message; an empty line or Ctrl-D quits", err=True)
        while True:
            try:
                line = input("you> ")
            except (EOFError, KeyboardInterrupt):
                break
            if not line.strip():
                break
            result = agent.run(line, thread_id=thread_id, context=context)
            while result.outcome == "interrupted":
                result = agent.resume(thread_id, _ask_for_decisions(result.pending), context=context)
            _show(result)

    app.add_typer(support)


def _ask_for_decisions(pending) -> dict:
    """Ask the operator about each pending call: y approves, anything else rejects (with it as the reason)."""
    decisions = {}
    for call in pending:
        typer.echo(f"approval needed: {call.name} {json.dumps(call.arguments, ensure_ascii=False)}", err=True)
        try:
            answer = input("approve? [y/N or a reason to reject] ").strip()
        except EOFError:
            answer = ""
        if answer.lower() in ("y", "yes"):
            decisions[call.id] = {"action": "approve"}
        else:
            decisions[call.id] = {"action": "reject", "reason": answer if len(answer) > 1 else "not approved"}
    return decisions


def _show(result) -> None:
    for message in result.messages:
        if message.role == "environment":
            typer.echo(f"  [{message.meta.get('tool_name') or message.name}] {message.text}", err=True)
    typer.echo(f"agent> {result.answer}")
    if result.outcome != "answer":
        typer.echo(f"(stopped: {result.outcome})", err=True)
