"""Every word the teacher is shown lives here: one template set per task type, four modes.

Modes
  zero-shot      one request; the answer in a fixed, parseable line, then a one-sentence explanation.
                 No exemplars: the method of Vöge, Gurgul & Lessmann (2024), ~7-10x fewer prompt
                 tokens than few-shot chain of thought.
  zero-shot-cot  two requests (Kojima et al. 2022): "Let's think step by step." gives the reasoning
                 (the rationale), then an answer-extraction prompt whose trigger fits the type.
  few-shot-cot   the Distilling Step-by-Step baseline: user-supplied exemplars with rationales.
  label-only     the answer alone, no rationale: the cheapest.

Any template can be overridden from the task YAML under `prompts:` by its name below
(e.g. `prompts: {zero-shot: "..."}`); placeholders: {instruction} {input} {choices} {answer_format}
{labels} {reasoning}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..choices import PromptMode, parse
from ..data import normalize_gold, read_rows
from ..edge.template import fill_template, template_fields
from ..errors import UserError, at
from ..task import CHOICE_LETTERS, TaskSpec
from .parsing import answer_segment, clean_rationale, parse_answer, why_unparsed

SYSTEM = "You are a careful expert annotator. Follow the requested output format exactly."

DEFAULT_INSTRUCTION = {
    "classification": "Classify the following input.",
    "multiple-choice": "Answer the following multiple-choice question.",
    "numeric": "Solve the following problem.",
}

ANSWER_FORMAT = {
    "classification": "exactly one of: {labels}",
    "multiple-choice": "the letter and text of one answer choice, e.g. (b) {first_choice}",
    "numeric": "a single number in arabic numerals",
}

# The trigger of Kojima et al.'s second stage, by task type.
EXTRACT_TRIGGER = {
    "classification": "Therefore, the answer (one of: {labels}) is",
    "multiple-choice": "Therefore, among (a) through ({last_letter}), the answer is",
    "numeric": "Therefore, the answer (arabic numerals) is",
}

TEMPLATES = {
    "zero-shot": (
        "{instruction}\n\n{input}{choices}\n\n"
        "Reply in exactly two lines:\n"
        "Answer: <{answer_format}>\n"
        "Explanation: <explain your answer in one sentence>"
    ),
    "label-only": "{instruction}\n\n{input}{choices}\n\nReply with one line only:\nAnswer: <{answer_format}>",
    "zero-shot-cot": "{instruction}\n\nQ: {input}{choices}\nA: Let's think step by step.",
    "zero-shot-cot-extract": "{trigger}",
    "few-shot-cot-exemplar": "Q: {input}{choices}\nA: {rationale} So the answer is {answer}.",
    "few-shot-cot": (
        "{instruction} Answer in the same format as the examples.\n\n{exemplars}\n\nQ: {input}{choices}\nA:"
    ),
    # Scoring (--scoring): one generated token whose logprobs give the distribution over the options.
    "score": "{instruction}\n\n{input}{options}\n\nReply with the {option_kind} of the correct option only.",
    # Rationalization: asked when a response carries no explanation of the label finally chosen.
    "rationalize": "{instruction}\n\n{input}{choices}\n\nThe correct answer is: {answer}\nExplain in one sentence why.",
}


# What each template may use; an override naming anything else would fail at the first request.
_COMMON = {"instruction", "input", "choices", "labels", "first_choice", "last_letter", "answer_format", "trigger"}
_EXTRA = {
    "few-shot-cot": {"exemplars"},
    "few-shot-cot-exemplar": {"rationale", "answer"},
    "score": {"options", "option_kind"},
    "rationalize": {"answer"},
}


def check_overrides(task: TaskSpec) -> None:
    """Stop on a task `prompts:` entry that names no template, is no plain template (edge/template.py) or uses
    an unknown placeholder."""
    source = task.source or "<task>"
    for name, text in task.prompts.items():
        where = f"prompts.{name}"
        line = task.lines.get(where)
        if name not in TEMPLATES:
            raise at(source, line, where, f"no such template; override one of {', '.join(TEMPLATES)}")
        if not isinstance(text, str) or not text.strip():
            raise at(source, line, where, "must be a non-empty string")
        try:
            used = set(template_fields(text))
        except ValueError as e:
            raise at(source, line, where, f"bad template: {e}") from None
        allowed = _COMMON | _EXTRA.get(name, set())
        for field in sorted(used - allowed):
            raise at(
                source,
                line,
                where,
                f"unknown placeholder {{{field}}}; use any of " + " ".join("{" + f + "}" for f in sorted(allowed)),
            )


@dataclass
class Parsed:
    label: str | None
    rationale: str | None
    status: str  # "ok" | "parse_failed"
    error: str | None = None
    rationale_dropped: bool = False


def choices_block(choices: list[str] | None) -> str:
    if not choices:
        return ""
    return "\nAnswer Choices:\n" + "\n".join(f"({CHOICE_LETTERS[i]}) {c}" for i, c in enumerate(choices))


def option_keys(task: TaskSpec, example, scoring: str, shift: int = 0) -> dict[str, str]:
    """label -> what the scoring reply starts with: "a", "b", ... (letter) or the label itself (word),
    in the order the options are listed (--score-orders): shifts 0..n-1 rotate the task's order left,
    shifts n..2n-1 rotate the reversed order, so 2n orders put every option in every position twice,
    once after each of two different neighbours."""
    labels = list(getattr(example, "choices", None) or task.labels or [])
    if labels:
        n = len(labels)
        shift %= 2 * n
        if shift >= n:
            labels, shift = labels[::-1], shift - n
        labels = labels[shift:] + labels[:shift]
    return {label: (CHOICE_LETTERS[i] if scoring == "letter" else label) for i, label in enumerate(labels)}


def options_block(keys: dict[str, str], scoring: str, descriptions: dict[str, str] | None = None) -> str:
    """The options of a scoring request, with the task's one-line `descriptions` where it has them."""
    said = {
        label: f"{label}: {descriptions[label]}" if descriptions and label in descriptions else label for label in keys
    }
    if scoring == "letter":
        return "\nOptions:\n" + "\n".join(f"({k}) {said[label]}" for label, k in keys.items())
    return "\nOptions:\n" + "\n".join(f"- {said[label]}" for label in keys)


def _answer_text(task: TaskSpec, label: str, choices: list[str] | None) -> str:
    if task.type == "multiple-choice" and choices and label in choices:
        return f"({CHOICE_LETTERS[choices.index(label)]}) {label}"
    return str(label)


class PromptPlan:
    """The requests for one (task, mode): `messages` builds each stage, `parse` reads the outputs."""

    def __init__(self, task: TaskSpec, mode: PromptMode | str, exemplars: list[dict] | None = None):
        mode = parse(PromptMode, mode, "--prompt")
        if mode == "few-shot-cot" and not exemplars:
            raise UserError(
                "--prompt few-shot-cot needs --exemplars FILE (JSONL: the task's fields, answer, rationale)"
            )
        self.task, self.mode, self.exemplars = task, mode, exemplars or []
        self.stages = 2 if mode == "zero-shot-cot" else 1
        check_overrides(task)
        self.templates = {**TEMPLATES, **task.prompts}

    def _fill(self, name: str, example, **extra) -> str:
        choices = getattr(example, "choices", None)
        values = {
            "instruction": self.task.instruction or DEFAULT_INSTRUCTION[self.task.type],
            "input": example.input,
            "choices": choices_block(choices),
            "labels": ", ".join(self.task.labels or []),
            "first_choice": choices[1] if choices and len(choices) > 1 else "",
            "last_letter": CHOICE_LETTERS[len(choices) - 1] if choices else "e",
        }
        values["answer_format"] = fill_template(ANSWER_FORMAT[self.task.type], values)
        values["trigger"] = fill_template(EXTRACT_TRIGGER[self.task.type], values)
        values.update(extra)
        return fill_template(self.templates[name], values)

    def messages(self, example, previous: list[str] | None = None) -> list[dict]:
        previous = previous or []
        if self.mode == "few-shot-cot":
            shots = "\n\n".join(
                self._fill(
                    "few-shot-cot-exemplar",
                    _Shot(e),
                    rationale=e["rationale"],
                    answer=_answer_text(self.task, e["answer"], e.get("choices")),
                )
                for e in self.exemplars
            )
            user = self._fill("few-shot-cot", example, exemplars=shots)
        else:
            user = self._fill(self.mode, example)
        msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
        if self.mode == "zero-shot-cot" and previous:
            msgs += [
                {"role": "assistant", "content": previous[0]},
                {"role": "user", "content": self._fill("zero-shot-cot-extract", example)},
            ]
        return msgs

    def score_messages(self, example, scoring: str, shift: int = 0) -> list[dict]:
        """The scoring request: the options lettered (or named), the reply one token that names one."""
        keys = option_keys(self.task, example, scoring, shift)
        user = self._fill(
            "score",
            example,
            options=options_block(keys, scoring, self.task.descriptions),
            option_kind="letter" if scoring == "letter" else "name",
        )
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

    def rationalize_messages(self, example, label: str) -> list[dict]:
        """Ask the teacher to explain a given answer (rationalization, Zelikman et al. 2022)."""
        user = self._fill(
            "rationalize", example, answer=_answer_text(self.task, label, getattr(example, "choices", None))
        )
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

    def rationale_of(self, output: str) -> str | None:
        """A rationalization reply, cleaned like any rationale (None when too short to teach)."""
        return clean_rationale(_rationale_of(output))

    def parse(self, example, outputs: list[str]) -> Parsed:
        choices = getattr(example, "choices", None)
        if self.mode == "zero-shot-cot":
            reasoning, final = outputs[0], outputs[-1]
            label = parse_answer(self.task, final, choices) or parse_answer(self.task, reasoning, choices)
            # The reasoning is the rationale; a closing "Therefore, the answer is" line adds nothing.
            raw_rationale = re.split(r"\n[^\n]*\b(?:therefore|so)\b,? the answer", reasoning, flags=re.IGNORECASE)[0]
        else:
            final = outputs[-1]
            if self.mode == "few-shot-cot":
                final = re.split(r"\n\s*\nQ:", final)[0]  # models keep going with a made-up next question
            label = parse_answer(self.task, final, choices)
            raw_rationale = None if self.mode == "label-only" else _rationale_of(final)
        rationale = clean_rationale(raw_rationale)
        dropped = raw_rationale is not None and bool(raw_rationale.strip()) and rationale is None
        if label is None:
            why = why_unparsed(self.task, final) or (why_unparsed(self.task, outputs[0]) if self.stages > 1 else None)
            return Parsed(
                None,
                rationale,
                "parse_failed",
                rationale_dropped=dropped,
                error=f"{why or f'no {self._what()} found in the answer'}: {answer_segment(final)[:80]!r}",
            )
        return Parsed(label, rationale, "ok", rationale_dropped=dropped)

    def _what(self) -> str:
        return {"classification": "label", "multiple-choice": "answer choice", "numeric": "number"}[self.task.type]


def _rationale_of(text: str) -> str | None:
    """The explanation in a one-shot answer: after "Explanation:", else everything but the answer line."""
    # (possessive: a reply of "reason" and 60,000 spaces with no colon takes no quadratic time)
    m = re.search(r"(?:explanation|reason|rationale)\s*+[*_]*+\s*+:\s*(.+)", text, flags=re.IGNORECASE | re.DOTALL)
    if m:
        return m.group(1)
    m = re.search(r"\b(?:so|therefore),? the answer is", text, flags=re.IGNORECASE)
    if m:  # few-shot CoT: the reasoning comes before "So the answer is"
        return text[: m.start()]
    rest = [ln for ln in text.strip().split("\n") if not re.match(r"\W*answer\W*:", ln, flags=re.IGNORECASE)]
    return "\n".join(rest) or None


@dataclass
class _Shot:  # an exemplar dressed as an Example for template filling
    input: str
    choices: list[str] | None

    def __init__(self, e: dict):
        self.input, self.choices = e["input"], e.get("choices")


def plan(task: TaskSpec, mode: str, exemplars: list[dict] | None = None) -> PromptPlan:
    return PromptPlan(task, mode, exemplars)


def load_exemplars(path, task: TaskSpec) -> list[dict]:
    """Few-shot exemplars: JSONL rows with the task's input fields (or `input`), `answer`, `rationale`."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: exemplars file not found")
    out = []
    for n, row in read_rows(path):  # (UTF-8, one JSON object a line, readable: or file:line errors)
        for key in ("answer", "rationale"):
            if not str(row.get(key) or "").strip():
                raise at(path, n, key, "missing; each exemplar needs an answer and a rationale")
        if not isinstance(row["rationale"], str):
            raise at(path, n, "rationale", f"must be text, not {row['rationale']!r}")
        if "input" not in row:
            missing = [f for f in task.fields if row.get(f) is None]
            if missing:
                raise at(path, n, missing[0], "missing; give the task's input fields or a rendered 'input'")
        choices = row.get(task.choices) if task.choices else None
        out.append(
            {
                "input": row.get("input") or task.render(row),
                "choices": choices,
                "rationale": row["rationale"].strip(),
                "answer": normalize_gold(task, row["answer"], choices, (path, n, "answer")),
            }
        )
    if not out:
        raise UserError(f"{path}: no exemplars in the file")
    return out
