"""The support database: a real SQLite file with customers, orders, refunds, address changes and tickets.

Every read and write that concerns orders takes the customer id and is scoped by it in SQL (``WHERE id = ? AND
customer_id = ?``), so code above this layer cannot reach another customer's rows by mistake. Writes run in
``BEGIN IMMEDIATE`` transactions, so two refunds of one order racing each other still make one row.
"""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.toolspec import ToolError

SCHEMA_PATH = Path(__file__).with_name("schema.sql")
SCHEMA_VERSION = "1"
TABLES = ("customers", "orders", "refunds", "address_changes", "tickets")
#: Orders in these states have left the warehouse: their address can no longer change.
SHIPPED_STATES = ("shipped", "delivered")


class PolicyError(ToolError):
    """A request the shop's rules do not allow (the text says why and what the customer can do instead)."""


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def money(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}"


@dataclass(frozen=True)
class Order:
    id: int
    customer_id: int
    item: str
    quantity: int
    total_cents: int
    status: str
    shipping_address: str
    carrier: str | None
    tracking_number: str | None
    placed_at: str
    shipped_at: str | None
    delivered_at: str | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total"] = money(self.total_cents)
        return data


class SupportDB:
    """Scoped access to one support database file (a new connection per call: safe from any thread)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"no support database at {self.path}: create one with "
                              f"'agentkit support init-db {self.path}'")
        with self.connect() as conn:
            row = conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
            version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() if row else None
        if version is None or version[0] != SCHEMA_VERSION:
            raise ConfigError(f"{self.path} is not a support database (schema {SCHEMA_VERSION}): create one with "
                              f"'agentkit support init-db PATH'")

    @contextmanager
    def connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        try:
            if write:
                conn.execute("BEGIN IMMEDIATE")
            yield conn
            if write:
                conn.execute("COMMIT")
        except BaseException:
            if write and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    # -- reads --------------------------------------------------------------------------------
    def customer(self, customer_id: int) -> dict[str, Any] | None:
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM customers WHERE id = ?", (customer_id,)).fetchone()
        return dict(row) if row else None

    def orders(self, customer_id: int, limit: int = 20) -> list[Order]:
        with self.connect() as conn:
            rows = conn.execute("SELECT * FROM orders WHERE customer_id = ? ORDER BY placed_at DESC, id DESC LIMIT ?",
                                (customer_id, limit)).fetchall()
        return [Order(**dict(r)) for r in rows]

    def order(self, order_id: int, customer_id: int) -> Order:
        with self.connect() as conn:
            return self._own_order(conn, order_id, customer_id)

    @staticmethod
    def _own_order(conn: sqlite3.Connection, order_id: int, customer_id: int) -> Order:
        row = conn.execute("SELECT * FROM orders WHERE id = ? AND customer_id = ?", (order_id, customer_id)).fetchone()
        if row is None:  # the same words whether the order is someone else's or does not exist: nothing leaks
            raise PolicyError(f"order #{order_id} is not one of this customer's orders; ask the customer to check "
                              "the number (lookup_order without an id lists their orders)")
        return Order(**dict(row))

    def refund_of(self, order_id: int, customer_id: int) -> dict[str, Any] | None:
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM refunds WHERE order_id = ? AND customer_id = ?",
                               (order_id, customer_id)).fetchone()
        return dict(row) if row else None

    def count(self, table: str, **where: Any) -> int:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}: one of {', '.join(TABLES)}")
        clause = " AND ".join(f"{column} = ?" for column in where)
        sql = f"SELECT COUNT(*) FROM {table}" + (f" WHERE {clause}" if clause else "")
        with self.connect() as conn:
            return conn.execute(sql, tuple(where.values())).fetchone()[0]

    # -- writes -------------------------------------------------------------------------------
    def refund(self, order_id: int, customer_id: int, reason: str) -> tuple[dict[str, Any], bool]:
        """Refund an order in full: ``(refund, True)``, or ``(the existing refund, False)`` if it was refunded."""
        with self.connect(write=True) as conn:
            order = self._own_order(conn, order_id, customer_id)
            existing = conn.execute("SELECT * FROM refunds WHERE order_id = ?", (order_id,)).fetchone()
            if existing is not None:
                return dict(existing), False
            if order.status == "cancelled":
                raise PolicyError(f"order #{order_id} was cancelled before it was charged; there is nothing to refund")
            cursor = conn.execute(
                "INSERT INTO refunds (order_id, customer_id, amount_cents, reason, created_at) VALUES (?, ?, ?, ?, ?)",
                (order_id, customer_id, order.total_cents, reason, now_iso()),
            )
            conn.execute("UPDATE orders SET status = 'refunded' WHERE id = ?", (order_id,))
            row = conn.execute("SELECT * FROM refunds WHERE id = ?", (cursor.lastrowid,)).fetchone()
            return dict(row), True

    def change_address(self, customer_id: int, new_address: str, order_id: int | None = None) -> dict[str, Any]:
        """Change an unshipped order's shipping address, or (no order) the customer's default address."""
        with self.connect(write=True) as conn:
            if order_id is None:
                old = conn.execute("SELECT address FROM customers WHERE id = ?", (customer_id,)).fetchone()
                if old is None:
                    raise PolicyError(f"customer #{customer_id} does not exist")
                old_address = old[0]
                conn.execute("UPDATE customers SET address = ? WHERE id = ?", (new_address, customer_id))
            else:
                order = self._own_order(conn, order_id, customer_id)
                if order.status in SHIPPED_STATES or order.status in ("cancelled", "refunded"):
                    raise PolicyError(f"order #{order_id} is {order.status}; its address can no longer change. "
                                      "Offer to escalate to a human if the customer needs the parcel redirected")
                old_address = order.shipping_address
                conn.execute("UPDATE orders SET shipping_address = ? WHERE id = ?", (new_address, order_id))
            cursor = conn.execute(
                "INSERT INTO address_changes (customer_id, order_id, old_address, new_address, created_at) "
                "VALUES (?, ?, ?, ?, ?)", (customer_id, order_id, old_address, new_address, now_iso()),
            )
            return dict(conn.execute("SELECT * FROM address_changes WHERE id = ?", (cursor.lastrowid,)).fetchone())

    def open_ticket(self, customer_id: int, subject: str, details: str, thread_id: str | None = None
                    ) -> dict[str, Any]:
        with self.connect(write=True) as conn:
            cursor = conn.execute(
                "INSERT INTO tickets (customer_id, thread_id, subject, details, created_at) VALUES (?, ?, ?, ?, ?)",
                (customer_id, thread_id, subject, details, now_iso()),
            )
            return dict(conn.execute("SELECT * FROM tickets WHERE id = ?", (cursor.lastrowid,)).fetchone())


# -- creating and seeding ------------------------------------------------------------------------

FIRST = ["Ada", "Bruno", "Chen", "Dalia", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jun", "Kofi", "Lena",
         "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara"]
LAST = ["Okafor", "Schmidt", "Li", "Haddad", "Novak", "Silva", "Kim", "Dubois", "Rossi", "Tanaka", "Ibrahim",
        "Larsen", "Moreau", "Costa", "Nguyen", "Fischer"]
STREETS = ["Maple Street", "Harbour Road", "Station Lane", "Oak Avenue", "Mill Close", "Park Terrace"]
CITIES = ["Springfield", "Riverton", "Lakeside", "Northbridge", "Fairview"]
CATALOGUE = [("USB-C charger", 1999), ("Noise-cancelling headphones", 14900), ("Mechanical keyboard", 8900),
             ("Wireless mouse", 2999), ("27-inch monitor", 22900), ("Laptop stand", 3499), ("Webcam", 5900),
             ("Desk lamp", 2599), ("External SSD 1 TB", 10900), ("Phone case", 1499)]
CARRIERS = ["DHL", "UPS", "FedEx"]
#: Status mix of seeded orders (weights).
STATUSES = [("delivered", 5), ("shipped", 3), ("processing", 3), ("cancelled", 1)]
SEED_DAY = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


def _address(rng: random.Random) -> str:
    return f"{rng.randint(1, 199)} {rng.choice(STREETS)}, {rng.choice(CITIES)} {rng.randint(10000, 99999)}"


def seed(conn: sqlite3.Connection, customers: int, rng: random.Random) -> None:
    """Fill an empty database with ``customers`` customers, each with one to four orders."""
    statuses, weights = zip(*STATUSES)
    for cid in range(1, customers + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        address = _address(rng)
        joined = SEED_DAY - timedelta(days=rng.randint(60, 900))
        conn.execute("INSERT INTO customers (id, name, email, address, created_at) VALUES (?, ?, ?, ?, ?)",
                     (cid, f"{first} {last}", f"{first}.{last}.{cid}@example.com".lower(), address,
                      joined.isoformat()))
        for _ in range(rng.randint(1, 4)):
            item, price = rng.choice(CATALOGUE)
            quantity = rng.choice([1, 1, 1, 2])
            status = rng.choices(statuses, weights)[0]
            recent = status == "processing"  # older orders have had time to ship and arrive before SEED_DAY
            placed = SEED_DAY - timedelta(days=rng.randint(0, 2) if recent else rng.randint(9, 40),
                                          hours=rng.randint(0, 23))
            shipped = placed + timedelta(days=rng.randint(1, 3)) if status in SHIPPED_STATES else None
            delivered = shipped + timedelta(days=rng.randint(2, 5)) if status == "delivered" and shipped else None
            carrier = rng.choice(CARRIERS) if shipped else None
            tracking = f"{carrier[:2].upper()}{rng.randint(10**9, 10**10 - 1)}" if carrier else None
            conn.execute(
                "INSERT INTO orders (customer_id, item, quantity, total_cents, status, shipping_address, carrier, "
                "tracking_number, placed_at, shipped_at, delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (cid, item, quantity, price * quantity, status, address, carrier, tracking, placed.isoformat(),
                 shipped.isoformat() if shipped else None, delivered.isoformat() if delivered else None),
            )


def init_db(path: str | os.PathLike[str], customers: int = 20, seed_value: int = 0, force: bool = False
            ) -> dict[str, int]:
    """Create the database at ``path`` with seeded data (same seed, same data); returns rows per table.

    The file is built next to ``path`` and moved into place, so a crash never leaves half a database."""
    path = Path(path)
    if customers < 1:
        raise ConfigError(f"--customers must be at least 1, got {customers}")
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists: pass --force to replace it, or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp)
        try:
            conn.executescript(SCHEMA_PATH.read_text(encoding="utf-8"))
            with conn:
                conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
                conn.execute("INSERT INTO meta (key, value) VALUES ('seed', ?)", (str(seed_value),))
                seed(conn, customers, random.Random(seed_value))
            counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
        finally:
            conn.close()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return counts
