"""Final answers: find them in model text, normalise them, and decide whether two are the same.

Equivalence is tried from cheap to expensive: exact text after normalisation, numbers (relative tolerance
1e-4, absolute 1e-6; fractions and percentages included), tuples element by element, then symbolic equality
with sympy (``simplify(a - b) == 0``) under a time budget. Percentages: ``50%`` equals ``50`` and ``0.5``, as the
GSM8K and MATH graders people compare against accept both readings. Nothing here raises on model junk.
"""

from __future__ import annotations

import math
import re
import threading
from fractions import Fraction

REL_TOL, ABS_TOL = 1e-4, 1e-6
SYMPY_TIMEOUT_S = 3.0

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?|-?\.\d+", re.IGNORECASE)
_UNITS = re.compile(
    r"\\(?:text|mbox|mathrm)\{\s*(?:dollars?|cents?|units?|cm|m|km|inches|inch|feet|ft|hours?|minutes?|"
    r"seconds?|degrees?|meters?|miles?|pounds?|kg|g|years?|days?|weeks?)\s*\}|"
    r"\b(?:dollars?|cents?|units?|inches|hours?|minutes?|seconds?|degrees?|meters?|miles?|pounds?|years?|"
    r"days?|weeks?)\b",
    re.IGNORECASE,
)


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{}``), nested braces kept."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text or "")]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start:i - 1].strip()
    match = re.search(r"\\boxed\s+([^\s$]+)", text or "")
    return match.group(1) if match else None


def extract_answer(text: str) -> str | None:
    """The final answer in a model's text: ``\\boxed{}``, then ``#### x``, then "the answer is x", then the last number."""
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed:
        return boxed
    hashes = re.findall(r"####\s*([^\n]+)", text)
    if hashes:
        return hashes[-1].strip()
    said = re.findall(r"answer is[:\s]*\$?([^\n]+?)(?:\$|\.\s|\.$|$)", text, re.IGNORECASE | re.MULTILINE)
    if said:
        return said[-1].strip()
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def normalize(answer: str) -> str:
    """Strip what does not change the value: $, \\text{units}, thousands commas, \\!, ^\\circ, spacing, x =."""
    text = str(answer).strip().replace("\\$", "")
    text = text.strip("$").strip()
    text = re.sub(r"\\(?:left|right|displaystyle|!|,|;|:)", "", text)
    text = text.replace("\\%", "%").replace("^\\circ", "").replace("^{\\circ}", "").replace("°", "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _UNITS.sub("", text)
    text = re.sub(r"\\text\{\s*([^}]*)\}", r"\1", text)
    text = re.sub(r"^[a-zA-Z]\s*=\s*", "", text)  # "x = 3"
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = text.rstrip(".").strip()
    return re.sub(r"\s+", "", text)


def to_number(text: str) -> float | None:
    """A plain number, fraction (``3/4``, ``\\frac{3}{4}``, ``-\\frac34``) or percentage, as a float."""
    value = text.strip()
    percent = value.endswith("%")
    value = value.rstrip("%")
    frac = re.fullmatch(r"(-?)\\frac\{?(-?\d+(?:\.\d+)?)\}?\{?(-?\d+(?:\.\d+)?)\}?", value)
    try:
        if frac:
            number = float(Fraction(frac.group(2)) / Fraction(frac.group(3)))
            number = -number if frac.group(1) else number
        elif re.fullmatch(r"-?\d+(?:\.\d+)?/-?\d+(?:\.\d+)?", value):
            top, bottom = value.split("/")
            number = float(Fraction(top) / Fraction(bottom))
        elif _NUMBER.fullmatch(value):
            number = float(value.replace(",", ""))
        else:
            return None
    except (ValueError, ZeroDivisionError):
        return None
    return number / 100 if percent else number


def numbers_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def _split_tuple(text: str) -> list[str] | None:
    if len(text) >= 2 and text[0] in "([" and text[-1] in ")]":
        inner, depth, parts, current = text[1:-1], 0, [], ""
        for ch in inner:
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(current)
                current = ""
            else:
                current += ch
        parts.append(current)
        return parts if len(parts) > 1 else None
    return None


def is_equivalent(predicted: str | None, gold: str | None) -> bool:
    """Whether ``predicted`` is the same answer as ``gold``."""
    if predicted is None or gold is None:
        return False
    try:
        return _equivalent(normalize(predicted), normalize(gold))
    except Exception:
        return False


def _equivalent(a: str, b: str) -> bool:
    if not a or not b:
        return False
    if a == b:
        return True
    x, y = to_number(a), to_number(b)
    if x is not None and y is not None:
        if numbers_equal(x, y):
            return True
        # a percentage may be written with or without its sign: 50% == 50
        if a.endswith("%") != b.endswith("%"):
            bare_x, bare_y = to_number(a.rstrip("%")), to_number(b.rstrip("%"))
            return bare_x is not None and bare_y is not None and numbers_equal(bare_x, bare_y)
        return False
    left, right = _split_tuple(a), _split_tuple(b)
    if left is not None and right is not None:
        return len(left) == len(right) and all(_equivalent(p, q) for p, q in zip(left, right))
    return _symbolically_equal(a, b)


def _to_sympy(text: str):
    import sympy
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    if "\\" in text or "{" in text:
        try:
            from sympy.parsing.latex import parse_latex

            return parse_latex(text)
        except Exception:
            text = _latex_to_plain(text)
    if not re.fullmatch(r"[\w\s+\-*/^().,=]+", text, re.ASCII) or "__" in text or len(text) > 200:
        return None
    if re.search(r"[A-Za-z_]\s*\.", text):  # attribute access is never math
        return None
    transformations = standard_transformations + (implicit_multiplication_application, convert_xor)
    return parse_expr(text, transformations=transformations, local_dict={"pi": sympy.pi, "e": sympy.E})


def _latex_to_plain(text: str) -> str:
    text = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", text)
    text = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", text)
    text = re.sub(r"\\sqrt(\d)", r"sqrt(\1)", text)
    text = text.replace("\\cdot", "*").replace("\\times", "*").replace("\\pi", "pi").replace("{", "(")
    return text.replace("}", ")").replace("\\", "")


def _symbolically_equal(a: str, b: str) -> bool:
    box: dict[str, bool] = {}

    def work() -> None:
        import sympy

        try:
            left, right = _to_sympy(a), _to_sympy(b)
            box["equal"] = left is not None and right is not None and bool(sympy.simplify(left - right) == 0)
        except Exception:  # unparseable or incomparable: not equal
            box["equal"] = False

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(SYMPY_TIMEOUT_S)
    return box.get("equal", False)
