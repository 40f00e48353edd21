"""`--mode auto`: train label-only and every rationale mode on one split, ship the best on validation.

    prepare (one split) --> label-only, multitask, rationale-teacher, rationale-dropout --> best val --> RUN/student/

Whether a teacher's rationales help a small student depends on the task, the teacher and the number
of rows (benchmarks/results/distill_accuracy.md), so auto measures it on the user's own data instead
of assuming it. Label-only is the reference: another mode is shipped only when its validation
accuracy is strictly higher, so auto never ships a student that validates worse than label-only.
Every candidate's validation accuracy and training time go to train.json and the model card.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import UserError
from ..choices import ENCODER_ONLY_MODES, RATIONALE_MODES
from .train import TrainConfig, _free_memory, fit_with_retries, prepare, write_student


def candidate_modes(cfg: TrainConfig, family: str, with_rationale: int) -> list[str]:
    """label-only first (the reference), then the rationale modes this student and these annotations allow."""
    wanted = cfg.candidates or ["label-only", *RATIONALE_MODES]
    usable = [m for m in wanted if m == "label-only" or (with_rationale and not (family == "seq2seq" and m in ENCODER_ONLY_MODES))]
    return ["label-only", *[m for m in usable if m != "label-only"]]


def best_candidate(candidates: list[dict]) -> dict | None:
    """The candidate auto ships, from rows of {"mode", "val_accuracy", "failed"?} in training order
    (label-only first): the first one no later candidate beats strictly; a failed one never."""
    best = None
    for c in candidates:
        if c.get("failed") or c["val_accuracy"] is None:
            continue
        if best is None or c["val_accuracy"] > best["val_accuracy"]:
            best = c
    return best


def train_auto(cfg: TrainConfig, echo=print) -> dict:
    prep = prepare(cfg)
    modes = candidate_modes(cfg, prep.family, prep.stats["with_rationale"])
    if not prep.stats["with_rationale"]:
        echo("auto: the annotations hold no rationales, so only label-only is trained "
             "(annotate with --prompt zero-shot to get them)")
    best_fit, best_attempts, candidates = None, None, []
    for i, mode in enumerate(modes, 1):
        echo(f"auto: candidate {i}/{len(modes)}: {mode}")
        mcfg = replace(cfg, mode=mode)
        try:
            fit, attempts = fit_with_retries(mcfg, prep, echo)
        except UserError as e:
            candidates.append({"mode": mode, "val_accuracy": None, "failed": str(e), "elapsed_s": None})
            echo(f"auto: {mode} failed: {e}")
            continue
        acc = fit.final_eval.get("eval_accuracy")
        candidates.append({"mode": mode, "val_accuracy": acc, "elapsed_s": round(sum(a["elapsed_s"] for a in attempts), 1),
                           "attempts": len(attempts), **fit.extra})
        echo(f"auto: {mode}: validation accuracy {'–' if acc is None else f'{100 * acc:.1f} %'}")
        if best_candidate(candidates) is candidates[-1]:  # keep only the weights of the best so far
            best_fit, best_attempts = fit, attempts
        del fit
        _free_memory()
    best = best_candidate(candidates)
    if best is None:
        raise UserError("--mode auto: every candidate failed (" + "; ".join(f"{c['mode']}: {c['failed']}" for c in candidates) + ")")
    for c in candidates:
        c["selected"] = c is best
    echo(f"auto: shipping {best['mode']}")
    if not best_fit.is_main:
        return {}
    return write_student(replace(cfg, mode=best["mode"]), prep, best_fit, best_attempts,
                         extra={"selected_by": "auto", "candidates": candidates})
