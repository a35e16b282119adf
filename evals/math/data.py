"""GSM8K and MATH problems from their JSONL files (given by path: nothing is downloaded).

GSM8K lines have ``question`` and ``answer`` (a worked solution ending ``#### <number>``). MATH / MATH-500 lines
have ``problem``, ``solution`` and, in MATH-500, ``answer``, ``subject``, ``level`` and ``unique_id``; without an
``answer`` the gold answer is the last ``\\boxed{}`` of the solution.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from agentkit.errors import ConfigError

DATASETS = ("gsm8k", "math")


class Problem(BaseModel):
    """One problem and its gold final answer (normalised only as far as the dataset's own format requires)."""

    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    answer: str
    source: str
    level: str | None = None
    subject: str | None = None


def _rows(path: str | Path, limit: int | None, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line, with errors that name the file, the line and the fix."""
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be 0 or more, got {limit}")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"no dataset file at {file}: pass the path of a .jsonl file "
                          "(e.g. ../shared/data/gsm8k/test.jsonl or ../shared/data/math/math500_test.jsonl)")
    rows: list[tuple[int, dict]] = []
    if limit == 0:
        return rows
    try:
        with file.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{file}:{number}: not valid JSON ({exc.msg}); each line must be one JSON "
                                      "object: fix or delete that line") from None
                if not isinstance(row, dict):
                    raise ConfigError(f"{file}:{number}: a JSON {type(row).__name__}, not an object; each line must "
                                      "be one JSON object")
                missing = [k for k in required if not isinstance(row.get(k), str)]
                if missing:
                    raise ConfigError(f"{file}:{number}: no text field {', '.join(repr(k) for k in missing)}; "
                                      "is this the right dataset (--dataset gsm8k or math)?")
                rows.append((number, row))
                if limit is not None and len(rows) >= limit:
                    break
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text ({exc.reason}); pass a .jsonl file") from None
    return rows


def gsm8k_final_answer(solution: str) -> str:
    """The number after the last ``####`` of a GSM8K solution, thousands commas removed."""
    if "####" not in solution:
        raise ValueError("a GSM8K answer must end with '#### <number>'")
    answer = solution.rsplit("####", 1)[1].strip().replace(",", "")
    if not answer:
        raise ValueError("nothing follows '####' in this GSM8K answer")
    return answer


def load_gsm8k(path: str | Path, limit: int | None = None) -> list[Problem]:
    """GSM8K problems; ids are ``gsm8k-<line index>`` so they stay stable under ``limit``."""
    problems = []
    for number, row in _rows(path, limit, ("question", "answer")):
        try:
            answer = gsm8k_final_answer(row["answer"])
        except ValueError as exc:
            raise ConfigError(f"{Path(path).expanduser()}:{number}: {exc}; fix that line") from None
        problems.append(Problem(id=f"gsm8k-{number - 1}", question=row["question"], answer=answer, source="gsm8k"))
    return problems


def load_math(path: str | Path, limit: int | None = None) -> list[Problem]:
    """MATH / MATH-500 problems; ids are ``unique_id`` when the file has one."""
    from agentkit.evals.math.answers import last_boxed

    problems = []
    for number, row in _rows(path, limit, ("problem",)):
        answer = row.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            answer = last_boxed(row.get("solution") if isinstance(row.get("solution"), str) else "")
        if not answer:
            raise ConfigError(f"{Path(path).expanduser()}:{number}: no 'answer' and no \\boxed{{}} in 'solution'; "
                              "every MATH line needs a gold answer")
        level = row.get("level")
        problems.append(Problem(
            id=str(row.get("unique_id") or f"math-{number - 1}"), question=row["problem"], answer=answer.strip(),
            source="math", level=None if level in (None, "") else str(level).removeprefix("Level ").strip(),
            subject=next((row[k] for k in ("subject", "type") if isinstance(row.get(k), str)), None),
        ))
    return problems


LOADERS: dict[str, Callable[..., list[Problem]]] = {"gsm8k": load_gsm8k, "math": load_math}


def load_dataset(name: str, path: str | Path, limit: int | None = None) -> list[Problem]:
    """``gsm8k`` or ``math`` problems from ``path``."""
    if name not in LOADERS:
        raise ConfigError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
    return LOADERS[name](path, limit)
