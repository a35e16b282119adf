"""``agentkit support``: init-db, customers, and a chat where the operator approves a refund at the prompt."""

from __future__ import annotations

import io
import json

import pytest

from agentkit.apps.support import SupportDB
from agentkit.cli import main
from agentkit.messages import Message, ToolCall
from agentkit.models.scripted import dump_script


@pytest.fixture()
def shop(tmp_path, capsys):
    assert main(["support", "init-db", str(tmp_path / "shop.db"), "--customers", "4", "--seed", "5"]) in (0, None)
    assert "created" in capsys.readouterr().out
    return tmp_path / "shop.db"


def chat(shop, tmp_path, monkeypatch, customer: int, typed: str, script: list[Message]) -> int | None:
    dump_script(script, tmp_path / "script.jsonl")
    monkeypatch.setattr("sys.stdin", io.StringIO(typed))
    return main(["support", "chat", "--db", str(shop), "--customer", str(customer),
                 "--model", f"scripted:{tmp_path / 'script.jsonl'}", "--thread", "cli"])


def test_init_db_refuses_to_overwrite_and_customers_lists_them(shop, capsys):
    assert main(["support", "init-db", str(shop)]) == 2
    assert "already exists: pass --force" in capsys.readouterr().err
    main(["support", "customers", "--db", str(shop)])
    listed = capsys.readouterr().out.splitlines()
    db = SupportDB(shop)
    assert len(listed) == 4 and listed[0].split()[0] == "1"
    assert f"{len(db.orders(1))} order(s)" in listed[0] and db.customer(1)["email"] in listed[0]


@pytest.mark.parametrize(("answer", "refunds"), [("y", 1), ("outside the return window", 0)])
def test_chat_asks_the_operator_to_approve_a_refund(shop, tmp_path, monkeypatch, capsys, answer, refunds):
    db = SupportDB(shop)
    order = db.orders(1)[0]
    script = [Message.assistant("", [ToolCall(id="r1", name="refund", arguments={"order_id": order.id,
                                                                                  "reason": "broken"})]),
              Message.assistant("Done.")]
    chat(shop, tmp_path, monkeypatch, 1, f"please refund order {order.id}\n{answer}\n\n", script)
    out, err = capsys.readouterr()
    assert f"approval needed: refund {json.dumps({'order_id': order.id, 'reason': 'broken'})}" in err
    assert "agent> Done." in out
    assert db.count("refunds") == refunds
    if not refunds:
        assert "the user rejected this call: outside the return window" in err


def test_chat_rejects_an_unknown_customer_and_a_missing_database(shop, tmp_path, monkeypatch, capsys):
    assert chat(shop, tmp_path, monkeypatch, 99, "", [Message.assistant("hi")]) == 2
    assert "no customer 99" in capsys.readouterr().err
    assert main(["support", "chat", "--db", str(tmp_path / "none.db"), "--customer", "1"]) == 2
    assert "agentkit support init-db" in capsys.readouterr().err
