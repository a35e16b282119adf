"""Final answers: find them in model text, normalise them, and decide whether two are the same.

Equivalence is tried from cheap to expensive: equal text after :func:`normalize`, numbers (relative tolerance
1e-4, absolute 1e-6; ``3/4``, ``\\frac{3}{4}``, ``\\dfrac34``, ``0.75``, mixed numbers ``2\\frac{1}{4}``; two
integers compare exactly, as the tolerance would otherwise let 64001 pass for 64000),
bracketed tuples and intervals element by element (the brackets must match), bare comma lists (``3, 5, 7``: MATH's
"enter all solutions") as unordered, then sympy (``simplify(a - b) == 0``) in a worker process under a time budget
(:mod:`agentkit.evals.math.symbolic`).

Percentages: when exactly one side carries ``%``, the bare numbers are compared too, so ``50%`` equals both ``0.5``
and ``50``. GSM8K gold answers never carry the sign ("what percent ..." → ``50``) while models often write it, and
the graders people compare against accept both readings (InternLM's accepts gold×100 and gold/100 for any
number). Without a ``%`` on either side, ``0.5`` and ``50`` stay different.

Nothing here raises on model junk: a text that cannot be read is simply not equal to anything but itself.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

REL_TOL, ABS_TOL = 1e-4, 1e-6
#: Seconds one symbolic comparison may take before it counts as unequal.
SYMPY_TIMEOUT_S = 3.0

_PLAIN_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?"
_INTEGER = re.compile(r"[+-]?\d{1,400}")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?")
_NUMBER_IN_TEXT = re.compile(
    r"-?\d+(?:\.\d+)?/\d+(?:\.\d+)?(?![\d.])|-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|-?\d+(?:\.\d+)?|-?\.\d+"
)
_UNIT_WORDS = (
    "dollars?|cents?|units?|square|cubic|sq|cm|mm|km|m|inches|inch|in|feet|foot|ft|yards?|miles?|mph|meters?|"
    "kilometers?|centimeters?|hours?|hrs?|minutes?|mins?|seconds?|secs?|days?|weeks?|months?|years?|degrees?|"
    "pounds?|lbs?|ounces?|oz|kg|grams?|g|liters?|l|ml|gallons?|percent|points?|people|students?|times"
)
_TEXT_UNIT = re.compile(rf"\\(?:text|mbox|mathrm)\{{\s*(?:{_UNIT_WORDS})(?:\s+(?:{_UNIT_WORDS}))*\s*\}}(?:\^\d)?$",
                        re.IGNORECASE)
_WORD_UNIT = re.compile(rf"^({_PLAIN_NUMBER}|{_THOUSANDS.pattern})\s*(?:[a-zA-Z][a-zA-Z.\s]*)$", re.IGNORECASE)
_MATH_WORDS = {"pi", "sqrt", "i", "e", "inf", "infty", "x", "y", "z", "n", "k"}


def last_boxed(text: str | None) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{}``), nested braces kept; ``\\boxed 5`` too."""
    if not text:
        return None
    for match in reversed(list(re.finditer(r"\\(?:boxed|fbox)\s*(\{)?", text))):
        if match.group(1) is None:
            bare = re.match(r"\s*([^\s$]+)", text[match.end():])
            if bare:
                return bare.group(1)
            continue
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[match.end():i - 1].strip()
    return None


def extract_answer(text: str | None) -> str | None:
    """The final answer in a model's text: the last ``\\boxed{}``, else ``#### x``, else "the answer is x", else
    the last number. ``None`` when there is nothing that looks like an answer."""
    if not text or not isinstance(text, str):
        return None
    boxed = last_boxed(text)
    if boxed:
        return boxed
    hashes = re.findall(r"####\s*([^\n]+)", text)
    if hashes and hashes[-1].strip():
        return hashes[-1].strip()
    said = re.findall(r"answer is\s*:?\s*(.+?)(?:\.\s|\.?\s*$)", text, re.IGNORECASE | re.MULTILINE)
    if said:
        answer = said[-1].strip()
        inline = re.fullmatch(r"\$+(.+?)\$+", answer)
        return inline.group(1).strip() if inline else answer
    numbers = _NUMBER_IN_TEXT.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def _fix_shorthand(text: str) -> str:
    """``\\frac12`` → ``\\frac{1}{2}``, ``\\sqrt2`` → ``\\sqrt{2}`` (single-character arguments, as in TeX)."""
    text = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac(\d)(?=\{)", r"\\frac{\1}", text)
    text = re.sub(r"\\frac(\{[^{}]*\})(\d)", r"\\frac\1{\2}", text)
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", text)


def normalize(answer: str) -> str:
    """Strip what does not change the value: ``$``, units (``\\text{ cm}``, "dollars"), thousands commas,
    ``\\!`` and other spacing, ``\\left``/``\\right``, ``^\\circ``, a leading ``x =``, spaces; ``\\%`` → ``%``,
    ``\\dfrac`` → ``\\frac``."""
    text = str(answer).replace("\n", " ").replace("\u2212", "-").strip()
    text = text.replace("\\$", "").replace("$", "").strip()
    text = re.sub(r"\\(?:left|right|displaystyle|bigl?|bigr?|Bigl?|Bigr?)(?![A-Za-z])", "", text)
    text = re.sub(r"\\[!,;: ]", "", text)
    text = text.replace("\\%", "%").replace("^{\\circ}", "").replace("^\\circ", "").replace("°", "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\cfrac", "\\frac")
    text = re.sub(r"\s+", " ", text).strip().rstrip(".").strip()
    without_unit = _TEXT_UNIT.sub("", text).strip()
    text = without_unit or text
    text = re.sub(r"\\(?:text|textbf|mathrm|mathbf|mbox)\{([^{}]*)\}", r"\1", text)
    word_unit = _WORD_UNIT.match(text)
    if word_unit and text[word_unit.end(1):].strip().lower() not in _MATH_WORDS:
        text = word_unit.group(1)
    text = re.sub(r"^[A-Za-z](?:_\{?\w+\}?)?\s*(?:=|\\in)\s*(?=\S)", "", text)
    text = text.replace(" ", "")
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    return _fix_shorthand(text)


def to_number(text: str) -> float | None:
    """A number, fraction (``3/4``, ``\\frac{3}{4}``, ``-\\frac{1}{3}``), mixed number (``2\\frac{1}{4}``) or
    percentage (``50%`` → 0.5) as a float; ``None`` for anything else. Expects text from :func:`normalize`."""
    value = text.strip()
    percent = value.endswith("%")
    value = value[:-1] if percent else value
    try:
        number = _exact_number(value)
        return None if number is None else float(number / 100 if percent else number)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def _exact_number(value: str) -> Fraction | None:
    if re.fullmatch(_PLAIN_NUMBER, value, re.IGNORECASE):
        exponent = re.search(r"e([+-]?\d+)$", value, re.IGNORECASE)
        if len(value) > 400 or (exponent and abs(int(exponent.group(1))) > 400):
            return None  # Fraction("1e999999999") would build a billion-digit integer
        return Fraction(value.lstrip("+"))
    number = r"\d+(?:\.\d+)?"
    slash = re.fullmatch(rf"([+-]?{number})/([+-]?{number})", value)
    if slash:
        return Fraction(slash.group(1)) / Fraction(slash.group(2))
    frac = re.fullmatch(rf"([+-]?)(\d+)?\\frac\{{(-?{number})\}}\{{(-?{number})\}}", value)
    if frac:
        sign, whole, top, bottom = frac.groups()
        fraction = Fraction(top) / Fraction(bottom)
        if whole is not None:  # a mixed number, as MATH writes them
            if fraction < 0:
                return None
            fraction += int(whole)
        return -fraction if sign == "-" else fraction
    return None


def numbers_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def _top_level_split(inner: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in inner:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def split_group(text: str) -> tuple[str, list[str], str] | None:
    """``(1,2]`` → ``("(", ["1", "2"], "]")``: a bracketed tuple or interval whose first bracket closes at the
    end; ``None`` for anything else (``(1+2)*(3+4)`` is not a group)."""
    if text.startswith("\\{") and text.endswith("\\}"):
        text = "{" + text[2:-2] + "}"
    if len(text) < 2 or text[0] not in "([{" or text[-1] not in ")]}":
        return None
    depth = 0
    for i, char in enumerate(text):
        depth += 1 if char in "([{" else -1 if char in ")]}" else 0
        if depth == 0 and i < len(text) - 1:
            return None
    parts = _top_level_split(text[1:-1])
    return (text[0], parts, text[-1]) if len(parts) > 1 else None


def _matched_unordered(left: list[str], right: list[str]) -> bool:
    remaining = list(right)
    for item in left:
        match = next((j for j, other in enumerate(remaining) if _equivalent(item, other)), None)
        if match is None:
            return False
        remaining.pop(match)
    return not remaining


def is_equivalent(predicted: str | None, gold: str | None, *, timeout_s: float = SYMPY_TIMEOUT_S) -> bool:
    """Whether ``predicted`` is the same answer as ``gold`` (see the module docstring for the rules)."""
    if not isinstance(predicted, str) or not isinstance(gold, str):
        return False
    try:
        return _equivalent(normalize(predicted), normalize(gold), timeout_s)
    except Exception:  # model junk must never stop grading
        return False


def _equivalent(a: str, b: str, timeout_s: float = SYMPY_TIMEOUT_S) -> bool:
    if not a or not b:
        return False
    if a == b:
        return True
    x, y = to_number(a), to_number(b)
    if x is not None and y is not None:
        if _INTEGER.fullmatch(a) and _INTEGER.fullmatch(b):  # counts are exact: 64001 is not 64000
            return int(a) == int(b)
        if numbers_equal(x, y):
            return True
        if a.endswith("%") != b.endswith("%"):  # 50% == 50: see the module docstring
            bare_x, bare_y = to_number(a.rstrip("%")), to_number(b.rstrip("%"))
            return bare_x is not None and bare_y is not None and numbers_equal(bare_x, bare_y)
        return False
    left, right = split_group(a), split_group(b)
    if left is not None or right is not None:
        if left is None or right is None:
            return False
        if left[0] == right[0] == "{" and left[2] == right[2] == "}":  # sets
            return _matched_unordered(left[1], right[1])
        return (left[0], left[2]) == (right[0], right[2]) and len(left[1]) == len(right[1]) and all(
            _equivalent(p, q, timeout_s) for p, q in zip(left[1], right[1]))
    left_items, right_items = _top_level_split(a), _top_level_split(b)
    if len(left_items) > 1 or len(right_items) > 1:
        return len(left_items) == len(right_items) and _matched_unordered(left_items, right_items)
    if re.fullmatch(r"[A-Za-z ]+", a) and re.fullmatch(r"[A-Za-z ]+", b) and (len(a) > 1 or len(b) > 1):
        return a.casefold() == b.casefold()  # names and words: no algebra on "Evelyn"
    return _symbolically_equal(a, b, timeout_s)


_WORTH_SYMPY = re.compile(r"[\w\\{}()\[\]^+\-*/.,=!| ]+", re.ASCII)


def _symbolically_equal(a: str, b: str, timeout_s: float) -> bool:
    from agentkit.evals.math import symbolic

    for text in (a, b):
        if len(text) > symbolic.MAX_CHARS or not _WORTH_SYMPY.fullmatch(text):
            return False
    return symbolic.compare(a, b, timeout_s)
