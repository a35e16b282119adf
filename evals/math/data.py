"""GSM8K and MATH problems from their JSONL files (paths: nothing is downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from agentkit.errors import ConfigError


class Problem(BaseModel):
    id: str
    question: str
    answer: str
    source: str
    level: str | None = None
    subject: str | None = None


def _rows(path: str | Path, limit: int | None, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"no dataset file at {file}: pass the path of a .jsonl file (e.g. ../shared/data/gsm8k/test.jsonl)")
    rows: list[tuple[int, dict]] = []
    with file.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{file}:{number}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
            missing = [k for k in required if k not in row]
            if missing:
                raise ConfigError(f"{file}:{number}: missing field(s) {', '.join(missing)}; is this the right dataset?")
            rows.append((number, row))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def gsm8k_final_answer(solution: str) -> str:
    """The number after ``####`` in a GSM8K solution, commas removed."""
    if "####" not in solution:
        raise ValueError("a GSM8K answer ends with '#### <number>'")
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def load_gsm8k(path: str | Path, limit: int | None = None) -> list[Problem]:
    problems = []
    for number, row in _rows(path, limit, ("question", "answer")):
        try:
            answer = gsm8k_final_answer(row["answer"])
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: {exc}") from None
        problems.append(Problem(id=f"gsm8k-{number - 1}", question=row["question"], answer=answer, source="gsm8k"))
    return problems


def load_math(path: str | Path, limit: int | None = None) -> list[Problem]:
    """MATH / MATH-500 rows: ``problem`` and ``answer`` (or the last ``\\boxed{}`` of ``solution``)."""
    from agentkit.evals.math.answers import last_boxed

    problems = []
    for number, row in _rows(path, limit, ("problem",)):
        answer = row.get("answer") or last_boxed(row.get("solution", ""))
        if not answer:
            raise ConfigError(f"{path}:{number}: no 'answer' and no \\boxed{{}} in 'solution'")
        problems.append(Problem(id=row.get("unique_id") or f"math-{number - 1}", question=row["problem"],
                                answer=answer, source="math", level=str(row.get("level") or "") or None,
                                subject=row.get("subject")))
    return problems


def load_dataset(name: str, path: str | Path, limit: int | None = None) -> list[Problem]:
    loaders = {"gsm8k": load_gsm8k, "math": load_math}
    if name not in loaders:
        raise ConfigError(f"unknown dataset {name!r}: use gsm8k or math")
    return loaders[name](path, limit)
