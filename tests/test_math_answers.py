"""Answer extraction, normalisation and equivalence for GSM8K / MATH grading, including junk and runaway sympy."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkit.evals.math import symbolic
from agentkit.evals.math.answers import extract_answer, is_equivalent, last_boxed, normalize, split_group, to_number


@pytest.mark.parametrize(("text", "expected"), [
    ("so the total is \\boxed{18}.", "18"),
    ("first \\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\boxed{\\frac{\\sqrt{\\frac{1}{2}}}{3}} is it", "\\frac{\\sqrt{\\frac{1}{2}}}{3}"),
    ("an unclosed \\boxed{7 then a closed \\boxed{8}", "8"),
    ("$\\boxed 5$", "5"),
    ("She makes 9 * 2 = 18 dollars.\n#### 18", "18"),
    ("#### 1,000", "1,000"),
    ("The answer is: 42.", "42"),
    ("So the final answer is 3.5.", "3.5"),
    ("The answer is $\\frac{3}{4}$", "\\frac{3}{4}"),
    ("I computed 3 things, then 1,250 more", "1250"),
    ("half of it: 3/4", "3/4"),
    ("it went from 5 to -2.5", "-2.5"),
    ("no numbers here", None),
    ("", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_boxed_beats_the_other_forms():
    assert extract_answer("The answer is 4. #### 5 and finally \\boxed{6} then 7") == "6"
    assert extract_answer("#### 5\nThe answer is 4") == "5"
    assert last_boxed("\\boxed{unclosed") is None
    assert last_boxed("\\fbox{7}") == "7"


@pytest.mark.parametrize(("raw", "expected"), [
    (" $ 1,234.50 $ ", "1234.50"),
    ("18 dollars", "18"),
    ("\\$18", "18"),
    ("10\\text{ cm}^2", "10"),
    ("1\\!000", "1000"),
    ("90^\\circ", "90"),
    ("90^{\\circ}", "90"),
    ("50\\%", "50%"),
    ("\\dfrac{3}{4}", "\\frac{3}{4}"),
    ("\\frac12", "\\frac{1}{2}"),
    ("\\sqrt2", "\\sqrt{2}"),
    ("x = 3", "3"),
    ("x \\in [1, 2)", "[1,2)"),
    ("\\left( 1, 2 \\right)", "(1,2)"),
    ("\\text{Evelyn}", "Evelyn"),
    ("2 pi", "2pi"),  # a math word after a number is not a unit
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize(("text", "value"), [
    ("3/4", 0.75), ("\\frac{3}{4}", 0.75), ("-\\frac{1}{4}", -0.25), ("2\\frac{1}{4}", 2.25), ("0.75", 0.75),
    ("50%", 0.5), ("1e3", 1000.0), (".5", 0.5), ("\\frac{1}{0}", None), ("1e999999999", None), ("x", None),
])
def test_to_number(text, value):
    assert to_number(text) == value


@pytest.mark.parametrize(("predicted", "gold"), [
    ("18", "18"), ("18.0", "18"), ("18.00001", "18"), ("64000.0", "64000"), ("+7", "7"), ("1,000", "1000"),
    ("$18", "18"), ("18 dollars", "18"), ("\u22125", "-5"), ("18\\text{ eggs}", "18"),
    ("\\$18.00", "18"), ("\\frac{1}{2}", "0.5"), ("\\dfrac{3}{4}", "3/4"), ("\\tfrac34", "0.75"),
    ("-\\frac{1}{3}", "-0.333333"), ("0.33333", "1/3"), ("2\\frac{1}{4}", "9/4"),
    ("50\\%", "50"), ("50%", "0.5"), ("12.5\\%", "12.5"),
    ("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}"), ("x = 3", "3"), ("k=-4", "-4"),
    ("(1,2)", "(1, 2)"), ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"), ("[1, 2)", "[1,2)"),
    ("(0.5, \\frac{1}{3})", "(\\frac12, 0.333333)"), ("3, 5, 7", "7, 3, 5"), ("1,-2", "-2, 1"),
    ("\\{1, 2\\}", "\\{2, 1\\}"),
    ("2\\pi", "\\pi \\cdot 2"), ("90^\\circ", "90"), ("10\\text{ cm}", "10"), ("x^2+2x+1", "(x+1)^2"),
    ("6 - 5i", "-5i+6"), ("(1+i)^2", "2i"), ("\\frac{\\pi}{2}", "1.5708"), ("\\sqrt[3]{8}", "2"), ("p - q", "-q+p"),
    ("\\text{Evelyn}", "Evelyn"), ("evelyn", "\\text{Evelyn}"), ("3\\sqrt{13}", "\\sqrt{117}"),
])
def test_equivalent(predicted, gold):
    assert is_equivalent(predicted, gold)
    assert is_equivalent(gold, predicted)


@pytest.mark.parametrize(("predicted", "gold"), [
    ("1/2", "0.6"), ("17", "18"), ("18.01", "18"), ("64001", "64000"), ("0.3", "1/3"), ("0.5", "50"),
    ("(1,2)", "(2,1)"),
    ("(1,2)", "[1,2]"), ("(1,2)", "(1,2,3)"), ("(1,2)", "1,2"), ("1,2", "1,2,2"), ("x^2", "x^3"), ("2\\pi", "6.3"),
    ("\\frac{1}{0}", "1"), ("abc", "abd"), ("Evelyn", "Emma"), (None, "1"), ("", "1"), ("1", None), ("x=", "3"),
    ("\\sqrt{2}", "\\sqrt{3}"), ("25%", "50"),
])
def test_not_equivalent(predicted, gold):
    assert not is_equivalent(predicted, gold)


def test_groups_need_their_first_bracket_to_close_at_the_end():
    assert split_group("(1,2]") == ("(", ["1", "2"], "]")
    assert split_group("(1+2)*(3,4)") is None
    assert split_group("(7)") is None


@pytest.mark.parametrize(("latex", "text"), [
    ("\\frac{\\sqrt{2}}{2}", "((sqrt(2))/(2))"),
    ("\\frac12", "((1)/(2))"),
    ("\\sqrt[3]{x}", "((x)**(1/(3)))"),
    ("2^{10}\\cdot\\pi", "2**(10) * pi"),
    ("x_{1}", "x_1"),
    ("\\unknown{1}", None),
    ("\\frac{1}{2", None),
])
def test_fallback_latex_converter(latex, text):
    converted = symbolic.latex_to_sympy_text(latex)
    assert (None if converted is None else converted.replace("  ", " ")) == text


@pytest.mark.parametrize("latex_parser", [True, False], ids=["antlr", "fallback"])
def test_both_latex_readers_agree_on_typical_answers(latex_parser):
    if latex_parser and not symbolic.have_latex_parser():
        pytest.skip("sympy's LaTeX parser needs antlr4-python3-runtime 4.11, which is not installed")
    equal = [("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"), ("2\\pi", "\\pi\\cdot2"), ("x^{2}+2x+1", "(x+1)^2"),
             ("\\sqrt[3]{27}", "3"), ("\\frac{\\pi}{3}", "1.047198")]
    for a, b in equal:
        assert symbolic.symbolically_equal(a, b, latex_parser=latex_parser), (a, b)
    assert not symbolic.symbolically_equal("\\frac{\\pi}{3}", "\\frac{\\pi}{4}", latex_parser=latex_parser)


def test_plain_parsing_never_evaluates_python():
    assert symbolic.to_expr("__import__(1)") is None
    assert symbolic.to_expr("x.conjugate()") is None
    assert not is_equivalent("os.system(1)", "0")
    assert not is_equivalent("exec(1)", "exec(2)")
    assert is_equivalent("exec(1)", "exec(1)")  # the same text, never run


def test_runaway_sympy_is_stopped_and_the_worker_comes_back():
    worker = symbolic.shared_worker()
    restarts = worker.restarts
    started = time.perf_counter()
    assert not is_equivalent("9^{9^{9}}", "1", timeout_s=1.0)  # one GIL-holding big-int power, in a thread: stuck
    assert time.perf_counter() - started < 10
    assert worker.restarts == restarts + 1
    assert is_equivalent("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2")  # a fresh worker answers the next question


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.text(max_size=20))
def test_junk_never_raises(a, b):
    assert isinstance(is_equivalent(a, b, timeout_s=1.0), bool)
    found = extract_answer(a)
    assert found is None or isinstance(found, str)
    assert isinstance(normalize(a), str)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="0123456789+-*/^().,{}\\fracsqrtpi x=%", max_size=30))
def test_math_looking_junk_never_raises_and_equals_itself(a):
    assert isinstance(is_equivalent(a, "1", timeout_s=1.0), bool)
    assert is_equivalent(a, a) == bool(normalize(a))
