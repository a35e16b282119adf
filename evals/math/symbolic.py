"""Symbolic equality of two answers with sympy, run in a worker process that can be killed.

sympy on model junk can take unbounded time: ``9^9^9`` is one big-integer power that holds the GIL, so a thread
with a join timeout cannot stop it (the caller stalls too). The comparison therefore runs in a child process that
is killed and restarted when it overruns its time budget (it also has a 2 GiB address-space cap). The child runs
this file by path and imports only the standard library and sympy.

LaTeX is read with ``sympy.parsing.latex.parse_latex`` when its ANTLR runtime is installed and works (checked once
per process), otherwise with :func:`latex_to_sympy_text`, a small converter for what answers use: ``\\frac``,
``\\sqrt`` (also ``\\sqrt[n]{}``), ``^``, ``\\cdot``, ``\\times``, ``\\pi``, ``\\infty`` and a few functions.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import subprocess
import sys
import threading
from typing import Any

#: Longest answer text handed to sympy; longer ones are not compared symbolically.
MAX_CHARS = 200
#: Address-space cap of the worker process.
WORKER_MEMORY_BYTES = 2 << 30
#: Time the worker may take to start (it imports sympy).
WORKER_START_S = 60.0

_LOG = logging.getLogger(__name__)

_COMMANDS = {
    "cdot": "*", "times": "*", "div": "/", "pi": "pi", "infty": "oo", "sin": "sin", "cos": "cos", "tan": "tan",
    "cot": "cot", "sec": "sec", "csc": "csc", "arcsin": "asin", "arccos": "acos", "arctan": "atan", "ln": "log",
    "log": "log", "exp": "exp",
}
_SAFE_TEXT = re.compile(r"[\w\s+\-*/^().,=]+", re.ASCII)
_SYMPY_NAMES = (
    "Add", "Mul", "Pow", "Integer", "Float", "Rational", "Symbol", "Function", "sqrt", "pi", "E", "I", "oo", "sin",
    "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "log", "exp", "Abs", "factorial", "binomial",
)


class _Unsupported(ValueError):
    """The LaTeX uses something the fallback converter does not know."""


def _matching(text: str, start: int, open_: str = "{", close: str = "}") -> int:
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_:
            depth += 1
        elif text[i] == close:
            depth -= 1
            if depth == 0:
                return i
    raise _Unsupported("unbalanced braces")


def _argument(text: str, i: int) -> tuple[str, int]:
    """One argument of a command or ``^``: a braced group, a command, or a single character."""
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        raise _Unsupported("missing argument")
    if text[i] == "{":
        end = _matching(text, i)
        return _convert(text[i + 1:end]), end + 1
    if text[i] == "\\":
        match = re.match(r"\\([A-Za-z]+)", text[i:])
        if not match or match.group(1) not in _COMMANDS:
            raise _Unsupported(text[i:i + 12])
        return _COMMANDS[match.group(1)], i + match.end()
    return text[i], i + 1


def _convert(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            match = re.match(r"\\([A-Za-z]+)", text[i:])
            if not match:
                raise _Unsupported(text[i:i + 2])
            name, i = match.group(1), i + match.end()
            if name in ("frac", "dfrac", "tfrac"):
                top, i = _argument(text, i)
                bottom, i = _argument(text, i)
                out.append(f"(({top})/({bottom}))")
            elif name == "sqrt" and text[i:i + 1] == "[":
                end = _matching(text, i, "[", "]")
                degree = _convert(text[i + 1:end])
                radicand, i = _argument(text, end + 1)
                out.append(f"(({radicand})**(1/({degree})))")
            elif name == "sqrt":
                radicand, i = _argument(text, i)
                out.append(f"sqrt({radicand})")
            elif name in _COMMANDS:
                out.append(f" {_COMMANDS[name]} ")
            else:
                raise _Unsupported(name)
        elif char == "{":
            end = _matching(text, i)
            out.append(f"({_convert(text[i + 1:end])})")
            i = end + 1
        elif char == "}":
            raise _Unsupported("unbalanced braces")
        elif char == "^":
            exponent, i = _argument(text, i + 1)
            out.append(f"**({exponent})")
        elif char == "_":
            subscript, i = _argument(text, i + 1)
            out.append("_" + re.sub(r"\W", "", subscript))
        else:
            out.append(char)
            i += 1
    return "".join(out)


def latex_to_sympy_text(latex: str) -> str | None:
    """LaTeX math as text ``sympy.parse_expr`` reads, or ``None`` when it uses something unsupported."""
    try:
        return _convert(latex).strip()
    except _Unsupported:
        return None


_latex_parser: bool | None = None


def have_latex_parser() -> bool:
    """Whether sympy's LaTeX parser works here (it needs ``antlr4-python3-runtime`` 4.11)."""
    global _latex_parser
    if _latex_parser is None:
        try:
            from sympy.parsing.latex import parse_latex

            _latex_parser = parse_latex("1") == 1
        except Exception:  # ImportError, or sympy's complaint about a missing / mismatched ANTLR runtime
            _latex_parser = False
    return _latex_parser


def _parse_plain(text: str) -> Any:
    """``parse_expr`` on vetted text, with a namespace of math names only (it evaluates Python)."""
    import sympy
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    if not _SAFE_TEXT.fullmatch(text) or "__" in text or re.search(r"[A-Za-z_]\s*\.", text):
        return None
    namespace: dict[str, Any] = {"__builtins__": {}}
    namespace.update({name: getattr(sympy, name) for name in _SYMPY_NAMES})
    transformations = standard_transformations + (implicit_multiplication_application, convert_xor)
    return parse_expr(text, local_dict={"e": sympy.E}, global_dict=namespace, transformations=transformations)


def to_expr(text: str, *, latex_parser: bool | None = None) -> Any:
    """A sympy expression for an answer, or ``None`` when it cannot be read."""
    if len(text) > MAX_CHARS:
        return None
    if "\\" in text or "{" in text:
        use_parser = have_latex_parser() if latex_parser is None else latex_parser
        if use_parser:
            from sympy.parsing.latex import parse_latex

            try:
                return _constants(parse_latex(text))
            except Exception:
                pass
        converted = latex_to_sympy_text(text)
        if converted is None:
            return None
        text = converted
    expr = _parse_plain(text)
    return None if expr is None else _constants(expr)


def _constants(expr: Any) -> Any:
    """``pi``, ``i`` and ``e`` as the constants (sympy's LaTeX parser leaves them symbols), as answers mean them."""
    import sympy

    return expr.subs({sympy.Symbol("pi"): sympy.pi, sympy.Symbol("i"): sympy.I, sympy.Symbol("e"): sympy.E})


def symbolically_equal(a: str, b: str, *, latex_parser: bool | None = None, rel_tol: float = 1e-4) -> bool:
    """``simplify(a - b) == 0``, or numerically close when neither has free symbols. No time limit: see
    :func:`compare` for the guarded call."""
    import sympy

    try:
        left, right = to_expr(a, latex_parser=latex_parser), to_expr(b, latex_parser=latex_parser)
        if left is None or right is None:
            return False
        if sympy.simplify(left - right) == 0:
            return True
        if not left.free_symbols and not right.free_symbols:
            x, y = complex(sympy.N(left)), complex(sympy.N(right))
            return abs(x - y) <= max(rel_tol * max(abs(x), abs(y)), 1e-6)
    except Exception:  # unparseable, relations, sets, overflow: not shown equal
        return False
    return False


class SympyWorker:
    """A child process answering ``symbolically_equal`` requests one at a time; killed when it overruns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.restarts = 0
        self.latex_parser: bool | None = None

    def _start(self) -> subprocess.Popen[str] | None:
        self._lines = queue.Queue()
        try:
            process = subprocess.Popen([sys.executable, os.path.abspath(__file__)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        except OSError as exc:
            _LOG.warning("cannot start the sympy worker (%s): symbolic answers compare as unequal", exc)
            return None
        lines = self._lines
        threading.Thread(target=_pump, args=(process, lines), daemon=True, name="sympy-worker-reader").start()
        try:
            ready = json.loads(lines.get(timeout=WORKER_START_S) or "{}")
        except (queue.Empty, json.JSONDecodeError):
            ready = {}
        if not ready.get("ready"):
            _LOG.warning("the sympy worker did not start (is sympy installed?): symbolic answers compare as unequal")
            _kill(process)
            return None
        self.latex_parser = bool(ready.get("latex_parser"))
        return process

    def compare(self, a: str, b: str, timeout: float) -> bool:
        """Whether ``a`` and ``b`` are symbolically equal; ``False`` when the worker takes longer than ``timeout``."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._process = self._start()
            process = self._process
            if process is None or process.stdin is None:
                return False
            try:
                process.stdin.write(json.dumps({"a": a, "b": b}) + "\n")
                process.stdin.flush()
                line = self._lines.get(timeout=timeout)
            except (OSError, queue.Empty):
                line = None
            if line is None:  # overran, or died (e.g. the memory cap): start afresh next time
                _kill(process)
                self._process = None
                self.restarts += 1
                return False
            try:
                return bool(json.loads(line).get("equal"))
            except json.JSONDecodeError:
                return False

    def close(self) -> None:
        with self._lock:
            if self._process is not None:
                _kill(self._process)
                self._process = None


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line)
    lines.put(None)


def _kill(process: subprocess.Popen[str]) -> None:
    process.kill()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    for stream in (process.stdin, process.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


_worker: SympyWorker | None = None
_worker_lock = threading.Lock()


def shared_worker() -> SympyWorker:
    """The process-wide worker (started on first use, closed at exit)."""
    global _worker
    with _worker_lock:
        if _worker is None:
            import atexit

            _worker = SympyWorker()
            atexit.register(_worker.close)
        return _worker


def compare(a: str, b: str, timeout: float) -> bool:
    """:func:`symbolically_equal` in the shared worker, under a time budget."""
    return shared_worker().compare(a, b, timeout)


def _serve() -> None:
    """The worker's loop: one JSON request per line on stdin, one JSON answer per line on stdout."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    import sympy  # noqa: F401  (imported before saying ready, so the first request is not slowed by it)

    print(json.dumps({"ready": True, "latex_parser": have_latex_parser()}), flush=True)
    for line in sys.stdin:
        try:
            request = json.loads(line)
            equal = symbolically_equal(str(request["a"]), str(request["b"]))
        except (MemoryError, RecursionError, ValueError, KeyError, TypeError):
            equal = False
        print(json.dumps({"equal": equal}), flush=True)


if __name__ == "__main__":
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)  # this directory's modules (data.py, report.py, ...) must not shadow anything
    _serve()
