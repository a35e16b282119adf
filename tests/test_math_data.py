"""Loaders on the real GSM8K and MATH-500 files, and their errors on bad input."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from agentkit.errors import ConfigError
from agentkit.evals.math.answers import extract_answer, is_equivalent, last_boxed
from agentkit.evals.math.data import load_dataset, load_gsm8k, load_math

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GSM8K_TRAIN, GSM8K_TEST = DATA / "gsm8k" / "train.jsonl", DATA / "gsm8k" / "test.jsonl"
MATH500 = DATA / "math" / "math500_test.jsonl"


def needs(path: Path):
    return pytest.mark.skipif(not path.is_file(), reason=f"{path} is not on this machine (../shared/data)")


@needs(GSM8K_TEST)
def test_gsm8k_test_file_loads_with_stable_ids_and_numeric_answers():
    problems = load_gsm8k(GSM8K_TEST)
    assert len(problems) == 1319
    first = problems[0]
    assert first.id == "gsm8k-0" and first.source == "gsm8k" and first.answer == "18"
    assert first.question.startswith("Janet")
    assert [p.id for p in load_gsm8k(GSM8K_TEST, limit=3)] == ["gsm8k-0", "gsm8k-1", "gsm8k-2"]
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", p.answer) for p in problems), "GSM8K gold answers are plain numbers"


@needs(GSM8K_TRAIN)
def test_first_50_gsm8k_train_answers_are_extractable_and_self_equivalent():
    rows = [json.loads(line) for line in GSM8K_TRAIN.read_text(encoding="utf-8").splitlines()[:50]]
    problems = load_gsm8k(GSM8K_TRAIN, limit=50)
    assert len(problems) == 50
    for row, problem in zip(rows, problems):
        # the full reference solution, as a model would write it, gives back the gold answer
        extracted = extract_answer(row["answer"])
        assert extracted is not None and is_equivalent(extracted, problem.answer), (problem.id, extracted)
        assert is_equivalent(problem.answer, problem.answer)
        assert is_equivalent(extract_answer(f"So \\boxed{{{problem.answer}}}."), problem.answer)
        assert not is_equivalent(str(Decimal(problem.answer) + 1), problem.answer)


@needs(MATH500)
def test_math500_loads_with_metadata_and_answers_match_the_solutions():
    problems = load_math(MATH500)
    assert len(problems) == 500
    first = problems[0]
    assert first.id == "test/precalculus/807.json" and first.source == "math"
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.level == "2" and first.subject == "Precalculus"
    rows = [json.loads(line) for line in MATH500.read_text(encoding="utf-8").splitlines()[:60]]
    for row, problem in zip(rows, problems):
        assert is_equivalent(last_boxed(row["solution"]), problem.answer), problem.id
    assert len(load_dataset("math", MATH500, limit=3)) == 3


def test_math_answer_falls_back_to_the_last_boxed_of_the_solution(tmp_path):
    path = tmp_path / "math.jsonl"
    path.write_text(json.dumps({"problem": "1+1?", "solution": "first \\boxed{3}, no: \\boxed{\\frac{4}{2}}",
                                "level": "Level 5", "type": "Algebra"}) + "\n\n")
    (problem,) = load_math(path)
    assert problem.answer == "\\frac{4}{2}" and problem.id == "math-0"
    assert problem.level == "5" and problem.subject == "Algebra"
    assert is_equivalent("2", problem.answer)


def test_limit_zero_loads_nothing_and_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "gsm.jsonl"
    path.write_text('\n{"question": "q1", "answer": "a #### 1,234"}\n\n{"question": "q2", "answer": "#### 5"}\n')
    assert load_gsm8k(path, limit=0) == []
    problems = load_gsm8k(path)
    assert [(p.id, p.answer) for p in problems] == [("gsm8k-1", "1234"), ("gsm8k-3", "5")]


@pytest.mark.parametrize(("content", "loader", "message"), [
    ('{"question": "q", "answer": "x #### 1"}\nnot json\n', load_gsm8k,
     r"bad\.jsonl:2: not valid JSON .* fix or delete that line"),
    ('{"question": "q", "answer": "no hashes"}\n', load_gsm8k, r"bad\.jsonl:1: a GSM8K answer must end with"),
    ('{"question": "q", "answer": "ends ####  "}\n', load_gsm8k, r"bad\.jsonl:1: nothing follows '####'"),
    ('[1, 2]\n', load_gsm8k, r"bad\.jsonl:1: a JSON list, not an object"),
    ('{"problem": "q", "answer": "1"}\n', load_gsm8k, r"bad\.jsonl:1: no text field 'question'; .*--dataset"),
    ('{"text": "q"}\n', load_math, r"bad\.jsonl:1: no text field 'problem'"),
    ('{"problem": "q", "solution": "no box"}\n', load_math, r"bad\.jsonl:1: no 'answer' and no \\boxed"),
])
def test_bad_lines_name_the_file_the_line_and_the_fix(tmp_path, content, loader, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    with pytest.raises(ConfigError, match=message):
        loader(bad)


def test_bad_paths_and_names_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"no dataset file at .*missing\.jsonl: pass the path of a \.jsonl file"):
        load_gsm8k(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match="no dataset file"):
        load_math(tmp_path)  # a directory
    binary = tmp_path / "x.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_gsm8k(binary)
    with pytest.raises(ConfigError, match="unknown dataset 'aime': use one of gsm8k, math"):
        load_dataset("aime", binary)
    with pytest.raises(ConfigError, match="limit must be 0 or more"):
        load_gsm8k(binary, limit=-1)
