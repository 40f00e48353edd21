"""Gold answers and accuracy: the one rule `bench`, the device kit and evaluation score predictions by.

- `normalize_gold`: a gold value as the canonical answer (a label name, a choice text, a number string),
  accepting label indices (e-SNLI's 0/1/2), any case, choice letters or indices.
- `accuracy`: predictions against gold through families.answers_match (numbers compare by value, so
  "12,000" = "12000" and "( 84. 0 / 2. 0 )" = "42").
- `read_records`: JSON lines or a JSON list of the task's fields, for the device kit (which has no
  edgedistill.data: it needs yaml and pyarrow).
"""

from __future__ import annotations

import json
from pathlib import Path

from .families import answers_match

CHOICE_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def normalize_gold(task_type: str, labels, value, choices=None) -> str:
    """The canonical answer for a gold value; ValueError (saying what is accepted) for one that is none."""
    if isinstance(value, bool):  # JSON true/false is a label name, never the index 1/0
        value = str(value).lower()
    if task_type == "classification":
        labels = list(labels or [])
        if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
            i = int(value)
            if 0 <= i < len(labels):
                return labels[i]
        for label in labels:
            if str(value).strip().lower() == label.lower():
                return label
        raise ValueError(
            f"unknown label {value!r}; use one of {labels} (or its index), or add it to labels: in the task"
        )
    if task_type == "multiple-choice":
        s = str(value).strip()
        choices = [str(c) for c in choices or []]
        for c in choices:
            if s.lower() == c.lower():
                return c
        if len(s) == 1 and s.lower() in CHOICE_LETTERS[: len(choices)]:
            return choices[CHOICE_LETTERS.index(s.lower())]
        if s.isdigit() and int(s) < len(choices):
            return choices[int(s)]
        raise ValueError(f"{value!r} is none of the choices {choices}; give the choice text, its letter or its index")
    s = str(value).strip()
    if not s:
        raise ValueError("empty numeric answer")
    return s


def answer_of(prediction) -> str:
    """The answer in a prediction: EdgeModel.predict's label (classification, choice) or answer (seq2seq)."""
    if isinstance(prediction, dict):
        return prediction.get("label", prediction.get("answer"))
    return prediction


def hits(task_type: str, predictions, golds) -> list[bool]:
    return [answers_match(task_type, answer_of(p), g) for p, g in zip(predictions, golds)]


def accuracy(task_type: str, predictions, golds) -> float | None:
    """Share of predictions that match their gold (5 decimals); None without gold."""
    golds = list(golds)
    if not golds:
        return None
    return round(sum(hits(task_type, predictions, golds)) / len(golds), 5)


def parse_choices(value):
    """A row's options: a list, or a JSON list in a string (CSV), or 'a|b|c'."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = [c.strip() for c in value.split("|")]
    return value


def read_records(path, limit: int | None = None) -> list[tuple[int, dict]]:
    """(line, row) of a JSON lines file or a JSON list; ValueError naming the line for a bad one."""
    text = Path(path).read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        rows = list(enumerate(json.loads(text), 1))
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((n, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise ValueError(
                        f"{path}:{n}: malformed JSON line ({e.msg}); each line must be one JSON object"
                    ) from None
    return rows[:limit] if limit else rows


def gold_of(task: dict, row: dict, where: str = "") -> str | None:
    """The row's normalised gold answer (task as in a bundle's manifest), None where it has none."""
    field = task.get("gold")
    value = row.get(field) if field else None
    if value in (None, ""):
        return None
    choices = parse_choices(row.get(task.get("choices"))) if task.get("type") == "multiple-choice" else None
    try:
        return normalize_gold(task.get("type"), task.get("labels"), value, choices)
    except ValueError as e:
        raise ValueError(f"{where}: {field}: {e}" if where else str(e)) from None
