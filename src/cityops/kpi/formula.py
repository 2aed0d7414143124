"""A safe evaluator for indicator formulas: arithmetic over named inputs, parsed with `ast`.

Only numbers, input names, + - * / and parentheses are allowed (no calls, no attributes, no
`eval`). Division by zero, or a missing input, gives None ("no data"), never an error: a commune
with no hospital has no bed occupancy, not a crash.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

MAX_LENGTH = 500

_BINARY = (ast.Add, ast.Sub, ast.Mult, ast.Div)
_UNARY = (ast.UAdd, ast.USub)
_PLAIN = (ast.Expression, ast.Name, ast.Load, *_BINARY, *_UNARY)


class FormulaError(ValueError):
    """The formula is not arithmetic over names; `reason` is a message key suffix."""

    def __init__(self, reason: str, **params: object) -> None:
        self.reason = reason
        self.params = params
        super().__init__(reason)


def parse(text: str) -> ast.expr:
    """Parse a formula and check it holds only arithmetic over names and numbers."""
    if not text.strip() or len(text) > MAX_LENGTH:
        raise FormulaError("syntax")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise FormulaError("syntax") from error
    for node in ast.walk(tree):
        if isinstance(node, _PLAIN):
            continue
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, _BINARY):
                continue
            raise FormulaError("not_allowed", element=type(node.op).__name__)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, _UNARY):
            continue
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
        ):
            continue
        raise FormulaError("not_allowed", element=type(node).__name__)
    return tree.body


def names(text: str) -> list[str]:
    """Return the input names a formula refers to, in order of first use."""
    seen: dict[str, None] = {}
    for node in ast.walk(parse(text)):
        if isinstance(node, ast.Name):
            seen.setdefault(node.id, None)
    return list(seen)


def evaluate(expr: ast.expr, values: Mapping[str, float | None]) -> float | None:
    """Evaluate a parsed formula; None when an input is missing or a divisor is zero."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, int | float):
        return float(expr.value)
    if isinstance(expr, ast.Name):
        value = values.get(expr.id)
        return None if value is None else float(value)
    if isinstance(expr, ast.UnaryOp):
        operand = evaluate(expr.operand, values)
        if operand is None:
            return None
        return -operand if isinstance(expr.op, ast.USub) else operand
    if isinstance(expr, ast.BinOp):
        left = evaluate(expr.left, values)
        right = evaluate(expr.right, values)
        if left is None or right is None:
            return None
        if isinstance(expr.op, ast.Add):
            return left + right
        if isinstance(expr.op, ast.Sub):
            return left - right
        if isinstance(expr.op, ast.Mult):
            return left * right
        return None if right == 0 else left / right
    raise FormulaError("not_allowed", element=type(expr).__name__)
