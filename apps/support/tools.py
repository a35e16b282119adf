"""The support agent's tools. Who the customer is comes from the run's context, never from the model.

A run is started with ``context={"customer_id": 3}`` (see :meth:`agentkit.runtime.Agent.run`); each tool reads
it through :func:`agentkit.agents.state.run_context` and passes it to :class:`~agentkit.apps.support.db.SupportDB`,
whose queries are scoped by it. No tool takes a customer id argument, so the model cannot name another customer,
and an order number that belongs to someone else is refused like one that does not exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from agentkit.agents.state import run_context
from agentkit.toolspec import ToolError
from agentkit.tools.base import BaseTool
from agentkit.tools.knowledge_base import KnowledgeBase
from agentkit.trajectory import atomic_write_text

from agentkit.apps.support.db import SupportDB, money

#: The key of the run context that names the signed-in customer.
CUSTOMER_KEY = "customer_id"
#: The FAQ shipped with the kit.
FAQ_DIR = Path(__file__).with_name("faq")


def current_customer() -> int:
    """The signed-in customer of the current run, or a ToolError: no identity, no customer data."""
    context = run_context()
    customer = context.extra.get(CUSTOMER_KEY) if context is not None else None
    if customer is None:
        raise ToolError("no customer is signed in for this conversation, so no account data can be read or "
                        "changed; answer from the FAQ or escalate to a human")
    return int(customer)


def current_thread() -> str | None:
    """The thread the run belongs to, for tickets a person will follow up on."""
    try:
        from langgraph.config import get_config

        return get_config().get("configurable", {}).get("thread_id")
    except RuntimeError:
        return None


class CustomerTool(BaseTool):
    """A tool acting for the signed-in customer on the support database.

    ``timeout = None`` runs each call inline: a local SQLite query is quick, and only the calling thread sees the
    run's context (BaseTool's timeout runs the call in a thread of its own)."""

    timeout = None

    def __init__(self, db: SupportDB, **options: Any):
        super().__init__(**options)
        self.db = db


class LookupOrder(CustomerTool):
    """Look up one of the customer's orders (item, total, status, dates, address), or list their recent orders."""

    name = "lookup_order"

    def apply(self, order_id: int | None = None) -> str:
        """Look up an order of the signed-in customer.

        Args:
            order_id: the order number; leave it out to list the customer's recent orders.
        """
        customer = current_customer()
        if order_id is None:
            orders = self.db.orders(customer)
            if not orders:
                return "This customer has no orders."
            return json.dumps([{"id": o.id, "item": o.item, "status": o.status, "total": money(o.total_cents),
                                "placed_at": o.placed_at[:10]} for o in orders])
        order = self.db.order(order_id, customer).to_dict()
        refund = self.db.refund_of(order_id, customer)
        if refund:
            order["refund"] = {"id": refund["id"], "amount": money(refund["amount_cents"]),
                               "created_at": refund["created_at"]}
        return json.dumps(order)


class OrderStatus(CustomerTool):
    """Say where one of the customer's orders is: its status, carrier, tracking number and dates."""

    name = "order_status"

    def apply(self, order_id: int) -> str:
        """The status of an order of the signed-in customer.

        Args:
            order_id: the order number.
        """
        order = self.db.order(order_id, current_customer())
        line = f"Order #{order.id} ({order.item} x{order.quantity}) is {order.status}"
        if order.status == "processing":
            line += f"; it was placed on {order.placed_at[:10]} and has not shipped yet"
        if order.shipped_at:
            line += (f"; shipped on {order.shipped_at[:10]} with {order.carrier}, "
                     f"tracking number {order.tracking_number}")
        if order.delivered_at:
            line += f"; delivered on {order.delivered_at[:10]}"
        return line + "."


class Refund(CustomerTool):
    """Refund one of the customer's orders in full. Needs a person's approval. Refunding an order twice is safe:
    the second call returns the first refund."""

    name = "refund"
    requires_approval = True

    def apply(self, order_id: int, reason: str) -> str:
        """Refund an order of the signed-in customer in full.

        Args:
            order_id: the order number.
            reason: why, in the customer's words (kept with the refund).
        """
        refund, created = self.db.refund(order_id, current_customer(), reason.strip() or "not given")
        amount = money(refund["amount_cents"])
        if created:
            return f"Refund #{refund['id']} of {amount} for order #{order_id} was issued."
        return (f"Order #{order_id} was already refunded: refund #{refund['id']} of {amount} on "
                f"{refund['created_at'][:10]}. No second refund was made.")


class UpdateAddress(CustomerTool):
    """Change the shipping address of an order that has not shipped, or the customer's default address.
    Needs a person's approval."""

    name = "update_address"
    requires_approval = True

    def apply(self, new_address: str, order_id: int | None = None) -> str:
        """Change an address of the signed-in customer.

        Args:
            new_address: the full new address.
            order_id: the order to redirect; leave it out to change the default address on the account.
        """
        if len(new_address.strip()) < 8:
            raise ToolError("new_address looks incomplete: give street, number, city and postcode")
        change = self.db.change_address(current_customer(), new_address.strip(), order_id)
        target = f"order #{order_id}" if order_id is not None else "the account"
        return f"The address of {target} is now {change['new_address']} (was {change['old_address']})."


class EscalateToHuman(CustomerTool):
    """Hand the conversation to a human agent: records a support ticket they will follow up on."""

    name = "escalate_to_human"

    def apply(self, subject: str, details: str) -> str:
        """Open a ticket for a human agent.

        Args:
            subject: the problem in a few words.
            details: what the customer needs and what was tried already.
        """
        if not subject.strip():
            raise ToolError("subject is empty: say in a few words what the problem is")
        ticket = self.db.open_ticket(current_customer(), subject.strip(), details.strip(), current_thread())
        return (f"Ticket #{ticket['id']} was opened for a human agent, who will reply by email within one "
                "business day.")


class FaqTool(KnowledgeBase):
    """Answer general questions about the shop (shipping, returns, payments, accounts) from its FAQ. Each passage
    comes with its source file: cite it in the answer."""

    name = "faq"

    def __init__(self, directory: str | os.PathLike[str], faq_dir: str | os.PathLike[str] = FAQ_DIR,
                 **options: Any):
        options.setdefault("collection", "support_faq")
        options.setdefault("chunk_size", 600)
        super().__init__(directory, **options)
        self.faq_dir = Path(faq_dir)
        self._synced = False
        self._sync_lock = threading.Lock()

    def sync(self) -> list[Path]:
        """(Re)ingest the FAQ files that are new or changed since the last sync; returns them."""
        files = sorted(self.faq_dir.glob("*.md"))
        if not files:
            raise ToolError(f"no FAQ files (*.md) in {self.faq_dir}")
        manifest_path = self.directory / f"{self.collection_name}.manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        current = {str(f.resolve()): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
        changed = [Path(p) for p, digest in current.items() if manifest.get(p) != digest or not self.count()]
        if changed:
            self.ingest(changed)
            atomic_write_text(manifest_path, json.dumps(current, indent=1))
        self._synced = True
        return changed

    def search(self, query: str, k: int = 4) -> list[dict[str, Any]]:
        if not self._synced:
            with self._sync_lock:
                if not self._synced:
                    self.sync()
        return super().search(query, k)

    def apply(self, query: str, k: int = 3) -> str:
        """Search the shop's FAQ.

        Args:
            query: the customer's question, in plain words.
            k: how many passages to return (1-20).
        """
        return super().apply(query, k)


def support_tools(db: SupportDB, knowledge_dir: str | os.PathLike[str], faq_dir: str | os.PathLike[str] = FAQ_DIR,
                  embedder: Any = None) -> dict[str, BaseTool]:
    """Every tool of the kit by name, sharing one database."""
    faq_options = {"embedder": embedder} if embedder is not None else {}
    tools: list[BaseTool] = [LookupOrder(db), OrderStatus(db), Refund(db), UpdateAddress(db), EscalateToHuman(db),
                             FaqTool(knowledge_dir, faq_dir, **faq_options)]
    return {t.meta.name: t for t in tools}
