"""Read a data file into validated examples, or stop with `file:line: field: problem` before any work.

Formats: JSON lines (.jsonl / .json lines), a JSON list (.json), CSV (.csv / .tsv), Parquet (.parquet,
needs pyarrow). Each example carries the line it came from so later errors can point back to it.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError, at
from .task import CHOICE_LETTERS, TaskSpec


@dataclass
class Example:
    id: str
    input: str
    choices: list[str] | None = None
    gold: str | None = None  # normalised: a label, a choice text, or the numeric/equation string
    line: int | None = None
    row: dict | None = None  # the raw fields, for prompts that want them


def read_rows(path) -> list[tuple[int, dict]]:
    """(line number, row dict) for every record of a data file. Line numbers are 1-based."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: data file not found")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise UserError(f"{path}: reading Parquet needs pyarrow; pip install pyarrow, or convert to JSONL") from None
        return [(i + 2, r) for i, r in enumerate(pq.read_table(path).to_pylist())]
    text = path.read_text(encoding="utf-8-sig")
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        rows = []
        for i, r in enumerate(reader):
            if None in r or any(v is None for v in r.values()):
                raise at(path, i + 2, None, f"has a different number of columns than the header {reader.fieldnames}; quote fields that contain commas")
            rows.append((i + 2, dict(r)))
        return rows
    if suffix == ".json" and text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise at(path, e.lineno, None, f"invalid JSON ({e.msg})") from None
        for i, r in enumerate(data):
            if not isinstance(r, dict):
                raise at(path, None, f"[{i}]", "each item must be a JSON object of fields")
        return [(i + 1, r) for i, r in enumerate(data)]
    if suffix not in (".jsonl", ".json", ".ndjson"):
        raise UserError(f"{path}: unknown data format {suffix!r}; use .jsonl, .json, .csv, .tsv or .parquet")
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise at(path, n, None, f"malformed JSON line ({e.msg} at column {e.colno}); each line must be one JSON object") from None
        if not isinstance(r, dict):
            raise at(path, n, None, "each line must be a JSON object of fields, not a " + type(r).__name__)
        rows.append((n, r))
    return rows


def normalize_gold(task: TaskSpec, value, choices: list[str] | None, where: tuple) -> str:
    """Map a gold value to the canonical answer: a label name, a choice text, or a number/equation string.

    Accepts label names (any case), label indices (e-SNLI's 0/1/2), choice letters or indices.
    """
    path, line, fieldname = where
    if task.type == "classification":
        if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
            i = int(value)
            if 0 <= i < len(task.labels):
                return task.labels[i]
        for label in task.labels:
            if str(value).strip().lower() == label.lower():
                return label
        raise at(path, line, fieldname, f"unknown label {value!r}; use one of {task.labels} (or its index), or add it to labels: in the task")
    if task.type == "multiple-choice":
        s = str(value).strip()
        for c in choices:
            if s.lower() == c.lower():
                return c
        if len(s) == 1 and s.lower() in CHOICE_LETTERS[: len(choices)]:
            return choices[CHOICE_LETTERS.index(s.lower())]
        if s.isdigit() and int(s) < len(choices):
            return choices[int(s)]
        raise at(path, line, fieldname, f"{value!r} is none of the choices {choices}; give the choice text, its letter or its index")
    s = str(value).strip()
    if not s:
        raise at(path, line, fieldname, "empty numeric answer")
    return s


def load_examples(task: TaskSpec, path, limit: int | None = None, require_gold: bool = False) -> list[Example]:
    """Every example of a data file, validated against the task. Raises UserError on the first problem."""
    rows = read_rows(path)
    if not rows:
        raise UserError(f"{path}: no examples in the file; it must hold at least one record")
    out, seen = [], set()
    for n, (line, row) in enumerate(rows[:limit] if limit else rows):
        for f in task.fields:
            if f not in row or row[f] is None:
                raise at(path, line, f, f"missing field used by the task's input template; the row has {sorted(row)}")
        text = task.render({f: row[f] for f in task.fields})
        if not all(str(row[f]).strip() for f in task.fields):
            raise at(path, line, task.fields[0], "empty input; remove the row or fill in the field")
        choices = None
        if task.type == "multiple-choice":
            choices = row.get(task.choices)
            if isinstance(choices, str):
                try:
                    choices = json.loads(choices)
                except json.JSONDecodeError:
                    choices = [c.strip() for c in choices.split("|")]
            if not isinstance(choices, list) or len(choices) < 2 or not all(str(c).strip() for c in choices):
                raise at(path, line, task.choices, "must be a list of at least two non-empty options (JSON list, or 'a|b|c' in CSV)")
            choices = [str(c) for c in choices]
        gold = None
        if task.gold:
            if task.gold not in row or row[task.gold] in (None, ""):
                if require_gold:
                    raise at(path, line, task.gold, "missing gold label; this command needs one on every row")
            else:
                gold = normalize_gold(task, row[task.gold], choices, (path, line, task.gold))
        elif require_gold:
            raise UserError(f"{task.source}: gold: the task names no gold field; add 'gold: FIELD' to compare against labels")
        ex_id = str(row[task.id]) if task.id and row.get(task.id) is not None else str(n)
        if task.id and task.id not in row:
            raise at(path, line, task.id, "missing id field named by the task")
        if ex_id in seen:
            raise at(path, line, task.id or "id", f"duplicate id {ex_id!r}; ids must be unique")
        seen.add(ex_id)
        out.append(Example(id=ex_id, input=text, choices=choices, gold=gold, line=line, row=row))
    return out
