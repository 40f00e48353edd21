"""What compress reads besides MODEL: the annotated rows, the unlabelled --inputs, and the rows held out of both to
score the candidates on (without --eval-data: HOLD_OUT of them, at most HOLD_OUT_MAX, picked by a hash of their
ids, the same rows every run)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..annotations import read_annotations
from ..atomic import write_jsonl
from ..data import Example, read_rows
from ..edge.expressions import choices_for
from ..errors import UserError, at
from ..model_dir import read_meta, task_type

HOLD_OUT, HOLD_OUT_MAX = 0.1, 500  # annotated rows kept out of the candidates to score them on, without --eval-data


def unlabelled(inputs, need_choices: bool = False) -> list[dict]:
    """Every row of an --inputs file (JSON Lines or another data format: `input`, and `choices` for multiple
    choice) as an annotation record without a label."""
    rows = []
    for line, row in read_rows(inputs) if inputs else []:
        if not isinstance(row.get("input"), str) or not row["input"].strip():
            raise at(
                inputs,
                line,
                "input",
                "missing or empty; each row of --inputs needs the text the student reads, "
                "as the annotations' `input` field",
            )
        if need_choices and not (isinstance(row.get("choices"), list) and row["choices"]):
            raise at(
                inputs, line, "choices", "missing; a multiple-choice student reads each input with its list of choices"
            )
        rows.append(
            {
                "id": f"inputs:{line}",
                "input": row["input"],
                "choices": row.get("choices"),
                "status": "ok",
                "label": None,
            }
        )
    return rows


def needs_choices(model_dir) -> bool:
    """Whether each unlabelled input needs its own choices: a multiple-choice student's, save a numeric task's (whose
    choices are the input's expressions)."""
    return read_meta(model_dir)["family"] == "multiple-choice" and task_type(model_dir) != "numeric"


def task_texts(annotations, inputs=None, task_type: str | None = None) -> list[str]:
    """Every text the student reads from these annotations (and the unlabelled `inputs`): inputs and choices
    (a numeric task's: the input's expressions, edge.expressions)."""
    texts = []
    for a in [*(r.to_json() for r in read_annotations(annotations)), *unlabelled(inputs)]:
        texts.append(a["input"])
        texts += list(choices_for(task_type, a["input"], a.get("choices")) or [])
    return texts


def distillation_inputs(annotations, inputs=None, need_choices: bool = False) -> list[dict]:
    """What a smaller student learns from: the annotated rows (teacher's answer ok), then the unlabelled `inputs`."""
    annotated = [a.to_json() for a in read_annotations(annotations) if a.status == "ok" and a.label is not None]
    return annotated + unlabelled(inputs, need_choices)


def hold_out(annotations, work: Path) -> tuple[Path, list]:
    """(the annotations without the held-out rows, written into work; the held-out annotated rows): HOLD_OUT of the
    rows with a teacher's answer, at most HOLD_OUT_MAX, the first by a hash of their ids (the same rows every run)."""
    rows = read_annotations(annotations)
    usable = [a for a in rows if a.status == "ok" and a.label is not None]
    if len(usable) < 2:
        raise UserError(
            f"{annotations}: {len(usable)} annotated row(s); compress holds some out to score its candidates on and "
            "needs 2 or more, or gold-labelled data to score on (--eval-data)"
        )
    n = min(HOLD_OUT_MAX, max(1, round(HOLD_OUT * len(usable))))
    held = sorted(usable, key=lambda a: hashlib.sha1(str(a.id).encode()).hexdigest())[:n]
    ids = {a.id for a in held}
    fit = work / "annotations-fit.jsonl"
    write_jsonl(fit, [a.to_json() for a in rows if a.id not in ids])
    return fit, held


def hold_out_inputs(inputs, work: Path, most: int, need_choices: bool = False) -> tuple[Path | None, list]:
    """(the --inputs without the held-out rows, written into work; the held-out rows as Examples without gold): HOLD_OUT
    of the rows, at most `most` (what HOLD_OUT_MAX leaves beside the annotated ones), the first by a hash of their ids.
    Agreement with MODEL needs no label, so unlabelled inputs are rows to score on as good as annotated ones. (None, [])
    without --inputs."""
    if not inputs:
        return None, []
    rows = unlabelled(inputs, need_choices)
    n = max(0, min(most, round(HOLD_OUT * len(rows))))
    held = sorted(rows, key=lambda r: hashlib.sha1(r["id"].encode()).hexdigest())[:n]
    ids = {r["id"] for r in held}
    fit = work / "inputs-fit.jsonl"
    write_jsonl(
        fit,
        [
            {"input": r["input"], **({"choices": r["choices"]} if r["choices"] else {})}
            for r in rows
            if r["id"] not in ids
        ],
    )
    return fit, [Example(id=r["id"], input=r["input"], choices=r["choices"], gold=None) for r in held]


def held_out_description(annotated: int, inputs: int, short: bool = False) -> str:
    """What candidates are scored on without --eval-data: compress.json's accuracy_on, or (short) the held-out rows."""
    if short:
        return f"{annotated:,} annotated rows" + (f" and {inputs:,} of --inputs" if inputs else "")
    if not inputs:
        return f"agreement with the uncompressed student on {annotated:,} held-out annotated inputs"
    return (
        f"agreement with the uncompressed student on {annotated + inputs:,} held-out inputs "
        f"({annotated:,} annotated, {inputs:,} of --inputs)"
    )
