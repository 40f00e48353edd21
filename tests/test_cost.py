"""Cost: list prices, offline token counts, and dry-run estimates that rank the prompt modes correctly."""

from types import SimpleNamespace

import pytest

from edgedistill.task import task_from_dict
from edgedistill.teacher.cost import PRICES, TYPICAL_COMPLETION_TOKENS, cost_usd, count_tokens, estimate, price_for


def test_price_for_known_dated_unknown_and_overridden_models():
    assert price_for("gpt-4o-mini") == PRICES["gpt-4o-mini"][:2] == (0.15, 0.60)
    # a dated snapshot is priced as its family, and the longest family name wins (not gpt-4o)
    assert price_for("gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert price_for("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert price_for("gpt-4.1-mini") == (0.40, 1.60)
    assert price_for("qwen2.5-0.5b-instruct") is None  # unknown: no guessing
    assert price_for("qwen2.5-0.5b-instruct", 0.0, 0.0) == (0.0, 0.0)  # a local server, free
    assert price_for("my-model", price_in=1.0) == (1.0, 0.0)
    assert price_for("gpt-4o", price_out=3.0) == (2.50, 3.0)  # override one side only
    assert price_for("gpt-4o", 1.0, 2.0) == (1.0, 2.0)


def test_cost_usd():
    assert cost_usd(1_000_000, 1_000_000, (0.15, 0.60)) == pytest.approx(0.75)
    assert cost_usd(2000, 500, (2.5, 10.0)) == pytest.approx((2000 * 2.5 + 500 * 10.0) / 1e6)
    # cached prompt tokens are billed at the cached price when one is known
    assert cost_usd(1000, 0, (2.0, 8.0), cached_tokens=400, cached_price=0.5) == pytest.approx(
        (600 * 2.0 + 400 * 0.5) / 1e6
    )
    assert cost_usd(1000, 0, (2.0, 8.0), cached_tokens=400) == pytest.approx(1000 * 2.0 / 1e6)
    assert cost_usd(10, 10, None) is None


def test_count_tokens_text_and_messages():
    assert count_tokens("") == 0
    assert count_tokens("hello world") == 2
    text = "日本語のテキストです"
    # the encoding follows the model: o200k for gpt-4o, cl100k for gpt-3.5-turbo, o200k for anything else
    assert count_tokens(text, "gpt-4o") == count_tokens(text, "some-local-model") != count_tokens(text, "gpt-3.5-turbo")
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"}]
    assert count_tokens(msgs) == (3 + count_tokens("Be brief.")) + (3 + 2) + 3
    assert count_tokens([]) == 3


NLI = task_from_dict(
    {
        "name": "nli",
        "type": "classification",
        "input": "Premise: {p}\nHypothesis: {h}",
        "labels": ["entailment", "neutral", "contradiction"],
    }
)
PAIRS = [
    ("A man in a blue shirt is riding a bicycle down a busy city street.", "A person is cycling."),
    ("Two children are building a sandcastle on the beach at sunset.", "Kids are playing indoors."),
    ("A woman is reading a newspaper on a crowded train.", "The woman is on her way to work."),
    ("A dog catches a frisbee in a park.", "An animal is outside."),
]
EXAMPLES = [
    SimpleNamespace(id=str(i), input=f"Premise: {p}\nHypothesis: {h}", choices=None)
    for i, (p, h) in enumerate(PAIRS * 5)
]
# Exemplars as long as real few-shot CoT ones (a premise, a hypothesis, a two-sentence rationale), 6 of them.
SHOTS = [
    {
        "input": e.input,
        "answer": "neutral",
        "rationale": "The premise describes the scene in detail, but it says nothing about the claim in the "
        "hypothesis. We cannot tell whether the hypothesis is true or false from the premise alone.",
    }
    for e in EXAMPLES[:6]
]


def test_estimate_ranks_the_modes_by_prompt_tokens():
    est = {
        m: estimate(NLI, EXAMPLES, m, "gpt-4o-mini", SHOTS)
        for m in ("label-only", "zero-shot", "zero-shot-cot", "few-shot-cot")
    }
    prompt = {m: e["prompt_tokens"] for m, e in est.items()}
    assert prompt["label-only"] < prompt["zero-shot"] < prompt["zero-shot-cot"] < prompt["few-shot-cot"], prompt
    assert prompt["few-shot-cot"] > 3 * prompt["zero-shot"]
    assert est["zero-shot-cot"]["requests"] == 2 * len(EXAMPLES) and est["zero-shot"]["requests"] == len(EXAMPLES)
    assert est["label-only"]["completion_tokens"] == TYPICAL_COMPLETION_TOKENS["label-only"] * len(EXAMPLES)
    # prompt tokens are exact: label-only over these examples is the sum of the real prompts
    from edgedistill.teacher.prompts import plan

    exact = sum(count_tokens(plan(NLI, "label-only").messages(e)) for e in EXAMPLES)
    assert est["label-only"]["prompt_tokens"] == exact
    assert est["zero-shot"]["cost_usd"] == pytest.approx(
        cost_usd(est["zero-shot"]["prompt_tokens"], est["zero-shot"]["completion_tokens"], (0.15, 0.60)), rel=1e-3
    )
    assert estimate(NLI, EXAMPLES, "zero-shot", "unknown-model")["cost_usd"] is None


def test_rationale_fraction_prices_the_rest_as_label_only():
    full = estimate(NLI, EXAMPLES, "zero-shot-cot", "gpt-4o-mini")
    half = estimate(NLI, EXAMPLES, "zero-shot-cot", "gpt-4o-mini", rationale_fraction=0.5)
    cheap = estimate(NLI, EXAMPLES, "label-only", "gpt-4o-mini")
    assert half["requests"] == len(EXAMPLES) // 2 * 2 + len(EXAMPLES) // 2
    assert half["prompt_tokens"] == pytest.approx((full["prompt_tokens"] + cheap["prompt_tokens"]) / 2, abs=2)
    assert cheap["cost_usd"] < half["cost_usd"] < full["cost_usd"]
    assert estimate(NLI, [], "zero-shot", "gpt-4o-mini")["prompt_tokens"] == 0


def test_count_tokens_survives_megabyte_texts_and_special_token_strings():
    # the encoder refuses 1M characters ("Input too long to encode safely"); a dry run must not
    big = "word " * 220_000
    assert count_tokens(big) == pytest.approx(220_000, rel=1e-3)
    assert count_tokens([{"role": "user", "content": big}]) == pytest.approx(220_000 + 6, rel=1e-3)
    # below the piece size the count is exact, as before
    assert count_tokens("word " * 1000) == 1000 + (count_tokens("word ") - 1)
    # "<|endoftext|>" inside an input is text to the API, not a special token and not an error
    assert count_tokens("a <|endoftext|> b") > 3


def test_estimate_of_a_megabyte_input_does_not_raise():
    long = [SimpleNamespace(id="0", input="word " * 220_000, choices=None)]
    assert estimate(NLI, long, "zero-shot", "gpt-4o-mini")["prompt_tokens"] > 220_000


def test_the_spend_a_cap_counts_includes_responses_recorded_without_a_price(tmp_path):
    """A response paid in a run that knew no price has no cost_usd; a later --max-cost counts it at that run's price."""
    from edgedistill.teacher.cache import Cache

    cache = Cache(tmp_path / "cache.sqlite")
    try:
        cache.put("priced", "m", {"messages": []}, "a", {"prompt_tokens": 100, "completion_tokens": 10}, 0.002, 0.0)
        cache.put("unpriced", "m", {"messages": []}, "b", {"prompt_tokens": 1000, "completion_tokens": 500}, None, 0.0)
        assert cache.total_cost() == pytest.approx(0.002)  # no price given: only what was recorded
        assert cache.total_cost((2.0, 8.0)) == pytest.approx(0.002 + (1000 * 2.0 + 500 * 8.0) / 1e6)
    finally:
        cache.close()


def test_cached_price_follows_the_table_the_family_and_the_override():
    from edgedistill.teacher.cost import cached_price_for

    assert cached_price_for("gpt-4o-mini") == PRICES["gpt-4o-mini"][2] == 0.075
    assert cached_price_for("gpt-4o-mini-2024-07-18") == 0.075  # a dated snapshot, as price_for prices it
    assert cached_price_for("gpt-4o-mini", price_cached=0.01) == 0.01
    assert cached_price_for("gpt-4o-mini", price_in=0.3) is None  # an overridden input price: no cached rate known
    assert cached_price_for("local-model") is None


def test_routes_price_batch_and_flex_at_the_factor_and_pick_the_cheapest_in_time():
    from edgedistill.teacher.cost import BATCH_WINDOW_H, FLEX_SLOWDOWN, live_hours, plan_routes

    plan = plan_routes(10_000, 1_000_000, 400_000, (0.15, 0.60), concurrency=8)
    cost = {r["route"]: r["cost_usd"] for r in plan["routes"]}
    assert cost["live"] == pytest.approx((1_000_000 * 0.15 + 400_000 * 0.60) / 1e6)
    assert cost["batch"] == cost["flex"] == pytest.approx(cost["live"] / 2)
    hours = {r["route"]: r["hours"] for r in plan["routes"]}
    assert hours["live"] == pytest.approx(live_hours(10_000, 400_000, 8)) and hours["batch"] == BATCH_WINDOW_H
    assert hours["flex"] == pytest.approx(FLEX_SLOWDOWN * hours["live"])
    assert plan["best"] == "flex"  # as cheap as batch, sooner
    assert plan_routes(10_000, 1_000_000, 400_000, (0.15, 0.60), 8, deadline_h=hours["live"] * 1.5)["best"] == "live"
    assert plan_routes(10_000, 1e6, 4e5, (0.15, 0.60), 8, deadline_h=hours["live"] / 2)["best"] is None
    assert plan_routes(10_000, 1e6, 4e5, (0.15, 0.60), 8, factor=0.8)["routes"][1]["cost_usd"] == pytest.approx(
        0.8 * cost["live"]
    )
    cached = plan_routes(10, 20_000, 100, (1.0, 1.0), 1, cached_price=0.1, cached_tokens=10_000)
    assert cached["routes"][0]["cost_usd"] == pytest.approx((10_000 * 1.0 + 10_000 * 0.1 + 100) / 1e6)
    assert cached["routes"][0]["cost_usd_uncached"] == pytest.approx(20_100 / 1e6)
    assert plan_routes(10, 100, 10, None, 1)["routes"][0]["cost_usd"] is None


def test_a_shared_prefix_is_cached_from_1024_tokens_in_steps_of_128():
    from edgedistill.teacher.cost import cacheable_tokens, shared_prefix_tokens
    from edgedistill.teacher.prompts import plan

    assert cacheable_tokens(1023) == 0 and cacheable_tokens(1024) == 1024 and cacheable_tokens(1300) == 1280
    zero = [plan(NLI, "zero-shot").messages(e) for e in EXAMPLES[:4]]
    assert 10 < shared_prefix_tokens(zero) < count_tokens(zero[0])  # the system message and the instruction
    few = [plan(NLI, "few-shot-cot", SHOTS).messages(e) for e in EXAMPLES[:4]]
    # the exemplars are the shared part: everything but the question
    assert shared_prefix_tokens(few) > count_tokens(few[0]) - 40
    assert shared_prefix_tokens(few[:1]) == 0


def test_the_budget_holds_a_request_at_the_price_it_is_sent_at():
    from edgedistill.teacher.cost import Budget, BudgetExceeded

    msgs = [{"role": "user", "content": "hello world"}]
    budget = Budget(0.02, 0.0, (100.0, 100.0), 64, "gpt-4o-mini")  # a worst case: (11 + 64) tokens, 0.0075 USD
    live = budget.reserve(msgs)
    batch = budget.reserve(msgs, price=(50.0, 50.0))
    assert batch == pytest.approx(live / 2) and budget.reserved == pytest.approx(live + batch)
    with pytest.raises(BudgetExceeded, match="--max-cost"):
        budget.reserve(msgs, max_tokens=1000)
    budget.settle(batch, 0.001)
    assert budget.spent == 0.001 and budget.reserved == pytest.approx(live)
