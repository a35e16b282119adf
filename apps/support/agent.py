"""The support agent: a router node hands each customer message to one specialist (orders, refunds, FAQ).

Each specialist is the ReAct loop built from the shared nodes (``call_model``, ``approve``, ``run_tools``,
``recover``) with its own system prompt and tools; all of them live in one LangGraph graph and share one
message log, budget and checkpointer, so approvals, resume after a crash and streaming work as for any agent::

    START → route ─┬→ orders_model  ⇄ orders_tools   (orders_approve before update_address)
                   ├→ refunds_model ⇄ refunds_tools  (refunds_approve before refund)
                   └→ faq_model     ⇄ faq_tools
                      each *_model → END on an answer or a budget

Build it with :func:`create_support_agent` and run it with the customer in the context:
``agent.run("where is order 3?", thread_id=..., context={"customer_id": 1})``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.graph import END, START, StateGraph

from agentkit.agents.nodes import AgentParts, after_model, approve, call_model, recover, run_tools
from agentkit.agents.state import AgentState, RunContext
from agentkit.budgets import Budget
from agentkit.checkpoint import CheckpointerSpec, resolve_checkpointer
from agentkit.errors import ConfigError
from agentkit.llm import ChatModel, GenerationConfig
from agentkit.messages import Message
from agentkit.protocols import Protocol, get_protocol
from agentkit.runtime import Agent

from agentkit.apps.support.db import SupportDB
from agentkit.apps.support.tools import FAQ_DIR, support_tools

#: A router reads the conversation and names the specialist for its last user message.
Router = Callable[[list[Message]], str]

SHOP = "You are the customer-service assistant of an online electronics shop."
RULES = ("The signed-in customer is known to the tools: never ask for or accept a customer id. Use the tools for "
         "facts; never invent order details, amounts or policies. If the customer wants a person, or you cannot "
         "help, use escalate_to_human. Answer briefly and politely.")


@dataclass(frozen=True)
class Specialist:
    name: str
    description: str
    prompt: str
    tools: tuple[str, ...]


SPECIALISTS: dict[str, Specialist] = {s.name: s for s in (
    Specialist("orders", "order status, tracking, order details and address changes",
               f"{SHOP} You handle questions about the customer's orders: where they are, what is in them, and "
               f"changing a delivery address (only before shipping). {RULES}",
               ("lookup_order", "order_status", "update_address", "escalate_to_human")),
    Specialist("refunds", "refunds, returns and cancellations",
               f"{SHOP} You handle refunds. Look the order up first, then call refund with the customer's reason; "
               f"a person approves every refund. {RULES}",
               ("lookup_order", "refund", "escalate_to_human")),
    Specialist("faq", "general questions about shipping, returns policy, payments and accounts",
               f"{SHOP} You answer general questions from the shop's FAQ with the faq tool, and name the FAQ file "
               f"your answer comes from. {RULES}",
               ("faq", "escalate_to_human")),
)}

_ORDER_NUMBER = re.compile(r"(?:#\s*\d+|\border\s*(?:no\.?|number)?\s*#?\s*\d+)", re.IGNORECASE)
_REFUND_WORDS = re.compile(r"\b(refund\w*|money back|reimburs\w*|charge ?back|send (it|this) back|cancel\w*)\b",
                           re.IGNORECASE)
_REQUEST = re.compile(r"\b(i want|i'd like|i would like|please|give me|my money|i need|can you)\b", re.IGNORECASE)
_ORDER_WORDS = re.compile(
    r"\b(my (order|orders|package|parcel|delivery|shipment|address)|where is|track\w*|has it shipped|"
    r"(change|update) (my |the )?(delivery |shipping )?address|when will .* arrive|status)\b", re.IGNORECASE)


def keyword_router(messages: list[Message]) -> str:
    """Route by the last user message's words. A refund request (with an order number, or asked for) goes to
    refunds; an order number or a question about the customer's own orders to orders; anything else, including
    general questions about refunds, to the FAQ. Deterministic and free; :func:`model_router` asks a model."""
    text = next((m.text for m in reversed(messages) if m.role == "user"), "")
    refund = _REFUND_WORDS.search(text) is not None
    if refund and (_ORDER_NUMBER.search(text) or _REQUEST.search(text)):
        return "refunds"
    if _ORDER_NUMBER.search(text) or _ORDER_WORDS.search(text):
        return "orders"
    return "faq"


def model_router(model: ChatModel, fallback: Router = keyword_router) -> Router:
    """Ask ``model`` which specialist fits; ``fallback`` decides when its reply names none."""
    menu = "\n".join(f"- {s.name}: {s.description}" for s in SPECIALISTS.values())
    instruction = (f"Pick the team for the customer's last message. Teams:\n{menu}\n"
                   f"Reply with the team name only: {', '.join(SPECIALISTS)}.")
    config = GenerationConfig(max_new_tokens=8)

    def route(messages: list[Message]) -> str:
        recent = [m for m in messages if m.role in ("user", "assistant") and m.text.strip()][-6:]
        transcript = "\n".join(f"{m.role}: {m.text}" for m in recent)
        reply = model.generate([Message.system(instruction), Message.user(transcript)], config=config).text.lower()
        found = [(reply.find(name), name) for name in SPECIALISTS if name in reply]
        return min(found)[1] if found else fallback(messages)

    return route


class SupportState(AgentState, total=False):
    """The shared agent state plus the specialist handling the current run's message."""

    specialist: str


def route_node(router: Router):
    """The first node of every run: records which specialist handles the customer's latest message."""

    def node(state: SupportState) -> dict[str, Any]:
        choice = router(list(state["messages"]))
        if choice not in SPECIALISTS:
            raise ConfigError(f"the router chose {choice!r}: it must return one of {', '.join(SPECIALISTS)}")
        return {"specialist": choice}

    return node


def build_support_graph(specialists: dict[str, AgentParts], router: Router) -> StateGraph:
    """One graph: ``route``, then per specialist the shared nodes under prefixed names."""
    graph = StateGraph(SupportState, context_schema=RunContext)
    graph.add_node("route", route_node(router))
    graph.add_edge(START, "route")
    graph.add_conditional_edges("route", lambda s: f"{s['specialist']}_model",
                                [f"{name}_model" for name in specialists])
    for name, parts in specialists.items():
        model, tools, ask, fix = f"{name}_model", f"{name}_tools", f"{name}_approve", f"{name}_recover"
        graph.add_node(model, call_model(parts))
        graph.add_node(tools, run_tools(parts, name=tools))
        graph.add_node(ask, approve(parts))
        graph.add_node(fix, recover(parts))
        graph.add_conditional_edges(model, after_model(parts),
                                    {"run_tools": tools, "approve": ask, "recover": fix, END: END})
        graph.add_edge(ask, tools)
        graph.add_edge(tools, model)
        graph.add_edge(fix, model)
    return graph


def default_knowledge_dir(db_path: Path) -> Path:
    """Where the FAQ's vector index lives when none is given: next to the database."""
    return db_path.with_name(db_path.name + ".faq-index")


def create_support_agent(
    db: str | os.PathLike[str] | SupportDB,
    model: ChatModel | str = "embedded",
    *,
    router: Router | str = "keywords",
    protocol: Protocol | str = "react",
    knowledge_dir: str | os.PathLike[str] | None = None,
    faq_dir: str | os.PathLike[str] = FAQ_DIR,
    embedder: Any = None,
    checkpointer: CheckpointerSpec = "sqlite",
    budget: Budget | dict[str, Any] | None = None,
    generation: GenerationConfig | dict[str, Any] | None = None,
    trajectory_path: str | os.PathLike[str] | None = None,
    specialists: Sequence[str] | None = None,
) -> Agent:
    """The support agent over the database at ``db`` (create one with ``agentkit support init-db``).

    Args:
        router: ``"keywords"`` (:func:`keyword_router`), ``"model"`` (the same model picks) or a function.
        knowledge_dir: the FAQ's chromadb index (default: ``<db>.faq-index`` next to the database).
        faq_dir: the markdown FAQ to answer from (default: the one shipped with the kit).
        specialists: a subset of ``orders``, ``refunds``, ``faq``.
    """
    db = db if isinstance(db, SupportDB) else SupportDB(db)
    if isinstance(model, str):
        from agentkit.models import load_model  # lazy: backends import torch only when used

        model = load_model(model)
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    bound = model.with_protocol(protocol)
    budget = Budget(**budget) if isinstance(budget, dict) else (budget or Budget())
    generation = GenerationConfig(**generation) if isinstance(generation, dict) else (generation or GenerationConfig())
    tools = support_tools(db, knowledge_dir or default_knowledge_dir(db.path), faq_dir, embedder)
    names = list(specialists or SPECIALISTS)
    unknown = [n for n in names if n not in SPECIALISTS]
    if unknown or not names:
        raise ConfigError(f"unknown specialist(s) {unknown or names}: choose from {', '.join(SPECIALISTS)}")
    parts = {
        name: AgentParts(pattern=f"support.{name}", model=bound, protocol=protocol,
                         tools={t: tools[t] for t in SPECIALISTS[name].tools}, budget=budget, generation=generation,
                         system_prompt=SPECIALISTS[name].prompt)
        for name in names
    }
    if router == "keywords":
        chosen: Router = keyword_router
    elif router == "model":
        chosen = model_router(bound)
    elif callable(router):
        chosen = router
    else:
        raise ConfigError(f"unknown router {router!r}: use 'keywords', 'model' or a function of the messages")
    if len(names) < len(SPECIALISTS):
        chosen = _restricted(chosen, names)
    whole = AgentParts(pattern="support", model=bound, protocol=protocol, tools=tools, budget=budget,
                       generation=generation)
    return Agent(whole, build_support_graph(parts, chosen), checkpointer=resolve_checkpointer(checkpointer),
                 trajectory_path=trajectory_path)


def _restricted(router: Router, names: list[str]) -> Router:
    def route(messages: list[Message]) -> str:
        choice = router(messages)
        return choice if choice in names else names[0]

    return route
