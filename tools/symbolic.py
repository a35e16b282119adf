"""The ``sympy`` tool: exact symbolic math (solve, simplify, diff, integrate, limit, series, factor, expand).

Small models write math the way it looks on paper — ``x^2 = 4``, ``2x sin x``, ``e^x``, ``√(x+1)`` — so the input is
read with SymPy's parser and its implicit-multiplication transformations. That parser ends in ``eval``, so nothing
reaches it unchecked: the text is tokenized and every token checked (no strings, no attribute access, no keywords,
no ``_`` names, only known functions may be called), then the Python code the transformations produce is parsed
with :mod:`ast` and checked again against a whitelist before it is evaluated in a namespace holding only math
names and no builtins. Numbers whose size would make SymPy compute for minutes (``10^10^10``) are refused up
front; anything else slow is cut off by the tool's timeout.
"""

from __future__ import annotations

import ast
import io
import keyword
import math
import re
import tokenize
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from agentkit.toolspec import ToolError
from agentkit.tools.base import BaseTool

MAX_LENGTH = 500
MAX_EXPRESSIONS = 10
MAX_DIGITS = 4_000  # Python refuses to print integers over 4300 digits
MAX_FACTORIAL = 5_000
MAX_DIFF_ORDER = 50
MAX_SERIES_ORDER = 30
MAX_EXPAND_POWER = 200

Operation = Literal["solve", "simplify", "diff", "integrate", "limit", "series", "factor", "expand"]
OPERATIONS: tuple[str, ...] = Operation.__args__  # type: ignore[attr-defined]

_OPERATION_ALIASES = {
    "solve": "solve", "roots": "solve", "simplify": "simplify", "simplification": "simplify",
    "diff": "diff", "derivative": "diff", "differentiate": "diff", "derive": "diff", "d/dx": "diff",
    "integrate": "integrate", "integral": "integrate", "integration": "integrate", "antiderivative": "integrate",
    "limit": "limit", "lim": "limit", "series": "series", "taylor": "series", "expansion": "series",
    "factor": "factor", "factorise": "factor", "factorize": "factor", "expand": "expand",
}

# Names a model may call, mapped to SymPy's names for them (resolved in ``_namespace``).
_FUNCTIONS = {
    "sin": "sin", "cos": "cos", "tan": "tan", "cot": "cot", "sec": "sec", "csc": "csc",
    "asin": "asin", "acos": "acos", "atan": "atan", "acot": "acot", "atan2": "atan2",
    "arcsin": "asin", "arccos": "acos", "arctan": "atan",
    "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "coth": "coth", "asinh": "asinh", "acosh": "acosh",
    "atanh": "atanh", "exp": "exp", "log": "log", "ln": "log", "sqrt": "sqrt", "cbrt": "cbrt", "root": "root",
    "Abs": "Abs", "abs": "Abs", "sign": "sign", "floor": "floor", "ceiling": "ceiling", "ceil": "ceiling",
    "factorial": "factorial", "binomial": "binomial", "gamma": "gamma", "erf": "erf", "re": "re", "im": "im",
    "conjugate": "conjugate", "arg": "arg", "Min": "Min", "Max": "Max", "min": "Min", "max": "Max",
    "gcd": "gcd", "lcm": "lcm", "Mod": "Mod", "Heaviside": "Heaviside",
}
_CONSTANTS = {"pi": "pi", "E": "E", "e": "E", "I": "I", "oo": "oo", "inf": "oo", "infinity": "oo"}
# What SymPy's transformations emit on their own (numbers, symbols, ``x!``).
_INTERNAL_CALLS = ("Symbol", "Integer", "Float", "Rational", "Number", "factorial")

ALLOWED = (
    "Write plain math: numbers, variables (x, y, theta...), + - * / ^ and parentheses, = for an equation, "
    "the functions " + ", ".join(sorted({"sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh",
                                         "exp", "log", "ln", "sqrt", "abs", "floor", "ceil", "factorial",
                                         "binomial", "gamma", "min", "max"}))
    + " and the constants pi, e, I (imaginary unit), oo (infinity)."
)

_UNICODE = {
    "×": "*", "·": "*", "⋅": "*", "∙": "*", "÷": "/", "−": "-", "–": "-", "π": "pi", "∞": "oo", "√": "sqrt",
    "²": "^2", "³": "^3", "≤": "<=", "≥": ">=", "θ": "theta", "α": "alpha", "β": "beta", "λ": "lamda",
}
_ALLOWED_OPS = {"+", "-", "*", "/", "**", "^", "(", ")", ",", "%", "<", ">", "<=", ">=", "!"}
_BAD_OPS = {
    ".": "attribute access ('.' after a name)", "[": "brackets [ ]", "]": "brackets [ ]", "{": "braces { }",
    "}": "braces { }", ":": "':'", "@": "'@'", "~": "'~'", "|": "'|'", "&": "'&'", "<<": "'<<'", ">>": "'>>'",
    "//": "'//' (write / instead)", "!=": "'!=' (solve an equation with = instead)", "->": "'->'", ":=": "':='",
    "...": "'...'", "#": "comments",
}
_BANNED_NAMES = {
    "eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "globals", "locals", "vars", "input",
    "breakpoint", "help", "exit", "quit", "type", "object", "dir", "print", "import", "sympify", "lambdify",
    "os", "sys", "subprocess", "builtins",
}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


@dataclass(frozen=True)
class Result:
    """An answer in two notations: SymPy's plain text (valid input again) and LaTeX."""

    text: str
    latex: str

    def render(self) -> str:
        return f"{self.text}\nLaTeX: {self.latex}"


def _canonical_operation(value: Any) -> Any:
    if isinstance(value, str):
        key = value.strip().lower().replace(" ", "")
        return _OPERATION_ALIASES.get(key, value)
    return value


class SymPyTool(BaseTool):
    """Exact symbolic math for agents, on the expressions small models actually write (see the module docstring).

    Example: ``SymPyTool().invoke({"operation": "solve", "expression": "x^2 - 4 = 0"})`` returns the line
    ``x = -2, x = 2`` followed by ``LaTeX: x = -2, \\quad x = 2``.
    """

    name = "sympy"
    timeout = 10.0

    def setup(self) -> None:
        import sympy  # noqa: F401  (imported once here so the first timed call does not pay for it)

    def apply(
        self,
        operation: Annotated[Operation, BeforeValidator(_canonical_operation)],
        expression: str,
        variable: str | None = None,
        point: float | str | None = None,
        order: int | None = None,
        lower: float | str | None = None,
        upper: float | str | None = None,
    ) -> str:
        """Exact math with SymPy: solve equations, simplify, diff (derivative), integrate, limit,
        series (Taylor), factor, expand. Write math as on paper: x^2 - 4 = 0, 2x sin(x), e^x, sqrt(x+1).
        Example: {"operation": "solve", "expression": "x^2 = 4"} gives x = -2, x = 2.
        Returns the answer as text and LaTeX.

        Args:
            operation: what to do: solve, simplify, diff, integrate, limit, series, factor or expand.
            expression: the math, e.g. "x^2 - 5x + 6 = 0" or "sin(x)/x". For a system of equations to solve,
                separate them with ';' e.g. "x + y = 3; x - y = 1". Only the math, no words.
            variable: the variable to solve for / differentiate / integrate by, e.g. "x" ("x, y" for a system).
                Optional when the expression has one variable.
            point: for limit, where x goes, e.g. 0, "oo" (infinity) or "0+" (from the right); for series, the
                expansion point (default 0).
            order: for diff, how many times to differentiate (default 1); for series, the number of terms
                (default 6).
            lower: for a definite integral, the lower bound, e.g. 0.
            upper: for a definite integral, the upper bound, e.g. "pi".
        """
        exprs = parse_math(expression, variables=_variable_names(variable))
        return run_operation(operation, exprs, variable, point, order, lower, upper).render()


# -- parsing ---------------------------------------------------------------------------------------

def normalize(text: str) -> str:
    """Rewrite what models wrap math in (backticks, quotes, ``$``, unicode symbols, ``==``) as plain ASCII."""
    text = text.strip()
    text = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", text)
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "`'\"$":
        text = text[1:-1].strip()
    for src, dst in _UNICODE.items():
        text = text.replace(src, dst)
    text = text.replace("==", "=").replace("\r", " ").replace("\n", " ").replace("\t", " ")
    return text


def _split_top_level(text: str, separators: str) -> list[str]:
    """Split at separators outside parentheses; ``<=``/``>=`` are not split at their ``=``."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char in separators and depth == 0:
            if char == "=" and ((i > 0 and text[i - 1] in "<>!") or (i + 1 < len(text) and text[i + 1] == "=")):
                continue
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _variable_names(variable: str | None) -> list[str]:
    if variable is None or not variable.strip():
        return []
    names = [v.strip() for v in re.split(r"[,;\s]+", variable.strip().strip("()[]")) if v.strip()]
    for name in names:
        if not _NAME.match(name) or keyword.iskeyword(name) or name in _BANNED_NAMES:
            raise ToolError(f"variable {name!r} is not a valid name: use letters and digits, e.g. \"x\" or \"t\"")
    return names


def _namespace(variables: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The only names the parsed code can see: SymPy's math, the declared variables, and no builtins."""
    import sympy

    global_dict: dict[str, Any] = {"__builtins__": {}}
    for name in _INTERNAL_CALLS:
        global_dict[name] = getattr(sympy, name)
    for alias, target in {**_FUNCTIONS, **_CONSTANTS}.items():
        global_dict[alias] = getattr(sympy, target)
    global_dict["log10"] = lambda x: sympy.log(x, 10)
    global_dict["log2"] = lambda x: sympy.log(x, 2)
    local_dict: dict[str, Any] = {}
    for name in variables:
        global_dict.pop(name, None)  # a declared variable "e" or "I" is a variable, not a constant
        local_dict[name] = sympy.Symbol(name)
    return local_dict, global_dict


def _transformations() -> tuple[Any, ...]:
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        standard_transformations,
    )

    return standard_transformations + (convert_xor, implicit_multiplication_application)


def parse_math(expression: str, variables: list[str] | None = None) -> list[Any]:
    """Parse ``expression`` (``;``-separated for a system) into SymPy expressions, equations or inequalities."""
    import sympy
    from sympy.parsing.sympy_parser import eval_expr, stringify_expr

    if not isinstance(expression, str):
        raise ToolError("'expression' must be a string of math, e.g. \"x^2 - 4\"")
    if len(expression) > MAX_LENGTH:
        raise ToolError(f"expression is too long ({len(expression)} characters; at most {MAX_LENGTH}): "
                        "send one formula at a time")
    shown = expression.strip()
    text = normalize(expression)
    if not text:
        raise ToolError(f"empty expression: write the math, e.g. \"x^2 - 4 = 0\". {ALLOWED}")
    pieces = [p for p in _split_top_level(text, ";,") if p]
    if not pieces:
        raise ToolError(f"empty expression: write the math, e.g. \"x^2 - 4 = 0\". {ALLOWED}")
    if len(pieces) > MAX_EXPRESSIONS:
        raise ToolError(f"too many equations ({len(pieces)}; at most {MAX_EXPRESSIONS})")
    variables = variables or []
    results = []
    for piece in pieces:
        sides = _split_top_level(piece, "=")
        if len(sides) > 2:
            raise ToolError(f"{piece!r} has more than one '=': write one equation at a time, e.g. \"x + 1 = 3\"")
        if any(not side for side in sides):
            raise ToolError(f"{piece!r} has nothing on one side of '=': write e.g. \"x^2 = 4\"")
        parsed = []
        for side in sides:
            side = _rewrite(side, variables)
            _check_tokens(side, shown, variables)
            local_dict, global_dict = _namespace(variables)
            try:
                code = stringify_expr(side, local_dict, global_dict, _transformations())
            except (tokenize.TokenError, SyntaxError, IndexError, TypeError, ValueError):
                raise ToolError(f"cannot parse {shown!r}. {ALLOWED}") from None
            tree = _check_code(code, shown, global_dict, local_dict)
            try:
                value = eval_expr(compile(tree, "<sympy input>", "eval"), local_dict, global_dict)
            except (TypeError, SyntaxError) as exc:
                raise ToolError(f"cannot parse {shown!r}: {_hint(side, exc)}. {ALLOWED}") from None
            except (RecursionError, MemoryError):
                raise ToolError(f"{shown!r} is too deeply nested or too large to read") from None
            except Exception as exc:
                raise ToolError(f"cannot read {shown!r}: {exc}") from None
            if isinstance(value, bool) or not isinstance(value, sympy.Basic):
                raise ToolError(f"cannot parse {shown!r}: it is not a math expression. {ALLOWED}")
            parsed.append(value)
        results.append(sympy.Eq(parsed[0], parsed[1], evaluate=False) if len(parsed) == 2 else parsed[0])
    return results


_CALLABLE = "|".join(sorted({*_FUNCTIONS, "log10", "log2"}, key=len, reverse=True))
_BARE_APPLICATION = re.compile(  # "sin x", "sin^2 x", "log 2x", "sin x^2": a function name, spaces, one term
    rf"(?<![A-Za-z0-9_])({_CALLABLE})(\^\d+)?\s+"
    r"(\d*\.?\d*[A-Za-z][A-Za-z0-9]*(?:\^\d+)?|\d+(?:\.\d+)?)(?![A-Za-z0-9_(])"
)
_NAME_BEFORE_PAREN = re.compile(r"(?<![A-Za-z_.])([A-Za-z][A-Za-z0-9]*)\s*\(")


def _rewrite(text: str, variables: list[str]) -> str:
    """Make two paper habits explicit: ``sin x cos x`` is sin(x)*cos(x); ``x(x+1)`` is x*(x+1)."""
    text = _BARE_APPLICATION.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}({m.group(3)})", text)

    def times(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables or (len(name) == 1 and name not in _FUNCTIONS):
            return f"{name}*("
        return match.group(0)

    return _NAME_BEFORE_PAREN.sub(times, text)


def _hint(side: str, exc: Exception) -> str:
    if re.search(r"\b[a-z]+\s*\^\s*\d+\s*[a-z(]", side):
        return "write powers of functions as sin(x)^2, not sin^2 x"
    if "Relational" in str(exc) or "truth value" in str(exc):
        return "use one comparison at a time, e.g. x > 1; x < 3"
    return "check the parentheses and operators"


def _check_tokens(text: str, shown: str, variables: list[str]) -> None:
    """Refuse anything that is not math before SymPy's parser (which ends in ``eval``) sees it."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except tokenize.TokenError:
        raise ToolError(f"unbalanced parentheses in {shown!r}: every '(' needs a ')'") from None
    except (SyntaxError, IndentationError):
        raise ToolError(f"cannot parse {shown!r}. {ALLOWED}") from None
    known_calls = set(_FUNCTIONS) | {"log10", "log2"}
    depth = 0
    for index, token in enumerate(tokens):
        kind, value = token.type, token.string
        following = tokens[index + 1].string if index + 1 < len(tokens) else ""
        if kind in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.NUMBER):
            continue
        if kind == tokenize.STRING:
            raise ToolError(f"text in quotes ({value}) is not allowed in {shown!r}: write the math itself")
        if kind == tokenize.COMMENT:
            raise ToolError(f"'#' is not allowed in {shown!r}. {ALLOWED}")
        if kind in (tokenize.INDENT, tokenize.DEDENT):
            continue
        if kind == tokenize.NAME:
            _check_name(value, following, shown, variables, known_calls)
            continue
        if kind == tokenize.OP:
            if value in _BAD_OPS:
                raise ToolError(f"{_BAD_OPS[value]} is not allowed in {shown!r}. {ALLOWED}")
            if value not in _ALLOWED_OPS:
                raise ToolError(f"operator {value!r} is not allowed in {shown!r}. {ALLOWED}")
            depth += value == "("
            depth -= value == ")"
            if depth > 50:
                raise ToolError(f"{shown!r} is nested too deeply")
            continue
        if kind == tokenize.ERRORTOKEN and value == "!":
            continue
        if kind == tokenize.ERRORTOKEN and not value.strip():
            continue
        raise ToolError(f"character {value!r} is not allowed in {shown!r}. {ALLOWED}")


def _check_name(name: str, following: str, shown: str, variables: list[str], known_calls: set[str]) -> None:
    if name.startswith("_"):
        raise ToolError(f"names starting with '_' ({name!r}) are not allowed in {shown!r}. {ALLOWED}")
    if keyword.iskeyword(name):
        raise ToolError(f"{name!r} is a Python word, not math, in {shown!r}: use another variable name. {ALLOWED}")
    if name in _BANNED_NAMES:
        raise ToolError(f"{name!r} is not math and is not allowed in {shown!r}. {ALLOWED}")
    if not name.isascii() or not _NAME.match(name):
        raise ToolError(f"name {name!r} is not allowed in {shown!r}: use ASCII letters and digits. {ALLOWED}")
    if following == "(" and len(name) > 1 and name not in known_calls and name not in variables:
        if name.lower() in _OPERATION_ALIASES:
            raise ToolError(
                f"put only the math in 'expression' and the operation in 'operation': instead of {shown!r} send "
                f"{{\"operation\": \"{_OPERATION_ALIASES[name.lower()]}\", \"expression\": \"...\"}}"
            )
        raise ToolError(f"unknown function {name!r} in {shown!r}. {ALLOWED}")


_AST_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.Mod)
_AST_COMPARE = (ast.Lt, ast.Gt, ast.LtE, ast.GtE)


def _check_code(code: str, shown: str, global_dict: dict[str, Any], local_dict: dict[str, Any]) -> ast.Expression:
    """Second line of defence: the transformed code may only be arithmetic on whitelisted names."""
    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError:
        raise ToolError(f"cannot parse {shown!r}: check the operators and parentheses. {ALLOWED}") from None
    names = (set(global_dict) | set(local_dict)) - {"__builtins__"}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.Load, ast.operator, ast.unaryop, ast.cmpop)):
            continue
        if isinstance(node, ast.BinOp) and isinstance(node.op, _AST_BINOPS):
            continue
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            continue
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], _AST_COMPARE):
            continue
        if isinstance(node, ast.Name) and node.id in names and not node.id.startswith("_"):
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names \
                and not node.keywords:
            literal_only = node.func.id in ("Symbol", "Integer", "Float", "Rational", "Number")
            if literal_only and not all(isinstance(a, ast.Constant) and isinstance(a.value, (str, int))
                                        for a in node.args):
                raise ToolError(f"cannot parse {shown!r}. {ALLOWED}")
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)) \
                and not isinstance(node.value, bool):
            continue
        if isinstance(node, ast.Compare):
            raise ToolError(f"use one comparison at a time in {shown!r}, e.g. \"x > 1; x < 3\"")
        raise ToolError(f"{shown!r} is not plain math ({type(node).__name__} is not allowed). {ALLOWED}")
    _check_sizes(tree.body, shown)
    return tree


def _lgamma_value(x: float) -> float:
    return math.exp(math.lgamma(x)) if x > 0 else math.gamma(x)


# Float stand-ins for the functions a model may call, to bound constant subexpressions (``6^(608!)``).
_ESTIMATES: dict[str, Any] = {
    **{name: getattr(math, target) for name, target in {
        "sin": "sin", "cos": "cos", "tan": "tan", "asin": "asin", "acos": "acos", "atan": "atan",
        "arcsin": "asin", "arccos": "acos", "arctan": "atan", "atan2": "atan2", "sinh": "sinh", "cosh": "cosh",
        "tanh": "tanh", "asinh": "asinh", "acosh": "acosh", "atanh": "atanh", "exp": "exp", "sqrt": "sqrt",
        "floor": "floor", "ceiling": "ceil", "ceil": "ceil", "erf": "erf",
    }.items()},
    "gcd": lambda a, b: math.gcd(int(a), int(b)), "lcm": lambda a, b: math.lcm(int(a), int(b)),
    "cot": lambda x: 1 / math.tan(x), "sec": lambda x: 1 / math.cos(x), "csc": lambda x: 1 / math.sin(x),
    "acot": lambda x: math.atan(1 / x), "log": lambda x, base=math.e: math.log(x, base), "ln": math.log,
    "log10": math.log10, "log2": math.log2, "cbrt": lambda x: math.copysign(abs(x) ** (1 / 3), x),
    "root": lambda x, n: abs(x) ** (1 / n), "Abs": abs, "abs": abs, "sign": lambda x: math.copysign(1, x),
    "factorial": lambda n: _lgamma_value(n + 1), "gamma": _lgamma_value,
    "binomial": lambda n, k: _lgamma_value(n + 1) / (_lgamma_value(k + 1) * _lgamma_value(n - k + 1)),
    "re": lambda x: x, "im": lambda x: 0.0, "conjugate": lambda x: x, "arg": lambda x: 0.0 if x >= 0 else math.pi,
    "Min": min, "min": min, "Max": max, "max": max, "Mod": lambda x, y: abs(y), "Heaviside": lambda x: 1.0,
}


def _check_sizes(node: ast.AST, shown: str) -> float | None:
    """Refuse numbers too big to compute (``10^10^10``, ``factorial(10^6)``) before SymPy tries.

    Returns a float estimate of a constant subexpression, or None when it has variables.
    """
    if isinstance(node, ast.Constant):
        return _as_float(node.value)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        args = [_check_sizes(a, shown) for a in node.args]
        if node.func.id in ("Integer", "Float", "Rational", "Number"):
            return args[0] if len(args) == 1 else None
        if node.func.id in ("factorial", "gamma", "binomial") and args and args[0] is not None \
                and not abs(args[0]) <= MAX_FACTORIAL:
            raise ToolError(f"the {node.func.id} in {shown!r} is too large (arguments up to {MAX_FACTORIAL})")
        if node.func.id == "Symbol" or not args or any(a is None for a in args):
            return None
        estimate = _ESTIMATES.get(node.func.id)
        if estimate is None:  # a function of numbers we cannot bound: assume the worst
            return math.inf
        try:
            return float(estimate(*args))
        except OverflowError:
            return math.inf
        except (ValueError, TypeError, ZeroDivisionError):  # complex or undefined: SymPy keeps it symbolic
            return None
    if isinstance(node, ast.Name):
        return {"pi": math.pi, "E": math.e, "e": math.e}.get(node.id)
    if isinstance(node, ast.UnaryOp):
        value = _check_sizes(node.operand, shown)
        return -value if value is not None and isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Compare):
        _check_sizes(node.left, shown)
        for comparator in node.comparators:
            _check_sizes(comparator, shown)
        return None
    if isinstance(node, ast.BinOp):
        left = _check_sizes(node.left, shown)
        right = _check_sizes(node.right, shown)
        if isinstance(node.op, ast.Pow) and left is not None and right is not None and abs(left) not in (0, 1):
            # digits of the numerator or denominator: (1/2)^(10^9) is as costly as 2^(10^9); nan means "unknown"
            digits = abs(right) * abs(math.log10(abs(left))) if math.isfinite(left) else math.inf
            if not digits <= MAX_DIGITS:
                raise ToolError(f"a number in {shown!r} is too large (more than {MAX_DIGITS} digits)")
        if left is None or right is None:
            return None
        try:
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right if right else None
            if isinstance(node.op, ast.Pow):
                return float(abs(left) ** right) if abs(left) > 0 else 0.0
            return abs(right)  # Mod: the remainder is smaller than the divisor
        except (OverflowError, ZeroDivisionError, ValueError):
            return math.inf
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return math.inf
    if isinstance(value, str):
        try:
            return float(value.rstrip("jJ"))
        except ValueError:
            return None
    return None


# -- operations ------------------------------------------------------------------------------------

def _symbols_of(exprs: list[Any]) -> list[Any]:
    found: set[Any] = set()
    for expr in exprs:
        found |= expr.free_symbols
    return sorted(found, key=lambda s: s.name)


def _pick_variables(exprs: list[Any], variable: str | None, operation: str, many: bool = False) -> list[Any]:
    import sympy

    names = _variable_names(variable)
    if names:
        return [sympy.Symbol(n) for n in names]
    symbols = _symbols_of(exprs)
    if not symbols:
        if operation == "solve":
            raise ToolError("there is no variable to solve for: write an equation such as \"2x + 1 = 7\"")
        return [sympy.Symbol("x")]
    if many and len(exprs) > 1:
        return symbols
    if len(symbols) == 1:
        return symbols
    x = sympy.Symbol("x")
    if x in symbols:
        return [x]
    listed = ", ".join(s.name for s in symbols)
    raise ToolError(f"the expression has several variables ({listed}): say which one with \"variable\", "
                    f"e.g. \"variable\": \"{symbols[0].name}\"")


def _to_sympy(value: float | str | None, what: str) -> Any:
    """A bound or a point the model wrote (0, 0.5, "oo", "pi/2") as a SymPy number."""
    import sympy

    if value is None:
        return None
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return sympy.oo if value > 0 else -sympy.oo
        if float(value).is_integer():
            return sympy.Integer(int(value))
        return sympy.nsimplify(value, rational=True)
    text = str(value).strip()
    if not text:
        raise ToolError(f"'{what}' is empty: write a number such as 0 or \"oo\"")
    parsed = parse_math(text)
    if len(parsed) != 1 or isinstance(parsed[0], sympy.core.relational.Relational) or parsed[0].free_symbols:
        raise ToolError(f"'{what}' must be one number such as 0, 2.5, \"pi/2\" or \"oo\", got {text!r}")
    return parsed[0]


def _numeric_note(value: Any) -> str:
    """`` ≈ 1.41421356237`` for exact irrational numbers, so a model can compare with a decimal answer."""
    import sympy

    if value is sympy.zoo:
        return " (complex infinity: undefined, e.g. a division by zero)"
    try:
        if value.is_number and value.is_finite and not all(p.is_Rational or p.is_Float for p in value.as_real_imag()):
            return f" ≈ {value.evalf(12)}"
    except (AttributeError, TypeError, ValueError):
        return ""
    return ""


def _join(results: list[tuple[str, str]], text_sep: str = ", ", latex_sep: str = r", \quad ") -> Result:
    return Result(text_sep.join(t for t, _ in results), latex_sep.join(latex for _, latex in results))


def run_operation(operation: str, exprs: list[Any], variable: str | None, point: float | str | None,
                  order: int | None, lower: float | str | None, upper: float | str | None) -> Result:
    """Carry out ``operation``; SymPy's own failures become ToolErrors that say what to try instead."""
    import sympy

    if operation != "solve" and len(exprs) > 1:
        raise ToolError(f"{operation} takes one expression; several (separated by ';' or ',') only work with solve")
    try:
        if operation == "solve":
            return _solve(exprs, variable)
        [expr] = exprs
        if isinstance(expr, sympy.core.relational.Relational) and operation not in ("simplify", "expand", "factor"):
            raise ToolError(f"{operation} needs an expression, not an equation: write e.g. \"x^2 + 1\" without '='")
        if operation == "simplify":
            return _single(sympy.simplify(expr))
        if operation == "factor":
            return _single(sympy.factor(expr))
        if operation == "expand":
            _check_expand(expr)
            return _single(sympy.expand(expr))
        [var] = _pick_variables(exprs, variable, operation)[:1]
        if operation == "diff":
            times = 1 if order is None else order
            if not 1 <= times <= MAX_DIFF_ORDER:
                raise ToolError(f"'order' for diff is how many times to differentiate: 1 to {MAX_DIFF_ORDER}")
            return _single(sympy.diff(expr, var, times))
        if operation == "integrate":
            return _integrate(expr, var, lower, upper)
        if operation == "limit":
            return _limit(expr, var, point)
        if operation == "series":
            terms = 6 if order is None else order
            if not 1 <= terms <= MAX_SERIES_ORDER:
                raise ToolError(f"'order' for series is the number of terms: 1 to {MAX_SERIES_ORDER}")
            at = _to_sympy(point, "point") if point is not None else sympy.Integer(0)
            return _single(sympy.series(expr, var, at, terms))
    except ToolError:
        raise
    except NotImplementedError as exc:
        raise ToolError(f"sympy cannot {operation} this ({exc or 'not implemented'}); try simplifying it first "
                        "or another operation") from None
    except (RecursionError, MemoryError):
        raise ToolError(f"{operation} ran out of resources on this input: try a smaller one") from None
    except ValueError as exc:
        if "digits" in str(exc):  # Python's limit on printing huge integers
            raise ToolError(f"the result of {operation} is too large to show (thousands of digits)") from None
        raise ToolError(f"sympy could not {operation} this: {exc}") from None
    except Exception as exc:
        raise ToolError(f"sympy could not {operation} this: {type(exc).__name__}: {exc}") from None
    raise ToolError(f"unknown operation {operation!r}: use one of {', '.join(OPERATIONS)}")


def _single(value: Any) -> Result:
    import sympy

    return Result(f"{sympy.sstr(value)}{_numeric_note(value)}", sympy.latex(value))


def _check_expand(expr: Any) -> None:
    import sympy

    for power in expr.atoms(sympy.Pow):
        exponent = power.exp
        if exponent.is_Integer and abs(int(exponent)) > MAX_EXPAND_POWER and power.base.is_Add:
            raise ToolError(f"expanding a power above {MAX_EXPAND_POWER} gives too many terms: "
                            "use factor or simplify, or a smaller power")


def _solve(exprs: list[Any], variable: str | None) -> Result:
    import sympy

    variables = _pick_variables(exprs, variable, "solve", many=True)
    if any(isinstance(e, (sympy.StrictLessThan, sympy.StrictGreaterThan, sympy.LessThan, sympy.GreaterThan))
           for e in exprs):
        if len(variables) != 1:
            raise ToolError("inequalities can be solved for one variable at a time: set \"variable\"")
        solved = sympy.solve(exprs if len(exprs) > 1 else exprs[0], variables[0])
        return Result(sympy.sstr(solved), sympy.latex(solved))
    equations = [e if isinstance(e, sympy.Eq) else sympy.Eq(e, 0) for e in exprs]
    solutions = sympy.solve(equations, variables, dict=True)
    if not solutions:
        names = ", ".join(v.name for v in variables)
        return Result(f"no solution for {names}", r"\emptyset")
    sets = []
    for solution in solutions:
        pairs = []
        for var in variables:
            if var in solution:
                value = solution[var]
                pairs.append((f"{var} = {sympy.sstr(value)}{_numeric_note(value)}",
                              f"{sympy.latex(var)} = {sympy.latex(value)}"))
        free = [v.name for v in variables if v not in solution]
        if free:
            pairs.append((f"({', '.join(free)} free)", rf"\text{{({', '.join(free)} free)}}"))
        sets.append(_join(pairs))
    if len(variables) == 1:
        return _join([(s.text, s.latex) for s in sets])
    return _join([(s.text, s.latex) for s in sets], text_sep="; or ", latex_sep=r" \quad\text{or}\quad ")


def _integrate(expr: Any, var: Any, lower: float | str | None, upper: float | str | None) -> Result:
    import sympy

    if (lower is None) != (upper is None):
        raise ToolError("a definite integral needs both 'lower' and 'upper' (leave both out for an antiderivative)")
    if lower is None:
        value = sympy.integrate(expr, var)
        if value.has(sympy.Integral):
            raise ToolError(f"sympy found no closed form for the integral of {sympy.sstr(expr)}; "
                            "give 'lower' and 'upper' for a definite integral or rewrite the integrand")
        return Result(f"{sympy.sstr(value)} + C", f"{sympy.latex(value)} + C")
    low, high = _to_sympy(lower, "lower"), _to_sympy(upper, "upper")
    value = sympy.integrate(expr, (var, low, high))
    if value.has(sympy.Integral):
        numeric = sympy.Integral(expr, (var, low, high)).evalf(12)
        if numeric.is_number:
            return Result(f"≈ {numeric} (no closed form found)", sympy.latex(numeric))
        raise ToolError(f"sympy could not integrate {sympy.sstr(expr)} from {low} to {high}")
    return _single(value)


def _limit(expr: Any, var: Any, point: float | str | None) -> Result:
    import sympy

    if point is None:
        raise ToolError("limit needs 'point', where the variable goes: e.g. 0, \"oo\", or \"0+\" from the right")
    direction = "+-"
    if isinstance(point, str):
        text = point.strip()
        if len(text) > 1 and text[-1] in "+-" and text not in ("+oo", "-oo"):
            direction, point = text[-1], text[:-1]
    at = _to_sympy(point, "point")
    if direction == "+-" and at.is_infinite:
        direction = "-" if at == sympy.oo else "+"
    try:
        value = sympy.limit(expr, var, at, direction)
    except ValueError as exc:
        raise ToolError(f"the two-sided limit does not exist ({exc}); ask for one side with point \"{at}+\" "
                        f"or \"{at}-\"") from None
    if isinstance(value, sympy.calculus.accumulationbounds.AccumulationBounds):
        return Result(f"no limit: the values oscillate within {sympy.sstr(value)}", sympy.latex(value))
    if value is sympy.nan:
        return Result("the limit does not exist", r"\text{does not exist}")
    if value is sympy.zoo:
        return Result(f"no finite limit: the size grows without bound (zoo); for one side use point \"{at}+\" "
                      f"or \"{at}-\"", r"\tilde{\infty}")
    return _single(value)
