"""The teacher stage: labels (and rationales) for every input, each response paid for once.

    examples --(prompt plan)--> requests --(cache | API)--> responses --(parse)--> annotations.jsonl

Per input, up to four kinds of request, each cached under its own key:
  answer       the prompt mode's request(s): the text answer and the rationale (greedy)
  vote         --votes N: N-1 more sampled answers (self-consistency, Wang et al. 2023); the
               API's `n` where the server honours it, else one request per vote (seeded)
  score        --scoring letter|word: one more request whose single generated token names an
               option; its top logprobs give the teacher's distribution over the labels, calibrated
               over the batch (--calibration) against the small model's bias for one position;
               --score-orders K asks K times with the options rotated, and averages
  rationalize  when the label finally chosen has no explanation (the model stopped after its
               Answer line, or the votes overturned it): "the answer is X; explain why"
label_probs = the calibrated scores blended with the vote shares; the hard label is its argmax.

Everything that could stop the run (bad task, bad data, unknown price with a cost cap) is checked
before the first request. Responses go to RUN/cache.sqlite as they arrive; annotations.jsonl and
annotate.json are written once, atomically, at the end, so a re-run after any crash resumes from
the cache and sends only the requests that never completed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from .. import bounds
from ..annotations import Annotation
from ..atomic import write_json, write_jsonl
from ..choices import BatchFallback, Calibration, PromptMode, Scoring, ServiceTier, parse
from ..console import progress
from ..data import MAX_FIELD_CHARS, Example, load_examples
from ..edge.arith import same_number
from ..edge.families import answers_match
from ..errors import UserError
from ..rundir import run_dir_lock
from ..task import load_task
from .batch import BatchesPending, BatchOptions, BatchRoute, Gate, cancel_batches, show_ledger
from .cache import Cache
from .client import ClientConfig, TeacherClient, TeacherError, redact_url
from .cost import (
    BATCH_PRICE_FACTOR,
    CACHE_MIN_TOKENS,
    DECODE_TOKENS_PER_S,
    FIRST_TOKEN_S,
    FLEX_SLOWDOWN,
    Budget,
    BudgetExceeded,
    cacheable_tokens,
    cached_price_for,
    cost_usd,
    estimate,
    estimate_extras,
    plan_routes,
    price_for,
    route_price,
    shared_prefix_tokens,
)
from .prompts import load_exemplars, option_keys, plan
from .teacher_signal import (
    CONTENT_FREE_INPUTS,
    SCORE_PARAMS,
    argmax,
    calibrate,
    combine,
    key_distribution,
    prior,
    smoothed,
    vote_shares,
)


@dataclass
class AnnotateConfig:
    task: str
    data: str
    out: str
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    prompt: PromptMode = PromptMode.ZERO_SHOT
    exemplars: str | None = None
    rationale_fraction: float = 1.0
    concurrency: int = 8
    max_cost: float | None = None
    dry_run: bool = False
    limit: int | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float | None = None  # seconds per request: LIVE_TIMEOUT_S, FLEX_TIMEOUT_S with --service-tier flex
    max_retries: int = 6
    backoff_base: float = 1.0
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int = 0
    price_in: float | None = None
    price_out: float | None = None
    price_cached: float | None = None  # USD per 1M cached prompt tokens; default: the table's for a listed model
    batch_price_factor: float = BATCH_PRICE_FACTOR  # the share of the list price that batch and flex requests bill
    keep_if_agrees: bool = False
    scoring: Scoring = Scoring.LETTER  # numeric tasks: none
    score_orders: int = 1  # scoring requests per input, the options rotated by one place each time
    calibration: Calibration = Calibration.BATCH
    votes: int = 1  # answers per input: the greedy one plus votes-1 sampled
    vote_temperature: float = 0.7
    rationalize: bool = True
    # Exit non-zero (the run does not count as done) when more than this share of the rows failed for good (server,
    # network or key trouble: re-running retries them for free); a run with no row ok always fails.
    max_failed: float = 0.1
    # Routes (teacher/batch.py): the Batch API at half price within 24 h, or Flex processing at half price, slower.
    batch: bool = False
    batch_wait: float | None = None  # seconds to wait for the batches; 0: submit and exit; None: until they end
    batch_poll: float = 10.0  # seconds before the first poll of a batch; doubles up to batch.POLL_MAX_S
    batch_max_requests: int = 50_000
    batch_max_mb: float = 200.0
    batch_fallback: BatchFallback = BatchFallback.BATCH
    batch_status: bool = False
    batch_cancel: bool = False
    service_tier: ServiceTier = ServiceTier.DEFAULT
    deadline: float | None = None  # hours: --dry-run names the cheapest route that finishes within it

    def __post_init__(self):
        self.prompt = parse(PromptMode, self.prompt, "--prompt")
        self.scoring = parse(Scoring, self.scoring, "--scoring")
        self.calibration = parse(Calibration, self.calibration, "--calibration")
        self.batch_fallback = parse(BatchFallback, self.batch_fallback, "--batch-fallback")
        self.service_tier = parse(ServiceTier, self.service_tier, "--service-tier")


LIVE_TIMEOUT_S = 120.0
# Flex requests can queue for minutes before they run (OpenAI suggests a 15-minute client timeout for them).
FLEX_TIMEOUT_S = 900.0
FLEX_BACKOFF_MAX_S = 300.0  # flex answers 429 while its capacity is short: wait longer between tries


def timeout_of(cfg: AnnotateConfig) -> float:
    """--timeout, or its default for the service tier."""
    if cfg.timeout is not None:
        return cfg.timeout
    return FLEX_TIMEOUT_S if cfg.service_tier == "flex" else LIVE_TIMEOUT_S


ANSWER_FIRST = ("zero-shot", "label-only")  # prompt modes whose answer line comes before any explanation
VOTE_STOP = ["Explanation:"]  # where a vote of an answer-first prompt stops (prompts.TEMPLATES["zero-shot"])


def rationale_subset(ids: list[str], fraction: float, seed: int) -> set[str]:
    """The seeded subset of ids that get a rationale prompt; the same ids on every re-run."""
    if fraction >= 1:
        return set(ids)
    return set(random.Random(seed).sample(ids, round(len(ids) * fraction)))


def check_config(cfg: AnnotateConfig, task) -> None:
    """The rules between settings (the dataclass checks the choices, bounds.check_config checks each value's range)."""
    if cfg.votes > 1 and cfg.vote_temperature <= 0:
        raise UserError("--vote-temperature: votes need sampling; give a temperature above 0 (0.7 is usual)")
    if cfg.batch and cfg.service_tier == "flex":
        raise UserError(
            "--service-tier flex: a batch has no service tier (both bill half price); give --batch (results within "
            "24 h) or --service-tier flex (live, slower), not both"
        )


def scoring_for(cfg: AnnotateConfig, task) -> str:
    """Numeric answers have no option set to score: those tasks never score."""
    return "none" if task.type == "numeric" else cfg.scoring


def annotate(cfg: AnnotateConfig, echo=print) -> dict:
    """Annotate cfg.data into cfg.out; returns the summary (annotate.json). Raises AnnotateFailed, after writing
    annotations.jsonl and annotate.json, when no row is ok or more than cfg.max_failed of the rows failed."""
    bounds.check_config("annotate", cfg)
    if cfg.batch_status or cfg.batch_cancel:
        return batch_ledger(cfg, echo)
    task = load_task(cfg.task)
    examples = load_examples(task, cfg.data, limit=cfg.limit)
    check_config(cfg, task)
    exemplars = load_exemplars(cfg.exemplars, task) if cfg.exemplars else None
    main_plan = plan(task, cfg.prompt, exemplars)
    cheap_plan = plan(task, "label-only")
    price = price_for(cfg.model, cfg.price_in, cfg.price_out)
    if cfg.dry_run:
        return dry_run(cfg, task, examples, exemplars, price, echo)
    if truncated_ids(examples):
        echo(truncation_note(examples))
    if cfg.max_cost is not None and price is None:
        raise UserError(
            f"--max-cost: no list price known for model {cfg.model!r}; give --price-in and --price-out "
            "(USD per 1M tokens)"
        )
    with run_dir_lock(cfg.out, "edgedistill annotate") as out:
        return _annotate(cfg, task, examples, (main_plan, cheap_plan), price, out, echo)


def client_config(cfg: AnnotateConfig, price) -> ClientConfig:
    """The teacher client's settings: the run's sampling, retries, prices and service tier."""
    flex = cfg.service_tier == "flex"
    return ClientConfig(
        model=cfg.model,
        base_url=cfg.base_url,
        api_key_env=cfg.api_key_env,
        timeout=timeout_of(cfg),
        max_retries=cfg.max_retries,
        backoff_base=cfg.backoff_base,
        backoff_max=FLEX_BACKOFF_MAX_S if flex else ClientConfig.backoff_max,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        price=price,
        cached_price=cached_price_for(cfg.model, cfg.price_in, cfg.price_cached),
        service_tier="flex" if flex else None,
        tier_factor=cfg.batch_price_factor,
    )


def batch_ledger(cfg: AnnotateConfig, echo) -> dict:
    """--batch-cancel (cancel every batch not collected yet) and --batch-status (print the ledger): the run
    directory's batch ledger, without annotating. The status is read as recorded, without the lock, so it can be
    asked while another annotate waits on the batches (that run updates it at each poll)."""
    path = Path(cfg.out) / "cache.sqlite"
    flag = "--batch-cancel" if cfg.batch_cancel else "--batch-status"
    if not path.is_file():
        raise UserError(f"{flag}: {path} does not exist: no batch was submitted from --out {cfg.out}")
    result = {"ledger": True}
    if cfg.batch_cancel:
        with run_dir_lock(cfg.out, "edgedistill annotate --batch-cancel") as out:
            cache = Cache(out / "cache.sqlite")
            try:
                client = TeacherClient(client_config(cfg, None), cache)
                result["cancelled"] = asyncio.run(cancel_batches(client, cache, echo))
            finally:
                cache.close()
    if cfg.batch_status:
        cache = Cache(path)
        try:
            result["batches"] = show_ledger(cache, echo)
        finally:
            cache.close()
    return result


SUMMARY_KEYS = [
    "examples",
    "ok",
    "parse_failed",
    "failed",
    "filtered",
    "not_sent",
    "rationales",
    "rationale_yield",
    "rationalized",
    "rationales_dropped_short",
    "with_label_probs",
    "requests_sent",
    "cache_hits",
    "retries",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "route",
    "cost_usd",
    "cost_usd_list",
    "gold_agreement_text",
    "gold_agreement",
    "truncated_inputs",
]


def report_summary(summary: dict, out, echo=click.echo) -> None:
    """The end-of-run table (`edgedistill annotate` and `edgedistill run`); exit 3 when some inputs were left
    unannotated."""
    if summary.get("dry_run") or summary.get("ledger"):
        return
    echo("")
    # annotate.json's `batch` figures: "batches_created" as "batch created", "results" as "batch results"
    batch = {"batch " + k.removeprefix("batches_"): v for k, v in (summary.get("batch") or {}).items()}
    for k in ([] if summary.get("batch_pending") else SUMMARY_KEYS) + list(batch):
        v = summary.get(k, batch.get(k))
        v = "–" if v is None else (f"{v:.4f}" if isinstance(v, float) else v)
        echo(f"  {k:<26}{v:>12}")
    if not summary.get("batch_pending"):
        echo(f"\nWrote {out}/annotations.jsonl and annotate.json")
    if summary.get("message"):
        click.secho(summary["message"], fg="yellow")
        raise SystemExit(3)


def route_of(cfg: AnnotateConfig) -> str:
    """How the run's requests are sent: live, batch (--batch) or flex (--service-tier flex)."""
    return "batch" if cfg.batch else "flex" if cfg.service_tier == "flex" else "live"


def _silent(*_):
    pass


async def _batch_passes(cfg, task, client, budget, route, examples, plans, want_rationale, echo):
    """The batch route: passes over the cache (quiet while they only note what the batches must ask), then the
    pass that writes the rows (batch.BatchRoute.drive)."""

    async def one_pass(gate: Gate, quiet: bool):
        run = _Run(cfg, task, client, budget, _silent if quiet else echo, gate=gate, quiet=quiet)
        return run, await run.all(examples, *plans, want_rationale, close=False)

    try:
        return await route.drive(one_pass)
    finally:
        await client.close()


def _open_cache(cfg: AnnotateConfig, out: Path) -> Cache:
    """The run directory's response cache; a live run is refused while batches sent from it are not collected."""
    cache = Cache(out / "cache.sqlite")
    still = cache.ledger(open_only=True) if not cfg.batch else []
    if still:  # a live run would pay again for what those batches will answer
        cache.close()
        raise UserError(
            f"--batch: {len(still)} batch(es) submitted from {out} are not collected yet; re-run with --batch to "
            "collect them (a live run would pay for their requests again), or cancel them with --batch-cancel"
        )
    return cache


def _budget(cfg: AnnotateConfig, cache: Cache, price) -> Budget:
    """--max-cost's budget, with earlier runs' spend (in the cache) already counted against it."""
    spent = cache.total_cost(price)  # earlier runs' spend counts against --max-cost
    # a live request's worst case is held at the price it bills: the list's, or flex's share of it
    return Budget(
        cfg.max_cost,
        spent,
        route_price(price, None, route_of(cfg), cfg.batch_price_factor)[0],
        cfg.max_tokens,
        cfg.model,
    )


def _interrupted(out: Path, route) -> UserError:
    """The error a Ctrl-C ends a paid run with: where its responses are, and how to resume."""
    return UserError(
        f"interrupted; every response received so far is in {out / 'cache.sqlite'}"
        + (
            ", and the batches submitted go on at the provider (the ledger in it records them)"
            if route is not None
            else ""
        )
        + "; re-run the same command to resume without paying for them again"
    )


def _filter_disagreeing(task, rows) -> None:
    """--keep-if-agrees: an ok row whose label differs from its gold label becomes "filtered"."""
    for r in rows:
        if r.status == "ok" and r.gold is not None and not _agrees(task, r.label, r.gold):
            r.status, r.error = (
                "filtered",
                f"teacher label {r.label!r} differs from gold {r.gold!r} (--keep-if-agrees)",
            )


def _add_batch_stats(summary: dict, stats: dict) -> None:
    """The batch route's figures in annotate.json, its requests and retries counted with the live ones."""
    summary["batch"] = stats
    summary["requests_sent"] += stats["requests_submitted"] + stats["live_attempts"]
    summary["retries"] += stats["retried"] + max(0, stats["live_attempts"] - stats["sent_live"])


def _budget_stopped_message(cfg: AnnotateConfig, run: _Run) -> str:
    return (
        f"stopped at --max-cost {cfg.max_cost} USD: {run.stats['budget_stopped']} examples were not sent "
        f"(spent {run.budget.spent:.4f} USD; each request in flight holds back its worst case, all "
        f"prompt tokens plus --max-tokens {cfg.max_tokens} of output, until it is answered); re-run with "
        "a higher --max-cost to finish (answered requests come from the cache)"
    )


def _annotate(cfg: AnnotateConfig, task, examples, plans, price, out: Path, echo) -> dict:
    """The paid part of a run, under the run directory's lock: requests, then annotations.jsonl and annotate.json."""
    want_rationale = (
        rationale_subset([e.id for e in examples], cfg.rationale_fraction, cfg.seed)
        if cfg.prompt != "label-only"
        else set()
    )
    cache = _open_cache(cfg, out)
    client = TeacherClient(client_config(cfg, price), cache)
    budget = _budget(cfg, cache, price)
    start = time.perf_counter()
    route = None
    try:
        if cfg.batch:
            budget.reserved += cache.ledger_reserved()  # earlier runs' batches not collected yet
            options = BatchOptions.of(cfg, price, client.cfg.cached_price)
            route = BatchRoute(options, client, cache, budget, echo)
            run, rows = asyncio.run(
                _batch_passes(cfg, task, client, budget, route, examples, plans, want_rationale, echo)
            )
        else:
            run = _Run(cfg, task, client, budget, echo)
            rows = asyncio.run(run.all(examples, *plans, want_rationale))
    except KeyboardInterrupt:
        raise _interrupted(out, route) from None
    except BatchesPending as e:
        return {"batch_pending": True, "route": "batch", "examples": len(examples), "batch": e.stats, "message": str(e)}
    finally:
        cache.close()
    if cfg.keep_if_agrees:
        _filter_disagreeing(task, rows)
    summary = _summary(cfg, task, rows, run, price, time.perf_counter() - start, want_rationale, examples)
    if route is not None:
        _add_batch_stats(summary, route.stats)
    failure = run_failure(cfg, rows, out)
    if failure:
        summary["failure"] = failure
    write_jsonl(out / "annotations.jsonl", [r.to_json() for r in rows])
    write_json(out / "annotate.json", summary)
    task.save(out / "task.yaml")
    if failure:
        raise AnnotateFailed(failure, summary)
    if run.stats["budget_stopped"]:
        summary["message"] = _budget_stopped_message(cfg, run)
    return summary


class AnnotateFailed(UserError):
    """A run that wrote its rows but must not count as done: no row is ok, or too many failed (see run_failure)."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


def run_failure(cfg: AnnotateConfig, rows: list[Annotation], out: Path) -> str | None:
    """Why this run failed, naming its commonest error and the fix; None when it may count as done.

    A run fails when no row is ok (unless the --max-cost cap held every row back: that says so itself), or when
    the share of rows whose requests failed for good passes --max-failed. Rows the teacher answered unusably
    (parse_failed) count only in the first test: their replies are paid for and cached, and a re-run gives the same.
    """
    count = {s: sum(r.status == s for r in rows) for s in ("ok", "failed", "parse_failed", "filtered", "not_sent")}
    bad = [r for r in rows if r.status in ("failed", "parse_failed", "filtered")]
    if count["ok"] == 0 and bad:
        head = f"no row is ok: {', '.join(f'{n} {s}' for s, n in count.items() if n and s != 'ok')} of {len(rows)}"
    elif rows and count["failed"] / len(rows) > cfg.max_failed:
        bad = [r for r in rows if r.status == "failed"]
        head = (
            f"{count['failed']} of {len(rows)} rows failed ({100 * count['failed'] / len(rows):.0f} %, above "
            f"--max-failed {cfg.max_failed:g}; rows written to annotations.jsonl)"
        )
    else:
        return None
    error, n = Counter(r.error or r.status for r in bad).most_common(1)[0]
    resend = (
        f"Every response received is kept in {out / 'cache.sqlite'}: re-running the same command sends only the "
        "requests that failed" + ("; or raise --max-failed to accept these rows." if count["ok"] else ".")
        if count["failed"]
        else ""
    )
    plural = "s" if n > 1 else ""
    fix = _fix_for(cfg, error)
    return f"annotate: {head}. Commonest error ({n} row{plural}): {error.rstrip('.')}. {fix}{resend}".strip()


def _fix_for(cfg: AnnotateConfig, error: str) -> str:
    """What to try for a row error, by its kind ("" when there is nothing specific to say)."""
    server = redact_url(cfg.base_url) or "the OpenAI default"
    fixes = [
        ("APIConnectionError", f"Is the server at --base-url {server} running and reachable? "),
        (
            "APITimeoutError",
            f"No answer came within --timeout {timeout_of(cfg):g} s: raise --timeout or lower --concurrency. ",
        ),
        ("HTTP 403", f"The key in ${cfg.api_key_env} may not use --model {cfg.model}. "),
        (
            "HTTP 429",
            "Flex capacity is short (429): re-run later, raise --max-retries, or drop --service-tier flex "
            "(list price). "
            if cfg.service_tier == "flex"
            else "The server is rate-limiting: lower --concurrency. ",
        ),
        ("HTTP 5", "The server failed: try again later. "),
        ("HTTP ", "The server refused the requests (its error says why). "),
        (
            "--keep-if-agrees",
            "Every teacher label differs from gold: check the task's labels, or drop --keep-if-agrees. ",
        ),
        ("gave up after", "The server's replies were unusable or empty: check --base-url and --model. "),
    ]
    if "(check " in error:  # the client's own hint (client.TeacherClient._hint) says it
        return ""
    for marker, fix in fixes:
        if marker in error:
            return fix
    return (
        "The teacher's replies could not be read as answers (`raw` in annotations.jsonl shows them): try "
        "--prompt label-only or a stronger --model. "
    )


@dataclass
class _Answer:
    """What the answer and vote requests said about one example."""

    parsed: object  # prompts.Parsed of the greedy answer
    raw: str
    votes: list  # (label, rationale) per vote, the greedy answer first
    scores: list | None = None  # per option order: the raw {key: p} of its scoring request, or None
    usage: dict | None = None


class _Run:
    """One annotation run: every request goes through `ask`, which serves it from the cache or pays for
    it within the budget, and counts it by kind."""

    KINDS = ("answer", "vote", "score", "rationalize")

    def __init__(
        self,
        cfg: AnnotateConfig,
        task,
        client: TeacherClient,
        budget: Budget,
        echo,
        gate: Gate | None = None,
        quiet=False,
    ):
        self.cfg, self.task, self.client, self.budget, self.echo = cfg, task, client, budget, echo
        # the batch route's passes: a request the cache lacks goes to the gate (batch.Gate), never to the server
        self.gate, self.quiet = gate, quiet
        self.scoring = scoring_for(cfg, task)
        self.stats = {"requests_sent": 0, "cache_hits": 0, "retries": 0, "budget_stopped": 0}
        if gate is not None:
            self.stats["batch_results"] = 0  # answered by this run's batches (the rest of the hits: earlier runs)
        self.spent: float | None = 0.0  # what every response used cost when it was paid for (None: unknown price)
        self.by_kind = {
            k: {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0} for k in self.KINDS
        }
        self.notes: dict[str, int] = {}  # degradations, said once each and counted

    def note(self, key: str, message: str) -> None:
        if key not in self.notes:
            self.echo(f"note: {message}")
        self.notes[key] = self.notes.get(key, 0) + 1

    async def ask(self, messages, kind: str, usage: dict, params: dict | None = None):
        done = self.client.cached(messages, params)
        if done is None and self.gate is not None:  # raises: noted for a batch, held back by the cap, or failed
            self.gate.check(self.client.key_for(messages, params), messages, params, kind)
        if done is None:
            held = self.budget.reserve(messages, (params or {}).get("max_tokens"))
            try:
                done = await self.client.complete(messages, params)
            except TeacherError as e:
                self.stats["requests_sent"] += e.attempts
                self.stats["retries"] += e.attempts - 1
                raise
            finally:
                self.budget.settle(held, done.cost_usd if done else None)
            self.stats["requests_sent"] += done.attempts
            self.stats["retries"] += done.attempts - 1
        elif self.gate is not None and self.client.key_for(messages, params) in self.gate.fresh:
            self.stats["batch_results"] += 1
        else:
            self.stats["cache_hits"] += 1
        cost = done.recorded_cost
        if cost is None and self.client.cfg.price is not None:  # paid in a run that knew no price: at list price
            cost = self.client.cost_of(done.usage)
        self.spent = None if cost is None or self.spent is None else self.spent + cost
        k = self.by_kind[kind]
        k["requests"] += 1
        k["seconds"] += done.latency_s  # the teacher's time for it, now or when it was paid for
        for name in ("prompt_tokens", "completion_tokens"):
            k[name] += done.usage.get(name) or 0
        for name in usage:
            usage[name] += done.usage.get(name) or 0
        return done

    async def stages(self, p, ex, kind: str, usage: dict, params: dict | None = None) -> list[str]:
        outputs = []
        for _ in range(p.stages):
            outputs.append((await self.ask(p.messages(ex, outputs), kind, usage, params)).content)
        return outputs

    def vote_sample(self, p) -> dict:
        """The sampling params of a vote (its seed apart)."""
        return {"temperature": self.cfg.vote_temperature, **({"stop": VOTE_STOP} if p.mode in ANSWER_FIRST else {})}

    async def votes(self, p, ex, usage: dict) -> list[tuple]:
        """votes-1 sampled answers as (label, rationale): one request with n where the server honours it, else
        one per seed. Each vote asks the same prompt as the answer. Where the answer comes first (zero-shot,
        label-only) generation stops where the explanation would begin: what follows the answer line cannot
        change it, so sampling it is paying for nothing. Where reasoning comes first (zero-shot-cot,
        few-shot-cot), each vote samples the reasoning too (Wang et al. 2023)."""
        want = self.cfg.votes - 1
        if want == 0:
            return []
        vp = p
        sample = self.vote_sample(p)
        if vp.stages > 1:  # two-stage prompts: every vote runs both stages
            runs = [await self.stages(vp, ex, "vote", usage, {**sample, "seed": k}) for k in range(1, want + 1)]
        else:
            runs = [
                [c]
                for c in (
                    await self.ask(
                        vp.messages(ex), "vote", usage, {**sample, "seed": 1, **({"n": want} if want > 1 else {})}
                    )
                ).choices
            ]
            if len(runs) < want:
                self.note(
                    "n_ignored",
                    f"the server returned {len(runs)} of {want} choices for n={want}: sending one request per vote",
                )
                for k in range(len(runs) + 1, want + 1):
                    runs.append([(await self.ask(vp.messages(ex), "vote", usage, {**sample, "seed": k})).content])
        parsed = [vp.parse(ex, outputs) for outputs in runs[:want]]
        return [(v.label, v.rationale) for v in parsed]

    async def score(self, p, ex, usage: dict, shift: int = 0) -> dict | None:
        keys = option_keys(self.task, ex, self.scoring, shift)
        done = await self.ask(p.score_messages(ex, self.scoring, shift), "score", usage, SCORE_PARAMS)
        if done.logprobs is None:
            self.note(
                "logprobs_malformed", "the server sent a malformed logprobs payload; those rows use the text answer"
            )
            return None
        if not done.logprobs:
            self.note(
                "no_logprobs",
                "the server returns no logprobs: label_probs come from votes or are not recorded; "
                "the label is parsed from the text (use --scoring none to skip the scoring request)",
            )
            return None
        dist, shared = key_distribution(done.logprobs, list(keys.values()))
        if shared:
            self.note(
                "shared_tokens",
                f"options {sorted(shared)} begin with the same token, so their scores are split evenly; "
                "--scoring letter keeps them apart",
            )
        if dist is None:
            self.note("no_option_token", "some scoring replies named no option; those rows use the text answer")
        return dist

    async def prefetch(self, p, ex) -> None:
        """A batch pass: ask every request of an example that waits on no other reply (the answer's first stage,
        each vote's, each scoring order), so that the gate notes them all for one batch instead of one a pass."""
        scratch = {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
        chains = [self.stages(p, ex, "answer", scratch)]
        if self.cfg.votes > 1 and p.stages > 1:  # two-stage votes: each seed's first stage
            sample = self.vote_sample(p)
            chains += [self.stages(p, ex, "vote", scratch, {**sample, "seed": k}) for k in range(1, self.cfg.votes)]
        elif self.cfg.votes > 1:
            chains.append(self.votes(p, ex, scratch))
        if self.scoring != "none":
            chains += [self.score(p, ex, scratch, shift) for shift in range(self.cfg.score_orders)]

        async def settled(chain):
            try:
                await chain
            except (BudgetExceeded, TeacherError):
                pass

        await asyncio.gather(*(settled(c) for c in chains))

    def waiting(self) -> bool:
        """A batch pass that has noted requests: what follows depends on their replies, so it stops here."""
        return self.gate is not None and self.gate.collecting and bool(self.gate.pending)

    async def one(self, ex, p, want: bool) -> Annotation | _Answer:
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
        if self.gate is not None and self.gate.collecting:
            await self.prefetch(p, ex)
        try:
            outputs = await self.stages(p, ex, "answer", usage)
            parsed = p.parse(ex, outputs)
            votes = [(parsed.label, parsed.rationale)]
            votes += await self.extra_signal(self.votes(p, ex, usage), "votes", [])
            scores = None
            if self.scoring != "none":
                scores = [
                    await self.extra_signal(self.score(p, ex, usage, shift), "scoring", None)
                    for shift in range(self.cfg.score_orders)
                ]
        except BudgetExceeded as e:
            self.stats["budget_stopped"] += 1
            return _row(ex, status="not_sent", error=f"not sent: {e}", usage=usage, requested=want)
        except TeacherError as e:
            return _row(ex, status="failed", error=str(e), usage=usage, requested=want)
        raw = outputs[-1] if len(outputs) == 1 else "\n---\n".join(outputs)
        return _Answer(parsed, raw, votes, scores, usage)

    async def extra_signal(self, request, what: str, instead):
        """Votes and scores refine an answer the row already has: one that fails for good costs the row
        that signal, not its label (said once, counted in `notes`)."""
        try:
            return await request
        except TeacherError as e:
            self.note(f"{what}_failed", f"a {what} request failed for good ({e}); those rows go without it")
            return instead

    async def rationalize(self, p, ex, row: Annotation) -> None:
        try:
            done = await self.ask(p.rationalize_messages(ex, row.label), "rationalize", row.usage)
        except (BudgetExceeded, TeacherError) as e:
            row.extra["rationalize_error"] = str(e)
            return
        row.rationale = p.rationale_of(done.content)
        row.extra["rationale_source"] = "rationalized" if row.rationale else None

    async def all(self, examples, main_plan, cheap_plan, want_rationale, close: bool = True) -> list[Annotation]:
        sem = asyncio.Semaphore(self.cfg.concurrency)
        bar = progress(len(examples), "annotating", unit="ex", disable=self.quiet)
        plans = {ex.id: main_plan if ex.id in want_rationale else cheap_plan for ex in examples}

        async def first(ex):
            async with sem:
                try:
                    return await self.one(ex, plans[ex.id], ex.id in want_rationale)
                finally:
                    bar.update(1)

        try:
            answers = await asyncio.gather(*(first(ex) for ex in examples))
            bias = await self.bias(main_plan, examples, answers)  # content-free requests wait on nothing
            if self.waiting():
                return []
            vote_bias = self.vote_bias(examples, answers)
            rows = [
                a
                if isinstance(a, Annotation)
                else self.decide(ex, plans[ex.id], a, bias, vote_bias, ex.id in want_rationale)
                for ex, a in zip(examples, answers)
            ]
            todo = [
                (ex, r)
                for ex, r in zip(examples, rows)
                if self.cfg.rationalize and r.status == "ok" and r.extra["rationale_requested"] and r.rationale is None
            ]
            if todo:
                bar.reset(total=len(todo))
                bar.set_description("rationalizing")

                async def second(ex, r):
                    async with sem:
                        try:
                            await self.rationalize(plans[ex.id], ex, r)
                        finally:
                            bar.update(1)

                await asyncio.gather(*(second(ex, r) for ex, r in todo))
            return rows
        finally:
            bar.close()
            if close:
                await self.client.close()

    async def bias(self, p, examples, answers) -> list:
        """Per option order, the teacher's bias over option keys that calibration divides out (or None)."""
        orders = range(self.cfg.score_orders)
        if self.cfg.calibration == "none" or self.scoring == "none":
            return [None for _ in orders]
        if self.cfg.calibration == "batch":
            scored = [
                [a.scores[j] for a in answers if isinstance(a, _Answer) and a.scores and a.scores[j]] for j in orders
            ]
            return [prior(s) if s else None for s in scored]
        n = max(len(getattr(ex, "choices", None) or self.task.labels or []) for ex in examples)
        biases = []
        for j in orders:
            free = []
            for text in CONTENT_FREE_INPUTS:  # Zhao et al.: what the teacher says with nothing to go on
                blank = Example(
                    id=f"content-free:{text}",
                    input=text,
                    choices=["N/A"] * n if self.task.type == "multiple-choice" else None,
                )
                try:
                    dist = await self.score(
                        p, blank, {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}, j
                    )
                except (BudgetExceeded, TeacherError) as e:
                    self.note(
                        "content_free_failed", f"a content-free scoring request failed ({e}); calibrating with the rest"
                    )
                    continue
                if dist:
                    free.append(dist)
            biases.append(prior(free) if free else None)
        return biases

    def vote_keys(self, ex, shares: dict) -> dict:
        """Smoothed vote shares by option position ("a", "b", ...), where a small model's favourite lives."""
        keys = option_keys(self.task, ex, "letter")
        return smoothed(
            {keys[label]: share for label, share in shares.items() if label in keys},
            self.cfg.votes,
            list(keys.values()),
        )

    def vote_bias(self, examples, answers) -> dict | None:
        """The batch's mean vote shares by option position: the same bias the scores are calibrated for,
        which votes carry too (a teacher that always answers "entailment" votes for it unanimously)."""
        if self.cfg.votes == 1 or self.cfg.calibration == "none" or self.task.type == "numeric":
            return None
        per_row = [
            self.vote_keys(ex, vote_shares([v for v, _ in a.votes]))
            for ex, a in zip(examples, answers)
            if isinstance(a, _Answer)
        ]
        return prior([d for d in per_row if d]) or None

    def label_scores(self, ex, a: _Answer, bias: list) -> tuple[dict | None, dict | None]:
        """(calibrated, raw) scores over the labels: each option order's in its own key space, then averaged."""
        cal, raw = [], []
        for j, dist in enumerate(a.scores or []):
            if dist:
                keys = option_keys(self.task, ex, self.scoring, j)
                c = calibrate(dist, bias[j])
                cal.append({label: c[k] for label, k in keys.items()})
                raw.append({label: dist[k] for label, k in keys.items()})
        if not cal:
            return None, None
        mean = lambda ds: {label: sum(d[label] for d in ds) / len(ds) for label in ds[0]}  # noqa: E731
        return mean(cal), mean(raw)

    def decide(self, ex, p, a: _Answer, bias, vote_bias, want: bool) -> Annotation:
        """The row from the answers: label_probs from scores and votes, the hard label its argmax, and the
        rationale of an answer that gave that label."""
        labels = getattr(ex, "choices", None) or self.task.labels or []
        same = same_number if self.task.type == "numeric" else None
        shares = vote_shares([label for label, _ in a.votes], same)
        scores, raw_scores = self.label_scores(ex, a, bias)
        # One greedy answer is no distribution: the text answer joins label_probs only as one of several votes,
        # whose shares are calibrated for the batch's favourite like the scores.
        votes = {}
        if self.cfg.votes > 1 and self.task.type != "numeric" and shares:
            keys = option_keys(self.task, ex, "letter")
            cal = calibrate(self.vote_keys(ex, shares), vote_bias)
            votes = {label: cal[k] for label, k in keys.items()}
        probs = combine(scores, votes, labels) if self.task.type != "numeric" else None
        text_label = a.parsed.label
        label = argmax(probs, prefer=text_label) if probs else (argmax(shares, prefer=text_label) if shares else None)
        rationale = next((r for v, r in a.votes if r and v is not None and _agrees(self.task, v, label)), None)
        extra = {"rationale_requested": want}
        if a.parsed.rationale_dropped:
            extra["rationale_dropped"] = True
        if probs:
            extra["label_probs"] = probs
        if raw_scores:  # before calibration, for studies of the teacher (benchmarks/teacher_signal.py)
            extra["teacher_scores"] = {label: round(q, 6) for label, q in raw_scores.items()}
        if self.cfg.votes > 1:
            extra["votes"] = [v for v, _ in a.votes]
            extra["vote_share"] = round(shares.get(label, 0.0), 4) if label is not None else None
        if label != text_label:
            extra["text_label"] = text_label
        if rationale is not None:
            extra["rationale_source"] = "answer" if a.votes[0][1] == rationale else "vote"
        status = "ok" if label is not None else "parse_failed"
        error = a.parsed.error if label is None else None
        return Annotation(
            id=ex.id,
            input=ex.input,
            choices=ex.choices,
            label=label,
            rationale=rationale,
            gold=ex.gold,
            status=status,
            error=error,
            raw=a.raw if status != "ok" or p.mode != "label-only" else None,
            usage=a.usage,
            extra=extra,
        )


def _row(ex, status, usage, requested, error=None) -> Annotation:
    return Annotation(
        id=ex.id,
        input=ex.input,
        choices=ex.choices,
        gold=ex.gold,
        status=status,
        error=error,
        usage=usage,
        extra={"rationale_requested": requested},
    )


def _agrees(task, label, gold) -> bool:
    return answers_match(task.type, label, gold)


def truncated_ids(examples) -> list[str]:
    return [e.id for e in examples if getattr(e, "truncated", None)]


def truncation(examples) -> dict:
    """What annotate.json says about inputs cut to data.MAX_FIELD_CHARS characters per template field."""
    ids = truncated_ids(examples)
    return {"truncated_inputs": len(ids), "truncated_to_chars": MAX_FIELD_CHARS, "truncated_ids": ids}


def truncation_note(examples) -> str:
    ids = truncated_ids(examples)
    longest = max(n for e in examples if getattr(e, "truncated", None) for n in e.truncated.values())
    return (
        f"note: {len(ids)} input{'s' if len(ids) > 1 else ''} had a field longer than {MAX_FIELD_CHARS} characters "
        f"(longest {longest}), truncated to {MAX_FIELD_CHARS}: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}"
    )


def _rationale_counts(rows) -> dict:
    """annotate.json's rationale figures: how many rows have one, and where they came from."""
    asked = [r for r in rows if r.status == "ok" and r.extra.get("rationale_requested")]
    return {
        "rationales": sum(r.rationale is not None for r in rows),
        # of the rows that asked for a rationale: how many got one, first time or by rationalization
        "rationale_yield": (sum(r.rationale is not None for r in asked) / len(asked)) if asked else None,
        "rationale_yield_first": (
            sum(r.extra.get("rationale_source") in ("answer", "vote") for r in asked) / len(asked)
        )
        if asked
        else None,
        "rationalized": sum(r.extra.get("rationale_source") == "rationalized" for r in rows),
        "rationales_dropped_short": sum(bool(r.extra.get("rationale_dropped")) for r in rows),
    }


def _gold_agreement(task, rows) -> dict:
    """The share of rows with a gold label (ok or filtered) whose teacher label agrees with it: the final label,
    and the greedy text answer alone."""
    judged = [r for r in rows if r.gold is not None and r.status in ("ok", "filtered")]

    def agreement(label_of) -> float | None:
        return (
            (sum(_agrees(task, label_of(r), r.gold) for r in judged if label_of(r) is not None) / len(judged))
            if judged
            else None
        )

    return {
        "gold_agreement": agreement(lambda r: r.label),
        "gold_agreement_text": agreement(lambda r: r.extra.get("text_label", r.label)),  # the greedy text answer alone
    }


def _settings(cfg, run: _Run, want_rationale) -> dict:
    """annotate.json's record of how the run was configured."""
    return {
        "model": cfg.model,
        "base_url": redact_url(cfg.base_url),
        "mode": cfg.prompt,
        "scoring": run.scoring,
        "score_orders": cfg.score_orders,
        "calibration": cfg.calibration,
        "votes": cfg.votes,
        "rationale_fraction": cfg.rationale_fraction,
        "seed": cfg.seed,
        "rationale_ids": sorted(want_rationale) if cfg.rationale_fraction < 1 else None,
    }


def _summary(cfg, task, rows, run: _Run, price, elapsed, want_rationale, examples=()) -> dict:
    """annotate.json: the rows' counts, tokens and cost, agreement with gold, and the run's settings."""
    tokens = {
        k: sum((r.usage or {}).get(k) or 0 for r in rows)
        for k in ("prompt_tokens", "completion_tokens", "cached_tokens")
    }
    stats = run.stats
    return {
        "examples": len(rows),
        **{s: sum(r.status == s for r in rows) for s in ("ok", "parse_failed", "failed", "filtered", "not_sent")},
        **_rationale_counts(rows),
        "with_label_probs": sum("label_probs" in r.extra for r in rows),
        **{k: v for k, v in stats.items() if k != "budget_stopped"},
        "not_sent_budget": stats["budget_stopped"],
        **tokens,
        # as billed: each response at the price it was paid (live, batch or flex; cached prompt tokens at the cached
        # rate), earlier runs' included; cost_usd_list: the rows' tokens at the live list price, no discount
        "cost_usd": run.spent if price is not None else None,
        "cost_usd_list": cost_usd(tokens["prompt_tokens"], tokens["completion_tokens"], price),
        "route": route_of(cfg),
        **_gold_agreement(task, rows),
        "requests_by_kind": {
            k: {**v, "seconds": round(v["seconds"], 2)} for k, v in run.by_kind.items() if v["requests"]
        },
        "notes": run.notes,
        **_settings(cfg, run, want_rationale),
        **truncation(examples),
        "task": task.name,
        "data": str(cfg.data),
        "elapsed_s": round(elapsed, 2),
        "config": {
            **{k: v for k, v in asdict(cfg).items() if k not in ("dry_run",)},
            "base_url": redact_url(cfg.base_url),
        },
    }


DRY_RUN_HEADER = f"{'requests':>10}{'prompt tok':>12}{'completion tok':>16}{'cost USD':>11}"


def _estimate_line(echo, name, r, mark=""):
    """One row of the dry run's tables: requests, tokens and cost (– when the price is unknown)."""
    cost = "–" if r["cost_usd"] is None else f"{r['cost_usd']:.4f}"
    echo(f"{name:<34}{r['requests']:>10}{r['prompt_tokens']:>12}{r['completion_tokens']:>16}{cost:>11}{mark}")


def _echo_dry_run_intro(cfg, examples, price, echo) -> None:
    echo(
        f"Dry run: {len(examples)} examples, model {cfg.model}, "
        + (
            f"price {price[0]}/{price[1]} USD per 1M tokens in/out"
            if price
            else "price unknown (give --price-in/--price-out)"
        )
    )
    if truncated_ids(examples):
        echo(truncation_note(examples))


def _mode_estimates(cfg, task, examples, exemplars, price) -> list[dict]:
    """The chosen prompt mode's estimate first, then its alternatives' (few-shot-cot only with --exemplars)."""
    modes = [cfg.prompt] + [m for m in PromptMode if m != cfg.prompt and (m != "few-shot-cot" or exemplars)]
    return [
        estimate(task, examples, m, cfg.model, exemplars, cfg.rationale_fraction if m == cfg.prompt else 1.0, price)
        for m in modes
    ]


def _echo_mode_table(cfg, rows, echo) -> None:
    echo(f"{'prompt mode (1 answer each)':<34}{DRY_RUN_HEADER}")
    for r in rows:
        _estimate_line(echo, r["mode"], r, " <- chosen" if r["mode"] == cfg.prompt else "")
    if "few-shot-cot" not in [r["mode"] for r in rows]:
        echo("(few-shot-cot needs --exemplars to estimate)")


def _chosen_total(rows, extras, price) -> dict:
    """The chosen mode plus the extras the configuration sends."""
    chosen = [rows[0]] + [r for r in extras if r["chosen"]]
    total = {k: sum(r[k] for r in chosen) for k in ("requests", "prompt_tokens", "completion_tokens")}
    total["cost_usd"] = None if price is None else sum(r["cost_usd"] or 0 for r in chosen)
    return total


def dry_run(cfg, task, examples, exemplars, price, echo) -> dict:
    """Estimated tokens and cost of the chosen mode and its alternatives, then of what the chosen
    mode adds (votes, scoring, rationalization); sends nothing."""
    rows = _mode_estimates(cfg, task, examples, exemplars, price)
    _echo_dry_run_intro(cfg, examples, price, echo)
    _echo_mode_table(cfg, rows, echo)
    extras = estimate_extras(
        task,
        examples,
        cfg.prompt,
        cfg.model,
        exemplars,
        price,
        votes=cfg.votes,
        scoring=scoring_for(cfg, task),
        rationalize=cfg.rationalize and cfg.prompt != "label-only",
        score_orders=cfg.score_orders,
    )
    echo(f"\n{'what ' + cfg.prompt + ' adds':<34}{DRY_RUN_HEADER}")
    for r in extras:
        _estimate_line(echo, r["name"], r, "" if r["chosen"] else "   (not chosen)")
    total = _chosen_total(rows, extras, price)
    _estimate_line(echo, "total as configured", total)
    echo(
        "Scoring rides on a second request: the answer request's first token is 'Answer', and a label's first token "
        "in free text can be split or shared by two labels; one letter token cannot. Rationalization is a worst case: "
        "it is sent only for rows whose answer carries no explanation of the label chosen."
    )
    caching = prompt_caching(cfg, task, examples, exemplars, price, rows, extras, echo)
    routes = route_planner(cfg, price, total, caching, echo)
    return {
        "dry_run": True,
        "estimates": rows,
        "extras": extras,
        "total": total,
        "prompt_caching": caching,
        "routes": routes,
        **truncation(examples),
    }


def prompt_caching(cfg, task, examples, exemplars, price, rows, extras, echo, sample: int = 50) -> dict:
    """Which prompt modes' answer prompts share a prefix long enough for a provider to cache (cost.CACHE_MIN_TOKENS),
    and what the cached rate does to their cost and to the zero-shot vs few-shot comparison."""
    cached_price = cached_price_for(cfg.model, cfg.price_in, cfg.price_cached)
    picked = random.Random(cfg.seed).sample(examples, min(sample, len(examples)))
    by_mode = {}
    echo(
        f"\nPrompt caching: a provider caches a prompt prefix that all requests share once it reaches "
        f"{CACHE_MIN_TOKENS:,} tokens (OpenAI), billed at "
        + (f"{cached_price} USD per 1M tokens" if cached_price is not None else "a rate unknown here (--price-cached)")
    )
    for r in rows:
        mode = r["mode"]
        if mode not in ("zero-shot", "few-shot-cot", cfg.prompt):
            continue
        p = plan(task, mode, exemplars)
        prefix = shared_prefix_tokens([p.messages(e) for e in picked], cfg.model)
        cacheable = cacheable_tokens(prefix)
        # the requests that repeat the prefix: this mode's answers (and, when chosen, its votes), all but the first
        repeats = r["requests"] + sum(x["requests"] for x in extras if x["chosen"] and "votes" in x["name"]) * (
            mode == cfg.prompt
        )
        cached = cacheable * max(0, repeats - 1)
        cost = cost_usd(
            r["prompt_tokens"], r["completion_tokens"], price, min(cached, r["prompt_tokens"]), cached_price
        )
        by_mode[mode] = {"shared_prefix_tokens": prefix, "cached_per_request": cacheable, "cached_tokens": cached}
        by_mode[mode]["cost_usd_cached"] = cost
        by_mode[mode]["cost_usd"] = r["cost_usd"]
        said = (
            f"{cacheable:,} cached per request after the first: {_usd(cost)} USD instead of {_usd(r['cost_usd'])}"
            if cacheable
            else f"not cached (below {CACHE_MIN_TOKENS:,})"
        )
        echo(f"  {mode:<15} shared prefix {prefix:>6,} tokens: {said}")
    z, f = by_mode.get("zero-shot"), by_mode.get("few-shot-cot")
    if z and f and z["cost_usd"] and f["cost_usd"]:
        plain, cached = f["cost_usd"] / z["cost_usd"], (f["cost_usd_cached"] or 0) / (z["cost_usd_cached"] or 1)
        echo(
            f"  few-shot-cot costs {plain:.2f}x zero-shot"
            + (
                f", {cached:.2f}x once its exemplars are cached"
                if f["cached_per_request"] or z["cached_per_request"]
                else f"; its shared prefix ({f['shared_prefix_tokens']:,} tokens) is too short to be cached, so "
                "caching changes nothing (more exemplars would cross the threshold)"
            )
        )
    return {"cached_price": cached_price, "modes": by_mode}


def _usd(x) -> str:
    return "–" if x is None else f"{x:.4f}"


def route_planner(cfg, price, total: dict, caching: dict, echo) -> dict:
    """Cost and time of the configured run on each route (live, batch, flex) and the cheapest that meets
    --deadline: cost.plan_routes, with the chosen mode's cacheable prefix."""
    chosen = caching["modes"].get(cfg.prompt, {})
    plan_ = plan_routes(
        total["requests"],
        total["prompt_tokens"],
        total["completion_tokens"],
        price,
        cfg.concurrency,
        cfg.batch_price_factor,
        caching["cached_price"],
        min(chosen.get("cached_tokens", 0), total["prompt_tokens"]),
        cfg.deadline,
    )
    echo(
        f"\nRoutes for the total as configured ({total['requests']:,} requests; batch and flex bill "
        f"{cfg.batch_price_factor:g} of the list price):"
    )
    when = {
        "live": f"at --concurrency {cfg.concurrency} (planned: {FIRST_TOKEN_S:g} s to the first token + "
        f"{DECODE_TOKENS_PER_S:g} tokens/s, no rate limit hit)",
        "batch": "at most: the batch window (most batches finish much sooner)",
        "flex": f"planned at {FLEX_SLOWDOWN:g}x live: flex queues, with no time guarantee, and answers 429 when its "
        "capacity is short",
    }
    flag = {"live": "", "batch": "--batch", "flex": "--service-tier flex"}
    for r in plan_["routes"]:
        mark = "" if r["meets_deadline"] else f"   (misses --deadline {cfg.deadline:g} h)"
        echo(f"  {r['route']:<6}{_usd(r['cost_usd']):>11} USD  {_hours(r['hours']):>8}  {when[r['route']]}{mark}")
    best = plan_["best"]
    if best is None:
        echo(
            f"No route meets --deadline {cfg.deadline:g} h: raise --concurrency (within the provider's rate limits) or "
            "the deadline, or annotate fewer inputs (--limit)"
        )
    else:
        within = f" within --deadline {cfg.deadline:g} h" if cfg.deadline is not None else ""
        cost = next(r["cost_usd"] for r in plan_["routes"] if r["route"] == best)
        echo(
            f"Cheapest{within}: {best} ({_usd(cost)} USD{', ' + flag[best] if flag[best] else ''})"
            + (
                "; batch and flex bill the same: batch has its own rate limits and a 24 h guarantee, flex is faster"
                if best in ("batch", "flex")
                else ""
            )
        )
    return plan_


def _hours(h: float) -> str:
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.1f} h"
