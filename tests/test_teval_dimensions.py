"""Instruct, reason, retrieve and understand on hand-written fixtures; the six-dimension formulas."""

import json
from pathlib import Path

import pytest

from agentkit.evals.teval.data import DIMENSIONS, KINDS, find_files, load_samples, to_messages
from agentkit.evals.teval.embedder import load_embedder, pair_cosine
from agentkit.evals.teval.instruct import args_exact_match, parse_instruct
from agentkit.evals.teval.rru import retrieve_str_hit
from agentkit.evals.teval.scoring import dimension_scores, file_metrics, score_samples
from agentkit.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures" / "teval"


@pytest.fixture(scope="module")
def embedder():
    return load_embedder("minilm")


def _samples(kind):
    return load_samples(FIXTURES / KINDS[kind].filename, kind)


def _instruct_reply(sample, *, action=None, args=None):
    gt = sample.ground_truth
    action, args = action or gt["action"], gt["args"] if args is None else args
    if sample.meta["response_format"] == "json":
        return json.dumps({"thought": "calling it", "name": action, "args": args})
    return f"Thought: calling it\nAction: {action}\nAction Input: {args!r}\n"


def test_every_fixture_kind_loads_and_converts_to_messages():
    files = find_files(FIXTURES)
    assert set(files) == set(KINDS)
    for kind, path in files.items():
        for sample in load_samples(path, kind):
            messages = to_messages(sample.prompt)
            assert messages[0].role == "system" and messages[-1].role == "user"
    environment = to_messages(_samples("reason_str")[0].prompt)[3]
    assert environment.role == "environment" and environment.name == "plugin"


def test_instruct_scores_format_and_exact_arguments(embedder):
    samples = _samples("instruct")
    perfect = score_samples("instruct", samples, [_instruct_reply(s) for s in samples], embedder)
    assert file_metrics("instruct", perfect) == {"parse_rate": 1.0, "json_format": 1.0, "json_args_em": 1.0,
                                                 "str_format": 1.0, "str_args_em": 1.0}
    wrong_args = [_instruct_reply(s, args={"city": "Nowhere"}) for s in samples]
    metrics = file_metrics("instruct", score_samples("instruct", samples, wrong_args, embedder))
    # action right, every argument wrong: 1/2 for Paris (1 argument), 1/3 for Oslo (2 arguments)
    assert metrics["json_format"] == 1.0 and metrics["json_args_em"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    garbage = file_metrics("instruct", score_samples("instruct", samples, ["", "?", "{}", "Thought: x"], embedder))
    assert garbage == {"parse_rate": 0.0, "json_format": 0.0, "json_args_em": 0.0, "str_format": 0.0,
                       "str_args_em": 0.0}
    assert dimension_scores({"instruct": metrics})["instruct"] == pytest.approx(
        ((1 + metrics["json_args_em"]) / 2 + (1 + metrics["str_args_em"]) / 2) / 2)


def test_instruct_str_format_with_unreadable_arguments_still_counts_as_formatted():
    template = _samples("instruct")[1].template
    parsed = parse_instruct("Thought: x\nAction: A.b\nAction Input: not a dict\n", template, "str")
    assert parsed == {"thought": " x", "action": "A.b", "args": {}}
    assert args_exact_match("A.b", "A.b", {"k": 1}, {}) == 0.5


def test_reason_str_is_cosine_to_the_reference_thought(embedder):
    samples = _samples("reason_str")
    replies = [s.ground_truth["thought"] for s in samples]
    metrics = file_metrics("reason_str", score_samples("reason_str", samples, replies, embedder))
    assert metrics["thought"] == pytest.approx(1.0, abs=1e-5) and metrics["parse_rate"] == 1.0
    unrelated = ["Penguins live in the southern hemisphere."] * len(samples)
    low = file_metrics("reason_str", score_samples("reason_str", samples, unrelated, embedder))
    assert low["thought"] < 0.4
    # upstream takes a str reply whole, so even an empty one counts as parsed
    empty = file_metrics("reason_str", score_samples("reason_str", samples, [""] * len(samples), embedder))
    assert empty["parse_rate"] == 1.0 and empty["thought"] < 0.4


def test_retrieve_str_needs_the_name_and_no_other():
    assert retrieve_str_hit("Call Email.send now", "Email.send")
    assert not retrieve_str_hit("Email.send, then WeatherAPI.get_forecast", "Email.send")
    assert not retrieve_str_hit("Email.send then FinishAction", "Email.send")
    assert retrieve_str_hit("FinishAction", "FinishAction")
    assert not retrieve_str_hit("send an email", "Email.send")


def test_retrieve_and_understand_str_on_fixtures(embedder):
    samples = _samples("retrieve_str")
    names = [s.ground_truth["name"] for s in samples]
    scores = score_samples("retrieve_str", samples, [f"The next API is {n}" for n in names], embedder)
    assert file_metrics("retrieve_str", scores) == {"name": 1.0, "parse_rate": 1.0}
    swapped = score_samples("retrieve_str", samples, names[1:] + names[:1], embedder)
    assert file_metrics("retrieve_str", swapped)["name"] == 0.0
    samples = _samples("understand_str")
    exact = [str(s.ground_truth["args"]) for s in samples]
    metrics = file_metrics("understand_str", score_samples("understand_str", samples, exact, embedder))
    assert metrics["args"] == pytest.approx(1.0, abs=1e-5)


def test_rru_json_scores_three_parts_and_parse_failures(embedder):
    samples = _samples("rru_json")
    perfect = [json.dumps(s.ground_truth) for s in samples]
    metrics = file_metrics("rru_json", score_samples("rru_json", samples, perfect, embedder))
    assert metrics == pytest.approx({"thought": 1.0, "name": 1.0, "args": 1.0, "parse_rate": 1.0}, abs=1e-5)
    wrong_name = [json.dumps(dict(s.ground_truth, name="Other.tool")) for s in samples]
    assert file_metrics("rru_json", score_samples("rru_json", samples, wrong_name, embedder))["name"] == 0.0
    garbage = file_metrics("rru_json", score_samples("rru_json", samples, ["", "[1, 2]", "oops"], embedder))
    assert garbage == {"thought": 0.0, "name": 0.0, "args": 0.0, "parse_rate": 0.0}


def test_dimension_formulas_follow_convert_results():
    files = {"instruct": {"json_format": 1.0, "json_args_em": 0.5, "str_format": 0.0, "str_args_em": 0.0},
             "plan_json": {"f1_score": 0.6}, "plan_str": {"f1_score": 0.2},
             "reason_str": {"thought": 0.8}, "rru_json": {"thought": 0.4, "name": 1.0, "args": 0.3},
             "retrieve_str": {"name": 0.5}, "understand_str": {"args": 0.7}, "review_str": {"review_quality": 0.9}}
    dims = dimension_scores(files)
    assert dims == pytest.approx({"instruct": 0.375, "plan": 0.4, "reason": 0.6, "retrieve": 0.75,
                                  "understand": 0.5, "review": 0.9})
    assert list(dims) == list(DIMENSIONS)
    assert dimension_scores({"review_str": {"review_quality": 0.5}}) == {"review": 0.5}


def test_pair_cosine_clips_and_checks_lengths(embedder):
    assert pair_cosine(embedder, [], []) == []
    with pytest.raises(ValueError):
        pair_cosine(embedder, ["a"], [])
    (same,) = pair_cosine(embedder, ["the weather in Paris"], ["the weather in Paris"])
    assert same == pytest.approx(1.0, abs=1e-5)


def test_bad_data_gives_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        find_files(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no T-Eval v1 file for review"):
        find_files(tmp_path, ("review",))
    with pytest.raises(ConfigError, match="unknown T-Eval dimension"):
        find_files(FIXTURES, ("planning",))
    bad = tmp_path / "review_str_v1.json"
    bad.write_text('{"1": {"origin_prompt": []}}')
    with pytest.raises(ConfigError, match="lacks origin_prompt or ground_truth"):
        load_samples(bad, "review_str")
    with pytest.raises(ConfigError, match="role 'robot'"):
        to_messages([{"role": "robot", "content": "hi"}])
