"""A small, safe arithmetic evaluator for numeric answers such as "( 84.0 / 2.0 )".

Numbers, + - * / // % **, unary minus and parentheses only, via the `ast` module: never `eval()`. Every
constant and every intermediate value is bounded (under 10**MAX_DIGITS in magnitude, finite, real), and a
power is refused before it is computed when its result would pass that bound, so no text of any length
makes it run long or allocate much.
"""

from __future__ import annotations

import ast
import math
import operator
import re

_BIN = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
MAX_CHARS = 500  # longest expression read
MAX_DIGITS = 100  # every value, on the way and at the end, is under 10**MAX_DIGITS in magnitude
_LIMIT = 10**MAX_DIGITS


class UnusableNumber(ValueError):
    """Plain arithmetic whose value cannot be used: too large, not finite, not real, or a division by zero."""


def evaluate(expr: str) -> float:
    """Value of an arithmetic expression. Raises UnusableNumber for arithmetic whose value cannot be used,
    ValueError for anything that is not plain arithmetic; never anything else."""
    text = str(expr).strip().replace("×", "*").replace("÷", "/").replace("−", "-")
    if not text or len(text) > 2 * MAX_CHARS:  # (the thousands separators below may shorten it)
        raise ValueError(f"not an arithmetic expression of at most {MAX_CHARS} characters: {_short(expr)}")
    text = tidy(re.sub(r"(?<=\d),(?=\d{3}\b)", "", text))  # 12,000 -> 12000
    if len(text) > MAX_CHARS:
        raise ValueError(f"not an arithmetic expression of at most {MAX_CHARS} characters: {_short(expr)}")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):  # ValueError: a NUL byte
        raise ValueError(f"not an arithmetic expression: {_short(expr)}") from None
    try:
        return float(_eval(tree.body, expr))
    except RecursionError:
        raise ValueError(f"nested too deeply: {_short(expr)}") from None


def _short(expr) -> str:
    text = str(expr)
    return repr(text if len(text) <= 60 else text[:60] + "...")


def _eval(node, expr):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return _bounded(node.value, expr)
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        left, right = _eval(node.left, expr), _eval(node.right, expr)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right, expr)
        try:
            return _bounded(_BIN[type(node.op)](left, right), expr)
        except (ZeroDivisionError, OverflowError) as e:
            raise UnusableNumber(f"{e} in {_short(expr)}") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, expr))
    raise ValueError(f"only numbers and + - * / ( ) are allowed, not {type(node).__name__} in {_short(expr)}")


def _check_power(base, exponent, expr) -> None:
    """Refuse a power whose value would be complex or pass the bound, before computing it."""
    if base < 0 and exponent != int(exponent):
        raise UnusableNumber(f"a negative number to a fractional power is not a real number: {_short(expr)}")
    if base != 0 and exponent * math.log10(abs(base)) >= MAX_DIGITS:
        raise UnusableNumber(f"a power of {MAX_DIGITS} digits or more: {_short(expr)}")


def _bounded(value, expr):
    """The value itself when it is finite, real and under 10**MAX_DIGITS in magnitude; else UnusableNumber."""
    if isinstance(value, complex):
        raise UnusableNumber(f"not a real number: {_short(expr)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UnusableNumber(f"not a finite number: {_short(expr)}")
    if abs(value) >= _LIMIT:
        raise UnusableNumber(f"a number of more than {MAX_DIGITS} digits: {_short(expr)}")
    return value


def tidy(text: str) -> str:
    """Rejoin decimals that a WordPiece decode split: "( 84. 0 / 2. 0 )" -> "( 84.0 / 2.0 )"."""
    return re.sub(r"(?<=\d)\s*\.\s*(?=\d)", ".", text)


def to_number(text) -> float | None:
    """A number or an arithmetic expression as a float; None if it is neither, or if its value cannot be used
    (see evaluate). Never raises: replies and gold values of any kind come through here."""
    try:
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            return float(_bounded(text, text))
        return evaluate(str(text))
    except (ValueError, OverflowError):
        return None


def same_number(a, b, rel: float = 1e-4) -> bool:
    """Numeric answers compare as numbers: "42", "42.0" and "( 84.0 / 2.0 )" are all equal."""
    x, y = to_number(a), to_number(b)
    return x is not None and y is not None and math.isclose(x, y, rel_tol=rel, abs_tol=1e-6)
