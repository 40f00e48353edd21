"""The teacher stage: labels (and rationales) for every input, each response paid for once.

    examples --(prompt plan)--> requests --(cache | API)--> responses --(parse)--> annotations.jsonl

Everything that could stop the run (bad task, bad data, unknown price with a cost cap) is checked
before the first request. Responses go to RUN/cache.sqlite as they arrive; annotations.jsonl and
annotate.json are written once, atomically, at the end, so a re-run after any crash resumes from
the cache and sends only the requests that never completed.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .annotations import Annotation
from .arith import same_number
from .atomic import write_json, write_jsonl
from .cache import Cache
from .client import ClientConfig, TeacherClient, TeacherError
from .cost import count_tokens, cost_usd, estimate, price_for
from .data import load_examples
from .errors import UserError
from .prompts import MODES, load_exemplars, plan
from .task import load_task


@dataclass
class AnnotateConfig:
    task: str
    data: str
    out: str
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    prompt: str = "zero-shot"
    exemplars: str | None = None
    rationale_fraction: float = 1.0
    concurrency: int = 8
    max_cost: float | None = None
    dry_run: bool = False
    limit: int | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 120.0
    max_retries: int = 6
    backoff_base: float = 1.0
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int = 0
    price_in: float | None = None
    price_out: float | None = None
    keep_if_agrees: bool = False


class BudgetExceeded(Exception):
    pass


class Budget:
    """Never start a request whose worst case could push the spend past the cap.

    The spend counts everything the run's cache has paid for, earlier runs included, plus the
    worst case (all prompt tokens, max_tokens of output) of every request now in flight.
    """

    def __init__(self, cap: float | None, spent: float, price, max_tokens: int, model: str):
        self.cap, self.spent, self.reserved = cap, spent, 0.0
        self.price, self.max_tokens, self.model = price, max_tokens, model

    def reserve(self, messages) -> float:
        if self.cap is None:
            return 0.0
        worst = cost_usd(count_tokens(messages, self.model), self.max_tokens, self.price)
        if self.spent + self.reserved + worst > self.cap:
            raise BudgetExceeded(f"--max-cost {self.cap:.4f} USD reached (spent {self.spent:.4f})")
        self.reserved += worst
        return worst

    def settle(self, reserved: float, actual: float | None) -> None:
        self.reserved -= reserved
        self.spent += actual or 0.0


def rationale_subset(ids: list[str], fraction: float, seed: int) -> set[str]:
    """The seeded subset of ids that get a rationale prompt; the same ids on every re-run."""
    if fraction >= 1:
        return set(ids)
    return set(random.Random(seed).sample(ids, round(len(ids) * fraction)))


def annotate(cfg: AnnotateConfig, echo=print) -> dict:
    task = load_task(cfg.task)
    examples = load_examples(task, cfg.data, limit=cfg.limit)
    if cfg.prompt not in MODES:
        raise UserError(f"--prompt: {cfg.prompt!r} is not a prompt mode; use one of {', '.join(MODES)}")
    if not 0 < cfg.rationale_fraction <= 1:
        raise UserError(f"--rationale-fraction: {cfg.rationale_fraction} must be in (0, 1]")
    exemplars = load_exemplars(cfg.exemplars, task) if cfg.exemplars else None
    main_plan = plan(task, cfg.prompt, exemplars)
    cheap_plan = plan(task, "label-only")
    price = price_for(cfg.model, cfg.price_in, cfg.price_out)
    if cfg.dry_run:
        return dry_run(cfg, task, examples, exemplars, price, echo)
    if cfg.max_cost is not None and price is None:
        raise UserError(f"--max-cost: no list price known for model {cfg.model!r}; give --price-in and --price-out (USD per 1M tokens)")

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    want_rationale = rationale_subset([e.id for e in examples], cfg.rationale_fraction, cfg.seed) if cfg.prompt != "label-only" else set()
    cache = Cache(out / "cache.sqlite")
    client = TeacherClient(ClientConfig(model=cfg.model, base_url=cfg.base_url, api_key_env=cfg.api_key_env, timeout=cfg.timeout,
                                        max_retries=cfg.max_retries, backoff_base=cfg.backoff_base, temperature=cfg.temperature,
                                        max_tokens=cfg.max_tokens, price=price), cache)
    budget = Budget(cfg.max_cost, cache.total_cost(), price, cfg.max_tokens, cfg.model)
    stats = {"requests_sent": 0, "cache_hits": 0, "retries": 0, "budget_stopped": 0}
    start = time.perf_counter()
    try:
        rows = asyncio.run(_annotate_all(examples, main_plan, cheap_plan, want_rationale, client, budget, stats, cfg.concurrency))
    except KeyboardInterrupt:
        raise UserError(f"interrupted; every response received so far is in {out / 'cache.sqlite'}; "
                        "re-run the same command to resume without paying for them again") from None
    finally:
        cache.close()
    if cfg.keep_if_agrees:
        for r in rows:
            if r.status == "ok" and r.gold is not None and not _agrees(task, r.label, r.gold):
                r.status, r.error = "filtered", f"teacher label {r.label!r} differs from gold {r.gold!r} (--keep-if-agrees)"
    summary = _summary(cfg, task, rows, stats, price, time.perf_counter() - start, want_rationale)
    write_jsonl(out / "annotations.jsonl", [r.to_json() for r in rows])
    write_json(out / "annotate.json", summary)
    task.save(out / "task.yaml")
    if stats["budget_stopped"]:
        summary["message"] = (f"stopped at --max-cost {cfg.max_cost} USD: {stats['budget_stopped']} examples were not sent; "
                              "re-run with a higher --max-cost to finish (answered requests come from the cache)")
    return summary


async def _annotate_all(examples, main_plan, cheap_plan, want_rationale, client, budget, stats, concurrency):
    from tqdm.auto import tqdm

    sem = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(examples), desc="annotating", unit="ex")

    async def one(ex) -> Annotation:
        p = main_plan if ex.id in want_rationale else cheap_plan
        outputs, usage = [], {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
        async with sem:
            try:
                for _ in range(p.stages):
                    messages = p.messages(ex, outputs)
                    done = client.cached(messages)
                    if done is None:
                        held = budget.reserve(messages)
                        try:
                            done = await client.complete(messages)
                        finally:
                            budget.settle(held, done.cost_usd if done else None)
                        stats["requests_sent"] += done.attempts
                        stats["retries"] += done.attempts - 1
                    else:
                        stats["cache_hits"] += 1
                    outputs.append(done.content)
                    for k in usage:
                        usage[k] += done.usage.get(k) or 0
            except BudgetExceeded as e:
                stats["budget_stopped"] += 1
                return _row(ex, status="failed", error=f"not sent: {e}", usage=usage, requested=ex.id in want_rationale)
            except TeacherError as e:
                stats["requests_sent"] += e.attempts
                stats["retries"] += e.attempts - 1
                return _row(ex, status="failed", error=str(e), usage=usage, requested=ex.id in want_rationale)
            finally:
                bar.update(1)
        parsed = p.parse(ex, outputs)
        raw = outputs[-1] if len(outputs) == 1 else "\n---\n".join(outputs)
        return _row(ex, label=parsed.label, rationale=parsed.rationale, status=parsed.status, error=parsed.error,
                    raw=raw if parsed.status != "ok" or p.mode != "label-only" else None, usage=usage,
                    requested=ex.id in want_rationale, dropped=parsed.rationale_dropped)

    try:
        return await asyncio.gather(*(one(ex) for ex in examples))
    finally:
        bar.close()
        await client.close()


def _row(ex, status, usage, requested, label=None, rationale=None, error=None, raw=None, dropped=False) -> Annotation:
    return Annotation(id=ex.id, input=ex.input, choices=ex.choices, label=label, rationale=rationale, gold=ex.gold,
                      status=status, error=error, raw=raw, usage=usage,
                      extra={"rationale_requested": requested, **({"rationale_dropped": True} if dropped else {})})


def _agrees(task, label, gold) -> bool:
    return same_number(label, gold) if task.type == "numeric" else label == gold


def _summary(cfg, task, rows, stats, price, elapsed, want_rationale) -> dict:
    count = {s: sum(r.status == s for r in rows) for s in ("ok", "parse_failed", "failed", "filtered")}
    tokens = {k: sum((r.usage or {}).get(k) or 0 for r in rows) for k in ("prompt_tokens", "completion_tokens", "cached_tokens")}
    judged = [r for r in rows if r.gold is not None and r.status in ("ok", "filtered")]
    return {
        "examples": len(rows), **count,
        "rationales": sum(r.rationale is not None for r in rows),
        "rationales_dropped_short": sum(bool(r.extra.get("rationale_dropped")) for r in rows),
        **{k: v for k, v in stats.items() if k != "budget_stopped"}, "not_sent_budget": stats["budget_stopped"],
        **tokens,
        "cost_usd": cost_usd(tokens["prompt_tokens"], tokens["completion_tokens"], price),
        "gold_agreement": (sum(_agrees(task, r.label, r.gold) for r in judged) / len(judged)) if judged else None,
        "model": cfg.model, "base_url": cfg.base_url, "mode": cfg.prompt,
        "rationale_fraction": cfg.rationale_fraction, "seed": cfg.seed,
        "rationale_ids": sorted(want_rationale) if cfg.rationale_fraction < 1 else None,
        "task": task.name, "data": str(cfg.data), "elapsed_s": round(elapsed, 2),
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("dry_run",)},
    }


def dry_run(cfg, task, examples, exemplars, price, echo) -> dict:
    """Estimated tokens and cost of the chosen mode and its alternatives; sends nothing."""
    modes = [cfg.prompt] + [m for m in MODES if m != cfg.prompt and (m != "few-shot-cot" or exemplars)]
    rows = [estimate(task, examples, m, cfg.model, exemplars, cfg.rationale_fraction if m == cfg.prompt else 1.0, price)
            for m in modes]
    echo(f"Dry run: {len(examples)} examples, model {cfg.model}, "
         + (f"price {price[0]}/{price[1]} USD per 1M tokens in/out" if price else "price unknown (give --price-in/--price-out)"))
    echo(f"{'prompt mode':<16}{'requests':>10}{'prompt tok':>12}{'completion tok':>16}{'cost USD':>11}")
    for r in rows:
        mark = " <- chosen" if r["mode"] == cfg.prompt else ""
        cost = "–" if r["cost_usd"] is None else f"{r['cost_usd']:.4f}"
        echo(f"{r['mode']:<16}{r['requests']:>10}{r['prompt_tokens']:>12}{r['completion_tokens']:>16}{cost:>11}{mark}")
    if "few-shot-cot" not in modes:
        echo("(few-shot-cot needs --exemplars to estimate)")
    return {"dry_run": True, "estimates": rows}
