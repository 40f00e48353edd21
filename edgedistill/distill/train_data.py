"""From annotations to batches: the rows a mode trains on, their encodings and the collator.

annotations.jsonl --training_rows--> Row (input, label, rationale?, choices?, probs?) --encode_rows--> features
--Features (rationale-dropout serves input + rationale on a share of draws)--> make_collator --> batch
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from ..annotations import read_annotations
from ..data import load_examples
from ..edge.expressions import candidates, target
from ..errors import UserError
from ..task import TaskSpec
from .config import TrainConfig

# Shared decoder: the task prefix goes on the decoder side, after the start token, not on the input
# as in DSS ("[label] x" / "[rationale] x"): the encoder then runs once per row, and the label path
# a device runs (start token -> answer) is exactly a plain seq2seq model's, no prefix to remember.
SHARED_PREFIX = "rationale:"


@dataclass
class Row:
    input: str
    label: str
    rationale: str | None = None
    choices: list[str] | None = None
    probs: list[float] | None = None  # the teacher's distribution over the labels (or choices), in their order


# ---------------------------------------------------------------- rows


def training_rows(cfg: TrainConfig, task: TaskSpec, keep_rationales: bool) -> tuple[list[Row], dict]:
    """The (input, label, rationale) rows for the mode, with counts of what was skipped and why."""
    stats = {
        "annotations": 0,
        "skipped_status": 0,
        "skipped_no_gold": 0,
        "skipped_low_confidence": 0,
        "with_rationale": 0,
    }
    if cfg.mode == "standard" and cfg.data:
        rows = [Row(e.input, e.gold, None, e.choices) for e in load_examples(task, cfg.data, require_gold=True)]
        stats["annotations"] = len(rows)
        return rows, stats
    anns = read_annotations(cfg.annotations)
    stats["annotations"] = len(anns)
    rows = []
    for a in anns:
        where = f"{cfg.annotations}:{a.extra.get('line')}"
        if task.type == "multiple-choice" and not a.choices:
            raise UserError(
                f"{where}: choices: missing, but the task {task.name!r} is multiple-choice; "
                "were these annotations made for another task?"
            )
        if cfg.mode == "standard":
            if a.gold is None:
                stats["skipped_no_gold"] += 1
                continue
            label = a.gold
        else:
            if a.status != "ok" or a.label is None:
                stats["skipped_status"] += 1
                continue
            label = a.label
        _check_label(task, label, a.choices, where)
        probs = None
        if cfg.mode != "standard" and a.extra.get("label_probs") is not None:
            names = task.labels or a.choices
            probs = label_probs(a.extra["label_probs"], names, where)
            if probs[names.index(label)] < cfg.min_confidence:
                stats["skipped_low_confidence"] += 1
                continue
        rationale = a.rationale if keep_rationales else None
        rows.append(Row(a.input, label, rationale, a.choices, probs))
    if cfg.rationale_fraction < 1:
        with_r = [i for i, r in enumerate(rows) if r.rationale]
        keep = set(random.Random(cfg.seed).sample(with_r, round(len(with_r) * cfg.rationale_fraction)))
        for i in with_r:
            if i not in keep:
                rows[i].rationale = None
    stats["with_rationale"] = sum(r.rationale is not None for r in rows)
    stats["with_probs"] = sum(r.probs is not None for r in rows)
    if not rows:
        raise UserError(
            f"{cfg.annotations}: no usable rows for mode {cfg.mode!r} "
            f"({stats['skipped_status']} without a teacher label, {stats['skipped_no_gold']} without gold, "
            f"{stats['skipped_low_confidence']} below --min-confidence)"
        )
    return rows, stats


def expression_rows(rows: list[Row], stats: dict, source) -> list[Row]:
    """A numeric task's rows as multiple choice among their one-operation expressions (edge.expressions),
    labelled with the expression whose value is the row's answer. Rows whose answer no such expression
    gives are dropped and counted (`stats["skipped_unreachable"]`); none left is a UserError."""
    out = []
    for r in rows:
        choices = candidates(r.input)
        i = target(choices, r.label)
        if r.probs is not None and r.choices != choices:
            raise UserError(
                f"{source}: label_probs over {r.choices or 'no choices'}, not the input's expressions "
                f"{choices[:3]}...; a numeric task's soft targets come from edgedistill compress"
            )
        if i is not None:
            out.append(Row(r.input, choices[i], r.rationale, choices, r.probs))
    stats["skipped_unreachable"] = len(rows) - len(out)
    if "with_rationale" in stats:
        stats["with_rationale"] = sum(r.rationale is not None for r in out)
    if not out:
        raise UserError(
            f"{source}: no row's answer is one operation (+ - * /) on two numbers of its input, which is "
            "what a ranking student chooses among; train a seq2seq student that writes answers (--numeric generate)"
        )
    return out


def label_probs(value, labels: list[str], where: str) -> list[float]:
    """An annotation's `label_probs` ({label: probability}, from the teacher's logprobs or vote shares)
    as a list in `labels` order; labels it leaves out get 0, and a choice listed twice shares its probability."""
    if not isinstance(value, dict) or not value:
        raise UserError(f"{where}: label_probs: expected an object of label -> probability, got {value!r}")
    if not labels:
        raise UserError(f"{where}: label_probs: the task has no labels and the row no choices to give them to")
    unknown = [k for k in value if k not in labels]
    if unknown:
        raise UserError(f"{where}: label_probs: {unknown[0]!r} is not one of {labels}")
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1 for v in value.values()):
        raise UserError(f"{where}: label_probs: every value must be a probability between 0 and 1")
    total = sum(value.values())
    if abs(total - 1) > 1e-3:
        raise UserError(f"{where}: label_probs: the probabilities sum to {total:.4f}, not 1")
    return [value.get(label, 0.0) / total / labels.count(label) for label in labels]


def _check_label(task: TaskSpec, label: str, choices, where: str) -> None:
    if task.type == "classification" and label not in task.labels:
        raise UserError(
            f"{where}: label: {label!r} is not one of the task's labels {task.labels}; "
            "the annotations and the task do not match"
        )
    if task.type == "multiple-choice" and label not in (choices or []):
        raise UserError(f"{where}: label: {label!r} is none of its choices")


# ---------------------------------------------------------------- features


class Features(torch.utils.data.Dataset):
    """Encoded rows; with `alternatives`, row i is served as alternatives[i] (when not None) with
    probability `p` each time it is drawn (rationale-dropout: input + rationale instead of the input)."""

    def __init__(self, items: list[dict], alternatives: list[dict | None] | None = None, p: float = 0.0):
        self.items, self.alternatives, self.p = items, alternatives, p

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        alt = self.alternatives[i] if self.alternatives else None
        return alt if alt is not None and random.random() < self.p else self.items[i]


def encode_rows(
    rows: list[Row],
    tok,
    task: TaskSpec,
    family: str,
    cfg: TrainConfig,
    start_id: int | None,
    prefix_ids: list[int] = (),
) -> list[dict]:
    labels = task.labels
    out = []
    for r in rows:
        f = {}
        if family == "multiple-choice":
            enc = tok([r.input] * len(r.choices), r.choices, truncation=True, max_length=cfg.max_length)
            f.update({k: v for k, v in enc.items()})
            f["labels"] = r.choices.index(r.label)
            ctx = tok(r.input, truncation=True, max_length=cfg.max_length)
            f.update({f"ctx_{k}": v for k, v in ctx.items()})
        else:
            f.update(tok(r.input, truncation=True, max_length=cfg.max_length))
            if family == "seq2seq":
                f["label_ids"] = _after_start(
                    tok(text_target=str(r.label), truncation=True, max_length=32)["input_ids"], start_id
                )
            else:
                f["labels"] = labels.index(r.label)
        if r.probs is not None and family != "seq2seq":
            f["teacher_probs"] = r.probs
        if r.rationale:
            ids = tok(text_target=r.rationale, truncation=True, max_length=cfg.rationale_max_length)["input_ids"]
            f["rationale_ids"] = (
                ([start_id, *prefix_ids] + _after_start(ids, start_id)) if start_id is not None else ids
            )
        out.append(f)
    return out


def _after_start(ids: list[int], start_id: int | None) -> list[int]:
    """A BERT tokenizer opens every text with [CLS], which bert2bert also uses as the decoder start:
    drop it from targets, or the decoder would spend its first step predicting the token it was given."""
    return ids[1:] if start_id is not None and ids and ids[0] == start_id else ids


def make_collator(pad_id: int, family: str, want_rationale: bool):
    def pad(seqs, value, length=None):
        length = length or max(len(s) for s in seqs)
        return torch.tensor([list(s) + [value] * (length - len(s)) for s in seqs])

    def collate(batch: list[dict]) -> dict:
        out = {}
        if family == "multiple-choice":
            # Rows may have different numbers of choices (a numeric task's expressions): the missing ones are
            # all padding, and `choice_mask` tells the student which choices are real (RationaleStudent.forward).
            length = max(len(s) for f in batch for s in f["input_ids"])
            k = max(len(f["input_ids"]) for f in batch)
            for key in ("input_ids", "attention_mask", "token_type_ids"):
                if key in batch[0]:
                    value = pad_id if key == "input_ids" else 0
                    out[key] = torch.stack(
                        [pad(list(f[key]) + [[value]] * (k - len(f[key])), value, length) for f in batch]
                    )
            if any(len(f["input_ids"]) < k for f in batch):
                out["choice_mask"] = torch.tensor([[j < len(f["input_ids"]) for j in range(k)] for f in batch])
            for k in ("ctx_input_ids", "ctx_attention_mask", "ctx_token_type_ids"):
                if k in batch[0]:
                    out[k] = pad([f[k] for f in batch], pad_id if k == "ctx_input_ids" else 0)
        else:
            for k in ("input_ids", "attention_mask", "token_type_ids"):
                if k in batch[0]:
                    out[k] = pad([f[k] for f in batch], pad_id if k == "input_ids" else 0)
        if "labels" in batch[0]:
            out["labels"] = torch.tensor([f["labels"] for f in batch])
        if "label_ids" in batch[0]:
            out["label_ids"] = pad([f["label_ids"] for f in batch], -100)
        for key in ("soft_labels", "teacher_hidden"):  # rationale-teacher targets, tensors per row (zero-padded)
            if key in batch[0]:
                width = max(len(f[key]) for f in batch)
                out[key] = torch.stack([torch.nn.functional.pad(f[key], (0, width - len(f[key]))) for f in batch])
        if any("teacher_probs" in f for f in batch):  # the annotator's label distribution, where a row has one
            out["teacher_probs"] = pad(
                [f.get("teacher_probs", []) for f in batch], 0.0
            )  # padding choices: probability 0
            out["has_probs"] = torch.tensor(["teacher_probs" in f for f in batch])
        if want_rationale:
            has = [("rationale_ids" in f) for f in batch]
            seqs = [f.get("rationale_ids", [pad_id, pad_id]) for f in batch]
            out["rationale_ids"] = pad(seqs, pad_id)
            out["rationale_mask"] = pad([[1] * len(s) for s in seqs], 0)
            out["has_rationale"] = torch.tensor(has)
        return out

    return collate


def with_rationale_input(rows: list[Row]) -> list[Row]:
    """The rows with the teacher's rationale appended to the input (rows without one unchanged)."""
    return [
        Row(f"{r.input}\nExplanation: {r.rationale}", r.label, None, r.choices, r.probs)
        if r.rationale
        else Row(r.input, r.label, None, r.choices, r.probs)
        for r in rows
    ]
