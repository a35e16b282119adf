"""Lenient readers for model output, with T-Eval v1's rules (they decide what counts as "parsed").

``load_structured`` cuts the text to the outermost ``start``..``end`` characters and tries Python literal syntax,
then JSON, then JSON with single quotes swapped for double quotes, as the upstream ``format_load`` does, so a
model that writes Python dicts or JSON scores the same. ``match_template`` reads fields out of text shaped like
``"Thought: {thought}\\nAction: {action}"``.
"""

from __future__ import annotations

import ast
import json
import re
from string import Formatter
from typing import Any

__all__ = ["ParseFailure", "load_structured", "match_template"]


class ParseFailure(ValueError):
    """The text holds no Python literal or JSON value where one was expected."""


def load_structured(text: Any, start: str = "", end: str = "") -> Any:
    """The value written in ``text``; values that are not strings are returned as they are (already parsed)."""
    if not isinstance(text, str):
        return text
    fence = "```json"
    if fence in text:
        text = text[text.find(fence) + len(fence):].strip("`")
    if start:
        text = text[text.find(start):]  # no start character: find is -1 and only the last character stays
    if end:
        text = text[:text.rfind(end) + len(end)]
    for attempt in (ast.literal_eval, json.loads, lambda s: json.loads(s.replace("'", '"'))):
        try:
            return attempt(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    raise ParseFailure(f"no literal or JSON value in {text[:80]!r}")


def match_template(template: str, text: str) -> dict[str, str] | None:
    """Fields of ``template`` (``{name}`` placeholders) read from ``text``; ``None`` when the text does not fit.

    Each placeholder matches greedily across lines. Unlike upstream, the literal parts are escaped, so a
    template with regex characters (``(``, ``?``) still matches literally.
    """
    keys: list[str] = []
    pattern = ""
    for literal, field, _spec, _conv in Formatter().parse(template):
        pattern += re.escape(literal)
        if field is not None:
            keys.append(field)
            pattern += "(.*)"
    found = re.findall(pattern, text, re.S)
    if not found:
        return None
    values = found[0] if isinstance(found[0], tuple) else (found[0],)
    return dict(zip(keys, values))
