"""Smaller students, distilled from MODEL's probabilities.

Fewer layers. A K-layer student starts from K evenly spaced layers of the trained one (the first and the last
included) and is trained on the same inputs with the trained student's probabilities as soft targets (label loss =
KL to them, edgedistill.distill.train's soft-target path).

Another, smaller base (`--into`). The same distillation into a fresh student of another base: a large student
(all-mpnet-base-v2, trained on the teacher's labels) as the teacher's assistant, and the small default
(all-MiniLM-L6-v2) learning its probabilities on every annotation input (Mirzadeh et al. 2020, "teacher assistant"
distillation; Turc et al. 2019, "Well-Read Students"). benchmarks/distill_into.py measures it. With `--ensemble`,
the smaller students learn the average of several trained students' probabilities (other seeds or bases): one
assistant's answers are a noisy target where it is far under the teacher (CQA: benchmarks/results/assistant.md
section 5).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .. import bounds
from ..atomic import build_dir, write_jsonl
from ..deploy.parity import torch_outputs
from ..edge.expressions import candidates
from ..edge.runtime import softmax
from ..errors import UserError
from ..model_dir import load_config, read_meta, task_type, write_meta
from .inputs import distillation_inputs, needs_choices
from .vocabulary import save_beside


def layers_to_keep(total: int, k: int) -> list[int]:
    """k evenly spaced layers of `total`, the first and the last among them (one: the last)."""
    if not 1 <= k <= total:
        raise UserError(f"--layers {k}: the student has {total} layers; give 1 to {total}")
    return [total - 1] if k == 1 else sorted({round(i * (total - 1) / (k - 1)) for i in range(k)})


def drop_layers(model_dir, k: int, out_dir) -> list[int]:
    """Write model_dir with k of its encoder layers (layers_to_keep) into out_dir; returns their indices."""
    # deferred: loads torch (as distill/ does); importing compress stays torch-free for its --help and the configs
    from torch import nn

    from ..distill.student import load_label_model

    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    model = load_label_model(model_dir, meta["family"])
    encoder = getattr(model.base_model, "encoder", None)
    if encoder is None or not hasattr(encoder, "layer"):
        raise UserError(
            f"{model_dir}: a {model.config.model_type} model; --layers knows BERT-style encoders (encoder.layer)"
        )
    total = len(encoder.layer)
    keep = layers_to_keep(total, k)
    encoder.layer = nn.ModuleList([encoder.layer[i] for i in keep])
    model.config.num_hidden_layers = len(keep)
    with build_dir(out_dir) as tmp:
        save_beside(model, model_dir, tmp)
        write_meta(tmp, {**meta, "kind": "stripped", "layers": {"original": total, "kept": keep}})
    return keep


def layer_count(model_dir) -> int:
    return json.loads((Path(model_dir) / "config.json").read_text())["num_hidden_layers"]


def teacher_annotations(model_dir, rows: list[dict], out_path, keep_labels: bool = False, ensemble=()) -> int:
    """`rows` (distillation_inputs) with the trained student's probabilities as `label_probs`: the targets a smaller
    student learns (train's soft-target path); the hard label its argmax, or with keep_labels the annotator's own
    where the row has one. `ensemble`: more trained students of the task; the probabilities are then the average of
    every model's. Returns the number of rows written."""
    meta = read_meta(model_dir)
    mc = meta["family"] == "multiple-choice"
    if mc and task_type(model_dir) == "numeric":  # a ranking student: the choices are the input's expressions
        rows = [r for r in ({**r, "choices": candidates(r["input"])} for r in rows) if r["choices"]]
    items = [{"input": r["input"], **({"choices": r["choices"]} if mc else {})} for r in rows]
    each = [probabilities(d, items) for d in (model_dir, *ensemble)]
    out = []
    for i, r in enumerate(rows):
        p = sum(model[i] for model in each) / len(each)
        keys = r["choices"] if mc else meta["labels"]
        # the hard label is the trained student's too (validation then measures agreement with it), unless kept
        label = r["label"] if keep_labels and r.get("label") is not None else keys[int(p.argmax())]
        probs: dict[str, float] = {}
        for k, v in zip(keys, p):  # a choice listed twice (CQA has some) holds both its shares
            probs[k] = probs.get(k, 0.0) + float(v)
        out.append({**r, "label": label, "label_probs": probs})
    write_jsonl(out_path, out)
    return len(out)


def probabilities(model_dir, items: list[dict]) -> list:
    """A trained student's probabilities over each item's choices (multiple choice) or its labels, in torch."""
    meta = read_meta(model_dir)
    mc = meta["family"] == "multiple-choice"
    logits, _ = torch_outputs(model_dir, meta["family"], items, "choices" if mc else None, meta["max_length"])
    # (ragged choice counts come padded with NaN)
    return [
        softmax(np.asarray(row[: len(it["choices"])] if mc else row, dtype=np.float64))
        for it, row in zip(items, logits)
    ]


def ensemble_note(ensemble) -> str:
    n = len(ensemble)
    return f" and {n} more student{'s' if n > 1 else ''} (their answers averaged)" if n else ""


def check_ensemble(model_dir, ensemble) -> list[Path]:
    """The --ensemble dirs, each a trained student of MODEL's task whose answers average with MODEL's: same family,
    task type and labels, else a UserError naming the dir and what differs."""
    meta, dirs = read_meta(model_dir), [Path(d) for d in ensemble or []]
    for d in dirs:
        if not (d / "config.json").exists() or read_meta(d).get("kind") not in ("stripped", "student"):
            raise UserError(
                f"--ensemble {d}: not a stripped model dir; give another trained student of this task "
                "(edgedistill train --seed N, or --student BASE, then edgedistill strip)"
            )
        other = read_meta(d)
        for what in ("family", "labels"):
            if other.get(what) != meta.get(what):
                raise UserError(
                    f"--ensemble {d}: its {what} ({other.get(what)}) differ from MODEL's ({meta.get(what)}); "
                    "give a student of the same task"
                )
        if task_type(d) != task_type(model_dir):
            raise UserError(f"--ensemble {d}: a {task_type(d)} task, MODEL's is {task_type(model_dir)}")
    return dirs


def distill_layers(
    model_dir,
    annotations,
    k: int,
    out_dir,
    work: Path,
    epochs: float = 4.0,
    batch_size: int = 16,
    lr: float | None = None,
    seed: int = 0,
    echo=print,
    inputs=None,
    label_weight: float = 0.0,
    ensemble=(),
) -> dict:
    """A k-layer student from model_dir's layers, trained on its probabilities (averaged with `ensemble`'s) over the
    annotation inputs and the unlabelled `inputs` (distillation_inputs); written stripped to out_dir."""
    meta = read_meta(model_dir)
    base = work / f"base-{k}"
    kept = drop_layers(model_dir, k, base)
    report = _distill(
        model_dir, annotations, base, out_dir, work, epochs, batch_size, lr, seed, echo, inputs, label_weight, ensemble
    )
    write_meta(
        out_dir,
        {
            **read_meta(out_dir),
            "layers": {"original": meta.get("layers", {}).get("original") or layer_count(model_dir), "kept": kept},
            **({"vocabulary": meta["vocabulary"]} if "vocabulary" in meta else {}),
        },
    )
    shutil.rmtree(base, ignore_errors=True)
    return report


def distill_into(
    model_dir,
    annotations,
    base,
    out_dir,
    work: Path,
    epochs: float = 4.0,
    batch_size: int = 16,
    lr: float | None = None,
    seed: int = 0,
    echo=print,
    inputs=None,
    label_weight: float = 0.0,
    ensemble=(),
) -> dict:
    """A fresh student of another `base` (a transformers model dir, e.g. all-MiniLM-L6-v2) trained on model_dir's
    probabilities (averaged with `ensemble`'s) over the annotation inputs and the unlabelled `inputs`, at train's own
    rates for that base; written stripped to out_dir, its full vocabulary kept (compress trims it as a candidate)."""
    report = _distill(
        model_dir, annotations, base, out_dir, work, epochs, batch_size, lr, seed, echo, inputs, label_weight, ensemble
    )
    write_meta(
        out_dir,
        {
            **read_meta(out_dir),
            "distilled_from": str(Path(model_dir).resolve()),
            "base": str(base),
            **({"ensemble": [str(Path(d).resolve()) for d in ensemble]} if ensemble else {}),
        },
    )
    return report


def _distill(
    model_dir,
    annotations,
    base,
    out_dir,
    work: Path,
    epochs,
    batch_size,
    lr,
    seed,
    echo,
    inputs,
    label_weight: float = 0.0,
    ensemble=(),
) -> dict:
    """Train a label-only student of `base` on model_dir's probabilities (soft targets computed once per work dir),
    strip it. label_weight > 0: the annotator's own labels as hard targets beside them, at that weight (Hinton et al.
    2015's blend; for a two-tower multiple-choice student the hard term is also the one that ranks against the
    batch's choices)."""
    # deferred: loads torch (as distill/ does); importing compress stays torch-free for its --help and the configs
    from ..distill import strip, train

    if bounds.problem("compress", "label_weight", label_weight):  # the range --label-weight and pipeline.yaml use
        raise UserError(
            f"label weight {label_weight:g}: must be at least 0 and below 1 (1 would ignore the trained student)"
        )
    meta = read_meta(model_dir)
    soft = work / ("soft_targets.jsonl" if not label_weight else "soft_targets_labels.jsonl")
    if not soft.exists():
        rows = distillation_inputs(annotations, inputs, need_choices=needs_choices(model_dir))
        teacher_annotations(model_dir, rows, soft, keep_labels=label_weight > 0, ensemble=ensemble)
    student = work / f"student-{Path(out_dir).name}"
    summary = train.train(
        train.TrainConfig(
            task=str(Path(model_dir) / "task.yaml"),
            annotations=str(soft),
            out=str(student),
            student=str(base),
            mode="label-only",
            soft_weight=1.0 - label_weight,
            epochs=epochs,
            batch_size=batch_size,
            # compress --epochs as measured (compress.md), not train's min_steps
            min_steps=0,
            lr=lr,
            max_length=meta["max_length"],
            seed=seed,
            pooling=_pooling(model_dir),
        ),
        echo=echo,
    )
    strip.strip_student(student, out_dir)
    shutil.rmtree(student, ignore_errors=True)
    return {"val_agreement": summary.get("val_accuracy"), "train_s": summary.get("elapsed_s")}


def _pooling(model_dir) -> str:
    """The pooling a distilled student keeps: a two-tower student's graph reads its inputs in two parts, so its
    successor must too; any other keeps train's choice for its base (auto)."""
    # deferred: loads torch (as distill/ does); importing compress stays torch-free for its --help and the configs
    from ..distill.student import TWO_TOWER, pooling_of

    return TWO_TOWER if pooling_of(load_config(model_dir)) == TWO_TOWER else "auto"


def into_base(name: str) -> Path:
    """An --into base: a transformers model dir, or "default" for the packaged all-MiniLM-L6-v2 (train's default
    student)."""
    # deferred: loads torch (as distill/ does); importing compress stays torch-free for its --help and the configs
    from ..distill.train import default_student

    base = Path(default_student() if name == "default" else name)
    if not (base / "config.json").exists():
        raise UserError(
            f"--into {name}: not a transformers model dir (no config.json); give a base such as all-MiniLM-L6-v2's "
            "dir, or 'default' for the packaged all-MiniLM-L6-v2"
        )
    return base
