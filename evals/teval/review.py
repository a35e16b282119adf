"""Review dimension: did the model pick the right verdict (A-E) for a tool call and its response.

Str replies are read as upstream does: the text after the first ``:`` (or all of it when there is none),
stripped; its first character must be one of A-E. So ``"Answer: B"`` and ``"B"`` parse, and so does a reply
that merely starts with a capital A-E (``"Based on ..."`` reads as B) — an upstream quirk kept for comparable
numbers. JSON replies carry ``{"is_finished": true|false}``, compared with a boolean reference answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentkit.evals.teval.parsing import ParseFailure, load_structured

__all__ = ["parse_review", "score_review_samples"]

CHOICES = "ABCDE"


def parse_review(reply: str, fmt: str = "str") -> str | bool | None:
    """The verdict in ``reply``: a letter (str format), a boolean (json format), or ``None``."""
    if fmt == "json":
        try:
            value = load_structured(reply)
        except ParseFailure:
            return None
        verdict = value.get("is_finished") if isinstance(value, dict) else None
        return verdict if isinstance(verdict, bool) else None
    text = str(reply)
    text = text[text.find(":") + 1:].strip()
    return text[0] if text and text[0] in CHOICES else None


def score_review_samples(samples: Sequence[Any], replies: Sequence[str]) -> list[dict[str, float]]:
    """Per-sample ``review_quality`` (right verdict) and ``parse_rate``."""
    out = []
    for sample, reply in zip(samples, replies):
        fmt = sample.meta.get("response_format", "str")
        verdict = parse_review(reply, fmt)
        answer = sample.ground_truth.get("answer") if isinstance(sample.ground_truth, dict) else sample.ground_truth
        out.append({"review_quality": float(verdict is not None and verdict == answer),
                    "parse_rate": float(verdict is not None)})
    return out
