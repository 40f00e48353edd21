"""What the scores are worth (`keep_evidence`, the one rule), and what compress says about it.

A smaller candidate (fewer layers, another base) replaces MODEL only where the scored rows show that it keeps MODEL's
answer on at least KEEP_AGREEMENT (95 %) of such inputs: the one-sided Clopper-Pearson lower bound on its agreement
with MODEL, at EVIDENCE_CONFIDENCE (95 %) Bonferroni-split over the smaller candidates (the budget picks among them),
reaches KEEP_AGREEMENT. Agreement is the quantity to bound because it bounds every accuracy: where the candidate and
MODEL give the same answer they are right or wrong together, so on any gold labels the candidate's accuracy is at
least MODEL's minus its disagreement rate; a shown candidate loses at most 5 pt, at 95 % confidence. The bound is
exact (no normal approximation, which fails near 100 %): agreeing on all n rows it is 0.05 ** (1 / n), so fewer than
59 rows cannot show it whatever they say (3 held-out rows of a 32-row task: 36.8 %). Where the rows cannot show it,
compress warns once, names the fixes (more rows to score on: --eval-data, or --inputs, a tenth of which is held out
to score on), records the evidence in compress.json and compress.md, and a --latency-budget does not prefer the
candidate over MODEL: it ships MODEL, or fails where only unshown candidates fit. A single candidate asked for
without a budget (--layers K) is shipped as asked, with the warning. With a small task a smaller student may well be
as good (benchmarks/results/compress_small.md); the rows just cannot show it.
"""

from __future__ import annotations

import math
from enum import Enum

from .inputs import HOLD_OUT

KEEP_AGREEMENT = 0.95  # a smaller candidate replaces MODEL only where the scored rows show it keeps this many answers
EVIDENCE_CONFIDENCE = 0.95  # the one-sided confidence of that showing, split over the smaller candidates (Bonferroni)


EVIDENCE_RULE = (
    f"A smaller candidate replaces MODEL only where the scored rows show that it keeps MODEL's answer "
    f"on at least {100 * KEEP_AGREEMENT:.0f} % of inputs like them: the one-sided Clopper-Pearson lower "
    f"bound on its agreement with MODEL, at {100 * EVIDENCE_CONFIDENCE:.0f} % confidence split over the "
    f"smaller candidates (Bonferroni), reaches {100 * KEEP_AGREEMENT:.0f} %. Agreement bounds accuracy "
    "(on any gold labels a candidate is right wherever MODEL is and they agree), so a shown candidate "
    f"loses at most {100 - 100 * KEEP_AGREEMENT:.0f} pt at that confidence. Agreeing on all n rows, the "
    f"bound is {1 - EVIDENCE_CONFIDENCE:.2f} ** (1 / n)."
)


class Verdict(str, Enum):
    """What a smaller candidate's agreement with MODEL on the scored rows shows (keep_evidence)."""

    SHOWN = "shown"  # the lower bound reaches the target
    TOO_FEW_ROWS = "too few rows"  # even agreeing on every row, the bound would stay under the target
    ANSWERS_CHANGED = "answers changed"  # rows enough, but it changed MODEL's answer on too many of them


def agreement_lower_bound(agree: int, rows: int, alpha: float) -> float:
    """The one-sided (1 - alpha) Clopper-Pearson lower confidence bound on a rate seen `agree` times in `rows`: the rate
    at which `agree` or more of `rows` has probability alpha (0 for none; alpha ** (1 / rows) for all of them)."""
    if rows < 1 or not 0 <= agree <= rows or not 0 < alpha < 1:
        raise ValueError(f"{agree} of {rows} rows at alpha {alpha}: need rows >= 1, 0 <= agree <= rows, 0 < alpha < 1")
    if agree == 0:
        return 0.0
    if agree == rows:
        return alpha ** (1 / rows)
    lo, hi = 0.0, agree / rows
    for _ in range(60):  # P(X >= agree) grows with the rate: bisect for the rate where it is alpha
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _upper_tail(agree, rows, mid) < alpha else (lo, mid)
    return lo


def _upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), 0 < p < 1, each term in logs (no overflow at any n a data file holds)."""
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    return math.fsum(
        math.exp(log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)
        for i in range(k, n + 1)
    )


def keep_evidence(
    agree: int, rows: int, candidates: int = 1, target: float = KEEP_AGREEMENT, confidence: float = EVIDENCE_CONFIDENCE
) -> dict:
    """The rule (EVIDENCE_RULE): whether a smaller candidate that gave MODEL's answer on `agree` of `rows` scored rows
    is shown to keep MODEL's answers. Its one-sided Clopper-Pearson lower bound on agreement, at `confidence` split over
    the `candidates` compared (Bonferroni: the budget picks among them), must reach `target`. The record compress.json
    keeps: the counts, the bound, `rows_needed` (how many rows, every one agreeing, would reach the target) and the
    Verdict (too few rows: even agreeing on all of them the bound would stay under the target)."""
    alpha = (1 - confidence) / candidates
    bound = agreement_lower_bound(agree, rows, alpha)
    verdict = (
        Verdict.SHOWN
        if bound >= target
        else Verdict.TOO_FEW_ROWS
        if alpha ** (1 / rows) < target
        else Verdict.ANSWERS_CHANGED
    )
    return {
        "agree": agree,
        "rows": rows,
        "lower_bound": round(bound, 4),
        "best_bound": round(alpha ** (1 / rows), 4),
        "target": target,
        "confidence": confidence,
        "candidates": candidates,
        "rows_needed": math.ceil(math.log(alpha) / math.log(target)),
        "verdict": verdict.value,
    }


def shown(row: dict) -> bool:
    """A candidate the budget may ship: MODEL itself (what the others are measured against), or one keep_evidence shows.
    A row without an evidence record (written before it was kept) counts as shown."""
    e = row.get("evidence")
    return e is None or e["verdict"] == Verdict.SHOWN.value


def evidence_record(s: dict, rows: int, held_out_annotated: int | None) -> dict:
    """compress.json's `evidence`: the rule, the rows scored on (held-out or --eval-data's), and the warning."""
    record = {
        "rule": EVIDENCE_RULE,
        "rows": rows,
        "target": KEEP_AGREEMENT,
        "confidence": EVIDENCE_CONFIDENCE,
        "scored_on": "held_out" if held_out_annotated is not None else "eval_data",
        "held_out_annotated": held_out_annotated,
    }
    return {**record, "warning": evidence_warning({**s, "evidence": record})}


def evidence_warning(s: dict) -> str | None:
    """The one warning a run earns where its scored rows do not show that a smaller candidate keeps MODEL's answers
    (keep_evidence), with the fixes; None where every smaller candidate is shown, or there is none."""
    weak = [r for r in s["candidates"] if not shown(r)]
    if not weak:
        return None
    few = [r for r in weak if r["evidence"]["verdict"] == Verdict.TOO_FEW_ROWS.value]
    changed = [r for r in weak if r not in few]
    parts = []
    if few:
        e = few[0]["evidence"]
        parts.append(
            f"the {e['rows']:,} rows the candidates are scored on cannot show that {_names(few)} "
            f"{'keeps' if len(few) == 1 else 'keep'} MODEL's answers: even agreeing with MODEL on all of "
            "them, "
            f"the one-sided {pct(e['confidence'], 0)} lower bound on agreement (Clopper-Pearson"
            f"{', split over ' + str(e['candidates']) + ' candidates' if e['candidates'] > 1 else ''}) is "
            f"{pct(e['best_bound'])}, under the {pct(e['target'], 0)} compress needs, so "
            f"{'its score' if len(few) == 1 else 'their scores'} there ({_scores(few)}) "
            f"{'is' if len(few) == 1 else 'are'} no evidence. {_fixes(s, e)}"
        )
    for r in changed:
        e = r["evidence"]
        parts.append(
            f"{r['name']} changed MODEL's answer on {e['rows'] - e['agree']:,} of {e['rows']:,} scored rows: "
            f"its lower bound on agreement, {pct(e['lower_bound'])}, is under the {pct(e['target'], 0)} "
            "compress needs to prefer it to MODEL; the table says what it costs."
        )
    text = " ".join(parts)
    return text[0].lower() + text[1:]


def _fixes(s: dict, e: dict) -> str:
    """How to get rows enough to show it: a larger gold sample, or more unlabelled inputs (a tenth held out)."""
    if s["evidence"]["scored_on"] == "eval_data":
        return f"Give a larger --eval-data: {e['rows_needed']:,} gold-labelled rows or more."
    more = math.ceil(max(0, e["rows_needed"] - s["evidence"]["held_out_annotated"]) / HOLD_OUT)
    return (
        f"Give more rows to score on ({e['rows_needed']:,} or more): --eval-data FILE, a gold-labelled sample of "
        "the task, or --inputs FILE, more unlabelled inputs of the task (no teacher needed; a tenth of them is "
        f"held out to score on, so about {more:,} of them)."
    )


def choice_line(s: dict) -> str | None:
    """Which candidate was shipped and why, where the evidence rule took part in it; None where it did not."""
    chosen = next((r for r in s["candidates"] if r["name"] == s["chosen"]), None)
    if chosen is None:
        return None
    budget = s["budget_ms"]
    if budget is None:
        return (
            None
            if shown(chosen)
            else (
                f"Shipped {chosen['name']} as asked (one candidate, no --latency-budget), "
                "though the scored rows do not show that it keeps MODEL's answers."
            )
        )
    passed = [r for r in s["candidates"] if not shown(r) and r["p50_ms"] <= budget]
    if passed:
        return (
            f"Latency budget {budget:g} ms: shipped {chosen['name']}, not {_names(passed)}, which "
            f"{'fits' if len(passed) == 1 else 'fit'} the budget too: the scored rows do not show that "
            f"{'it keeps' if len(passed) == 1 else 'they keep'} MODEL's answers, so compress does not prefer "
            f"{'it' if len(passed) == 1 else 'them'} to MODEL on "
            f"{'its score' if len(passed) == 1 else 'their scores'}."
        )
    if chosen["evidence"]:
        e = chosen["evidence"]
        return (
            f"Latency budget {budget:g} ms: shipped {chosen['name']}, the most accurate within it; it gave MODEL's "
            f"answer on {e['agree']:,} of {e['rows']:,} scored rows, a lower bound of {pct(e['lower_bound'])} "
            f"(at least {pct(e['target'], 0)})."
        )
    return None


def no_choice_message(s: dict) -> str:
    """The UserError of a budget no candidate the rule allows meets: none is that fast, or only unshown ones are."""
    budget, rows = s["budget_ms"], s["candidates"]
    fits = [r for r in rows if r["p50_ms"] <= budget]
    if not fits:
        fastest = min(rows, key=lambda r: r["p50_ms"])
        return (
            f"--latency-budget {budget:g} ms: no candidate is that fast on this CPU; the fastest, "
            f"{fastest['name']}, takes {fastest['p50_ms']:.2f} ms. Raise the budget or add fewer --layers"
        )
    model = next((r for r in rows if r["evidence"] is None), None)
    slow = f"; MODEL itself takes {model['p50_ms']:.2f} ms" if model else ""
    return (
        f"--latency-budget {budget:g} ms: only {_names(fits)} {'meets' if len(fits) == 1 else 'meet'} it, and the "
        f"scored rows do not show that {'it keeps' if len(fits) == 1 else 'they keep'} MODEL's answers (the "
        f"warning above){slow}. Give more rows to score on (--eval-data, --inputs), raise the budget to ship "
        "MODEL, or ask for one candidate without --latency-budget (--layers K) to ship it regardless"
    )


def evidence_lines(s: dict) -> list[str]:
    """compress.md's account of the evidence: the rule, each smaller candidate's agreement and verdict, the warning,
    and which candidate was shipped and why."""
    e = s.get("evidence")
    smaller = [r for r in s["candidates"] if r.get("evidence")]
    if not e or not smaller:
        return []
    lines = ["", f"Evidence: {e['rule']}", ""]
    for r in smaller:
        v = r["evidence"]
        lines.append(
            f"- {r['name']}: MODEL's answer on {v['agree']:,} of {v['rows']:,} scored rows; lower bound "
            f"{pct(v['lower_bound'])} (agreeing on all of them: {pct(v['best_bound'])}; "
            f"{v['rows_needed']:,} rows, all agreeing, reach {pct(v['target'], 0)}): {v['verdict']}."
        )
    if e.get("warning"):
        lines += ["", f"Warning: {e['warning']}"]
    if s.get("choice"):
        lines += ["", s["choice"]]
    return lines


def _names(rows: list[dict]) -> str:
    names = [r["name"] for r in rows]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _scores(rows: list[dict]) -> str:
    return ", ".join(f"{r['name']}: {pct(r['accuracy'])}" for r in rows)


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f} %"
