"""Scripted dialogues with the support agent over a real SQLite database and a SQLite checkpointer.

The scripted model stands in for the LLM (these tests are about the runtime: routing, identity from the run
context, approvals, idempotent refunds across a crash); every fact checked comes from the database.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from agentkit.apps.support import SupportDB, create_support_agent, init_db, keyword_router, model_router
from agentkit.messages import Message, ToolCall
from agentkit.models.scripted import ScriptedModel, dump_script

CUSTOMER = 1


@pytest.fixture()
def db(tmp_path) -> SupportDB:
    init_db(tmp_path / "shop.db", customers=8, seed_value=3)
    return SupportDB(tmp_path / "shop.db")


def agent_for(db: SupportDB, script, tmp_path, **options):
    model = script if isinstance(script, ScriptedModel) else ScriptedModel(script)
    options.setdefault("checkpointer", tmp_path / "threads.sqlite")
    return create_support_agent(db, model, knowledge_dir=tmp_path / "faq-index", **options)


def call(name: str, call_id: str = "c1", **arguments) -> Message:
    return Message.assistant("", [ToolCall(id=call_id, name=name, arguments=arguments)])


def answer_from_tool(prefix: str):
    """A model that calls nothing itself: it answers with what the last tool returned (as a real model would)."""
    def reply(messages: list[Message]) -> Message:
        return Message.assistant(f"{prefix} {messages[-1].text}")
    return reply


def specialist(agent, thread_id: str) -> str:
    return agent.graph.get_state({"configurable": {"thread_id": thread_id}}).values["specialist"]


def an_order(db: SupportDB, *statuses: str, customer: int | None = None):
    """A seeded order in one of ``statuses``: the customer's own, or the first customer's who has one."""
    for cid in [customer] if customer is not None else range(1, 9):
        orders = [o for o in db.orders(cid) if not statuses or o.status in statuses]
        if orders:
            return orders[0]
    raise AssertionError(f"no seeded order in {statuses}")


def context(customer: int = CUSTOMER) -> dict:
    return {"customer_id": customer}


def test_status_question_is_answered_from_the_database(db, tmp_path):
    order = an_order(db, "shipped", "delivered")
    me = context(order.customer_id)
    script = [call("order_status", order_id=order.id)]

    def model(messages):
        return script[0] if messages[-1].role == "user" else answer_from_tool("Here is what I found:")(messages)

    agent = agent_for(db, ScriptedModel(model), tmp_path)
    events = list(agent.stream(f"Where is my order #{order.id}?", thread_id="status", context=me))
    result = events[-1].result
    assert result.outcome == "answer"
    assert specialist(agent, "status") == "orders"
    assert any(e.type == "step" and e.node == "orders_tools" for e in events)
    observation = [m for m in result.messages if m.role == "environment"][0]
    assert not observation.meta.get("error")
    assert f"is {order.status}" in observation.text and order.tracking_number in observation.text
    assert order.carrier in result.answer and order.tracking_number in result.answer


def test_refund_approved_makes_exactly_one_refund_row(db, tmp_path):
    order = an_order(db, "delivered", "shipped")
    me = context(order.customer_id)
    script = [call("lookup_order", "c1", order_id=order.id),
              call("refund", "c2", order_id=order.id, reason="arrived broken"),
              Message.assistant("Your refund is on its way.")]
    agent = agent_for(db, script, tmp_path)
    first = agent.run(f"Please refund order {order.id}, it arrived broken", thread_id="r", context=me)
    assert specialist(agent, "r") == "refunds"
    assert first.outcome == "interrupted" and [c.name for c in first.pending] == ["refund"]
    assert db.count("refunds") == 0, "nothing is refunded before a person approves"

    done = agent.resume("r", "approve", context=me)
    assert done.outcome == "answer"
    assert db.count("refunds") == 1
    refund = db.refund_of(order.id, order.customer_id)
    assert refund["amount_cents"] == order.total_cents and refund["reason"] == "arrived broken"
    assert db.order(order.id, order.customer_id).status == "refunded"
    issued = [m.text for m in done.messages if m.role == "environment"][-1]
    assert issued.startswith(f"Refund #{refund['id']} of ") and f"order #{order.id}" in issued


def test_refund_rejected_makes_no_refund_row(db, tmp_path):
    order = an_order(db, "delivered", "shipped")
    me = context(order.customer_id)
    seen: list[Message] = []

    def model(messages):
        seen.append(messages[-1])
        if messages[-1].role == "user":
            return call("refund", order_id=order.id, reason="changed my mind")
        return Message.assistant("I am sorry, the refund was not approved.")

    agent = agent_for(db, ScriptedModel(model), tmp_path)
    agent.run(f"I want my money back for order {order.id}", thread_id="no", context=me)
    result = agent.resume("no", {"action": "reject", "reason": "outside the 30-day window"}, context=me)
    assert result.outcome == "answer"
    assert db.count("refunds") == 0
    assert db.order(order.id, order.customer_id).status == order.status
    assert seen[-1].meta["rejected"] is True and "outside the 30-day window" in seen[-1].text


def test_another_customers_order_is_refused_and_nothing_leaks(db, tmp_path):
    other = an_order(db, customer=2)
    script = [call("lookup_order", "c1", order_id=other.id),
              call("order_status", "c2", order_id=other.id),
              Message.assistant("I can only help with your own orders.")]
    agent = agent_for(db, script, tmp_path)
    result = agent.run(f"What is in order #{other.id}?", thread_id="spy", context=context())
    assert result.outcome == "answer"
    observations = [m for m in result.messages if m.role == "environment"]
    assert len(observations) == 2 and all(m.meta.get("error") for m in observations)
    for message in observations:
        assert f"order #{other.id} is not one of this customer's orders" in message.text
        assert other.item not in message.text and other.shipping_address not in message.text


def test_a_refund_of_another_customers_order_is_refused_even_when_approved(db, tmp_path):
    other = an_order(db, customer=2)
    agent = agent_for(db, [call("refund", order_id=other.id, reason="x"), Message.assistant("no")], tmp_path)
    agent.run(f"refund order {other.id}", thread_id="steal", context=context())
    result = agent.resume("steal", "approve", context=context())
    refused = [m for m in result.messages if m.role == "environment"][0]
    assert refused.meta.get("error") and "not one of this customer's orders" in refused.text
    assert db.count("refunds") == 0 and db.order(other.id, 2).status == other.status


def test_without_a_customer_in_the_context_no_account_data_is_read(db, tmp_path):
    order = an_order(db)
    agent = agent_for(db, [call("lookup_order", order_id=order.id), Message.assistant("sorry")], tmp_path)
    result = agent.run(f"where is my order {order.id}", thread_id="anon")
    refused = [m for m in result.messages if m.role == "environment"][0]
    assert refused.meta.get("error") and "no customer is signed in" in refused.text
    assert order.item not in refused.text


def test_the_model_cannot_pass_a_customer_id(db, tmp_path):
    other = an_order(db, customer=2)
    agent = agent_for(db, [call("lookup_order", order_id=other.id, customer_id=2), Message.assistant("no")], tmp_path)
    result = agent.run(f"show order {other.id}", thread_id="arg", context=context())
    refused = [m for m in result.messages if m.role == "environment"][0]
    assert refused.meta.get("error") and "unknown argument 'customer_id'" in refused.text


def test_escalation_records_a_ticket_for_the_signed_in_customer(db, tmp_path):
    script = [call("escalate_to_human", subject="Wants a person",
                   details="Customer asked to speak to a human about a warranty claim."),
              Message.assistant("A colleague will email you within one business day.")]
    agent = agent_for(db, script, tmp_path)
    result = agent.run("I want to talk to a real person about a warranty claim", thread_id="human",
                       context=context())
    assert result.outcome == "answer"
    with db.connect() as conn:
        tickets = [dict(r) for r in conn.execute("SELECT * FROM tickets")]
    assert len(tickets) == 1
    assert tickets[0]["customer_id"] == CUSTOMER and tickets[0]["thread_id"] == "human"
    assert tickets[0]["subject"] == "Wants a person" and tickets[0]["status"] == "open"
    assert f"Ticket #{tickets[0]['id']} was opened" in [m.text for m in result.messages if m.role == "environment"][0]


def test_address_change_needs_approval_and_only_before_shipping(db, tmp_path):
    shipped = an_order(db, "shipped", "delivered")
    me = context(shipped.customer_id)
    new = "12 Harbour Road, Riverton 40404"
    calls = [call("update_address", "c1", new_address=new, order_id=shipped.id),
             call("update_address", "c2", new_address=new)]
    agent = agent_for(db, [*calls, Message.assistant("done")], tmp_path)
    agent.run("change the delivery address of my order", thread_id="addr", context=me)
    assert [c.name for c in agent.pending("addr")] == ["update_address"] and db.count("address_changes") == 0
    result = agent.resume("addr", "approve", context=me)
    assert result.outcome == "interrupted"  # the second change (the account's address) waits for its own approval
    refused = [m for m in result.messages if m.role == "environment"][0]
    assert refused.meta.get("error") and f"is {shipped.status}" in refused.text
    assert db.count("address_changes") == 0
    done = agent.resume("addr", "approve", context=me)
    assert done.outcome == "answer"
    assert db.customer(shipped.customer_id)["address"] == new and db.count("address_changes") == 1
    assert db.order(shipped.id, shipped.customer_id).shipping_address == shipped.shipping_address


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from agentkit.apps.support import agent as support_agent
    from agentkit.apps.support.db import SupportDB

    db_path, checkpoints, script, index, customer = sys.argv[1:6]
    real_refund = SupportDB.refund

    def refund_then_crash(self, *args, **kwargs):
        result = real_refund(self, *args, **kwargs)  # committed to the database
        time.sleep(1.0)                               # the approval step's checkpoint is written meanwhile
        os._exit(17)                                  # the process dies before run_tools' checkpoint

    SupportDB.refund = refund_then_crash
    agent = support_agent.create_support_agent(db_path, "scripted:" + script, checkpointer=checkpoints,
                                               knowledge_dir=index)
    agent.resume("crash", "approve", context={"customer_id": int(customer)})
    """
)


@pytest.mark.timeout(120)
def test_refund_is_idempotent_when_the_step_reruns_after_a_crash(db, tmp_path):
    order = an_order(db, "delivered", "shipped")
    me = context(order.customer_id)
    script = [call("refund", order_id=order.id, reason="damaged"), Message.assistant("Refunded.")]
    dump_script(script, tmp_path / "script.jsonl")
    agent = agent_for(db, script, tmp_path)
    assert agent.run(f"refund order {order.id}", thread_id="crash", context=me).outcome == "interrupted"

    (tmp_path / "crash.py").write_text(CRASH_SCRIPT)
    child = subprocess.run([sys.executable, str(tmp_path / "crash.py"), str(db.path), str(tmp_path / "threads.sqlite"),
                            str(tmp_path / "script.jsonl"), str(tmp_path / "faq-index"), str(order.customer_id)],
                           capture_output=True, text=True, timeout=90)
    assert child.returncode == 17, child.stderr
    assert db.count("refunds") == 1, "the approved refund was committed before the crash"
    assert agent.pending("crash") == [], "the approval was checkpointed: resuming must not ask again"

    result = agent.resume("crash", context=me)  # run_tools runs again: so does the refund tool
    assert result.outcome == "answer" and result.answer == "Refunded."
    assert db.count("refunds") == 1
    rerun = [m.text for m in result.messages if m.role == "environment"][-1]
    assert rerun.startswith(f"Order #{order.id} was already refunded") and "No second refund" in rerun
    again = agent_for(db, [call("refund", order_id=order.id, reason="again"), Message.assistant("ok")], tmp_path)
    again.run(f"refund order {order.id} again", thread_id="twice", context=me)
    again.resume("twice", "approve", context=me)
    assert db.count("refunds") == 1 and db.refund_of(order.id, order.customer_id)["reason"] == "damaged"


@pytest.mark.parametrize(("text", "expected"), [
    ("Where is my order #12?", "orders"),
    ("has it shipped yet? order 7", "orders"),
    ("I need to change my delivery address", "orders"),
    ("Can I get a refund for order 3?", "refunds"),
    ("I want my money back", "refunds"),
    ("How long does standard shipping take?", "faq"),
    ("How long does a refund take to reach my card?", "faq"),
    ("please cancel order 9", "refunds"),
    ("Which payment methods do you accept?", "faq"),
])
def test_keyword_router(text, expected):
    assert keyword_router([Message.user(text)]) == expected


def test_model_router_uses_the_models_choice_and_falls_back_to_keywords(db, tmp_path):
    replies = iter(["Refunds.", "I am not sure"])
    router_model = ScriptedModel(lambda messages: next(replies))
    route = model_router(router_model)
    assert route([Message.user("The thing I bought is not what I wanted")]) == "refunds"
    assert route([Message.user("Where is my order #4?")]) == "orders"  # no team named: keywords decide

    def model(messages):
        if "Reply with the team name only" in messages[0].text:
            return "faq"
        return Message.assistant("Answered by the FAQ team.")

    agent = agent_for(db, ScriptedModel(model), tmp_path, router="model")
    agent.run("Where is my order #4?", thread_id="m", context=context())
    assert specialist(agent, "m") == "faq"


def test_each_specialist_sees_only_its_tools(db, tmp_path):
    seen: dict[str, list[str]] = {}

    class Recording(ScriptedModel):
        def generate(self, messages, *, tools=None, config=None):
            seen[messages[0].text.split(". ")[1][:30]] = sorted(t.name for t in tools or [])
            return super().generate(messages, tools=tools, config=config)

    agent = agent_for(db, Recording([Message.assistant("hi")], on_exhausted=Message.assistant("hi")), tmp_path)
    for i, text in enumerate(["where is my order 1", "refund please", "what are your opening hours"]):
        agent.run(text, thread_id=f"s{i}", context=context())
    assert sorted(seen.values()) == sorted([
        ["escalate_to_human", "lookup_order", "order_status", "update_address"],
        ["escalate_to_human", "lookup_order", "refund"],
        ["escalate_to_human", "faq"],
    ])


def test_seeding_is_deterministic_and_scoped(tmp_path):
    a = init_db(tmp_path / "a.db", customers=5, seed_value=9)
    init_db(tmp_path / "b.db", customers=5, seed_value=9)
    first, second = SupportDB(tmp_path / "a.db"), SupportDB(tmp_path / "b.db")
    assert a["customers"] == 5 and a["orders"] >= 5
    assert [o.to_dict() for o in first.orders(3)] == [o.to_dict() for o in second.orders(3)]
    assert all(o.customer_id == 3 for o in first.orders(3))
    assert json.loads(json.dumps(first.orders(1)[0].to_dict()))["total"].startswith("$")


def test_docs_show_the_graph_the_code_builds(db, tmp_path):
    import re
    from pathlib import Path

    edge = re.compile(r"^\s*(\w+)\s*(-->|-\.->|-\.\s.*?\s\.->)\s*(\w+);?\s*$")

    def edges(mermaid: str) -> set[tuple[str, str, str]]:
        found = (edge.match(line) for line in mermaid.splitlines())
        return {(m[1], "-->" if m[2] == "-->" else "-.->", m[3]) for m in found if m}

    agent = agent_for(db, [Message.assistant("x")], tmp_path)
    built = edges(agent.graph.get_graph().draw_mermaid())
    text = (Path(__file__).resolve().parents[1] / "docs" / "support.md").read_text()
    documented = re.search(r"<!-- graph:support -->\s*```mermaid\n(.*?)```", text, re.S)
    assert documented, "docs/support.md lost its graph"
    assert built and edges(documented.group(1)) == built


def test_identity_reaches_tools_in_parallel_calls_and_async_runs(db, tmp_path):
    import asyncio

    order = an_order(db, "shipped", "delivered")
    both = Message.assistant("", [ToolCall(id="a", name="order_status", arguments={"order_id": order.id}),
                                  ToolCall(id="b", name="lookup_order", arguments={"order_id": order.id})])
    for run in ("sync", "async"):
        agent = agent_for(db, [both, Message.assistant("ok")], tmp_path, checkpointer="memory")  # async: no SqliteSaver
        question, me = f"where is my order {order.id}", context(order.customer_id)
        if run == "sync":
            result = agent.run(question, thread_id=run, context=me)
        else:
            result = asyncio.run(agent.arun(question, thread_id=run, context=me))
        observations = [m for m in result.messages if m.role == "environment"]
        assert [m.meta.get("error") for m in observations] == [None, None], [m.text for m in observations]
        assert order.tracking_number in observations[0].text
        assert json.loads(observations[1].text)["item"] == order.item


def test_a_context_that_is_not_a_dict_is_a_clear_error(db, tmp_path):
    from agentkit.errors import ConfigError

    agent = agent_for(db, [Message.assistant("hi")], tmp_path)
    with pytest.raises(ConfigError, match="context must be a dict"):
        agent.run("hello", thread_id="bad", context=1)  # type: ignore[arg-type]
