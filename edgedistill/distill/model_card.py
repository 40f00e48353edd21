"""The student's model card (RUN/student/README.md) and the auto candidates table the run report shares."""

from __future__ import annotations

import json
from pathlib import Path

from ..edge.families import FAMILIES
from ..task import TaskSpec
from .student import MEAN_FORWARDS  # the poolings transformers' own heads lack
from .train_data import SHARED_PREFIX


def _teacher(annotations) -> dict | None:
    p = Path(annotations).with_name("annotate.json")
    if not p.exists():
        return None
    a = json.loads(p.read_text())
    return {k: a.get(k) for k in ("model", "mode", "examples", "ok", "rationales", "cost_usd", "gold_agreement")}


def model_card(task: TaskSpec, s: dict) -> str:
    t = s.get("teacher") or {}
    acc = s.get("val_accuracy")
    teacher = (
        f"{t.get('model', 'unknown')} ({t.get('mode', '?')} prompts; {t.get('ok', '?')} labels, "
        f"{t.get('rationales', '?')} rationales; gold agreement {t.get('gold_agreement', '–')})"
    )
    loss = MODE_LOSS.get(s["mode"], "").replace("alpha", f"alpha ({s['alpha']})", 1)
    mode = s["mode"] + (" (chosen by --mode auto)" if s.get("selected_by") == "auto" else "") + f": {loss}"
    return f"""# {task.name} student ({s["mode"]})

Distilled by edgedistill: a {s["family"]} student trained on `{s["annotations"]}`.

| | |
|---|---|
| task | {task.name} ({task.type}) |
| teacher | {teacher} |
| base model | `{s["config"]["student"]}` |
| label head reads | {HEAD_READS[s["pooling"]] + " (`--pooling`)" if s.get("pooling") in HEAD_READS else "–"} |
| mode | {mode} |
| training rows | {s["train_examples"]} ({s["rows"]["with_rationale"]} with a rationale) |
| validation | {s["val_examples"]} rows: {s["val_source"]} |
| validation accuracy | {"–" if acc is None else f"{100 * acc:.1f} %"}{floor_note(s.get("val_vs_floor"))} |
| seed | {s["seed"]} |

{_card_decoder(s)}
{_card_candidates(s)}"""


def floor_note(ev: dict | None) -> str:
    """' (12 of 20 rows; floor 55.0 %: not shown, p = 0.41)': whether the validation rows show the student
    beats its floor (train.floor_evidence; train's summary and the model card)."""
    if not ev:
        return ""
    return (
        f" ({ev['correct']} of {ev['rows']} rows; floor {100 * ev['floor']:.1f} %: "
        + ("beaten" if ev["shown"] else "not shown")
        + f", {_p(ev['p'])})"
    )


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def floor_name(family: str) -> str:
    """What a student at the floor does (train._metrics' floor): train's retry messages and the warning below."""
    return "guessing among the choices" if family == "multiple-choice" else "always answering the commonest label"


def floor_warning(ev: dict | None, family: str) -> str | None:
    """What train prints, and the run report repeats, when the validation rows cannot show the student beats its
    floor."""
    if not ev or ev["shown"]:
        return None
    return (
        f"{ev['rows']} validation rows cannot show this student beats {floor_name(family)} ({100 * ev['floor']:.1f} "
        "%): it got "
        f"{ev['correct']} right ({_p(ev['p'])}), so on new inputs it may do no better. More annotated rows "
        "(or `train --eval-data` with more gold rows) give a student that can be checked."
    )


HEAD_READS = {
    "mean": "the mean of the token states, as the base was pretrained",
    "cls": "the [CLS] state through BERT's pooler",
    "two-tower": "two texts encoded apart (question and choice, or the input's two sides of [SEP]): 20 x the cosine "
    "of their mean states (multiple choice), or a linear layer on [u, v, |u - v|, u * v] of them (classification)",
}
MEAN_POOLED_NOTE = (
    "\n\nIts head reads {reads}; config.json says `classifier_pooling: {pooling}`. transformers has no "
    "such head, so the dir carries its code (`modeling_edgedistill.py`, named in config.json's `auto_map`):"
    "\n\n```python\nfrom transformers import {auto}\n\nmodel = {auto}.from_pretrained(DIR, "
    "trust_remote_code=True)\n```\n\nWithout `trust_remote_code=True` transformers refuses the dir rather "
    "than put a new head on [CLS]. The exported bundle carries the pooling in its graph."
)

MODE_LOSS = {
    "label-only": "cross-entropy on the teacher's labels",
    "standard": "cross-entropy on gold labels",
    "multitask": "loss = alpha * label + (1 - alpha) * rationale decoder",
    "rationale-teacher": "loss = alpha * label + (1 - alpha) * (soft labels + head states of a teacher that read the "
    "rationales)",
    "rationale-dropout": "cross-entropy; the rationale is appended to the input on a random share of the steps",
}


def _card_candidates(s: dict) -> str:
    if not s.get("candidates"):
        return ""
    intro = (
        "`--mode auto` trained these on the same split and shipped one chosen on validation "
        "(label-only unless another beat it beyond noise, row by row):"
    )
    skipped = ["", skipped_note(s["auto_skipped"])] if s.get("auto_skipped") else []
    return "\n".join(["", intro, "", *candidate_table(s["candidates"]), *skipped, ""])


def skipped_note(skipped: dict) -> str:
    """Why `--mode auto` did not train some rivals (select.unwinnable): model card, train's summary."""
    return (
        f"Not trained: {', '.join(skipped['modes'])}, which could not ship: {skipped['reason']}. "
        f"More validation rows give them a chance: {skipped['fix']}."
    )


def candidate_table(candidates: list[dict]) -> list[str]:
    """Markdown rows: each auto candidate's validation accuracy, its paired comparison with label-only
    (validation rows won / lost, the sign test's p) and its training time (model card, run report)."""
    out = [
        "| candidate | validation accuracy | vs label-only: rows won / lost (p) | training time |",
        "|---|---|---|---|",
    ]
    for c in candidates:
        acc = "failed" if c.get("failed") else "–" if c["val_accuracy"] is None else f"{100 * c['val_accuracy']:.1f} %"
        vs = c.get("vs_label_only")
        paired = (
            "reference"
            if c["mode"] == "label-only"
            else "–"
            if not vs
            else f"{vs['wins']} / {vs['losses']} ({vs['p']:.3f})"
        )
        secs = "–" if c["elapsed_s"] is None else f"{c['elapsed_s']:.0f} s"
        out.append(f"| {c['mode']}{' (shipped)' if c.get('selected') else ''} | {acc} | {paired} | {secs} |")
    return out


def _card_decoder(s: dict) -> str:
    pooling = s.get("pooling")
    auto = FAMILIES[s["family"]].auto_model
    note = (
        MEAN_POOLED_NOTE.format(reads=HEAD_READS[pooling], pooling=pooling, auto=auto)
        if pooling in MEAN_FORWARDS
        else ""
    )
    return _card_checkpoint(s) + note


def _card_checkpoint(s: dict) -> str:
    if s["mode"] != "multitask":
        return "The checkpoint is the label model alone, a standard transformers model that reads the input alone."
    if s["config"].get("rationale_decoder") == "shared":
        return (
            "The label model's own decoder also learned the teacher's rationales (after the decoder prefix "
            f"`{SHARED_PREFIX}`); there is no separate rationale decoder, so `edgedistill strip` only drops training "
            "files."
        )
    return (
        "The checkpoint holds the label model (a standard transformers model) and, in `rationale_decoder/`,\n"
        "the decoder that learned the teacher's rationales. `edgedistill strip` removes the latter."
    )
