"""Plan dimension: parsing, bipartite matching, the ordered-match F1 and its upstream quirks."""

import json
from pathlib import Path

import numpy as np
import pytest

from agentkit.evals.teval.data import load_samples
from agentkit.evals.teval.embedder import load_embedder
from agentkit.evals.teval.plan import (
    match_steps, ordered_matches, parse_plan_json, parse_plan_str, plan_metrics, score_plan_samples,
)
from agentkit.evals.teval.scoring import file_metrics

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "teval_v1"
FIXTURES = Path(__file__).parent / "fixtures" / "teval"


@pytest.fixture(scope="module")
def embedder():
    return load_embedder("minilm")


def _real(name):
    if not (REAL / name).is_file():
        pytest.skip(f"{REAL / name} is absent: the official T-Eval v1 files live in ../shared/data/teval_v1")
    return REAL / name


@pytest.mark.slow  # embeds ~3,000 distinct step texts with the real MiniLM: 25-40 s on 2 cores, more when shared
def test_ground_truth_scores_100_on_the_real_plan_json_file(embedder):
    samples = load_samples(_real("plan_json_v1.json"), "plan_json")
    assert len(samples) == 553
    replies = [json.dumps(s.ground_truth) for s in samples]
    metrics = file_metrics("plan_json", score_plan_samples(samples, replies, embedder, "json"))
    assert metrics == {"precision": 1.0, "recall": 1.0, "f1_score": 1.0, "parse_rate": 1.0}


def test_empty_and_garbage_plans_do_not_parse(embedder):
    samples = load_samples(FIXTURES / "plan_json_v1.json", "plan_json")
    for replies in (["" for _ in samples], ["I cannot help with that." for _ in samples],
                    ['[{"id": 0, "name": "x"}]' for _ in samples]):  # a step without args fails the whole plan
        metrics = file_metrics("plan_json", score_plan_samples(samples, replies, embedder, "json"))
        assert metrics == {"precision": 0.0, "recall": 0.0, "f1_score": 0.0, "parse_rate": 0.0}


def test_a_parsed_but_wrong_plan_still_scores_above_zero(embedder):
    # Upstream's longest-increasing-run count starts at 1 for every predicted step, matched or not.
    sample = load_samples(FIXTURES / "plan_json_v1.json", "plan_json")[0]
    wrong = json.dumps([{"id": 0, "name": "Zoo.feed_the_penguins", "args": {"fish": 12}},
                        {"id": 1, "name": "Zoo.clean_the_pool", "args": {}}])
    (scores,) = score_plan_samples([sample], [wrong], embedder, "json")
    assert scores["parse_rate"] == 1.0
    assert scores["precision"] == pytest.approx(1 / 2) and scores["recall"] == pytest.approx(1 / 2)
    assert 0 < scores["f1_score"] < 1


def test_order_matters_only_through_the_increasing_run(embedder):
    sample = load_samples(FIXTURES / "plan_json_v1.json", "plan_json")[2]  # 3 steps + FinishAction
    steps = [s for s in sample.ground_truth if s["name"] != "FinishAction"]
    shuffled = [dict(step, id=i) for i, step in enumerate(reversed(steps))]
    (scores,) = score_plan_samples([sample], [json.dumps(shuffled)], embedder, "json")
    assert scores["f1_score"] == pytest.approx(1 / 3)  # all matched, but only one in increasing order
    partial = [dict(step, id=i) for i, step in enumerate(steps[:2])]
    (scores,) = score_plan_samples([sample], [json.dumps(partial)], embedder, "json")
    assert scores["precision"] == 1.0 and scores["recall"] == pytest.approx(2 / 3)


def test_finish_action_is_dropped_before_matching(embedder):
    gt = [{"id": 0, "name": "A.b", "args": "{}"}, {"id": 1, "name": "FinishAction", "args": "{}"}]
    assert plan_metrics([gt[0]], gt, embedder)["f1_score"] == 1.0
    assert plan_metrics(gt, gt, embedder)["f1_score"] == 1.0
    assert plan_metrics([gt[1]], gt, embedder)["f1_score"] == 0.0  # nothing left to match


def test_str_plans_name_each_line_after_its_first_api():
    apis = ["Email.send", "WeatherAPI.get_forecast", "WeatherAPI.get_current_weather"]
    reply = ("Use WeatherAPI.get_current_weather to check Paris. Then use Email.send after "
             "WeatherAPI.get_forecast\nThank you\nUse Email.send to mail it.")
    steps = parse_plan_str(reply, apis)
    assert [s["name"] for s in steps] == ["WeatherAPI.get_current_weather", "Email.send", "Email.send"]
    assert steps[0]["args"] == "Use WeatherAPI.get_current_weather to check Paris"
    assert [s["id"] for s in steps] == [0, 1, 2]
    assert parse_plan_str("no api mentioned", apis) == []


def test_ground_truth_scores_100_on_the_real_plan_str_file(embedder):
    samples = load_samples(_real("plan_str_v1.json"), "plan_str", limit=120)
    # Lines for a repeated API must read alike: str args are the whole line, and lines that differ only a
    # little could be matched crosswise to the reference steps (the metric's own behaviour, not a parse issue).
    replies = ["\n".join(f"Use {step['name']} to do it." for step in s.ground_truth) for s in samples]
    metrics = file_metrics("plan_str", score_plan_samples(samples, replies, embedder, "str"))
    assert metrics["f1_score"] == 1.0 and metrics["parse_rate"] == 1.0


def test_matching_is_maximum_weight_above_the_threshold():
    similarity = np.array([[0.9, 0.95, 0.1],
                           [0.2, 0.92, 0.1],
                           [0.1, 0.1, 0.69]])
    # greedy would pair 0-1; the best total pairs 0-0 and 1-1; 0.69 is under the 0.7 threshold
    assert match_steps(similarity, 0.7) == {0: 0, 1: 1}


def test_equal_weight_matchings_keep_the_order():
    same = np.full((3, 3), 0.8)
    assert match_steps(same, 0.7) == {0: 0, 1: 1, 2: 2}


def test_ordered_matches_counts_the_longest_increasing_run():
    assert ordered_matches({0: 2, 1: 0, 2: 1, 3: 3}, 4) == 3
    assert ordered_matches({}, 3) == 1  # the upstream floor
    assert ordered_matches({}, 0) == 0


def test_parse_plan_json_normalises_fields():
    steps = parse_plan_json("[{'id': '1', 'name': 'A.b', 'args': {'x': 1}, 'prev': []}]")
    assert steps == [{"id": 1, "name": "A.b", "args": "{'x': 1}"}]
    assert parse_plan_json("{'id': 1}") == []
