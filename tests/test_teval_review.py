"""Review dimension: A-E verdicts read the upstream way, accuracy against the reference answer."""

from pathlib import Path

import pytest

from agentkit.evals.teval.data import load_samples
from agentkit.evals.teval.review import parse_review, score_review_samples
from agentkit.evals.teval.scoring import file_metrics

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "teval_v1" / "review_str_v1.json"
FIXTURES = Path(__file__).parent / "fixtures" / "teval"


def test_ground_truth_scores_100_on_the_real_review_file():
    if not REAL.is_file():
        pytest.skip(f"{REAL} is absent: the official T-Eval v1 files live in ../shared/data/teval_v1")
    samples = load_samples(REAL, "review_str")
    assert len(samples) == 487
    replies = [f"Answer: {s.ground_truth['answer']}" for s in samples]
    assert file_metrics("review_str", score_review_samples(samples, replies)) == {"review_quality": 1.0,
                                                                                 "parse_rate": 1.0}


@pytest.mark.parametrize("reply, verdict", [
    ("Answer: B", "B"), ("B", "B"), ("  answer:   E  because", "E"),
    ("Based on the response, the answer is A", "B"),  # upstream quirk: the first capital decides
    ("Answer: b", None), ("", None), ("Answer:", None), ("The tool failed.", None),
])
def test_str_verdicts_are_read_like_upstream(reply, verdict):
    assert parse_review(reply) == verdict


def test_json_verdicts_need_a_boolean_is_finished():
    assert parse_review('{"is_finished": true}', "json") is True
    assert parse_review("{'is_finished': 'yes'}", "json") is None
    assert parse_review("nope", "json") is None


def test_accuracy_and_parse_rate_on_fixtures():
    samples = load_samples(FIXTURES / "review_str_v1.json", "review_str")
    answers = [s.ground_truth["answer"] for s in samples]
    assert answers == ["A", "B", "C", "A"]
    scores = score_review_samples(samples, ["Answer: A", "garbage", "", "Answer: A"])
    assert file_metrics("review_str", scores) == {"review_quality": 0.5, "parse_rate": 0.5}
