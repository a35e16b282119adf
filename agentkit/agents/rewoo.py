"""ReWOO: plan every tool call up front, run the steps whose inputs are ready in parallel, then solve.

    START → plan ─┬─ unparseable plan ─→ recover ─→ plan
                  ├─ budget ─→ END
                  └─ Send(work, step) for each ready step ─→ work ×N ─→ join ─┬─ Send(work, …) for newly ready steps
                                                                             └─ all done ─→ solve ─→ END

Each ``work`` task is a LangGraph ``Send``: the ready steps of one superstep run concurrently and each
finished step's evidence is checkpointed as a pending write, so a run killed mid-plan resumes without
re-running finished steps. A failed step's error becomes its evidence; the solver is told, the run goes on.
"""

from __future__ import annotations

from typing import Annotated, Any

from langgraph._internal._runnable import RunnableCallable
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from agentkit.agents.nodes import (
    AgentParts,
    aexecute,
    ask_for_decisions,
    after_reply,
    amodel_reply,
    budget_stop,
    cleared,
    execute,
    generation_config,
    model_reply,
    recover,
)
from agentkit.agents.state import AgentState, RunContext
from agentkit.messages import Message, ToolCall
from agentkit.protocols.rewoo import (
    PlanStep,
    parse_plan,
    planner_messages,
    solver_messages,
    step_arguments,
    substitute,
)

DEFAULT_PROTOCOL = "react"


def merge_evidence(left: dict[str, str] | None, right: dict[str, str] | None) -> dict[str, str]:
    """Reducer: parallel ``work`` tasks each add their step's evidence; an empty dict resets (a new run)."""
    if not right:
        return {} if right == {} else dict(left or {})
    return {**(left or {}), **right}


class ReWOOState(AgentState, total=False):
    plan: list[dict[str, Any]]                            # PlanStep dicts, with the call id of each step
    evidence: Annotated[dict[str, str], merge_evidence]   # step id → result text


def _task(state: ReWOOState) -> list[Message]:
    start = state.get("run_start", -1)
    messages = state["messages"]
    return messages[start:] if start is not None and start >= 0 else messages[-state.get("run_input", 1):]


def _plan_update(state: ReWOOState, parts: AgentParts, reply: Message) -> dict[str, Any]:
    text = reply.meta.get("raw", reply.text) if isinstance(reply.meta.get("raw"), str) else reply.text
    steps, error = parse_plan(text, parts.specs)
    calls = [ToolCall(name=s.tool, arguments={"input": s.args}) for s in steps] if not error else []
    plan_message = Message.assistant(text, calls, usage=reply.usage, meta={"raw": text, "rewoo": "plan"})
    if error:
        plan_message.meta["parse_error"] = error
    update = after_reply(state, parts, plan_message)
    if error:
        return update
    update.pop("outcome", None)  # a plan is not an answer
    update["plan"] = [{**s.model_dump(), "call_id": c.id} for s, c in zip(steps, calls)]
    update["evidence"] = {}
    update["decisions"] = {}  # decisions belong to one plan
    return update


def plan(parts: AgentParts) -> RunnableCallable:
    def node(state: ReWOOState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        if stop := budget_stop(state, parts, runtime.context):
            return {"outcome": stop}
        messages = planner_messages(_task(state), parts.specs)
        return _plan_update(state, parts, model_reply(parts, messages, generation_config(state, parts), runtime))

    async def anode(state: ReWOOState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        if stop := budget_stop(state, parts, runtime.context):
            return {"outcome": stop}
        messages = planner_messages(_task(state), parts.specs)
        reply = await amodel_reply(parts, messages, generation_config(state, parts), runtime)
        return _plan_update(state, parts, reply)

    return RunnableCallable(node, anode, name="plan", trace=False)


def _step_call(step_data: dict[str, Any], parts: AgentParts, evidence: dict[str, str] | None) -> ToolCall:
    """The call a step makes: evidence substituted when given, else with its ``#E`` references as written."""
    step = PlanStep.model_validate(step_data)
    text = substitute(step.args, evidence) if evidence is not None else step.args
    tool = parts.tools.get(step.tool)
    arguments = step_arguments(text, tool.spec) if tool is not None else {"input": text}
    return ToolCall(id=step_data["call_id"], name=step.tool, arguments=arguments)


def _prepare(packet: dict[str, Any], parts: AgentParts):
    return PlanStep.model_validate(packet["step"]), _step_call(packet["step"], parts, packet.get("evidence") or {})


def _awaiting_approval(state: ReWOOState, parts: AgentParts) -> list[ToolCall]:
    """Steps of the plan whose tool needs approval and that have no decision yet."""
    decided = state.get("decisions") or {}
    calls = [_step_call(s, parts, None) for s in state.get("plan") or [] if s["call_id"] not in decided]
    return [c for c in calls if c.name in parts.tools and parts.needs_approval(c)]


def approve_plan(parts: AgentParts) -> RunnableCallable:
    """Before any step runs, pause once for every step that needs approval (arguments as planned, ``#E``
    references unfilled); the decisions travel with each ``Send`` and ``work`` enforces them."""

    def node(state: ReWOOState) -> dict[str, Any]:
        pending = _awaiting_approval(state, parts)
        if not pending:
            return {}
        return {"decisions": ask_for_decisions(pending, state.get("decisions"))}

    async def anode(state: ReWOOState) -> dict[str, Any]:
        return node(state)

    return RunnableCallable(node, anode, name="approve_plan", trace=False)


def work(parts: AgentParts) -> RunnableCallable:
    """Run one plan step (sent with ``Send``); its result, or its error, becomes the step's evidence."""

    def finish(step: PlanStep, message: Message) -> dict[str, Any]:
        message.meta["step"] = step.id
        return {"messages": [message], "evidence": {step.id: message.text}}

    def node(packet: dict[str, Any]) -> dict[str, Any]:
        step, call = _prepare(packet, parts)
        tool, call, replacement = cleared(call, parts, packet.get("decisions") or {})
        return finish(step, replacement if replacement is not None else execute(tool, call))  # errors reported

    async def anode(packet: dict[str, Any]) -> dict[str, Any]:
        step, call = _prepare(packet, parts)
        tool, call, replacement = cleared(call, parts, packet.get("decisions") or {})
        return finish(step, replacement if replacement is not None else await aexecute(tool, call))

    return RunnableCallable(node, anode, name="work", trace=False)


def join(state: ReWOOState) -> dict[str, Any]:
    """Fan-in point: runs once after every ``work`` task of a superstep has finished."""
    return {}


def dispatch(state: ReWOOState) -> list[Send] | str:
    """Send every step whose inputs are ready and that has no evidence yet; ``solve`` when all are done."""
    if state.get("outcome"):
        return END
    if state["messages"][-1].parse_error:
        return "recover"
    evidence = state.get("evidence") or {}
    steps = state.get("plan") or []
    ready = [s for s in steps if s["id"] not in evidence and all(d in evidence for d in s["deps"])]
    if ready:
        decisions = state.get("decisions") or {}
        return [Send("work", {"step": s, "evidence": evidence, "decisions": decisions}) for s in ready]
    return "solve"


def after_plan(parts: AgentParts):
    """Route a new plan: to approval first when one of its steps needs it, else straight to the work."""

    def route(state: ReWOOState) -> list[Send] | str:
        if not state.get("outcome") and not state["messages"][-1].parse_error and _awaiting_approval(state, parts):
            return "approve_plan"
        return dispatch(state)

    return route


def solve(parts: AgentParts) -> RunnableCallable:
    def update(state: ReWOOState, parts: AgentParts, reply: Message) -> dict[str, Any]:
        answer = Message.assistant(reply.text, usage=reply.usage, meta={**reply.meta, "rewoo": "solve"})
        answer.meta.pop("parse_error", None)  # the solver writes free text: anything it says is the answer
        return after_reply(state, parts, answer)

    def messages(state: ReWOOState) -> list[Message]:
        steps = [PlanStep.model_validate(s) for s in state.get("plan") or []]
        return solver_messages(_task(state), steps, state.get("evidence") or {})

    def node(state: ReWOOState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        if stop := budget_stop(state, parts, runtime.context):
            return {"outcome": stop}
        return update(state, parts, model_reply(parts, messages(state), generation_config(state, parts), runtime))

    async def anode(state: ReWOOState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        if stop := budget_stop(state, parts, runtime.context):
            return {"outcome": stop}
        reply = await amodel_reply(parts, messages(state), generation_config(state, parts), runtime)
        return update(state, parts, reply)

    return RunnableCallable(node, anode, name="solve", trace=False)


def build_graph(parts: AgentParts) -> StateGraph:
    graph = StateGraph(ReWOOState, context_schema=RunContext)
    graph.add_node("plan", plan(parts))
    graph.add_node("approve_plan", approve_plan(parts))
    graph.add_node("work", work(parts))
    graph.add_node("join", join)
    graph.add_node("solve", solve(parts))
    graph.add_node("recover", recover(parts))
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", after_plan(parts), ["approve_plan", "work", "recover", "solve", END])
    graph.add_conditional_edges("approve_plan", dispatch, ["work", "solve", END])
    graph.add_edge("recover", "plan")
    graph.add_edge("work", "join")
    graph.add_conditional_edges("join", dispatch, ["work", "solve", END])
    graph.add_edge("solve", END)
    return graph


__all__ = ["DEFAULT_PROTOCOL", "ReWOOState", "build_graph"]
