"""The task spec: what the inputs look like, what the answer is, and how to show it to a teacher.

A task is a small YAML file (see README). It is the one description every stage reads: the teacher
prompt, the student's head, the bundle's manifest and the runtime all render inputs through
`TaskSpec.render`, so train and device see byte-identical text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .atomic import write_text
from .edge.template import fill_template, template_fields
from .errors import UserError, at
from .user_yaml import read_yaml

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
    # Optional overrides of the prompt wording in edgedistill/teacher/prompts.py, keyed by template name.
    prompts: dict[str, str] = field(default_factory=dict)
    # Optional extra words the teacher may use for a label, e.g. {"entailment": ["true", "yes"]}.
    synonyms: dict[str, list[str]] = field(default_factory=dict)
    # Optional one-line meaning of each label, shown beside it in the scoring request's options.
    descriptions: dict[str, str] = field(default_factory=dict)
    source: str | None = None  # where the spec was read from; not part of the YAML
    lines: dict[str, int] = field(default_factory=dict, repr=False, compare=False)  # key -> its line in `source`

    @property
    def fields(self) -> list[str]:
        """The data fields the input template uses, in order of appearance (ValueError for a bad template:
        only plain {field} placeholders, see edge/template.py)."""
        return template_fields(self.input)

    def render(self, row: dict) -> str:
        """The input text for one data row (dict of fields). Raises KeyError on a missing field."""
        return fill_template(self.input, row)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source")
        d.pop("lines")
        return {k: v for k, v in d.items() if v not in (None, {}, [])}

    def save(self, path) -> None:
        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))


def load_task(path) -> TaskSpec:
    path = Path(path)
    if not path.exists():
        raise UserError(
            f"{path}: task file not found; pass --task with the path to a task YAML (see README, 'Task spec')"
        )
    raw, lines = read_yaml(path, "task file")
    return task_from_dict(raw, source=str(path), lines=lines)


def _not_text(value) -> str | None:
    """Why a YAML value meant as a word is not one: an unquoted yes/no/true/false/on/off is a boolean, ~ is null."""
    if isinstance(value, bool) or value is None:
        return (
            f"YAML reads this unquoted value as {value!r}, not as text "
            "(yes/no/true/false/on/off are booleans, ~ and an empty value are null); quote it, e.g. 'yes'"
        )
    if isinstance(value, (list, dict)):
        return "must be a single word or phrase, not a list or mapping"
    return None


# long on purpose: one check per key of the task YAML, in writing order, so every rule of the format is in one place
def task_from_dict(raw, source: str = "<task>", lines: dict[str, int] | None = None) -> TaskSpec:
    lines = lines or {}

    def bad(key: str | None, problem: str) -> UserError:
        return at(source, lines.get(key) or lines.get((key or "").split(".")[0].split("[")[0]), key, problem)

    if not isinstance(raw, dict):
        raise at(source, None, None, "a task must be a YAML mapping with at least name, type and input")
    known = {f.name for f in dataclasses.fields(TaskSpec)} - {"source", "lines"}
    for key in raw:
        if key not in known:
            raise bad(str(key), f"unknown key; allowed keys are {', '.join(sorted(known))}")
    for key in ("name", "type", "input"):
        if not raw.get(key) or not isinstance(raw[key], str):
            raise bad(key, "required string is missing or empty")
    for key in ("choices", "gold", "id", "instruction"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise bad(
                key, _not_text(raw[key]) or f"must be a string (a data field name or text), not {raw[key]!r}; quote it"
            )
    if raw["type"] not in TYPES:
        raise bad("type", f"{raw['type']!r} is not a task type; use one of {', '.join(TYPES)}")
    task = TaskSpec(**raw, source=source, lines=lines)
    try:
        fields = task.fields
    except ValueError as e:
        raise bad("input", f"bad template: {e}") from None
    if not fields:
        raise bad("input", 'the template uses no data field; write e.g. "{text}"')
    if task.type == "classification":
        labels = task.labels
        if not labels or not isinstance(labels, list) or len(labels) < 2:
            raise bad("labels", "a classification task needs a list of at least two labels")
        for i, x in enumerate(labels):
            if _not_text(x):
                raise bad(f"labels[{i}]", _not_text(x))
        task.labels = [str(x) for x in labels]
        if len(set(x.lower() for x in task.labels)) != len(task.labels):
            raise bad("labels", "labels must be distinct (case-insensitively)")
    elif task.labels:
        raise bad("labels", f"only classification tasks have labels; a {task.type} task takes its answer from the data")
    if task.type == "multiple-choice" and not task.choices:
        raise bad("choices", "a multiple-choice task must name the data field that holds the list of options")
    for key in ("prompts", "synonyms", "descriptions"):
        if not isinstance(getattr(task, key), dict):
            raise bad(key, "must be a mapping")
    for name, text in task.prompts.items():
        if not isinstance(text, str):
            raise bad(f"prompts.{name}", "must be a template string")
    for label, words in task.synonyms.items():
        if task.labels and label not in task.labels:
            raise bad(f"synonyms.{label}", f"not one of the labels {task.labels}")
        if not isinstance(words, list):
            raise bad(f"synonyms.{label}", "must be a list of words")
        for i, w in enumerate(words):
            if _not_text(w):
                raise bad(f"synonyms.{label}[{i}]", _not_text(w))
        task.synonyms[label] = [str(w) for w in words]
    for label, text in task.descriptions.items():
        if label not in (task.labels or []):
            raise bad(f"descriptions.{label}", f"not one of the labels {task.labels}")
        if not isinstance(text, str) or not text.strip():
            raise bad(f"descriptions.{label}", "must be a non-empty string")
    return task
