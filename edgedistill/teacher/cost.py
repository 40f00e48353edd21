"""What annotation costs: offline token counts, a list-price table, and dry-run estimates.

Token counts use `bpe-openai` (OpenAI's BPE encodings shipped inside the package; tiktoken would
fetch them from the web). For non-OpenAI models the o200k encoding is a stand-in: close enough to
compare prompt modes, which is what a dry run is for.
"""

from __future__ import annotations

import functools
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
    known = PRICES.get(model) or next(
        (PRICES[k] for k in sorted(PRICES, key=len, reverse=True) if model.startswith(k + "-")), None
    )
    if price_in is not None and price_out is not None:
        return (price_in, price_out)
    if known is None:
        return None if price_in is None and price_out is None else (price_in or 0.0, price_out or 0.0)
    return (price_in if price_in is not None else known[0], price_out if price_out is not None else known[1])


def cached_price_for(model: str) -> float | None:
    known = PRICES.get(model)
    return known[2] if known else None


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

    def row(name, requests, prompt, completion, chosen):
        return {
            "name": name,
            "requests": int(requests),
            "prompt_tokens": int(prompt),
            "completion_tokens": int(completion),
            "cost_usd": cost_usd(prompt, completion, price if price is not None else price_for(model)),
            "chosen": chosen,
        }

    out = []
    extra_votes = max(votes - 1, 2)  # priced for the configured count, or for --votes 3 when votes are off
    # where the answer comes first a vote stops after the answer line (annotate.ANSWER_FIRST): the same prompt,
    # the completion of a label-only answer
    vote = (
        dict(base, completion_tokens=n * TYPICAL_COMPLETION_TOKENS["label-only"])
        if mode in ("zero-shot", "label-only")
        else base
    )
    out.append(
        row(
            f"+ {extra_votes} sampled votes (--votes {extra_votes + 1})",
            vote["requests"] * extra_votes,
            vote["prompt_tokens"] * extra_votes,
            vote["completion_tokens"] * extra_votes,
            votes > 1,
        )
    )
    if task.type != "numeric":
        how = scoring if scoring != "none" else "letter"
        per = sum(count_tokens(p.score_messages(e, how), model) for e in picked) / len(picked) if picked else 0
        k = score_orders
        out.append(
            row(
                f"+ scoring, {k} more request{'s' if k > 1 else ''} ({how})",
                n * k,
                per * n * k,
                n * k * SCORE_PARAMS["max_tokens"],
                scoring != "none",
            )
        )
        out.append(row("  or scoring on the answer request", 0, 0, 0, False))
    if mode != "label-only":
        per = (
            sum(count_tokens(p.rationalize_messages(e, e.gold or "x"), model) for e in picked) / len(picked)
            if picked
            else 0
        )
        out.append(
            row(
                "+ rationalize (if none explained)",
                n,
                per * n,
                n * TYPICAL_COMPLETION_TOKENS["rationalize"],
                rationalize,
            )
        )
    return out
