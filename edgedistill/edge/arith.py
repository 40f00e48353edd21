"""A small, safe arithmetic evaluator for numeric answers such as "( 84.0 / 2.0 )".

Numbers, + - * / // % **, unary minus and parentheses only, via the `ast` module: never `eval()`.
"""

from __future__ import annotations

import ast
import math
import operator
import re

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_MAX_POW = 100  # keeps "9**9**9" from hanging the process


def evaluate(expr: str) -> float:
    """Value of an arithmetic expression. Raises ValueError for anything that is not plain arithmetic."""
    text = expr.strip().replace("×", "*").replace("÷", "/").replace("−", "-")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 12,000 -> 12000
    text = tidy(text)
    if not text or len(text) > 500:
        raise ValueError(f"not an arithmetic expression: {expr!r}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {expr!r}") from None
    return float(_eval(tree.body, expr))


def _eval(node, expr):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        left, right = _eval(node.left, expr), _eval(node.right, expr)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_POW:
            raise ValueError(f"exponent too large in {expr!r}")
        try:
            return _BIN[type(node.op)](left, right)
        except (ZeroDivisionError, OverflowError) as e:
            raise ValueError(f"{e} in {expr!r}") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, expr))
    raise ValueError(f"only numbers and + - * / ( ) are allowed, not {ast.dump(node)[:40]} in {expr!r}")


def tidy(text: str) -> str:
    """Rejoin decimals that a WordPiece decode split: "( 84. 0 / 2. 0 )" -> "( 84.0 / 2.0 )"."""
    return re.sub(r"(?<=\d)\s*\.\s*(?=\d)", ".", text)


def to_number(text) -> float | None:
    """A number or an arithmetic expression as a float; None if it is neither."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    try:
        return evaluate(str(text))
    except ValueError:
        return None


def same_number(a, b, rel: float = 1e-4) -> bool:
    """Numeric answers compare as numbers: "42", "42.0" and "( 84.0 / 2.0 )" are all equal."""
    x, y = to_number(a), to_number(b)
    return x is not None and y is not None and math.isclose(x, y, rel_tol=rel, abs_tol=1e-6)
