"""A numeric task as a choice among expressions: the candidate answers an encoder student ranks.

An encoder student cannot write a number, but it can pick one: every expression of one arithmetic
operation over two of the numbers in the problem ("84 / 2", "2 / 84", "84 + 2", ...) is a choice, and
the student is a multiple-choice model over (problem, expression) pairs. Most word problems of the
SVAMP kind need exactly one operation on numbers the text states (79 % of SVAMP's); the rest cannot be
answered this way, and the student's answer for them is one operation short. Torch-free: training,
the runtime, `bench` and the device kit all build the choices here, so they rank the same list; the
JavaScript runtime's port (export/js/expressions.mjs) is tested against this module.
"""

from __future__ import annotations

import itertools
import operator
import re

from .arith import same_number

# A number as a problem writes it: 84, 3.5, 12,000 in ASCII digits (not the 2 of "mp3" or a part of "1.2.3")
_NUMBER = re.compile(r"(?<![\w.])[0-9]+(?:,[0-9]{3})*(?:\.[0-9]+)?")
_OPERATIONS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
MAX_NUMBERS = 8  # the first 8 distinct numbers: at most 8 * 7 * 3 = 168 choices per problem


def numbers(text: str) -> list[str]:
    """The distinct numbers in a text, in order of first appearance, thousands separators dropped."""
    out: list[str] = []
    for m in _NUMBER.finditer(text):
        n = m.group().replace(",", "")
        if n not in out:
            out.append(n)
    return out[:MAX_NUMBERS]


def candidates(text: str) -> list[str]:
    """Every one-operation expression over two distinct numbers of the text, in a fixed order: for each pair
    in order of appearance, a + b, a - b, b - a, a * b, a / b, b / a (a + b and a * b once, not again as
    b + a; no division by zero). A text with fewer than two numbers has none."""
    out = []
    for a, b in itertools.combinations(numbers(text), 2):
        out += [f"{a} + {b}", f"{a} - {b}", f"{b} - {a}", f"{a} * {b}"]
        out += [f"{x} / {y}" for x, y in ((a, b), (b, a)) if float(y) != 0]
    return out


def target(choices: list[str], answer) -> int | None:
    """The index of the choice whose value is `answer` ("42" or "( 84.0 / 2.0 )"); where several have it
    (9 / 3 = 6 - 3), the one spelled as `answer` if it is an expression among them, else the first. None if
    no choice has the value: the answer needs more than one operation, or a number the text does not hold."""
    hits = [i for i, c in enumerate(choices) if same_number(value(c), answer)]
    spelled = _spelling(str(answer))
    return next((i for i in hits if _spelling(choices[i]) == spelled), hits[0] if hits else None)


def _spelling(expr: str) -> str:
    """An expression without spaces, brackets and trailing ".0": "( 84.0 / 2.0 )" -> "84/2"."""
    return re.sub(r"(?<=\d)\.0+\b", "", re.sub(r"[\s()]", "", expr))


def value(expr: str) -> float:
    """A candidate's value in double-precision arithmetic on its two numbers, as the JS runtime computes it
    ("05 + 3" -> 8.0: a leading zero is no Python literal, so not arith.evaluate)."""
    a, op, b = expr.split(" ")
    return _OPERATIONS[op](float(a), float(b))


def value_of(expr: str) -> str:
    """A candidate's value as an app shows it (Python's "%.10g"): "84 / 2" -> "42", "1 / 3" -> "0.3333333333"."""
    return f"{value(expr):.10g}"


def choices_for(task_type: str | None, text: str, given=None) -> list[str] | None:
    """What a multiple-choice student ranks for one input: a numeric task's expressions, else the given options."""
    return candidates(text) if task_type == "numeric" else given
