"""The task spec: what the inputs look like, what the answer is, and how to show it to a teacher.

A task is a small YAML file (see README). It is the one description every stage reads: the teacher
prompt, the student's head, the bundle's manifest and the runtime all render inputs through
`TaskSpec.render`, so train and device see byte-identical text.
"""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import UserError, at

TYPES = ("classification", "multiple-choice", "numeric")
CHOICE_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class TaskSpec:
    name: str
    type: str
    input: str
    labels: list[str] | None = None
    choices: str | None = None
    gold: str | None = None
    id: str | None = None
    instruction: str | None = None
    # Optional overrides of the prompt wording in edgedistill/prompts.py, keyed by template name.
    prompts: dict[str, str] = field(default_factory=dict)
    # Optional extra words the teacher may use for a label, e.g. {"entailment": ["true", "yes"]}.
    synonyms: dict[str, list[str]] = field(default_factory=dict)
    # Optional one-line meaning of each label, shown beside it in the scoring request's options.
    descriptions: dict[str, str] = field(default_factory=dict)
    source: str | None = None  # where the spec was read from; not part of the YAML

    @property
    def fields(self) -> list[str]:
        """The data fields the input template uses, in order of appearance."""
        names = []
        for _, name, _, _ in string.Formatter().parse(self.input):
            if name and name not in names:
                names.append(name)
        return names

    def render(self, row: dict) -> str:
        """The input text for one data row (dict of fields). Raises KeyError on a missing field."""
        return self.input.format(**{k: row[k] for k in self.fields})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source")
        return {k: v for k, v in d.items() if v not in (None, {}, [])}

    def save(self, path) -> None:
        from .atomic import write_text

        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))


def load_task(path) -> TaskSpec:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: task file not found; pass --task with the path to a task YAML (see README, 'Task spec')")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise at(path, None if line is None else line + 1, None, f"not valid YAML ({e.__class__.__name__}); fix the syntax") from None
    return task_from_dict(raw, source=str(path))


def task_from_dict(raw, source: str = "<task>") -> TaskSpec:
    if not isinstance(raw, dict):
        raise at(source, None, None, "a task must be a YAML mapping with at least name, type and input")
    known = {f.name for f in dataclasses.fields(TaskSpec)} - {"source"}
    for key in raw:
        if key not in known:
            raise at(source, None, key, f"unknown key; allowed keys are {', '.join(sorted(known))}")
    for key in ("name", "type", "input"):
        if not raw.get(key) or not isinstance(raw[key], str):
            raise at(source, None, key, "required string is missing or empty")
    if raw["type"] not in TYPES:
        raise at(source, None, "type", f"{raw['type']!r} is not a task type; use one of {', '.join(TYPES)}")
    task = TaskSpec(**raw, source=source)
    try:
        task.fields
    except ValueError as e:
        raise at(source, None, "input", f"bad template ({e}); write fields as {{name}} and literal braces as {{{{ }}}}") from None
    if not task.fields:
        raise at(source, None, "input", "the template uses no data field; write e.g. \"{text}\"")
    if task.type == "classification":
        labels = task.labels
        if not labels or not isinstance(labels, list) or len(labels) < 2:
            raise at(source, None, "labels", "a classification task needs a list of at least two labels")
        task.labels = [str(x) for x in labels]
        if len(set(l.lower() for l in task.labels)) != len(task.labels):
            raise at(source, None, "labels", "labels must be distinct (case-insensitively)")
    elif task.labels:
        raise at(source, None, "labels", f"only classification tasks have labels; a {task.type} task takes its answer from the data")
    if task.type == "multiple-choice" and not task.choices:
        raise at(source, None, "choices", "a multiple-choice task must name the data field that holds the list of options")
    for key in ("prompts", "synonyms", "descriptions"):
        if not isinstance(getattr(task, key), dict):
            raise at(source, None, key, "must be a mapping")
    for label, words in task.synonyms.items():
        if task.labels and label not in task.labels:
            raise at(source, None, f"synonyms.{label}", f"not one of the labels {task.labels}")
        if not isinstance(words, list):
            raise at(source, None, f"synonyms.{label}", "must be a list of words")
    for label, text in task.descriptions.items():
        if label not in (task.labels or []):
            raise at(source, None, f"descriptions.{label}", f"not one of the labels {task.labels}")
        if not isinstance(text, str) or not text.strip():
            raise at(source, None, f"descriptions.{label}", "must be a non-empty string")
    return task
