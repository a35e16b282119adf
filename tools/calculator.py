"""A calculator tool: arithmetic a model can trust, on input a small model actually writes.

Design. The expression is tidied (``^`` for power, ``×``/``÷``, ``1,000``, a trailing ``=``, backticks or
quotes around it), parsed with :mod:`ast` and checked against a whitelist, then evaluated by a small
tree-walking evaluator in this module:

* Arithmetic (``+ - * / // % **``, unary signs) runs on Python numbers. numexpr would be wrong here: its
  integers are fixed-width and wrap silently (``x*4`` with ``x = 2**62`` gives 0), it cannot hold integers
  past 64 bits, and Python already has exact integers and the right ``//`` and ``%``. Every integer result is
  bounded (about 1000 digits) and ``**`` is checked *before* it runs, so ``9**9**9`` is refused at once.
* Transcendental functions (sqrt, trig, exp, log...) go to numexpr, which is the ``[tools]`` extra's
  evaluator for them; its NaN/inf results are turned into readable errors. When numexpr is not installed
  the :mod:`math` module computes the same values, so the tool works in a bare install.
* floor, ceil, round, abs and factorial stay in Python: they must return exact integers.

Nothing is ever passed to ``eval``; the only names that can appear are the whitelisted functions and the
constants ``pi``, ``e`` and ``tau``.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import warnings
from typing import Any, Callable

from agentkit.errors import ConfigError
from agentkit.toolspec import ToolError, ToolSpec

MAX_LENGTH = 500
MAX_DIGITS = 1000
MAX_BITS = int(MAX_DIGITS * math.log2(10)) + 1
MAX_DEPTH = 100
MAX_FACTORIAL = 1000
MAX_ROUND_DIGITS = 300

# numexpr's names for the functions it evaluates; aliases small models use map onto them.
_NUMEXPR_FUNCS: dict[str, str] = {
    "sqrt": "sqrt",
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "arcsin": "arcsin",
    "arccos": "arccos",
    "arctan": "arctan",
    "asin": "arcsin",
    "acos": "arccos",
    "atan": "arctan",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "exp": "exp",
    "log": "log",
    "ln": "log",
    "log10": "log10",
    "log2": "log2",
}

# The same functions from the standard library: the fallback without numexpr.
_MATH_FUNCS: dict[str, Callable[[float], float]] = {
    "sqrt": math.sqrt,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "arcsin": math.asin,
    "arccos": math.acos,
    "arctan": math.atan,
    "sinh": math.sinh,
    "cosh": math.cosh,
    "tanh": math.tanh,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
}

_EXACT_FUNCS = ("abs", "floor", "ceil", "round", "factorial")
FUNCTIONS: tuple[str, ...] = tuple(_NUMEXPR_FUNCS) + _EXACT_FUNCS
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}

_BINOPS: dict[type, tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
    ast.Pow: ("**", operator.pow),
}

_BAD_BINOPS = {ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^", ast.MatMult: "@"}

ALLOWED = (
    "Allowed: numbers, + - * / // % ** (^ also means power), parentheses, the functions "
    + ", ".join(FUNCTIONS)
    + " (trig in radians), and the constants pi, e, tau."
)

_UNICODE = {
    "×": "*",
    "·": "*",
    "⋅": "*",
    "∙": "*",
    "÷": "/",
    "−": "-",
    "–": "-",
    "π": "pi",
    "²": "**2",
    "³": "**3",
}
_QUOTES = "`'\"“”‘’"
# ``1,000`` and ``1,234.5`` but not ``round(2,100)``, ``1,0000`` or ``3.1,000``.
_THOUSANDS = re.compile(r"(?<![\w.,])(?<!round\()\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w.]|,\d)")
_TIMES_X = re.compile(r"(?<=[\d)])\s+[xX]\s+(?=[\d(.])")


def normalize(expression: str) -> str:
    """Rewrite what small models write (``2^10``, ``12×7``, ``1,000``, ``3+4 =``, ```2+2```) as Python syntax."""
    text = expression.strip()
    text = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", text)
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    text = re.sub(r"\s*=\s*\??$", "", text)
    for src, dst in _UNICODE.items():
        text = text.replace(src, dst)
    text = text.replace("^", "**")
    text = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), text)
    return _TIMES_X.sub(" * ", text)


class _Numexpr:
    """Evaluates one whitelisted function with numexpr, or with :mod:`math` when numexpr is absent."""

    def __init__(self, use_numexpr: bool | None):
        self._ne: Any = None
        if use_numexpr is False:
            return
        try:
            import numexpr
        except ImportError:
            if use_numexpr:
                raise ConfigError(
                    "the calculator was asked to use numexpr, which is not installed: pip install 'agentkit[tools]'"
                ) from None
            return
        self._ne = numexpr

    @property
    def available(self) -> bool:
        return self._ne is not None

    def __call__(self, name: str, x: float) -> float:
        if self._ne is not None:
            return float(self._ne.evaluate(f"{_NUMEXPR_FUNCS[name]}(x)", local_dict={"x": x}).item())
        try:
            return _MATH_FUNCS[_NUMEXPR_FUNCS[name]](x)
        except ValueError:
            return math.nan


def format_number(value: int | float) -> str:
    """Integers as written, floats to 12 significant digits, integral floats without ``.0``."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.12g}"


class Calculator:
    """The ``calculator`` tool: evaluates one arithmetic expression and returns the number as text."""

    def __init__(self, use_numexpr: bool | None = None):
        """``use_numexpr``: None uses it when installed, False never does, True requires it (else ConfigError)."""
        self._funcs = _Numexpr(use_numexpr)
        self._spec = ToolSpec(
            name="calculator",
            description=(
                "Evaluate one arithmetic expression and return the result (integers are exact). "
                + ALLOWED
                + " No variables, units or words. Example: sqrt(2) * (3 + 4)**2 / 10"
            ),
            parameters={
                "type": "object",
                "properties": {
                    "expression": {
                        "type": "string",
                        "description": "The expression, e.g. '(1200 - 250) * 0.15' or '2**10 + log10(1000)'.",
                    }
                },
                "required": ["expression"],
                "additionalProperties": False,
            },
        )

    @property
    def spec(self) -> ToolSpec:
        return self._spec

    @property
    def uses_numexpr(self) -> bool:
        return self._funcs.available

    def invoke(self, arguments: dict[str, Any]) -> str:
        if not isinstance(arguments, dict):
            raise ToolError('calculator arguments must be an object like {"expression": "2 * (3 + 4)"}')
        extra = sorted(set(arguments) - {"expression"})
        if extra:
            raise ToolError(
                f"calculator takes only 'expression'; unexpected argument(s): {', '.join(map(repr, extra))}"
            )
        if "expression" not in arguments:
            raise ToolError('calculator needs an \'expression\' argument, e.g. {"expression": "2 * (3 + 4)"}')
        expression = arguments["expression"]
        if isinstance(expression, (int, float)) and not isinstance(expression, bool):
            expression = str(expression)
        if not isinstance(expression, str):
            raise ToolError(f"'expression' must be a string, got {type(expression).__name__}")
        return self.evaluate(expression)

    def evaluate(self, expression: str) -> str:
        """Evaluate ``expression`` and format the result; every failure is a :class:`ToolError`."""
        shown = expression.strip()
        if len(shown) > MAX_LENGTH:
            raise ToolError(f"expression is too long ({len(shown)} characters; at most {MAX_LENGTH})")
        text = normalize(shown)
        if not text:
            raise ToolError(f"empty expression. {ALLOWED} Example: 2 * (3 + 4)")
        tree = self._parse(text, shown)
        return format_number(_Evaluator(text, shown, self._funcs).eval(tree.body, 0))

    @staticmethod
    def _parse(text: str, shown: str) -> ast.Expression:
        try:
            with warnings.catch_warnings():  # e.g. "invalid decimal literal" for '1if'; the error says enough
                warnings.simplefilter("ignore")
                return ast.parse(text, mode="eval")
        except SyntaxError as exc:
            where = ""
            if exc.offset and 0 < exc.offset <= len(text) and exc.lineno == 1:
                where = f" at {text[exc.offset - 1]!r} (position {exc.offset})"
            raise ToolError(f"cannot parse {shown!r}: {exc.msg}{where}. {ALLOWED}") from None
        except (ValueError, RecursionError, MemoryError):
            raise ToolError(f"cannot parse {shown!r}. {ALLOWED}") from None

    def __repr__(self) -> str:
        return f"Calculator(numexpr={self.uses_numexpr})"


class _Evaluator:
    """Walks a parsed expression, allowing only whitelisted nodes and bounding every intermediate result."""

    def __init__(self, text: str, shown: str, funcs: _Numexpr):
        self.text = text
        self.shown = shown
        self.funcs = funcs

    def fail(self, problem: str, hint: bool = True) -> ToolError:
        return ToolError(f"{problem} in {self.shown!r}." + (f" {ALLOWED}" if hint else ""))

    def segment(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text, node) or type(node).__name__

    def eval(self, node: ast.AST, depth: int) -> int | float:
        if depth > MAX_DEPTH:
            raise self.fail("expression is nested too deeply", hint=False)
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            if node.id in FUNCTIONS:
                raise self.fail(f"function {node.id!r} needs parentheses, e.g. {node.id}(2)", hint=False)
            raise self.fail(f"unknown name {node.id!r} (no variables)")
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return self.check(-self.eval(node.operand, depth + 1))
            if isinstance(node.op, ast.UAdd):
                return self.eval(node.operand, depth + 1)
            symbol = {ast.Invert: "~", ast.Not: "not"}.get(type(node.op), type(node.op).__name__)
            raise self.fail(f"operator {symbol!r} is not allowed")
        if isinstance(node, ast.BinOp):
            return self.binop(node, depth)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        raise self.fail(f"{self.describe(node)} {self.segment(node)!r} is not allowed")

    @staticmethod
    def describe(node: ast.AST) -> str:
        kinds = {
            ast.Attribute: "attribute access",
            ast.Subscript: "indexing",
            ast.Lambda: "lambda",
            ast.Compare: "comparison",
            ast.BoolOp: "boolean operator",
            ast.IfExp: "conditional",
            ast.Tuple: "tuple",
            ast.List: "list",
            ast.Dict: "dict",
            ast.Set: "set",
            ast.ListComp: "comprehension",
            ast.SetComp: "comprehension",
            ast.DictComp: "comprehension",
            ast.GeneratorExp: "comprehension",
            ast.JoinedStr: "text",
            ast.NamedExpr: "assignment",
            ast.Starred: "unpacking",
        }
        return kinds.get(type(node), "syntax")

    def constant(self, node: ast.Constant) -> int | float:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float, complex, str, bytes)):
            raise self.fail(f"{self.segment(node)!r} is not a number")
        if isinstance(value, (str, bytes)):
            raise self.fail(f"text {self.segment(node)!r} is not allowed (numbers only)")
        if isinstance(value, complex):
            raise self.fail(f"imaginary number {self.segment(node)!r} is not supported", hint=False)
        return self.check(value)

    def check(self, value: Any) -> int | float:
        """Refuse results a reader cannot use: oversized integers, inf/nan, complex numbers."""
        if isinstance(value, complex):
            raise self.fail("the result is not a real number (e.g. a fractional power of a negative number)", False)
        if isinstance(value, int):
            if value.bit_length() > MAX_BITS:
                raise self.fail(f"a result has more than {MAX_DIGITS} digits", hint=False)
            return value
        if math.isnan(value):
            raise self.fail("the result is undefined (math domain error)", hint=False)
        if math.isinf(value):
            raise self.fail("a result is too large (overflow)", hint=False)
        return value

    def binop(self, node: ast.BinOp, depth: int) -> int | float:
        if type(node.op) not in _BINOPS:
            symbol = _BAD_BINOPS.get(type(node.op), type(node.op).__name__)
            raise self.fail(f"operator {symbol!r} is not allowed")
        left = self.eval(node.left, depth + 1)
        right = self.eval(node.right, depth + 1)
        symbol, fn = _BINOPS[type(node.op)]
        if symbol == "**":
            self.check_power(left, right)
        try:
            return self.check(fn(left, right))
        except ZeroDivisionError:
            raise ToolError(f"division by zero in {self.shown!r}") from None
        except OverflowError:
            raise self.fail("a result is too large (overflow)", hint=False) from None

    def check_power(self, base: int | float, exponent: int | float) -> None:
        """Estimate the size of ``base ** exponent`` before computing it, so huge powers fail fast."""
        if abs(base) <= 1 or exponent <= 0:
            return
        try:
            bits = exponent * math.log2(abs(base))
        except OverflowError:
            bits = math.inf
        limit = MAX_BITS if isinstance(base, int) and isinstance(exponent, int) else 1024
        if bits > limit:
            raise self.fail(f"the power {format_number(base)}**{format_number(exponent)} is too large", hint=False)

    def call(self, node: ast.Call, depth: int) -> int | float:
        if not isinstance(node.func, ast.Name):
            raise self.fail(f"calling {self.segment(node.func)!r} is not allowed")
        name = node.func.id
        if name not in FUNCTIONS:
            raise self.fail(f"unknown function {name!r}")
        if node.keywords:
            raise self.fail(f"keyword arguments are not allowed ({self.segment(node)!r})")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise self.fail(f"unpacking is not allowed ({self.segment(node)!r})")
        arity = (1, 2) if name == "round" else (1,)
        if len(node.args) not in arity:
            expected = "1 or 2 arguments" if name == "round" else "1 argument"
            raise self.fail(f"{name}() takes {expected}, got {len(node.args)}", hint=False)
        args = [self.eval(arg, depth + 1) for arg in node.args]
        try:
            return self.check(self.apply(name, args))
        except ZeroDivisionError:
            raise ToolError(f"division by zero in {self.shown!r}") from None
        except OverflowError:
            raise self.fail(f"the result of {name}() is too large (overflow)", hint=False) from None
        except ValueError:
            raise self.fail(f"{name}() is undefined for {format_number(args[0])} (math domain error)", False) from None

    def apply(self, name: str, args: list[int | float]) -> int | float:
        x = args[0]
        if name == "abs":
            return abs(x)
        if name == "floor":
            return math.floor(x)
        if name == "ceil":
            return math.ceil(x)
        if name == "round":
            if len(args) == 1:
                return round(x)
            ndigits = args[1]
            if not float(ndigits).is_integer() or abs(ndigits) > MAX_ROUND_DIGITS:
                raise self.fail(f"round() digits must be a whole number from -{MAX_ROUND_DIGITS} to {MAX_ROUND_DIGITS}")
            return round(x, int(ndigits))
        if name == "factorial":
            if not float(x).is_integer() or x < 0 or x > MAX_FACTORIAL:
                raise self.fail(f"factorial() needs a whole number from 0 to {MAX_FACTORIAL}", hint=False)
            return math.factorial(int(x))
        if name in ("log", "ln", "log10", "log2") and x == 0:
            raise self.fail(f"{name}(0) is undefined (minus infinity)", hint=False)
        try:
            fx = float(x)
        except OverflowError:
            raise self.fail(f"the argument of {name}() is too large", hint=False) from None
        result = self.funcs(name, fx)
        if math.isnan(result):
            raise self.fail(f"{name}() is undefined for {format_number(x)} (math domain error)", hint=False)
        if math.isinf(result):
            raise self.fail(f"the result of {name}() is too large (overflow)", hint=False)
        return result
