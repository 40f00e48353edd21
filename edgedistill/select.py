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

from .errors import UserError
from .train import ENCODER_ONLY_MODES, RATIONALE_MODES, TrainConfig, _free_memory, fit_with_retries, prepare, write_student


def candidate_modes(cfg: TrainConfig, family: str, with_rationale: int) -> list[str]:
    """label-only first (the reference), then the rationale modes this student and these annotations allow."""
    wanted = cfg.candidates or ["label-only", *RATIONALE_MODES]
    usable = [m for m in wanted if m == "label-only" or (with_rationale and not (family == "seq2seq" and m in ENCODER_ONLY_MODES))]
    return ["label-only", *[m for m in usable if m != "label-only"]]


def train_auto(cfg: TrainConfig, echo=print) -> dict:
    prep = prepare(cfg)
    modes = candidate_modes(cfg, prep.family, prep.stats["with_rationale"])
    if not prep.stats["with_rationale"]:
        echo("auto: the annotations hold no rationales, so only label-only is trained "
             "(annotate with --prompt zero-shot to get them)")
    best, best_fit, best_attempts, candidates = None, None, None, []
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
        # strictly better than the best so far, which starts as label-only: ties keep the simpler model
        if best is None or (acc is not None and best_fit.final_eval.get("eval_accuracy") is not None
                            and acc > best_fit.final_eval["eval_accuracy"]):
            best, best_fit, best_attempts = mode, fit, attempts
        del fit
        _free_memory()
    if best is None:
        raise UserError("--mode auto: every candidate failed (" + "; ".join(f"{c['mode']}: {c['failed']}" for c in candidates) + ")")
    for c in candidates:
        c["selected"] = c["mode"] == best
    echo(f"auto: shipping {best}")
    if not best_fit.is_main:
        return {}
    return write_student(replace(cfg, mode=best), prep, best_fit, best_attempts,
                         extra={"selected_by": "auto", "candidates": candidates})
