"""T-Eval's lenient readers: Python literals, JSON, single-quoted JSON, fenced blocks, text templates."""

import pytest

from agentkit.evals.teval.parsing import ParseFailure, load_structured, match_template


@pytest.mark.parametrize("text, expected", [
    ("[{'id': 0, 'name': 'a', 'args': {}}]", [{"id": 0, "name": "a", "args": {}}]),
    ('[{"id": 0, "ok": true, "x": null}]', [{"id": 0, "ok": True, "x": None}]),
    ("Here is the plan:\n```json\n[{\"id\": 1}]\n```\nDone.", [{"id": 1}]),
    ("noise before [1, 2] noise after", [1, 2]),
])
def test_load_structured_reads_literals_json_and_fences(text, expected):
    assert load_structured(text, "[", "]") == expected


def test_load_structured_swaps_quotes_as_a_last_resort():
    # neither a Python literal (true) nor JSON (single quotes): only the quote swap reads it
    assert load_structured("{'done': true}", "{", "}") == {"done": True}


def test_load_structured_passes_parsed_values_through():
    value = [{"id": 0}]
    assert load_structured(value) is value


@pytest.mark.parametrize("text", ["", "no list here", "[1, 2", "{'a': }"])
def test_load_structured_fails_clearly(text):
    with pytest.raises(ParseFailure, match="no literal or JSON value"):
        load_structured(text, "[", "]")


def test_match_template_reads_fields_across_lines():
    template = "Thought:{thought}\nAction:{action}\nAction Input:{args}\n"
    fields = match_template(template, "Thought: I need it\nand more\nAction: X.y\nAction Input: {'a': 1}\n")
    assert fields == {"thought": " I need it\nand more", "action": " X.y", "args": " {'a': 1}"}
    assert match_template(template, "Action: X.y") is None


def test_match_template_treats_literal_text_literally():
    assert match_template("f({x}) = {y}?", "f(2) = 4?") == {"x": "2", "y": "4"}
