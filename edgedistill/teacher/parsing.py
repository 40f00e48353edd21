"""Turn what a teacher LLM wrote into a canonical label and a rationale, or a clean parse failure.

Real models write "**Answer:** Entailment.", "(c) train station", "c)", "The answer is 12.",
"12,000", "84 / 2 = 42". Everything here is total: it returns None for text it cannot map and
never raises, so one odd response can never crash an annotation run. A numeric answer whose value
cannot be used ("1e400", a 400-digit number, "(-8)**0.5") is no answer, and `why_unparsed` says why.
"""

from __future__ import annotations

import re

from ..edge.arith import UnusableNumber, evaluate
from ..task import CHOICE_LETTERS, TaskSpec

MIN_RATIONALE_WORDS = 5  # shorter "explanations" ("It is.", "See above.") teach the student nothing

# Words real models use for the NLI labels; a task can add its own under `synonyms:`.
DEFAULT_SYNONYMS = {
    "entailment": ["entails", "entailed", "entail", "true", "yes", "follows", "implied", "implies", "supported"],
    "neutral": [
        "inconclusive",
        "unknown",
        "undetermined",
        "cannot be determined",
        "can't be determined",
        "not enough information",
        "maybe",
        "it is not possible to tell",
        "unrelated",
        "possibly",
    ],
    "contradiction": [
        "contradicts",
        "contradicted",
        "contradictory",
        "contradict",
        "false",
        "no",
        "refuted",
        "refutes",
    ],
}

_ANSWER_MARKERS = [
    r"(?:final\s+)?answer\s*(?:is|:)",
    r"so\s+the\s+answer\s+is",
    r"therefore,?\s+the\s+answer(?:\s*\([^)]*\))?\s+is",
    r"the\s+correct\s+(?:answer|option|choice)\s+is",
    r"label\s*:",
]


def _plain(text: str) -> str:
    """Drop markdown emphasis and collapse whitespace."""
    text = re.sub(r"\*\*", _unbold, text)
    text = re.sub(r"__|`+|^#+\s*", "", text, flags=re.MULTILINE)
    text = re.sub(
        r"(?:(?<=\s)|^)\*(?=[A-Za-z])|(?<=[A-Za-z])\*(?=[\s:.,]|$)", "", text, flags=re.MULTILINE
    )  # *emphasis*, not 7 * 3
    return re.sub(r"[ \t]+", " ", text).strip()


def _unbold(m: re.Match) -> str:
    """A "**" is bold, and dropped, unless it stands between two numbers: 2**10, (1 / 2) ** -3."""
    before, after = m.string[max(0, m.start() - 2) : m.start()], m.string[m.end() : m.end() + 2]
    return m.group() if re.search(r"[\d)] ?$", before) and re.match(r" ?[\d(-]", after) else ""


def answer_segment(text: str) -> str:
    """The part of a response that states the answer: after the last answer marker on its line."""
    plain = _plain(text)
    best = None
    for pattern in _ANSWER_MARKERS:
        for m in re.finditer(pattern, plain, flags=re.IGNORECASE):
            if best is None or m.end() > best:
                best = m.end()
    if best is None:
        return plain
    segment = plain[best:].lstrip(" :")
    return segment.split("\n")[0].strip() or plain[best:].strip()


def _words(text: str) -> str:
    return " " + re.sub(r"[^a-z0-9_ ]+", " ", text.lower().replace("-", " ")) + " "


def parse_label(task: TaskSpec, text: str) -> str | None:
    """One of task.labels, read from the answer segment; None unless exactly one label is named."""
    synonyms = {
        label: [label] + task.synonyms.get(label, []) + DEFAULT_SYNONYMS.get(label.lower(), []) for label in task.labels
    }
    for segment in (answer_segment(text), _plain(text).split("\n")[0]):
        words = _words(segment)
        # A label written out (or an index like "1") counts first; synonyms only if no label is named.
        hits = {label for label in task.labels if _words(label) in words}
        if not hits:
            hits = {label for label, ws in synonyms.items() for w in ws if _words(w) in words}
            if len(hits) > 1:  # "not true" -> pick the label whose synonym comes first in the text
                first = min(
                    hits, key=lambda label: min(words.find(_words(w)) for w in synonyms[label] if _words(w) in words)
                )
                hits = {first}
        if len(hits) == 1:
            return hits.pop()
    return None


def parse_choice(text: str, choices: list[str]) -> str | None:
    """The chosen option's text, from "(c) train station", "c)", "C.", "option c" or the text itself."""
    letters = CHOICE_LETTERS[: len(choices)]
    plain, segment = _plain(text), answer_segment(text)
    if segment != plain and len(_letters_named(segment, letters)) > 1:
        return None  # "So the answer is either (b) lake or (d) pond" states two answers, not one
    for candidate in dict.fromkeys((segment, plain.split("\n")[0], plain)):
        if len(_letters_named(candidate, letters)) > 1:
            continue  # reasoning that weighs "(a)" against "(c)" names no single answer
        m = (
            re.search(rf"\(\s*([{letters}])\s*\)", candidate, re.IGNORECASE)
            or re.match(
                rf"^\s*([{letters}])\s*(?:[).\]]|$)", candidate, re.IGNORECASE
            )  # "c)", "C.", "c"; not "A man..." or "A: ..."
            or re.search(rf"\b(?:option|choice|answer is)\s+\(?([{letters}])\b\)?", candidate, re.IGNORECASE)
        )
        if m:
            return choices[letters.index(m.group(1).lower())]
        words = _words(candidate)
        named = [c for c in choices if _words(c) in words]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:  # "train station" also contains "station": keep the longest, most specific match
            named.sort(key=len, reverse=True)
            if not any(_words(named[0]) in _words(other) for other in named[1:]) and all(
                _words(o) in _words(named[0]) for o in named[1:]
            ):
                return named[0]
    return None


def _letters_named(text: str, letters: str) -> set[str]:
    return {x.lower() for x in re.findall(rf"\(\s*([{letters}])\s*\)", text, re.IGNORECASE)}


_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?"


def format_number(x: float) -> str:
    return str(round(x)) if abs(x - round(x)) < 1e-9 else f"{x:.6g}"


def parse_number(text: str) -> str | None:
    """A plain number string ("42", "3.5") from an answer, an expression or an equation."""
    return read_number(text)[0]


def read_number(text: str) -> tuple[str | None, str | None]:
    """(the number, None) from an answer; (None, why) when the answer states a number whose value cannot be used
    (too large, not finite, not real, a division by zero); (None, None) when it states none."""
    plain, segment = _plain(text), answer_segment(text)
    try:
        value = _number_in(segment, search=True)
        if value is None and segment != plain:
            # The stated answer holds no number ("The answer is (some - 8)."): a number from the working
            # would be a confident wrong label. Only a first line that is itself a number still counts.
            value = _number_in(plain.split("\n")[0], search=False)
    except UnusableNumber as e:
        return None, f"the number in the answer cannot be used ({e})"
    return (None if value is None else format_number(value)), None


def why_unparsed(task: TaskSpec, text: str) -> str | None:
    """Why parse_answer found no answer in a reply, where more is known than that it names none: a numeric
    answer whose value cannot be used. None otherwise."""
    if task.type != "numeric" or not text or not text.strip():
        return None
    return read_number(text)[1]


def _latex(text: str) -> str:
    """Small models write math answers in LaTeX: \\boxed{\\frac{5}{43}} is 5/43, not 5."""
    boxed = re.search(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}", text)
    if boxed:
        text = boxed.group(1)
    text = re.sub(r"\\d?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"(\1/\2)", text)
    return re.sub(r"\\(?:times|cdot)", "*", text).replace("\\div", "/")


def _number_in(candidate: str, search: bool) -> float | None:
    """The value of the answer in a candidate text; None if it holds none. Raises UnusableNumber for a number
    or expression whose value cannot be used: that is the answer, and no other number in the text replaces it."""
    candidate = _latex(candidate)
    cleaned = candidate.replace("$", "").rstrip(" .")
    cleaned = re.sub(r"(?<=\d),(?=\d{3}\b)", "", cleaned)
    if "=" in cleaned:  # "84 / 2 = 42": the value is after the last "="
        cleaned = cleaned.rsplit("=", 1)[1]
    value = _value(cleaned)
    if value is None and search:
        # "( 84.0 / 2.0 )" or "42 points" inside a sentence: the first expression or number in it
        operation = r"\s*(?:\*\*|[-+*/x×÷])\s*\(?\s*" + _NUMBER + r"\s*\)?"
        m = re.search(r"\(?\s*" + _NUMBER + rf"\s*\)?(?:{operation})*\s*\)?", candidate)
        value = _value(m.group(0).replace("$", "").replace("x", "*")) if m else None
    return value


def _value(text: str) -> float | None:
    """The value of a number or an arithmetic expression; None if the text is neither (UnusableNumber passes)."""
    try:
        return evaluate(text)
    except UnusableNumber:
        raise
    except ValueError:
        return None


def parse_answer(task: TaskSpec, text: str, choices: list[str] | None = None) -> str | None:
    """The canonical label for any task type, or None if the text names none."""
    if not text or not text.strip():
        return None
    if task.type == "classification":
        return parse_label(task, text)
    if task.type == "multiple-choice":
        return parse_choice(text, choices or [])
    return parse_number(text)


def clean_rationale(text: str | None) -> str | None:
    """A rationale worth training on, or None when it is missing or under MIN_RATIONALE_WORDS words."""
    if not text:
        return None
    text = re.sub(r"\s+", " ", _plain(text)).strip(" -:")
    return text if len(text.split()) >= MIN_RATIONALE_WORDS else None
