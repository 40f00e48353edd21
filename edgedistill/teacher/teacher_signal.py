"""How sure the teacher was: label distributions from logprobs, their calibration, and votes.

    scoring reply's first-token logprobs --(option keys)--> raw distribution over the options
    raw distributions of the whole batch --(calibrate)--> calibrated distribution per row
    calibrated scores + vote shares (or the text answer) --(combine)--> label_probs, hard label = argmax

Everything here is pure and total: a payload it cannot read gives None (the row falls back to the
text answer), never an exception. Distributions live in *key* space ("a", "b", ... for letter
scoring), because a small model's bias is for a position or a token, not for what the option says:
calibration divides it out per key (Zhao et al. 2021), then keys map back to labels.
"""

from __future__ import annotations

import math
from collections import Counter

CONTENT_FREE_INPUTS = ("N/A", "[MASK]", "")  # Zhao et al. 2021: inputs that carry no content
SCORE_PARAMS = {"temperature": 0.0, "max_tokens": 1, "logprobs": True, "top_logprobs": 20}
SCORE_WEIGHT = 0.5  # label_probs = w * calibrated scores + (1 - w) * vote shares (measured: teacher_signal.md)


def _norm(token: str) -> str:
    return token.strip().lower().lstrip("(").rstrip(").:").strip()


def key_distribution(logprobs: list[dict] | None, keys: list[str]) -> tuple[dict[str, float] | None, set[str]]:
    """{key: probability} from the first generated position whose token names a key, and the keys that
    had to share a token's mass (two labels whose first tokens coincide, word scoring).

    A top token names every key it is a prefix of ("feat" -> feature_request); a token naming several
    keys splits its mass evenly among them. Keys absent from the top list get the smallest listed
    probability (an upper bound of theirs). None when no position names any key.
    """
    if not logprobs:
        return None, set()
    lowered = [k.lower() for k in keys]

    def named(token: str) -> list[int]:
        t = _norm(token)
        return [i for i, k in enumerate(lowered) if t and k.startswith(t)] if t else []

    for pos in logprobs[:3]:  # "(" or a space may come first
        if not named(pos["token"]):
            continue
        mass, shared = [0.0] * len(keys), set()
        top = pos["top"] or {pos["token"]: pos["logprob"]}
        for token, lp in top.items():
            hit = named(token)
            if len(hit) > 1:
                shared.update(keys[i] for i in hit)
            for i in hit:
                mass[i] += math.exp(lp) / len(hit)
        missing = mass.count(0.0)
        if missing:  # what the top list leaves unlisted, shared out, and never more than its least listed token
            listed = sum(math.exp(lp) for lp in top.values())
            floor = max(min(min(math.exp(lp) for lp in top.values()), (1 - listed) / missing), 1e-6)
            mass = [m if m > 0 else floor for m in mass]
        total = sum(mass)
        return {k: m / total for k, m in zip(keys, mass)}, shared
    return None, set()


def prior(dists: list[dict[str, float]]) -> dict[str, float]:
    """The mean distribution over keys: the teacher's bias, when the rows are of no one kind."""
    keys = sorted({k for d in dists for k in d})
    return {k: sum(d.get(k, 0.0) for d in dists) / len(dists) for k in keys}


def calibrate(dist: dict[str, float], bias: dict[str, float] | None) -> dict[str, float]:
    """p(k) / bias(k), renormalised: the contextual calibration of Zhao et al. (2021) with a diagonal W."""
    if not bias:
        return dict(dist)
    raw = {k: p / max(bias.get(k, 0.0), 1e-6) for k, p in dist.items()}
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()}


def vote_shares(labels: list[str | None], same=None) -> dict[str, float]:
    """Each distinct answer's share of the votes; unparsed votes count for nobody. `same` groups
    answers that are equal though written differently (numbers)."""
    groups: list[list[str]] = []
    for label in labels:
        if label is None:
            continue
        for g in groups:
            if (same or (lambda a, b: a == b))(g[0], label):
                g.append(label)
                break
        else:
            groups.append([label])
    n = sum(len(g) for g in groups)
    return {Counter(g).most_common(1)[0][0]: len(g) / n for g in groups} if n else {}


def smoothed(shares: dict[str, float], votes: int, keys: list[str]) -> dict[str, float]:
    """Vote shares with one pseudo-vote per option (Laplace): a unanimous batch then has a bias that
    calibration can divide out, where raw zeros would stay zero."""
    return {k: (shares.get(k, 0.0) * votes + 1) / (votes + len(keys)) for k in keys}


def combine(scores: dict[str, float] | None, votes: dict[str, float], labels: list[str]) -> dict[str, float] | None:
    """label_probs: the calibrated scores blended with the vote shares (or the text answer, one vote).

    Either alone when the other is missing; None when there is neither (the row has no distribution).
    """
    if scores is None and not votes:
        return None
    if scores is None:
        mix = {label: votes.get(label, 0.0) for label in labels}
    elif not votes:
        mix = {label: scores.get(label, 0.0) for label in labels}
    else:
        mix = {
            label: SCORE_WEIGHT * scores.get(label, 0.0) + (1 - SCORE_WEIGHT) * votes.get(label, 0.0)
            for label in labels
        }
    total = sum(mix.values())
    return {label: round(p / total, 6) for label, p in mix.items()} if total > 0 else None


def argmax(probs: dict[str, float], prefer: str | None = None) -> str:
    """The most probable label; a tie goes to `prefer` (the text answer), then to the first label."""
    best = max(probs.values())
    tied = [label for label, p in probs.items() if p >= best - 1e-9]
    return prefer if prefer in tied else tied[0]
