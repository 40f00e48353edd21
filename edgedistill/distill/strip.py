"""Student -> stripped: keep the label model, tokenizer and task; leave the rationale decoder behind."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..atomic import build_dir
from ..errors import UserError
from ..model_dir import load_config, read_meta, write_meta
from .student import carry_own_code, label_model_class, pooling_of

# Everything at the top of a student dir except what only training needs.
TRAINING_ONLY = {"rationale_decoder", "train.json", "README.md", "edgedistill.json"}


def strip_student(student: Path, out: Path) -> Path:
    student, out = Path(student), Path(out)
    meta = read_meta(student)
    if meta.get("kind") != "student":
        raise UserError(
            f"{student}: not a student dir (no edgedistill.json with kind 'student'); pass the dir `edgedistill train "
            "--out` wrote"
        )
    with build_dir(out) as tmp:
        for item in student.iterdir():
            if item.name in TRAINING_ONLY or item.name.startswith("."):
                continue
            (shutil.copytree if item.is_dir() else shutil.copyfile)(item, tmp / item.name)
        write_meta(
            tmp,
            {
                "kind": "stripped",
                "family": meta["family"],
                "max_length": meta["max_length"],
                "labels": meta.get("labels"),
                "mode": meta.get("mode"),
                "source": str(student.resolve()),
            },
        )
        cfg = load_config(tmp)
        _check_plain(tmp, cfg, meta["family"])
        # a student an older version wrote carries no code for its head: the stripped dir gets it
        carry_own_code(tmp, label_model_class(meta["family"], pooling_of(cfg), cfg.model_type))
    return out


def _check_plain(path: Path, cfg, family: str) -> None:
    """The stripped dir must hold a label model of the student's family and no rationale weights."""
    archs = " ".join(cfg.architectures or [])
    expected = {
        "sequence-classification": "ForSequenceClassification",
        "multiple-choice": "ForMultipleChoice",
        "seq2seq": "ForConditionalGeneration",
    }[family]
    if expected not in archs and not (family == "seq2seq" and cfg.is_encoder_decoder):  # bert2bert: EncoderDecoderModel
        raise UserError(f"{path}: stripped model is {archs}, expected a *{expected}")


def summary_line(path: Path) -> str:
    """What strip prints when it is done (`edgedistill strip` and `edgedistill run`)."""
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    return f"stripped model: {path} ({size:.1f} MB)"
