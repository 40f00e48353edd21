"""`--mode auto`: train label-only and every rationale mode on one split, ship the one validation picks.

    prepare (one split) --> label-only, multitask, rationale-teacher, rationale-dropout --> best val --> RUN/student/

Whether a teacher's rationales help a small student depends on the task, the teacher and the number
of rows (benchmarks/results/distill_accuracy.md), so auto measures it on the user's own data instead
of assuming it. Label-only is the reference, and another mode is shipped only when it beats label-only
on validation beyond noise: a paired sign test on the rows where exactly one of the two is right
(`paired_win`, one-sided, p < SIGNIFICANCE). A strictly higher validation accuracy alone is not
enough: on 200 e-SNLI validation rows, auto once shipped a mode that won by 3 rows and tested
2.4 pt under label-only. So auto never ships a student that validates worse than label-only, and
ships a rationale mode only where the validation rows can tell it apart. Every candidate's
validation accuracy, its wins and losses against label-only and its training time go to
train.json and the model card.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import UserError
from ..choices import RATIONALE_MODES
from .student import mode_unavailable
from .train import TrainConfig, _free_memory, binomial_tail, correct_bits, fit_with_retries, model_type, prepare, write_student


def candidate_modes(cfg: TrainConfig, family: str, with_rationale: int, model_type: str = "bert") -> tuple[list[str], dict]:
    """(label-only first (the reference), then the rationale modes this student and these annotations allow;
    {mode: why not} for the wanted modes this student cannot train (student.mode_unavailable))."""
    wanted = cfg.candidates or ["label-only", *RATIONALE_MODES]
    skipped = {m: why for m in wanted if (why := mode_unavailable(m, family, model_type))}
    usable = [m for m in wanted if m == "label-only" or (with_rationale and m not in skipped)]
    return ["label-only", *[m for m in usable if m != "label-only"]], skipped


SIGNIFICANCE = 0.05  # one-sided, per candidate against label-only


def paired_win(candidate: str, reference: str) -> dict:
    """Rows (of two per-row validation strings, "1" = right) the candidate gets right and the
    reference wrong (wins) and the reverse (losses), and the one-sided exact sign-test p-value of
    that many wins or more if each disagreement were a coin toss (rows both get right or wrong tell
    nothing about which is better)."""
    if len(candidate) != len(reference):
        raise ValueError(f"paired_win: {len(candidate)} and {len(reference)} validation rows; both must judge the same rows")
    wins = sum(c == "1" and r == "0" for c, r in zip(candidate, reference))
    losses = sum(c == "0" and r == "1" for c, r in zip(candidate, reference))
    return {"wins": wins, "losses": losses, "p": round(binomial_tail(wins, wins + losses, 0.5), 4)}


def best_candidate(candidates: list[dict], significance: float = SIGNIFICANCE) -> dict | None:
    """The candidate auto ships, from rows of {"mode", "val_accuracy", "val_correct", "failed"?} in
    training order, label-only first. A failed candidate never ships. Label-only ships unless another
    candidate beats it beyond noise (`paired_win`); of those that do, the most accurate on validation
    (the earlier on a tie). Without a label-only to compare with (it failed), the most accurate.
    Each rival's comparison is recorded in it as "vs_label_only". significance=1 is the rule before
    this one, the highest validation accuracy (benchmarks/distill_accuracy.py measures both)."""
    ok = [c for c in candidates if not c.get("failed") and c["val_accuracy"] is not None]
    if not ok:
        return None
    ref = ok[0] if ok[0]["mode"] == "label-only" else None
    if ref is None:
        return max(ok, key=lambda c: c["val_accuracy"])
    winners = []
    for c in ok[1:]:
        c["vs_label_only"] = paired_win(c["val_correct"], ref["val_correct"])
        if c["vs_label_only"]["p"] < significance and c["val_accuracy"] > ref["val_accuracy"]:
            winners.append(c)
    return max(winners, key=lambda c: c["val_accuracy"]) if winners else ref


def train_auto(cfg: TrainConfig, echo=print) -> dict:
    prep = prepare(cfg)
    modes, skipped = candidate_modes(cfg, prep.family, prep.stats["with_rationale"], model_type(prep.base))
    for mode, why in skipped.items():
        echo(f"auto: {mode} is not a candidate for this student: {why}")
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
        candidates.append({"mode": mode, "val_accuracy": acc, "val_correct": correct_bits(fit.val_correct),
                           "elapsed_s": round(sum(a["elapsed_s"] for a in attempts), 1), "attempts": len(attempts), **fit.extra})
        best = best_candidate(candidates)
        vs = candidates[-1].get("vs_label_only")
        echo(f"auto: {mode}: validation accuracy {'–' if acc is None else f'{100 * acc:.1f} %'}"
             + (f"; against label-only: won {vs['wins']}, lost {vs['losses']} of the validation rows (p = {vs['p']:.3f})" if vs else ""))
        if best is candidates[-1]:  # keep only the weights of the best so far
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
