"""T-Eval v1 English files: which file holds which dimension, and how samples are read.

Each file is a JSON object keyed by sample id; a sample has ``origin_prompt`` (chat messages as dicts),
``ground_truth`` and, depending on the kind, ``meta`` (plan: ``prompt_type``, ``API_list``), ``meta_data``
(``response_format``) and ``template`` (instruct: the output format asked for).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agentkit.errors import ConfigError
from agentkit.messages import Message

__all__ = ["DIMENSIONS", "KINDS", "TEvalKind", "TEvalSample", "find_files", "load_samples", "to_messages"]

Dimension = Literal["instruct", "plan", "reason", "retrieve", "understand", "review"]
#: The six dimensions, in the order of T-Eval's leaderboard.
DIMENSIONS: tuple[str, ...] = ("instruct", "plan", "reason", "retrieve", "understand", "review")


@dataclass(frozen=True)
class TEvalKind:
    """One of the eight files: its name, how its replies are scored, and which dimensions it feeds."""

    key: str
    filename: str
    scorer: Literal["instruct", "plan", "rru", "review"]
    fmt: Literal["json", "str"]
    dimensions: tuple[str, ...]


KINDS: dict[str, TEvalKind] = {kind.key: kind for kind in (
    TEvalKind("instruct", "instruct_v1.json", "instruct", "json", ("instruct",)),
    TEvalKind("plan_json", "plan_json_v1.json", "plan", "json", ("plan",)),
    TEvalKind("plan_str", "plan_str_v1.json", "plan", "str", ("plan",)),
    TEvalKind("reason_str", "reason_str_v1.json", "rru", "str", ("reason",)),
    TEvalKind("retrieve_str", "retrieve_str_v1.json", "rru", "str", ("retrieve",)),
    TEvalKind("understand_str", "understand_str_v1.json", "rru", "str", ("understand",)),
    TEvalKind("rru_json", "reason_retrieve_understand_json_v1.json", "rru", "json",
              ("reason", "retrieve", "understand")),
    TEvalKind("review_str", "review_str_v1.json", "review", "str", ("review",)),
)}


@dataclass
class TEvalSample:
    id: str
    kind: str
    prompt: list[dict[str, Any]]
    ground_truth: Any
    meta: dict[str, Any]
    template: Any = None


def find_files(data_dir: str | Path, dimensions: tuple[str, ...] = DIMENSIONS) -> dict[str, Path]:
    """The files in ``data_dir`` that feed ``dimensions``, by kind key; a clear error when none is there."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ConfigError(f"T-Eval data directory {str(root)!r} does not exist: pass the folder holding "
                          "plan_json_v1.json, review_str_v1.json, ... with --data")
    unknown = sorted(set(dimensions) - set(DIMENSIONS))
    if unknown:
        raise ConfigError(f"unknown T-Eval dimension(s) {', '.join(unknown)}: use {', '.join(DIMENSIONS)}")
    found = {key: root / kind.filename for key, kind in KINDS.items()
             if set(kind.dimensions) & set(dimensions) and (root / kind.filename).is_file()}
    if not found:
        wanted = sorted(kind.filename for kind in KINDS.values() if set(kind.dimensions) & set(dimensions))
        raise ConfigError(f"no T-Eval v1 file for {', '.join(dimensions)} in {root}: expected one of "
                          f"{', '.join(wanted)}")
    return found


def load_samples(path: str | Path, kind: str, limit: int | None = None) -> list[TEvalSample]:
    """The first ``limit`` samples of a T-Eval file (file order), checked for the fields scoring needs."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read T-Eval file {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} is not a T-Eval file: expected a JSON object keyed by sample id")
    samples = []
    for sample_id, entry in raw.items():
        if limit is not None and len(samples) >= limit:
            break
        if not isinstance(entry, dict) or "origin_prompt" not in entry or "ground_truth" not in entry:
            raise ConfigError(f"{path}: sample {sample_id!r} lacks origin_prompt or ground_truth")
        meta = {**entry.get("meta_data", {}), **entry.get("meta", {})}
        samples.append(TEvalSample(id=str(sample_id), kind=kind, prompt=entry["origin_prompt"],
                                   ground_truth=entry["ground_truth"], meta=meta, template=entry.get("template")))
    return samples


_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "function": "environment",
          "tool": "environment", "environment": "environment"}


def to_messages(prompt: list[dict[str, Any]]) -> list[Message]:
    """agentkit messages for an ``origin_prompt``; tool results (``function`` turns) become ``environment``."""
    messages = []
    for turn in prompt:
        role = _ROLES.get(str(turn.get("role", "")).lower())
        if role is None:
            raise ConfigError(f"origin_prompt has a turn with role {turn.get('role')!r}: expected one of "
                              f"{', '.join(_ROLES)}")
        name = "plugin" if role == "environment" else None
        messages.append(Message(role=role, content=str(turn.get("content", "")), name=name))
    return messages
