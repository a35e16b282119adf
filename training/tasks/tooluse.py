"""A generated tool-use curriculum with exact answers: calculator arithmetic, unit conversion, lookups in a
small inventory table, two-step compositions (lookup then calculator) and questions that need no tool.

The inventory is invented from the seed, so a model cannot answer lookups from memory: it has to call
the tool. Every task carries a reference solution built by really running the tools.
"""

from __future__ import annotations

import json
import random
from typing import Any

from agentkit.messages import Message, ToolCall
from agentkit.toolspec import FunctionTool, Tool, ToolError, ToolSpec
from agentkit.training.tasks.base import Task, TaskSet

__all__ = ["KINDS", "SYSTEM_PROMPT", "make_tools", "tooluse_tasks", "tooluse_task_set"]

#: Task kinds in the curriculum, in the order they are generated.
KINDS = ("arithmetic", "units", "lookup", "two_step", "no_tool")

SYSTEM_PROMPT = ("You are a helpful assistant. Call a tool when the question needs one; "
                 "answer directly when it does not. Give the final answer in one short sentence.")

_FACTORS: dict[tuple[str, str], float] = {
    ("km", "miles"): 0.621371, ("miles", "km"): 1.609344,
    ("kg", "lb"): 2.204623, ("lb", "kg"): 0.453592,
    ("m", "ft"): 3.280840, ("ft", "m"): 0.3048,
    ("liters", "gallons"): 0.264172, ("gallons", "liters"): 3.785412,
}
_COLORS = ("red", "blue", "green", "black", "white", "yellow", "silver", "orange")
_ITEMS = ("kettle", "lamp", "chair", "mug", "backpack", "umbrella", "clock", "notebook")
_WORDS = ("apple", "river", "candle", "planet", "garden", "window", "pepper", "rocket", "violin", "marble")


def _round(value: float) -> float:
    return round(value, 2)


def _number(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit``, rounded to 2 decimals."""
    src, dst = from_unit.strip().lower(), to_unit.strip().lower()
    if (src, dst) in (("c", "f"), ("celsius", "fahrenheit")):
        return _round(value * 9 / 5 + 32)
    if (src, dst) in (("f", "c"), ("fahrenheit", "celsius")):
        return _round((value - 32) * 5 / 9)
    factor = _FACTORS.get((src, dst))
    if factor is None:
        pairs = ", ".join(f"{a}->{b}" for a, b in _FACTORS)
        raise ToolError(f"cannot convert {from_unit!r} to {to_unit!r}; supported: {pairs}, celsius->fahrenheit, "
                        "fahrenheit->celsius")
    return _round(value * factor)


def make_inventory(seed: int = 0) -> dict[str, dict[str, Any]]:
    """The invented product table the ``inventory`` tool answers from (same seed, same table)."""
    rng = random.Random(f"inventory-{seed}")
    table = {}
    for color in _COLORS:
        for item in _ITEMS:
            table[f"{color} {item}"] = {"price": round(rng.uniform(3, 90), 2), "stock": rng.randint(0, 400)}
    return table


def make_tools(seed: int = 0) -> list[Tool]:
    """``calculator``, ``unit_convert`` and ``inventory``, with short descriptions (they fill every prompt)."""
    from agentkit.tools.calculator import Calculator

    calculator = Calculator()
    inventory = make_inventory(seed)

    def calc(expression: Any = None, **extra: Any) -> str:
        return calculator.invoke({"expression": expression, **extra} if expression is not None else extra)

    def unit_convert(value: Any = None, from_unit: str = "", to_unit: str = "") -> str:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ToolError(f"'value' must be a number, got {value!r}") from None
        return f"{_number(convert(number, from_unit, to_unit))} {to_unit}"

    def lookup(product: str = "") -> str:
        key = " ".join(str(product).lower().split())
        row = inventory.get(key) or inventory.get(key.rstrip("s"))
        if row is None:
            raise ToolError(f"no product named {product!r}; products are '<color> <item>', e.g. 'red kettle'")
        return json.dumps({"product": key.rstrip("s") if key not in inventory else key, **row})

    def spec(name: str, description: str, properties: dict[str, Any]) -> ToolSpec:
        return ToolSpec(name=name, description=description, parameters={
            "type": "object", "properties": properties, "required": list(properties)})

    return [
        FunctionTool(calc, spec("calculator", "Evaluate an arithmetic expression.",
                                {"expression": {"type": "string"}})),
        FunctionTool(unit_convert, spec("unit_convert", "Convert a value between units (km, miles, kg, lb, m, ft, "
                                        "liters, gallons, celsius, fahrenheit).",
                                        {"value": {"type": "number"}, "from_unit": {"type": "string"},
                                         "to_unit": {"type": "string"}})),
        FunctionTool(lookup, spec("inventory", "Look up a product's price and stock in the shop's table.",
                                  {"product": {"type": "string"}})),
    ]


def _reference(tools: dict[str, Tool], steps: list[tuple[str, dict[str, Any]]], final: str) -> list[Message]:
    """Run ``steps`` on the real tools and write the conversation an ideal agent would have."""
    out: list[Message] = []
    for name, arguments in steps:
        call = ToolCall(name=name, arguments=arguments)
        out.append(Message.assistant("", [call]))
        out.append(Message.tool_result(call, tools[name].invoke(arguments)))
    out.append(Message.assistant(final))
    return out


def tooluse_tasks(per_kind: int = 60, seed: int = 0) -> list[Task]:
    """``per_kind`` tasks of each kind in :data:`KINDS`, generated from ``seed``."""
    rng = random.Random(f"tooluse-{seed}")
    tools = {t.spec.name: t for t in make_tools(seed)}
    inventory = make_inventory(seed)
    products = sorted(inventory)
    tasks: list[Task] = []

    def add(kind: str, i: int, question: str, answer: str, steps, final: str, **kw: Any) -> None:
        tasks.append(Task(id=f"{kind}-{i:04d}", question=question, answer=answer, kind=kind,
                          reference=_reference(tools, steps, final), **kw))

    for i in range(per_kind):  # worded and symbolic forms, so "What is 12 * 7?" is not a new kind of question
        form = i % 5
        if form == 0:
            a, b = rng.randint(12, 999), rng.randint(12, 99)
            expr, q = f"{a} * {b}", f"What is {a} times {b}?"
        elif form == 1:
            a, b, c = rng.randint(1000, 9999), rng.randint(1000, 9999), rng.randint(100, 999)
            expr, q = f"{a} + {b} - {c}", f"Compute {a} + {b} - {c}."
        elif form == 2:
            a, b, c = rng.randint(100, 999), rng.randint(10, 99), rng.randint(3, 19)
            expr, q = f"({a} - {b}) * {c}", f"What is ({a} - {b}) multiplied by {c}?"
        elif form == 3:
            a, b = rng.randint(6, 99), rng.randint(6, 99)
            expr, q = f"{a} * {b}", f"What is {a} * {b}? Use the calculator."
        else:
            a, b, c = rng.randint(10, 999), rng.randint(2, 99), rng.randint(10, 999)
            expr, q = f"{a} * {b} + {c}", f"Calculate {a} * {b} + {c}."
        value = tools["calculator"].invoke({"expression": expr})
        add("arithmetic", i, q, value, [("calculator", {"expression": expr})], f"{expr} = {value}.")

    pairs = [*_FACTORS, ("celsius", "fahrenheit"), ("fahrenheit", "celsius")]
    for i in range(per_kind):
        src, dst = pairs[rng.randrange(len(pairs))]
        value = rng.randint(2, 250)
        result = _number(convert(value, src, dst))
        add("units", i, f"Convert {value} {src} to {dst}.", result,
            [("unit_convert", {"value": value, "from_unit": src, "to_unit": dst})],
            f"{value} {src} is {result} {dst}.", tolerance=0.01)

    for i in range(per_kind):
        product = products[rng.randrange(len(products))]
        row = inventory[product]
        if i % 2 == 0:
            q, answer, final = (f"How many {product}s are in stock?", str(row["stock"]),
                                f"There are {row['stock']} {product}s in stock.")
        else:
            q, answer, final = (f"What is the price of the {product}?", _number(row["price"]),
                                f"The {product} costs {_number(row['price'])}.")
        add("lookup", i, q, answer, [("inventory", {"product": product})], final)

    for i in range(per_kind):
        product = products[rng.randrange(len(products))]
        count = rng.randint(2, 12)
        expr = f"{_number(inventory[product]['price'])} * {count}"
        total = tools["calculator"].invoke({"expression": expr})
        add("two_step", i, f"How much do {count} {product}s cost in total?", total,
            [("inventory", {"product": product}), ("calculator", {"expression": expr})],
            f"{count} {product}s cost {total} in total.", tolerance=1e-4)

    for i in range(per_kind):
        words = rng.sample(_WORDS, 3)
        form = i % 3
        if form == 0:
            q, answer = f"Reply with the single word {words[0]}.", words[0]
        elif form == 1:
            q, answer = f"Which word comes first in this list: {', '.join(words)}?", words[0]
        else:
            q, answer = f"Repeat this word back to me: {words[1]}", words[1]
        tasks.append(Task(id=f"no_tool-{i:04d}", question=q, answer=answer, kind="no_tool", needs_tool=False,
                          reference=[Message.assistant(answer.capitalize() + ".")]))
    return tasks


def tooluse_task_set(per_kind: int = 60, seed: int = 0) -> TaskSet:
    """The curriculum as a :class:`TaskSet` (tools and system prompt included)."""
    from agentkit.tools.calculator import Calculator

    return TaskSet(name="tooluse", tasks=tooluse_tasks(per_kind, seed), make_tools=lambda: make_tools(seed),
                   system_prompt=SYSTEM_PROMPT, spec_variants={"calculator": [Calculator().spec]})
