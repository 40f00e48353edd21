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

Auto trains only what could change its answer. A rival ships only with p < SIGNIFICANCE, and its best
case is winning every row label-only gets wrong and losing none: p = 0.5 ** wins, so it needs at
least `rows_to_win()` such rows (5 at 0.05). Before training, auto checks that the validation rows
number that many; after label-only, that label-only got that many wrong. Where not, the rivals
cannot ship whatever they learn: they are not trained, and train.json ("auto_skipped"), the echoed
line and the model card say why and what gives them a chance (more validation rows: --eval-data or
--val-fraction). Both checks are exact: what ships is what training every candidate would ship (on
fewer validation rows than train.MIN_JUDGED label-only cannot fail at the floor, the one failure that
would leave the rivals without a reference).
Stopping a rival mid-training is not done: it ships the checkpoint of its best validation epoch,
and a later epoch's answers can differ on every row, so no epoch's answers bound the final
comparison; the only sound bound is the reference's wrong rows, used above.
"""

from __future__ import annotations

from dataclasses import replace

from ..choices import RATIONALE_MODES
from ..errors import UserError
from .student import mode_unavailable
from .train import (
    Prepared,
    TrainConfig,
    _free_memory,
    binomial_tail,
    correct_bits,
    fit_with_retries,
    model_type,
    prepare,
    write_student,
)


def candidate_modes(
    cfg: TrainConfig, family: str, with_rationale: int, model_type: str = "bert"
) -> tuple[list[str], dict]:
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
        raise ValueError(
            f"paired_win: {len(candidate)} and {len(reference)} validation rows; both must judge the same rows"
        )
    wins = sum(c == "1" and r == "0" for c, r in zip(candidate, reference))
    losses = sum(c == "0" and r == "1" for c, r in zip(candidate, reference))
    return {"wins": wins, "losses": losses, "p": round(binomial_tail(wins, wins + losses, 0.5), 4)}


def rows_to_win(significance: float = SIGNIFICANCE) -> int:
    """The fewest validation rows a rival must win over label-only (rows it gets right and label-only wrong)
    for `best_candidate` to ship it: the rule's own test in its best case, every row won and none lost.
    A rival can ship only where label-only got at least this many validation rows wrong."""
    if significance <= 0:
        raise ValueError(f"rows_to_win: significance {significance} must be above 0")
    n = 1
    while paired_win("1" * n, "0" * n)["p"] >= significance:  # p = 0.5 ** n, rounded as the rule rounds it
        n += 1
    return n


def best_candidate(candidates: list[dict], significance: float = SIGNIFICANCE) -> dict | None:
    """The candidate auto ships, from rows of {"mode", "val_accuracy", "val_correct", "failed"?} in
    training order, label-only first. A failed candidate never ships. Label-only ships unless another
    candidate beats it beyond noise (`paired_win`); of those that do, the most accurate on validation
    (the earlier on a tie). Without a label-only to compare with (it failed), the most accurate.
    Each rival's comparison is recorded in it as "vs_label_only". significance=1 is the rule before
    this one, the highest validation accuracy (benchmarks/distill_accuracy.py measures both)."""
    trained = [c for c in candidates if not c.get("failed")]
    ok = [c for c in trained if c["val_accuracy"] is not None]
    if not ok:  # no validation rows: nothing to choose by, so a lone trained candidate ships as it is
        return trained[0] if len(trained) == 1 else None
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


def leaves_no_win(cfg: TrainConfig, label_only: dict, rivals: list[str], val_rows: int) -> dict | None:
    """`unwinnable` where label-only got fewer than rows_to_win validation rows wrong: the only rows a rival can win."""
    if label_only.get("val_correct") is None or (wrong := label_only["val_correct"].count("0")) >= rows_to_win():
        return None
    why = f"label-only got {wrong} of the {val_rows} validation rows wrong, so a rival can win at most {wrong}"
    return unwinnable(cfg, rivals, val_rows, wrong, why)


def unwinnable(cfg: TrainConfig, rivals: list[str], val_rows: int, winnable: int, why: str) -> dict:
    """What train.json records ("auto_skipped") and auto says when no rival could ship: at most `winnable`
    validation rows can go a rival's way (all of them; once label-only is trained, the rows it got wrong),
    fewer than `rows_to_win`. `why` says where that bound comes from."""
    need = rows_to_win()
    fix = (
        "--eval-data with more gold-labelled rows"
        if cfg.eval_data
        else f"--eval-data with a gold-labelled sample, or a larger --val-fraction "
        f"(pipeline.yaml: student.val_fraction; now {cfg.val_fraction:g})"
    )
    reason = (
        f"{why}, and it must win at least {need} (rows it gets right and label-only wrong) "
        f"for the sign test's p < {SIGNIFICANCE}"
    )
    return {
        "modes": rivals,
        "validation_rows": val_rows,
        "winnable_rows": winnable,
        "rows_to_win": need,
        "reason": reason,
        "fix": fix,
        "line": f"auto: not training {', '.join(rivals)}, which could not ship: {reason}. "
        f"To give them a chance, use more validation rows: {fix}",
    }


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


def say_candidate(row: dict, echo) -> None:
    """A trained candidate's validation accuracy and, for a rival, its rows won and lost against label-only."""
    if row.get("failed"):
        return
    vs, acc = row.get("vs_label_only"), row["val_accuracy"]
    line = f"auto: {row['mode']}: validation accuracy {'–' if acc is None else f'{100 * acc:.1f} %'}"
    if vs:
        line += (
            f"; against label-only: won {vs['wins']}, lost {vs['losses']} of the validation rows (p = {vs['p']:.3f})"
        )
    echo(line)


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
