"""Accuracy (and per-label precision / recall / F1) of a student, a stripped model or a bundle vs gold."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .deploy.onnx_export import family_of
from .deploy.parity import torch_outputs
from .edge.families import answers_match
from .errors import UserError
from .model_dir import kind_of, load_config, read_meta
from .runtime import BundleError, EdgeModel


def predict_labels(model_path, task, examples, batch_size: int | None = None) -> list[str]:
    """Answers of a bundle (in its own answering batches), a stripped dir or a student dir (32 per batch)."""
    path = Path(model_path)
    kind = kind_of(path)
    choices_field = task.choices or "choices"
    items = [{"input": e.input, choices_field: e.choices} for e in examples]
    if kind == "bundle":
        try:
            preds = EdgeModel.load(path).predict(items, batch_size=batch_size)
        except BundleError as e:
            raise UserError(str(e)) from None
        return [p.get("label", p.get("answer")) for p in preds]
    if kind == "static":
        raise UserError(
            f"{path} is a static student (compress --into static): export it first "
            f"(edgedistill export {path} --out BUNDLE), then evaluate the bundle"
        )

    family = read_meta(path).get("family") or _family(path)
    max_length = read_meta(path).get("max_length", 128)
    if family != "multiple-choice":
        items = [{"input": it["input"]} for it in items]
    _, preds = torch_outputs(path, family, items, choices_field, max_length, batch_size or 32)
    return preds


def _family(path: Path) -> str:
    return family_of(load_config(path))


def score(task, examples, preds: list[str]) -> dict:
    golds = [e.gold for e in examples]
    hits = [answers_match(task.type, p, g) for p, g in zip(preds, golds)]
    out = {"accuracy": sum(hits) / len(hits), "examples": len(hits), "correct": sum(hits)}
    if task.type == "classification":
        per = {}
        pc, gc = Counter(preds), Counter(golds)
        for label in task.labels:
            tp = sum(p == g == label for p, g in zip(preds, golds))
            prec = tp / pc[label] if pc[label] else 0.0
            rec = tp / gc[label] if gc[label] else 0.0
            per[label] = {
                "precision": prec,
                "recall": rec,
                "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
                "support": gc[label],
            }
        out["per_label"] = per
    return out


def evaluate_model(model_path, task, examples) -> dict:
    preds = predict_labels(model_path, task, examples)
    return {**score(task, examples, preds), "model": str(model_path), "kind": kind_of(model_path)}
