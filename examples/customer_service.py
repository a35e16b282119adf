"""A customer-service conversation: seed a shop database, sign in as a customer, ask where an order is, ask for a
refund that a person approves, ask a general question, and ask for a human.

    .venv/bin/python examples/customer_service.py                    # a rule-following stand-in model: offline
    .venv/bin/python examples/customer_service.py --model embedded   # a real model (a small one may stray)
    .venv/bin/python examples/customer_service.py --reject           # the person rejects the refund

The customer is named in the run's context, never in the conversation: the tools read it from there.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from agentkit.apps.support import SupportDB, create_support_agent, init_db
from agentkit.messages import Message, ToolCall
from agentkit.models import load_model
from agentkit.models.scripted import ScriptedModel


def stand_in_model() -> ScriptedModel:
    """Does what each specialist's instructions say, literally: so the example runs with no model at all."""

    def reply(messages: list[Message]) -> Message:
        last, system = messages[-1], messages[0].text
        if last.role != "user" and last.meta.get("tool_name") == "faq" and not last.meta.get("error"):
            header, _, passage = last.text.partition("\n")  # "[1] (returns.md § Heading, line 15, ...)\npassage"
            return Message.assistant(f"{passage.strip()} (source: {header.split('(')[1].split(',')[0]})")
        if last.role != "user":
            return Message.assistant(("Sorry, I could not do that: " if last.meta.get("error") else "") + last.text)
        number = re.search(r"\d+", last.text)
        if "human" in last.text or "person" in last.text:
            call = ToolCall(id="esc", name="escalate_to_human",
                            arguments={"subject": "Customer asked for a person", "details": last.text})
        elif "You handle refunds" in system and number:
            call = ToolCall(id="ref", name="refund", arguments={"order_id": int(number[0]), "reason": last.text})
        elif "questions about the customer's orders" in system and number:
            call = ToolCall(id="st", name="order_status", arguments={"order_id": int(number[0])})
        else:
            call = ToolCall(id="faq", name="faq", arguments={"query": last.text, "k": 1})
        return Message.assistant("", [call])

    return ScriptedModel(reply, model_name="stand-in")


def main() -> None:
    parser = argparse.ArgumentParser(description="A customer-service conversation with approvals.")
    parser.add_argument("--model", default=None, help="a model spec (default: the offline stand-in)")
    parser.add_argument("--customer", type=int, default=1, help="who is signed in")
    parser.add_argument("--reject", action="store_true", help="reject the refund instead of approving it")
    parser.add_argument("--no-faq", action="store_true", help="skip the FAQ question (it loads an embedder)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="support-"))
    init_db(work / "shop.db", customers=5)
    db = SupportDB(work / "shop.db")
    orders = db.orders(args.customer)
    order = next((o for o in orders if o.status != "cancelled"), orders[0])
    model = load_model(args.model) if args.model else stand_in_model()
    agent = create_support_agent(db, model, checkpointer=work / "threads.sqlite", knowledge_dir=work / "faq-index")
    me = {"customer_id": args.customer}
    questions = [f"Where is my order #{order.id}?", f"Please refund order {order.id}, I no longer need it."]
    if not args.no_faq:
        questions.append("How long does a refund take to show up on my card?")
    questions.append("Thanks. Can a human call me about a warranty question?")

    print(f"signed in as {db.customer(args.customer)['name']} (customer {args.customer})")
    for question in questions:
        print(f"\ncustomer> {question}")
        result = agent.run(question, thread_id="demo", context=me)
        while result.outcome == "interrupted":
            for call in result.pending:
                print(f"  (needs approval: {call.name} {call.arguments})")
            decision = {"action": "reject", "reason": "refunds need a receipt"} if args.reject else "approve"
            print(f"  (the person on duty says: {'reject' if args.reject else 'approve'})")
            result = agent.resume("demo", decision, context=me)
        for message in result.messages:
            if message.role == "environment":
                print(f"  [{message.meta['tool_name']}] {message.text.splitlines()[0]}")
        print(f"agent> {result.answer}")

    print(f"\nrefunds in the database: {db.count('refunds')}, tickets: {db.count('tickets')} (files in {work})")


if __name__ == "__main__":
    main()
