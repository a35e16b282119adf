"""Tolerant JSON for what small models write, and JSON written so it cannot break a prompt.

Small models write almost-JSON: single quotes, trailing commas, Python ``True``/``None``, unquoted
keys, a missing closing brace at the end of their output, code fences, a sentence before or after
the object. :func:`loads` accepts all of that and, when it cannot, raises ``ValueError`` (and only
``ValueError``) with a message that says what was wrong and where, so a protocol can show it to the
model. It is a small recursive-descent parser: nothing is ever evaluated.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["loads", "loads_object", "dumps", "snippet", "strip_fences", "tool_call_fields", "as_text", "clean"]

#: Deeper nesting than this is refused (and keeps recursion far from Python's limit).
MAX_DEPTH = 200
#: How many candidate start positions are tried when the text has junk before the JSON.
_MAX_STARTS = 16

_WS = re.compile(r"[ \t\r\n\f\v\u00a0\ufeff]*")
_NUMBER = re.compile(r"[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")
_WORD = re.compile(r"[^\W\d][\w$.\-]*|\$[\w$.\-]*")
_STRING_STOP = {'"': re.compile(r'["\\]'), "'": re.compile(r"['\\]")}
_LITERALS = {
    "true": True, "True": True, "TRUE": True,
    "false": False, "False": False, "FALSE": False,
    "null": None, "None": None, "NULL": None, "nil": None, "undefined": None,
    "NaN": float("nan"), "Infinity": float("inf"),
}
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "0": "\0"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_FENCE = re.compile(r"^\s*```[ \t]*[\w+.-]*[ \t]*\n?(.*?)(?:\n?[ \t]*```\s*)?$", re.S)


def as_text(text: object) -> str:
    """Model output as a clean ``str``: ``None`` is empty, lone surrogates become U+FFFD.

    A lone surrogate cannot be written as UTF-8, so a message holding one could not be saved
    to a trajectory or sent over HTTP.
    """
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    return _SURROGATE.sub("\ufffd", text)


def clean(value: Any) -> Any:
    """``value`` with lone surrogates in its strings replaced (see :func:`as_text`); never raises."""
    try:
        return _clean_surrogates(value)
    except RecursionError:
        return value


def snippet(text: str, size: int = 30) -> str:
    """The start of ``text`` in quotes, for error messages."""
    text = text.strip()
    return repr(text[:size] + ("…" if len(text) > size else ""))


def strip_fences(text: str) -> str:
    """The inside of a Markdown code fence that wraps the whole text (or the text unchanged)."""
    m = _FENCE.match(text)
    return m.group(1) if m and text.lstrip().startswith("```") else text


def dumps(value: Any, *, guard: tuple[str, ...] = ("<|",)) -> str:
    """Compact JSON (``ensure_ascii=False``) in which the strings in ``guard`` cannot appear.

    A tool argument that contains ``<|im_end|>`` or ``</tool_call>`` must not end the turn when
    the call is rendered into a prompt; the second character of each guard is written as a
    ``\\uXXXX`` escape, which decodes to the same value. Each guard must start with a character
    JSON never escapes (``<``, a letter other than a-f).
    """
    text = json.dumps(value, ensure_ascii=False)
    for g in guard:
        if g in text:
            text = text.replace(g, g[0] + f"\\u{ord(g[1]):04x}" + g[2:])
    return text


def loads(text: str, *, expect: type | None = None, where: str = "") -> Any:
    """Parse what a model wrote as JSON, tolerating the usual small-model mistakes.

    ``expect`` (``dict`` or ``list``) names the value wanted: with ``dict`` the parser looks for
    ``{`` past any leading junk. ``where`` ("after <|plugin|>") goes into error messages.
    Raises ``ValueError`` only.
    """
    at = f" {where}" if where else ""
    what = {dict: "a JSON object", list: "a JSON array"}.get(expect, "JSON")  # type: ignore[arg-type]
    if not isinstance(text, str):
        raise ValueError(f"expected {what}{at} as text, got {type(text).__name__}")
    body = strip_fences(as_text(text)).strip()
    if not body:
        raise ValueError(f"expected {what}{at}, found nothing")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        pass
    else:
        if _too_deep(value):
            raise ValueError(f"invalid JSON{at}: nested more than {MAX_DEPTH} levels deep")
        if "\\u" in body:
            value = _clean_surrogates(value)
        if expect is None or isinstance(value, expect):
            return value
        if not isinstance(value, (dict, list)):
            raise ValueError(f"expected {what}{at}, found {_kind(value)} {snippet(body)}")
    opener = {dict: "{", list: "["}.get(expect, "{[")  # type: ignore[arg-type]
    starts = [i for i, ch in enumerate(body) if ch in opener][:_MAX_STARTS]
    if not starts:
        if expect is None:
            try:
                return _parse(body, 0)
            except _Error as exc:
                raise ValueError(f"invalid JSON{at}: {exc}") from None
        raise ValueError(f"expected {what}{at}, found text starting {snippet(body)}")
    first_error: _Error | None = None
    for start in starts:
        try:
            value = _parse(body, start)
        except _Error as exc:
            first_error = first_error or exc
            continue
        if expect is None or isinstance(value, expect):
            return value
        first_error = first_error or _Error(f"found {_kind(value)} where {what} was expected", start)
    raise ValueError(f"invalid JSON{at}: {first_error}") from None


def loads_object(text: str, *, where: str = "") -> dict[str, Any]:
    """:func:`loads` for a JSON object."""
    return loads(text, expect=dict, where=where)


#: Keys small models use for the tool name and for its arguments, in order of preference.
NAME_KEYS = ("name", "tool_name", "tool", "function_name", "action", "api_name")
ARGUMENT_KEYS = ("parameters", "arguments", "args", "params", "input", "action_input", "tool_input", "kwargs")


def tool_call_fields(obj: Any, *, arguments_key: str = "parameters") -> tuple[str, dict[str, Any]]:
    """The tool name and arguments in a model-written call object.

    Accepts ``{"name", "parameters"}``, ``{"name", "arguments"}``, an OpenAI-style
    ``{"function": {...}}`` wrapper, arguments given as a JSON string, and (when no arguments key
    is present) the remaining keys as the arguments. ``arguments_key`` is the key the protocol
    documents, used in error messages. Raises ``ValueError`` saying what is missing.
    """
    if isinstance(obj, list):
        calls = [item for item in obj if item not in ({}, None)]
        if len(calls) != 1:
            raise ValueError(f"found a list of {len(calls)} tool calls where one call object was expected")
        obj = calls[0]
    if not isinstance(obj, dict):
        raise ValueError(f"the tool call must be a JSON object, found {_kind(obj)}")
    if "function" in obj and isinstance(obj["function"], dict) and not any(k in obj for k in NAME_KEYS):
        obj = obj["function"]
    name_key = next((k for k in NAME_KEYS if isinstance(obj.get(k), str) and obj[k].strip()), None)
    if name_key is None and "name" in obj:
        found = obj["name"]
        shown = json.dumps(found) if isinstance(found, (str, int, float, bool)) or found is None else _kind(found)
        raise ValueError(f'the "name" of the tool call must be a non-empty string, found {shown}')
    if name_key is None:
        keys = ", ".join(repr(k) for k in list(obj)[:6]) or "none"
        raise ValueError(f'the tool call has no "name" (its keys: {keys})')
    name = obj[name_key].strip()
    args_key = next((k for k in ARGUMENT_KEYS if k in obj), None)
    if args_key is None:
        args: Any = {k: v for k, v in obj.items() if k != name_key and k != "type"}
    else:
        args = obj[args_key]
    if args is None:
        args = {}
    if isinstance(args, str):
        if not args.strip():
            args = {}
        else:
            try:
                args = loads(args, expect=dict)
            except ValueError as exc:
                raise ValueError(
                    f'the "{arguments_key}" of tool {name!r} are a string that is not a JSON object ({exc})'
                ) from None
    if not isinstance(args, dict):
        raise ValueError(f'the "{arguments_key}" of tool {name!r} must be a JSON object, found {_kind(args)}')
    return name, {str(k): v for k, v in args.items()}


# -- the tolerant parser -------------------------------------------------------------------------

class _Error(Exception):
    def __init__(self, message: str, pos: int):
        super().__init__(message)
        self.pos = pos


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return f"the literal {json.dumps(value)}"
    return "a number"


class _Parser:
    """Recursive descent over one JSON-ish value; stops at the end of it (trailing junk is ignored)."""

    def __init__(self, text: str, pos: int = 0):
        self.text = text
        self.pos = pos

    def fail(self, message: str, pos: int | None = None) -> _Error:
        pos = self.pos if pos is None else pos
        near = self.text[pos:pos + 20]
        where = f"at position {pos}" + (f" (near {near!r})" if near else " (at the end of the text)")
        return _Error(f"{message} {where}", pos)

    def ws(self) -> None:
        self.pos = _WS.match(self.text, self.pos).end()  # type: ignore[union-attr]

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def document(self) -> Any:
        self.ws()
        if self.pos >= len(self.text):
            raise self.fail("expected a JSON value")
        return self.value(0)

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} levels deep")
        ch = self.peek()
        if ch == "{":
            return self.obj(depth + 1)
        if ch == "[":
            return self.arr(depth + 1)
        if ch in "\"'":
            return self.string()
        m = _NUMBER.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            return _number(m.group(), self, m.start())
        m = _WORD.match(self.text, self.pos)
        if m:
            word = m.group()
            if word in _LITERALS:
                self.pos = m.end()
                return _LITERALS[word]
            raise self.fail(f"unquoted text {word[:20]!r}: put strings in double quotes")
        if ch == "-" and self.text.startswith("-Infinity", self.pos):
            self.pos += 9
            return float("-inf")
        if not ch:
            raise self.fail("expected a value but the text ended (was the output cut off?)")
        raise self.fail(f"expected a value, found {ch!r}")

    def obj(self, depth: int) -> dict[str, Any]:
        self.pos += 1
        result: dict[str, Any] = {}
        while True:
            self.ws()
            ch = self.peek()
            if not ch:
                return result  # a missing closing brace at the end of the output
            if ch == "}":
                self.pos += 1
                return result
            if ch == ",":
                self.pos += 1
                continue
            key_pos = self.pos
            key = self.key()
            self.ws()
            ch = self.peek()
            if ch in ":=":
                self.pos += 1
            elif not ch:
                raise self.fail(f"the key {key!r} has no value (was the output cut off?)")
            else:
                raise self.fail(f"expected ':' after the key {key!r}")
            self.ws()
            if self.pos >= len(self.text):
                raise self.fail(f"the key {key!r} has no value (was the output cut off?)", key_pos)
            if self.peek() in ",}":
                raise self.fail(f"the key {key!r} has no value")
            result[key] = self.value(depth)
            self.ws()
            ch = self.peek()
            if not ch:
                return result
            if ch == ",":
                self.pos += 1
            elif ch == "}":
                self.pos += 1
                return result
            elif ch in "\"'" or _WORD.match(self.text, self.pos):
                continue  # a missing comma between members
            else:
                raise self.fail(f"expected ',' or '}}' after the value of {key!r}")

    def key(self) -> str:
        ch = self.peek()
        if ch in "\"'":
            return self.string()
        m = _WORD.match(self.text, self.pos) or _NUMBER.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            return m.group()
        raise self.fail(f"expected a key in double quotes, found {ch!r}")

    def arr(self, depth: int) -> list[Any]:
        self.pos += 1
        result: list[Any] = []
        expecting_value = True
        while True:
            self.ws()
            ch = self.peek()
            if not ch:
                return result  # a missing closing bracket at the end of the output
            if ch == "]":
                self.pos += 1
                return result
            if ch == ",":
                self.pos += 1
                expecting_value = True
                continue
            if not expecting_value and ch not in "\"'{[" and not _NUMBER.match(self.text, self.pos) \
                    and not _WORD.match(self.text, self.pos):
                raise self.fail("expected ',' or ']' in a list")
            result.append(self.value(depth))
            expecting_value = False

    def string(self) -> str:
        quote = self.text[self.pos]
        start = self.pos
        self.pos += 1
        stop = _STRING_STOP[quote]
        text = self.text
        parts: list[str] = []
        while True:
            m = stop.search(text, self.pos)
            if m is None:
                raise self.fail("unterminated string (was the output cut off?)", start)
            parts.append(text[self.pos:m.start()])
            self.pos = m.end()
            if m.group() == quote:
                return "".join(parts)
            esc = text[self.pos:self.pos + 1]
            if not esc:
                raise self.fail("unterminated string (was the output cut off?)", start)
            self.pos += 1
            if esc in _ESCAPES:
                parts.append(_ESCAPES[esc])
            elif esc == "u":
                parts.append(self.unicode_escape())
            elif esc == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", text[self.pos:self.pos + 2]):
                parts.append(chr(int(text[self.pos:self.pos + 2], 16)))
                self.pos += 2
            else:
                parts.append("\\" + esc)  # an unknown escape (a regex, a Windows path): keep it as written

    def unicode_escape(self) -> str:
        text = self.text
        hexa = text[self.pos:self.pos + 4]
        if not re.fullmatch(r"[0-9a-fA-F]{4}", hexa):
            return "\\u"
        self.pos += 4
        code = int(hexa, 16)
        if 0xD800 <= code < 0xDC00 and text[self.pos:self.pos + 2] == "\\u":
            low = text[self.pos + 2:self.pos + 6]
            if re.fullmatch(r"[0-9a-fA-F]{4}", low) and 0xDC00 <= int(low, 16) < 0xE000:
                self.pos += 6
                return chr(0x10000 + ((code - 0xD800) << 10) + (int(low, 16) - 0xDC00))
        if 0xD800 <= code < 0xE000:
            return "\ufffd"  # a lone surrogate cannot be encoded; replace it
        return chr(code)


def _parse(text: str, start: int) -> Any:
    try:
        return _Parser(text, start).document()
    except RecursionError:
        raise _Error(f"nested too deeply to read (more than {MAX_DEPTH} levels)", start) from None


def _number(token: str, parser: _Parser, pos: int) -> int | float:
    body = token.lstrip("+")
    try:
        if body.lstrip("-")[:2] in ("0x", "0X"):
            return int(body, 16)
        if any(c in body for c in ".eE"):
            return float(body)
        return int(body)
    except ValueError as exc:  # e.g. more digits than Python converts
        raise parser.fail(f"unreadable number {token[:20]!r} ({exc})", pos) from None


def _too_deep(value: Any) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def _clean_surrogates(value: Any) -> Any:
    """Replace lone surrogates (valid in JSON escapes, not encodable as UTF-8) with U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_clean_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_clean_surrogates(k): _clean_surrogates(v) for k, v in value.items()}
    return value

