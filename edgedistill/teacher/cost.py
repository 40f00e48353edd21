"""What annotation costs: offline token counts, a list-price table, dry-run estimates, the route planner
(live, Batch API, Flex) and the --max-cost budget.

Token counts use `bpe-openai` (OpenAI's BPE encodings shipped inside the package; tiktoken would
fetch them from the web). For non-OpenAI models the o200k encoding is a stand-in: close enough to
compare prompt modes, which is what a dry run is for.
"""

from __future__ import annotations

import functools
import os
import random

from .prompts import plan
from .teacher_signal import SCORE_PARAMS

# USD per 1M tokens: (input, output, cached input). List prices of late 2025; check your provider
# and override with --price-in / --price-out. Local servers cost nothing but electricity.
PRICES: dict[str, tuple[float, float, float]] = {
    "gpt-5": (1.25, 10.00, 0.125),
    "gpt-5-mini": (0.25, 2.00, 0.025),
    "gpt-5-nano": (0.05, 0.40, 0.005),
    "gpt-4.1": (2.00, 8.00, 0.50),
    "gpt-4.1-mini": (0.40, 1.60, 0.10),
    "gpt-4.1-nano": (0.10, 0.40, 0.025),
    "gpt-4o": (2.50, 10.00, 1.25),
    "gpt-4o-mini": (0.15, 0.60, 0.075),
    "o4-mini": (1.10, 4.40, 0.275),
    "o3-mini": (1.10, 4.40, 0.55),
    "gpt-3.5-turbo": (0.50, 1.50, 0.50),
}

# Completion length when nothing better is known, from the local-teacher transcript and the PaLM
# outputs (benchmarks/annotation_cost.py measures the real figures): answer line only; answer plus a
# one-sentence explanation; step-by-step reasoning plus a short extraction answer; an exemplar-style
# rationale ending "So the answer is ...".
TYPICAL_COMPLETION_TOKENS = {
    "label-only": 6,
    "zero-shot": 40,
    "zero-shot-cot": (150, 8),
    "few-shot-cot": 60,
    "rationalize": 30,
}


def price_for(model: str, price_in: float | None = None, price_out: float | None = None) -> tuple[float, float] | None:
    """(USD per 1M input tokens, per 1M output tokens), or None when unknown and not given."""
    known = _listed(model)
    if price_in is not None and price_out is not None:
        return (price_in, price_out)
    if known is None:
        return None if price_in is None and price_out is None else (price_in or 0.0, price_out or 0.0)
    return (price_in if price_in is not None else known[0], price_out if price_out is not None else known[1])


def _listed(model: str) -> tuple[float, float, float] | None:
    """The table's prices of `model` or of its family (a dated snapshot), the longest family name first."""
    return PRICES.get(model) or next(
        (PRICES[k] for k in sorted(PRICES, key=len, reverse=True) if model.startswith(k + "-")), None
    )


def cached_price_for(model: str, price_in: float | None = None, price_cached: float | None = None) -> float | None:
    """USD per 1M cached prompt tokens: --price-cached, else the table's where the input price is the table's too;
    None (cached tokens billed as any prompt token) when unknown."""
    if price_cached is not None:
        return price_cached
    known = _listed(model)
    return known[2] if known and price_in is None else None


@functools.lru_cache(maxsize=8)
def _encoding(model: str):
    # deferred: an optional package
    import bpe_openai

    try:
        return bpe_openai.get_encoding(bpe_openai.encoding_name_for_model(model))
    except Exception:  # not an OpenAI model: o200k is the closest modern stand-in
        return bpe_openai.get_encoding("o200k_base")


# The encoder refuses a text of 1M characters or more ("Input too long to encode safely") and one of more
# tokens than its chunk limit, so long texts are counted in pieces, cut before a space (where a word's token
# starts anyway): exact below PIECE_CHARS, within a token per piece above.
PIECE_CHARS = 50_000


def _count(enc, text: str) -> int:
    n, start = 0, 0
    while start < len(text):
        end = start + PIECE_CHARS
        if end < len(text):
            cut = text.rfind(" ", start + PIECE_CHARS // 2, end)
            end = cut if cut > start else end
        # disallowed_special=(): an input that contains "<|endoftext|>" is text to the API, not an error
        n += len(enc.encode(text[start:end], disallowed_special=()))
        start = end
    return n


def count_tokens(messages_or_text, model: str = "gpt-4o-mini") -> int:
    """Tokens of a text, or of chat messages as the API bills them (content + ~3 per message + 3)."""
    enc = _encoding(model)
    if isinstance(messages_or_text, str):
        return _count(enc, messages_or_text)
    return sum(3 + _count(enc, m["content"]) for m in messages_or_text) + 3


def cost_usd(
    prompt_tokens: int,
    completion_tokens: int,
    price: tuple[float, float] | None,
    cached_tokens: int = 0,
    cached_price: float | None = None,
) -> float | None:
    if price is None:
        return None
    uncached = prompt_tokens - (cached_tokens if cached_price is not None else 0)
    cached = cached_tokens * cached_price if cached_price is not None else 0.0
    return (uncached * price[0] + cached + completion_tokens * price[1]) / 1e6


def estimate(
    task,
    examples,
    mode: str,
    model: str,
    exemplars=None,
    rationale_fraction: float = 1.0,
    price=None,
    sample: int = 200,
    seed: int = 0,
) -> dict:
    """Estimated requests, tokens and cost to annotate `examples` with one prompt mode, sending nothing.

    Prompt tokens are counted exactly on a sample of the real prompts; completion tokens use
    TYPICAL_COMPLETION_TOKENS. With rationale_fraction < 1 the rest are priced as label-only.
    """
    n = len(examples)
    picked = random.Random(seed).sample(examples, min(sample, n)) if n else []
    with_rationale = round(n * rationale_fraction) if mode != "label-only" else 0
    parts = [(mode, with_rationale), ("label-only", n - with_rationale)]
    requests = prompt = completion = 0.0
    for m, count in parts:
        if count == 0 or not picked:
            continue
        p = plan(task, m, exemplars)
        typical = TYPICAL_COMPLETION_TOKENS[m]
        if m == "zero-shot-cot":
            reasoning = "word " * typical[0]
            per_prompt = sum(
                count_tokens(p.messages(e), model) + count_tokens(p.messages(e, [reasoning]), model) for e in picked
            ) / len(picked)
            per_completion, per_requests = sum(typical), 2
        else:
            per_prompt = sum(count_tokens(p.messages(e), model) for e in picked) / len(picked)
            per_completion, per_requests = typical, 1
        requests += per_requests * count
        prompt += per_prompt * count
        completion += per_completion * count
    price = price if price is not None else price_for(model)
    return {
        "mode": mode,
        "examples": n,
        "requests": int(requests),
        "prompt_tokens": int(prompt),
        "completion_tokens": int(completion),
        "cost_usd": cost_usd(prompt, completion, price),
    }


def _extra_row(name: str, requests, prompt, completion, chosen: bool, rate) -> dict:
    """One row of estimate_extras: the counts as ints, their cost at `rate` (USD per 1M tokens)."""
    return {
        "name": name,
        "requests": int(requests),
        "prompt_tokens": int(prompt),
        "completion_tokens": int(completion),
        "cost_usd": cost_usd(prompt, completion, rate),
        "chosen": chosen,
    }


def _mean_prompt_tokens(messages_for, picked, model: str) -> float:
    """Mean prompt tokens of messages_for(example) over the sampled examples; 0 without any."""
    return sum(count_tokens(messages_for(e), model) for e in picked) / len(picked) if picked else 0


def _votes_row(base: dict, n: int, mode: str, votes: int, rate) -> dict:
    """The N-1 sampled votes on top of the answer request."""
    extra_votes = max(votes - 1, 2)  # priced for the configured count, or for --votes 3 when votes are off
    # where the answer comes first a vote stops after the answer line (annotate.ANSWER_FIRST): the same prompt,
    # the completion of a label-only answer
    vote = (
        dict(base, completion_tokens=n * TYPICAL_COMPLETION_TOKENS["label-only"])
        if mode in ("zero-shot", "label-only")
        else base
    )
    return _extra_row(
        f"+ {extra_votes} sampled votes (--votes {extra_votes + 1})",
        vote["requests"] * extra_votes,
        vote["prompt_tokens"] * extra_votes,
        vote["completion_tokens"] * extra_votes,
        votes > 1,
        rate,
    )


def _scoring_rows(p, picked, n: int, model: str, scoring: str, score_orders: int, rate) -> list[dict]:
    """The scoring request(s), and for comparison the same read riding on the answer request."""
    how = scoring if scoring != "none" else "letter"
    per = _mean_prompt_tokens(lambda e: p.score_messages(e, how), picked, model)
    k = score_orders
    return [
        _extra_row(
            f"+ scoring, {k} more request{'s' if k > 1 else ''} ({how})",
            n * k,
            per * n * k,
            n * k * SCORE_PARAMS["max_tokens"],
            scoring != "none",
            rate,
        ),
        _extra_row("  or scoring on the answer request", 0, 0, 0, False, rate),
    ]


def _rationalize_row(p, picked, n: int, model: str, rationalize: bool, rate) -> dict:
    """Rationalization follow-ups, worst case: one per example."""
    per = _mean_prompt_tokens(lambda e: p.rationalize_messages(e, e.gold or "x"), picked, model)
    return _extra_row(
        "+ rationalize (if none explained)",
        n,
        per * n,
        n * TYPICAL_COMPLETION_TOKENS["rationalize"],
        rationalize,
        rate,
    )


def estimate_extras(
    task,
    examples,
    mode: str,
    model: str,
    exemplars=None,
    price=None,
    votes: int = 1,
    scoring: str = "letter",
    rationalize: bool = True,
    score_orders: int = 1,
    sample: int = 200,
    seed: int = 0,
) -> list[dict]:
    """What one prompt mode's run adds per option: N-1 votes, the scoring request (and, for comparison, the
    same read riding on the answer request), rationalization follow-ups (worst case). `chosen` marks
    those the configuration sends."""
    n = len(examples)
    picked = random.Random(seed).sample(examples, min(sample, n)) if n else []
    base = estimate(task, examples, mode, model, exemplars, 1.0, price, sample, seed)
    p = plan(task, mode, exemplars)
    rate = price if price is not None else price_for(model)
    out = [_votes_row(base, n, mode, votes, rate)]
    if task.type != "numeric":
        out += _scoring_rows(p, picked, n, model, scoring, score_orders, rate)
    if mode != "label-only":
        out.append(_rationalize_row(p, picked, n, model, rationalize, rate))
    return out


# ---------------------------------------------------------------- routes: live, Batch API, Flex

# The Batch API and Flex processing bill this share of the list price (OpenAI, late 2025: half, cached input
# included); annotate --batch-price-factor sets another provider's.
BATCH_PRICE_FACTOR = 0.5
BATCH_WINDOW_H = 24.0  # a batch's completion window: its results come within it (most come much sooner)
# OpenAI caches a prompt's prefix once the prompt has 1,024 tokens or more, in steps of 128 tokens, and bills the
# cached tokens at the cached rate (`usage.prompt_tokens_details.cached_tokens`); shorter prompts are never cached.
CACHE_MIN_TOKENS, CACHE_STEP = 1024, 128
# The planner's live-time model, an ASSUMPTION to replace with your own measurement: per request, a fixed time to
# the first token plus the completion at a decode speed, --concurrency requests at a time, no rate limit hit.
FIRST_TOKEN_S, DECODE_TOKENS_PER_S = 0.5, 50.0
# Flex requests queue behind standard ones and have no completion-time guarantee; the planner ASSUMES twice live.
FLEX_SLOWDOWN = 2.0
ROUTES = ("live", "batch", "flex")


def scaled(price: tuple[float, float] | None, factor: float) -> tuple[float, float] | None:
    """A (USD per 1M in, out) price times `factor`: the batch and flex price of a list price."""
    return None if price is None else (price[0] * factor, price[1] * factor)


def route_price(price, cached_price, route: str, factor: float = BATCH_PRICE_FACTOR):
    """(price, cached price) a route bills: the list's live, `factor` of it for batch and flex."""
    f = 1.0 if route == "live" else factor
    return scaled(price, f), None if cached_price is None else cached_price * f


def cacheable_tokens(prefix_tokens: float) -> int:
    """The part of a prompt prefix shared by every request that a provider's prompt cache serves: 0 below
    CACHE_MIN_TOKENS, else the prefix rounded down to a CACHE_STEP."""
    return 0 if prefix_tokens < CACHE_MIN_TOKENS else int(prefix_tokens) // CACHE_STEP * CACHE_STEP


def shared_prefix_tokens(prompts: list[list[dict]], model: str = "gpt-4o-mini") -> int:
    """Tokens of the longest prefix that all `prompts` (chat messages each) share: the system message, the
    instruction, a few-shot prompt's exemplars. The messages alike in all, then the common start of the first
    that differs (a token less, for the word cut in two)."""
    if len(prompts) < 2:
        return 0
    tokens = 3
    for i in range(min(len(p) for p in prompts)):
        contents = [p[i]["content"] for p in prompts]
        if len({p[i]["role"] for p in prompts}) > 1:
            break
        if len(set(contents)) == 1:
            tokens += 3 + count_tokens(contents[0], model)
            continue
        common = os.path.commonprefix(contents)
        return tokens + 3 + max(0, count_tokens(common, model) - 1) if common else tokens
    return tokens


def live_hours(requests: float, completion_tokens: float, concurrency: int) -> float:
    """Hours a live run takes under the planner's assumptions (FIRST_TOKEN_S, DECODE_TOKENS_PER_S)."""
    return (requests * FIRST_TOKEN_S + completion_tokens / DECODE_TOKENS_PER_S) / max(concurrency, 1) / 3600


def plan_routes(
    requests: float,
    prompt_tokens: float,
    completion_tokens: float,
    price: tuple[float, float] | None,
    concurrency: int,
    factor: float = BATCH_PRICE_FACTOR,
    cached_price: float | None = None,
    cached_tokens: float = 0,
    deadline_h: float | None = None,
) -> dict:
    """Cost and time of each route for the same requests, and the cheapest one that meets `deadline_h` (then
    the fastest of equal cost). `cached_tokens`: prompt tokens a provider's prompt cache serves (cacheable_tokens
    times the requests after the first that share the prefix), billed at `cached_price` where one is known."""
    live = live_hours(requests, completion_tokens, concurrency)
    hours = {"live": live, "batch": BATCH_WINDOW_H, "flex": live * FLEX_SLOWDOWN}
    rows = []
    for route in ROUTES:
        p, cp = route_price(price, cached_price, route, factor)
        rows.append(
            {
                "route": route,
                "cost_usd": cost_usd(prompt_tokens, completion_tokens, p, cached_tokens, cp),
                "cost_usd_uncached": cost_usd(prompt_tokens, completion_tokens, p),
                "hours": hours[route],
                "meets_deadline": deadline_h is None or hours[route] <= deadline_h,
            }
        )
    fits = [r for r in rows if r["meets_deadline"]]
    best = min(fits, key=lambda r: (round(r["cost_usd"] or 0.0, 9), r["hours"])) if fits else None
    return {"routes": rows, "best": best and best["route"], "deadline_h": deadline_h}


# ---------------------------------------------------------------- the --max-cost budget


class BudgetExceeded(Exception):
    pass


class Budget:
    """Never start a request whose worst case could push the spend past the cap.

    The spend counts everything the run's cache has paid for, earlier runs included, plus the worst case (all
    prompt tokens, max_tokens of output) of every request now in flight: live requests until answered, batch
    requests from their submission until their batch is collected (the batch ledger keeps that across runs).
    """

    def __init__(self, cap: float | None, spent: float, price, max_tokens: int, model: str):
        self.cap, self.spent, self.reserved = cap, spent, 0.0
        self.price, self.max_tokens, self.model = price, max_tokens, model

    def reserve(self, messages, max_tokens: int | None = None, price=None) -> float:
        """Hold a request's worst case at `price` (default: the budget's); BudgetExceeded when it does not fit."""
        if self.cap is None:
            return 0.0
        worst = cost_usd(count_tokens(messages, self.model), max_tokens or self.max_tokens, price or self.price)
        if self.spent + self.reserved + worst > self.cap:
            raise BudgetExceeded(f"--max-cost {self.cap:.4f} USD reached (spent {self.spent:.4f})")
        self.reserved += worst
        return worst

    def settle(self, reserved: float, actual: float | None) -> None:
        self.reserved -= reserved
        self.spent += actual or 0.0
