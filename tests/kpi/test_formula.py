"""The formula evaluator: arithmetic over names only, no data on a zero divisor."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityops.kpi import formula


def test_arithmetic_over_named_inputs() -> None:
    expr = formula.parse("beds / (population / 100000)")
    assert formula.evaluate(expr, {"beds": 1150, "population": 500_000}) == 230.0
    assert formula.evaluate(formula.parse("-a + 2.5 * (b - 1)"), {"a": 1, "b": 3}) == 4.0
    assert formula.names("(x - y) / x * 100") == ["x", "y"]


def test_a_zero_divisor_or_a_missing_input_is_no_data() -> None:
    expr = formula.parse("a / b * 100")
    assert formula.evaluate(expr, {"a": 1, "b": 0}) is None
    assert formula.evaluate(expr, {"a": 1, "b": None}) is None
    assert formula.evaluate(expr, {"a": 1}) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("__import__('os').system('id')", "not_allowed"),
        ("a ** 2", "not_allowed"),
        ("a.b", "not_allowed"),
        ("a if b else c", "not_allowed"),
        ("a[0]", "not_allowed"),
        ("'text'", "not_allowed"),
        ("True + 1", "not_allowed"),
        ("a +", "syntax"),
        ("", "syntax"),
        ("a; b", "syntax"),
    ],
)
def test_anything_but_arithmetic_is_refused(text: str, reason: str) -> None:
    with pytest.raises(formula.FormulaError) as caught:
        formula.parse(text)
    assert caught.value.reason == reason


@given(st.text(max_size=40))
def test_any_text_parses_or_is_refused_without_another_error(text: str) -> None:
    try:
        expr = formula.parse(text)
    except formula.FormulaError:
        return
    names = formula.names(text)
    result = formula.evaluate(expr, dict.fromkeys(names, 2.0))
    assert result is None or isinstance(result, float)
