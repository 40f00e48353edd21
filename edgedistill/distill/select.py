"""`--mode auto`'s rule: which modes are candidates, which one ships, and when the rivals cannot win (train.py's
`train_auto` trains label-only and every rationale mode on one split and ships the one this rule picks).

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

import math

from ..choices import RATIONALE_MODES
from .config import TrainConfig, mode_unavailable


def candidate_modes(
    cfg: TrainConfig, family: str, with_rationale: int, model_type: str = "bert"
) -> tuple[list[str], dict]:
    """(label-only first (the reference), then the rationale modes this student and these annotations allow;
    {mode: why not} for the wanted modes this student cannot train (config.mode_unavailable))."""
    wanted = cfg.candidates or ["label-only", *RATIONALE_MODES]
    skipped = {m: why for m in wanted if (why := mode_unavailable(m, family, model_type))}
    usable = [m for m in wanted if m == "label-only" or (with_rationale and m not in skipped)]
    return ["label-only", *[m for m in usable if m != "label-only"]], skipped


SIGNIFICANCE = 0.05  # one-sided, per candidate against label-only


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the one-sided exact test of k or more successes in n trials."""
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


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
