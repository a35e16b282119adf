"""Loaders on the real GSM8K and MATH-500 files, and their errors on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkit.errors import ConfigError
from agentkit.evals.math.answers import extract_answer, is_equivalent
from agentkit.evals.math.data import load_dataset, load_gsm8k, load_math

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GSM8K_TRAIN, GSM8K_TEST, MATH500 = DATA / "gsm8k/train.jsonl", DATA / "gsm8k/test.jsonl", DATA / "math/math500_test.jsonl"
needs_data = pytest.mark.skipif(not GSM8K_TEST.exists(), reason="../shared/data is not on this machine")


@needs_data
def test_gsm8k_answers_are_numbers_that_reference_solutions_agree_with():
    problems = load_gsm8k(GSM8K_TEST)
    assert len(problems) == 1319 and problems[0].id == "gsm8k-0" and problems[0].answer == "18"
    train = load_gsm8k(GSM8K_TRAIN, limit=50)
    assert len(train) == 50
    for p in train:
        assert float(p.answer) == float(p.answer)  # a number
        assert is_equivalent(extract_answer(f"... #### {p.answer}"), p.answer)


@needs_data
def test_math500_answers_are_self_equivalent():
    problems = load_math(MATH500)
    assert len(problems) == 500 and problems[0].answer.startswith("\\left( 3")
    assert problems[0].level == "2" and problems[0].subject == "Precalculus"
    assert all(is_equivalent(p.answer, p.answer) for p in problems[:100])
    assert len(load_dataset("math", MATH500, limit=3)) == 3


def test_bad_files_name_the_line_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="no dataset file"):
        load_gsm8k(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "x #### 1"}\nnot json\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: not valid JSON"):
        load_gsm8k(bad)
    bad.write_text('{"question": "q", "answer": "no hashes"}\n')
    with pytest.raises(ConfigError, match=r":1: a GSM8K answer ends with"):
        load_gsm8k(bad)
    bad.write_text('{"text": "q"}\n')
    with pytest.raises(ConfigError, match="missing field"):
        load_math(bad)
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("aime", bad)
