"""The Batch route, `annotate --batch`: the requests a live run would send, sent as OpenAI Batch API jobs at half
the list price with results within 24 hours, and none of them paid for twice.

    pass over the cache --(requests it lacks)--> ledger --> JSONL files --> /v1/files, /v1/batches (window 24h)
            ^                                                                           | polled, with a back-off
            +----------- results committed to the cache as live replies are <-- output and error files

Passes. A pass runs the whole annotation (annotate._Run) against the cache alone, through a Gate: a request the
cache holds is served from it, one it lacks is noted and its example goes no further. What a pass notes is sent as
batches; once they are answered the next pass goes one phase further: a two-stage prompt's second request, the
rationalizations (which wait on the labels of the whole run). When a pass notes nothing, a last pass writes the
rows as a live run over the same cache would: the same keys, the same parsing, the same annotations.jsonl.

The ledger (RUN/cache.sqlite, cache.LEDGER). A batch's requests are recorded before its file is uploaded, its file
id as soon as the upload returns, its batch id as soon as the server creates it: all before the run waits. A re-run
after kill -9, Ctrl-C or a reboot takes up every batch the ledger holds open: it polls those with a batch id,
creates those with only a file (first looking among the server's batches for one made from that file, in case the
kill came between its creation and its record) and uploads those with neither. A request in an open batch is never
put in another; it goes into a new batch only once its batch has ended without answering it.

Results. Each line of an output file is read as a live reply is (client.read_completion) and committed at the batch
price. A request its batch did not answer (an error line; an expired, failed or cancelled batch) goes into a new
batch, up to --max-retries times, or live with --batch-fallback live; an error retrying cannot change (HTTP 400,
401, 403, 404, 422) fails its row at once. The figures go to annotate.json under `batch`.

--max-cost: each request's worst case (all its prompt tokens, --max-tokens of output) at the batch price is held
from its submission until its batch is collected; the ledger keeps what is held across runs.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import openai
from openai.types.chat import ChatCompletion

from ..console import progress
from ..errors import UserError
from .cache import OPEN, Cache
from .client import RETRY_STATUS, TeacherClient, TeacherError, read_completion, redact_url
from .cost import Budget, BudgetExceeded, cost_usd, route_price

ENDPOINT = "/v1/chat/completions"
WINDOW = "24h"
ENDED = ("completed", "expired", "failed", "cancelled")  # a batch's final statuses
POLL_MAX_S = 300.0  # the back-off between polls doubles from --batch-poll up to this
FATAL_STATUS = {400, 401, 403, 404, 422}  # a request these answer fails the same way in every batch
MB = 1_000_000


class Pending(TeacherError):
    """A request the cache lacks, noted by a pass for the next batch; its example goes no further in that pass."""

    def __init__(self, key: str):
        super().__init__(f"request {key[:12]} waits for a batch", 0)


class BatchesPending(Exception):
    """--batch-wait ran out (or was 0) with batches still running: a later run of the same command collects them."""

    def __init__(self, message: str, stats: dict):
        super().__init__(message)
        self.stats = stats


class Gate:
    """What a pass of the batch route does with a request the cache lacks: note it (`collecting`), or raise why it
    has no answer: held back by --max-cost (`refused`), failed for good (`failed`)."""

    def __init__(self):
        self.collecting = True
        self.pending: dict[str, tuple] = {}  # key -> (messages, params, kind), in the order noted
        self.refused: dict[str, BudgetExceeded] = {}
        self.failed: dict[str, str] = {}
        self.fresh: set[str] = set()  # keys answered in this run (by its batches, or live after them)

    def check(self, key: str, messages: list[dict], params: dict | None, kind: str) -> None:
        if key in self.refused:
            raise BudgetExceeded(str(self.refused[key]))
        if key in self.failed:
            raise TeacherError(self.failed[key], 0)
        if not self.collecting:  # the last pass: every request was answered, refused or failed before it
            raise TeacherError(f"request {key[:12]} ({kind}) was answered by no batch", 0)
        self.pending.setdefault(key, (messages, params, kind))
        raise Pending(key)


@dataclass
class BatchOptions:
    max_requests: int
    max_bytes: int
    wait: float | None  # seconds; None: until every batch has ended
    poll: float
    fallback: str  # batch | live
    max_retries: int
    backoff_base: float
    price: tuple[float, float] | None  # the batch price, USD per 1M tokens in, out
    cached_price: float | None
    concurrency: int  # of the live fallback

    @classmethod
    def of(cls, cfg, price, cached_price) -> BatchOptions:
        """From annotate's config and the list prices."""
        batch_price, batch_cached = route_price(price, cached_price, "batch", cfg.batch_price_factor)
        return cls(
            max_requests=cfg.batch_max_requests,
            max_bytes=int(cfg.batch_max_mb * MB),
            wait=cfg.batch_wait,
            poll=cfg.batch_poll,
            fallback=str(cfg.batch_fallback),
            max_retries=cfg.max_retries,
            backoff_base=cfg.backoff_base,
            price=batch_price,
            cached_price=batch_cached,
            concurrency=cfg.concurrency,
        )


def batch_line(key: str, body_json: str) -> bytes:
    """One line of a batch file: the request's cache key as its custom_id, its chat-completions body."""
    return f'{{"custom_id": {json.dumps(key)}, "method": "POST", "url": "{ENDPOINT}", "body": {body_json}}}\n'.encode()


def split(items: list[tuple], max_requests: int, max_bytes: int) -> list[list[tuple]]:
    """Items (..., size in bytes last) in order, cut into files of at most max_requests items and max_bytes."""
    chunks, size = [[]], 0
    for item in items:
        if chunks[-1] and (len(chunks[-1]) >= max_requests or size + item[-1] > max_bytes):
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += item[-1]
    return [c for c in chunks if c]


def _by_status(rows) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(Counter(r["status"] or r["state"] for r in rows).items()))


def _errors(batch) -> str | None:
    """A failed batch's errors, in a line."""
    data = getattr(getattr(batch, "errors", None), "data", None) or []
    text = "; ".join(
        f"{getattr(e, 'code', None) or 'error'}: {getattr(e, 'message', None) or ''}".strip() for e in data
    )
    return text[:300] or None


def _message(error) -> str | None:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or "") or None
    return str(error) if error else None


async def find_batch(api, input_file_id: str, since: float):
    """The server's batch made from `input_file_id`, if any (the newest first; none older than `since`)."""
    async for b in api.batches.list(limit=100):
        if b.input_file_id == input_file_id:
            return b
        if (b.created_at or 0) < since:
            return None
    return None


class BatchRoute:
    def __init__(self, options: BatchOptions, client: TeacherClient, cache: Cache, budget: Budget, echo):
        self.o, self.client, self.cache, self.budget, self.echo = options, client, cache, budget, echo
        self.api = client.api
        self.stats = dict.fromkeys(
            (
                "batches_created",  # on the server, by this run
                "batches_resumed",  # made by an earlier run, polled and collected by this one
                "batches_collected",
                "requests_submitted",  # put into batches by this run
                "results",  # answers read from output files
                "errors",  # error lines (per-request errors, expired requests)
                "unanswered",  # requests with no line at all (an expired, failed or cancelled batch)
                "retried",  # sent again in a new batch
                "failed",  # failed for good
                "sent_live",  # answered live after their batch (--batch-fallback live)
                "live_attempts",
                "not_sent_budget",  # held back by --max-cost
            ),
            0,
        )
        self.attempts: Counter = Counter()  # per key: this run's batches that ended without answering it
        self.checked = False
        self.earlier = {r["id"] for r in cache.ledger(open_only=True)}  # open batches an earlier run made

    # ------------------------------------------------------------ the passes

    async def drive(self, one_pass):
        """Pass, submit what it noted, wait, collect; again until a pass notes nothing; then the pass that writes
        the rows, returned as one_pass returns it. Raises BatchesPending when --batch-wait runs out first."""
        gate = Gate()
        deadline = None if self.o.wait is None else time.monotonic() + self.o.wait
        while True:
            gate.collecting, gate.pending = True, {}
            await one_pass(gate, True)
            if not gate.pending:
                break
            await self.check_api()
            held = self.cache.open_requests()
            new = {k: v for k, v in gate.pending.items() if k not in held}
            if new:
                self.submit(new, gate)
                held = self.cache.open_requests()
            numbers = {held[k] for k in gate.pending if k in held}
            if not numbers:
                continue  # all held back by --max-cost: the next pass raises that for them
            resumed = numbers & self.earlier
            if resumed:
                self.echo(f"batch: taking up {len(resumed)} batch(es) an earlier run submitted (the ledger)")
                self.stats["batches_resumed"] += len(resumed)
                self.earlier -= resumed
            for row in self._rows(numbers):
                if row["state"] != "submitted":
                    await self.advance(row)
            rows = self._rows(numbers)
            ended = await self.wait(rows, deadline)
            for row in ended:
                await self.collect(row, gate)
            if ended:  # their worst cases are settled to what they cost: what the cap held back may fit now
                gate.refused.clear()
            if len(ended) < len(rows):
                done = {r["id"] for r in ended}
                raise BatchesPending(self._pending_message([r for r in rows if r["id"] not in done]), self.stats)
        if self.earlier:
            self.echo(
                f"note: {len(self.earlier)} batch(es) an earlier run submitted hold no request this run needs and are "
                "left alone; --batch-status lists them, --batch-cancel cancels them"
            )
        self.stats["not_sent_budget"] = len(gate.refused)
        gate.collecting = False
        return await one_pass(gate, False)

    def _rows(self, numbers) -> list[dict]:
        return [r for r in self.cache.ledger(open_only=True) if r["id"] in numbers]

    def _pending_message(self, running: list[dict]) -> str:
        return (
            f"batch: {len(running)} batch(es) still running at the provider ({_by_status(running)}); the ledger in "
            f"{self.cache.path} records them: re-run the same command to collect them (nothing is submitted twice). "
            "--batch-status lists them, --batch-cancel cancels them"
        )

    # ------------------------------------------------------------ the server

    async def call(self, what: str, make, no_api: bool = False):
        """One Batch/Files API call with retries (408/409/429/5xx, timeouts, dropped connections); a UserError
        naming --batch when it fails for good. `no_api`: a 404 or 405 means the server has no Batch API."""
        last = ""
        for attempt in range(1, self.o.max_retries + 2):
            try:
                return await make()
            except openai.APIStatusError as e:
                status = e.status_code
                last = f"HTTP {status}: {self.client.scrub(str(e))[:300]}"
                if no_api and status in (404, 405):
                    server = redact_url(self.client.server) or "the OpenAI default"
                    raise UserError(
                        f"--batch: the server at {server} has no Batch API ({what} answered {last}); drop --batch "
                        "to send live requests, or use a provider that offers /v1/files and /v1/batches"
                    ) from None
                if status not in RETRY_STATUS and status < 500:
                    raise UserError(f"--batch: {what} was refused ({last})") from None
            except (openai.APITimeoutError, openai.APIConnectionError) as e:
                last = f"{type(e).__name__}: {self.client.scrub(str(e))[:200]}"
            if attempt <= self.o.max_retries:
                await asyncio.sleep(min(60.0, self.o.backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
        raise UserError(
            f"--batch: {what} failed {self.o.max_retries + 1} times ({last}); what was done is recorded in the "
            f"ledger of {self.cache.path}: re-run the same command to go on (no request is sent twice)"
        )

    async def check_api(self) -> None:
        """Before the first batch: does the server have the Batch API at all?"""
        if not self.checked:
            await self.call("GET /batches", lambda: self.api.batches.list(limit=1), no_api=True)
            self.checked = True

    def submit(self, new: dict, gate: Gate) -> None:
        """Record the requests in new batches of the ledger (on disk before anything is uploaded), each request's
        worst case at the batch price held against --max-cost; those the cap cannot hold are refused."""
        items = []
        for key, (messages, params, kind) in new.items():
            body = self.client.body(messages, params)
            body_json = json.dumps(body, ensure_ascii=False)
            size = len(batch_line(key, body_json))
            if size > self.o.max_bytes:
                raise UserError(
                    f"--batch-max-mb: one {kind} request is {size / MB:.3f} MB, more than a batch file may hold "
                    f"({self.o.max_bytes / MB:g} MB); raise --batch-max-mb (the API takes up to 200) or shorten the "
                    "input"
                )
            try:
                reserved = self.budget.reserve(messages, body.get("max_tokens"), self.o.price)
            except BudgetExceeded as e:
                gate.refused[key] = e
                continue
            items.append((key, body_json, reserved, size))
        chunks = split(items, self.o.max_requests, self.o.max_bytes)
        for chunk in chunks:
            self.cache.ledger_add(self.client.server, self.client.cfg.model, [item[:3] for item in chunk])
        self.stats["requests_submitted"] += len(items)
        if items:
            self.echo(
                f"batch: {len(items)} request(s) in {len(chunks)} batch file(s), recorded in the ledger of "
                f"{self.cache.path}"
            )

    async def advance(self, row: dict) -> None:
        """Bring a ledger batch onto the server: upload its file, create its batch, each id recorded at once."""
        number, found = row["id"], None
        if row["state"] == "uploaded":
            # a kill between the batch's creation and its record left the file's batch on the server: take it up
            since = row["updated_at"] - 600
            found = await self.call(
                "listing batches (GET /batches)", lambda: find_batch(self.api, row["input_file_id"], since)
            )
        if row["state"] == "prepared":
            data = b"".join(batch_line(key, body) for key, body, _ in self.cache.ledger_requests(number))
            file = await self.call(
                "uploading a batch file (POST /files)",
                lambda: self.api.files.create(
                    file=(f"edgedistill-batch-{number}.jsonl", data, "application/jsonl"), purpose="batch"
                ),
                no_api=True,
            )
            self.cache.ledger_set(number, state="uploaded", input_file_id=file.id)
            row = {**row, "state": "uploaded", "input_file_id": file.id, "updated_at": time.time()}
        if row["state"] == "uploaded":
            batch = found  # None when just uploaded: no batch can have been made from that file yet
            if batch is None:
                batch = await self.call(
                    "creating a batch (POST /batches)",
                    lambda: self.api.batches.create(
                        input_file_id=row["input_file_id"],
                        endpoint=ENDPOINT,
                        completion_window=WINDOW,
                        metadata={"edgedistill": f"annotate, ledger batch {number}"},
                    ),
                    no_api=True,
                )
                self.stats["batches_created"] += 1
            self.cache.ledger_set(number, state="submitted", batch_id=batch.id, status=batch.status)

    async def wait(self, rows: list[dict], deadline: float | None) -> list[dict]:
        """Poll the batches (at least once) until each has ended or the deadline has passed, the interval doubling
        from --batch-poll; one progress bar: requests done of all, batches by status. Returns those that ended."""
        rows = [dict(r) for r in rows]
        total = sum(r["requests"] for r in rows)
        bar = progress(total, "batches", unit="req")
        interval = self.o.poll
        try:
            while True:
                for r in rows:
                    if r["status"] in ENDED:
                        continue
                    b = await self.call(
                        f"checking batch {r['batch_id']}", lambda r=r: self.api.batches.retrieve(r["batch_id"])
                    )
                    counts = getattr(b, "request_counts", None)
                    fields = {
                        "status": b.status,
                        "output_file_id": b.output_file_id,
                        "error_file_id": b.error_file_id,
                        "completed": getattr(counts, "completed", 0) or 0,
                        "failed": getattr(counts, "failed", 0) or 0,
                        "detail": self.client.scrub(_errors(b) or "") or None,
                    }
                    self.cache.ledger_set(r["id"], **fields)
                    r.update(fields)
                bar.n = min(total, sum(r["completed"] + r["failed"] for r in rows))
                bar.set_postfix_str(_by_status(rows), refresh=False)
                bar.refresh()
                ended = [r for r in rows if r["status"] in ENDED]
                now = time.monotonic()
                if len(ended) == len(rows) or (deadline is not None and now >= deadline):
                    return ended
                await asyncio.sleep(interval if deadline is None else min(interval, deadline - now))
                interval = min(POLL_MAX_S, interval * 2)
        finally:
            bar.close()

    # ------------------------------------------------------------ results

    async def collect(self, row: dict, gate: Gate) -> None:
        """Read an ended batch's output and error files; commit each answer to the cache as a live one, then record
        every request's outcome (a kill in between collects the batch again); send the unanswered ones again."""
        lines: dict[str, dict] = {}
        for file_id in (row["error_file_id"], row["output_file_id"]):  # output last: an answer beats an error line
            if not file_id:
                continue
            content = await self.call(f"downloading file {file_id}", lambda f=file_id: self.api.files.content(f))
            for text in content.text.splitlines():
                try:
                    item = json.loads(text) if text.strip() else None
                except json.JSONDecodeError:
                    continue  # no custom_id to read: its request counts as unanswered
                if isinstance(item, dict) and isinstance(item.get("custom_id"), str):
                    lines[item["custom_id"]] = item
        answers, outcomes, unanswered, settle = [], [], [], []
        for key, body_json, reserved in self.cache.ledger_requests(row["id"]):
            body = json.loads(body_json)
            sent = {k: v for k, v in body.items() if k not in ("model", "messages")}
            item = lines.get(key)
            if item is None:
                answer, fixable = None, True
                error = f"no result: batch {row['batch_id']} ended {row['status']}" + (
                    f" ({row['detail']})" if row["detail"] else ""
                )
            else:
                answer, error, fixable = self.read_line(item, sent)
            if answer is not None:
                content, usage, extra = answer
                cost = cost_usd(
                    usage["prompt_tokens"],
                    usage["completion_tokens"],
                    self.o.price,
                    usage["cached_tokens"],
                    self.o.cached_price,
                )
                request = {"messages": body["messages"], **sent}
                answers.append((key, body["model"], request, content, usage, cost, None, extra))
                outcomes.append((key, "ok", None))
                settle.append((reserved, cost))
            else:
                outcomes.append((key, "error" if item is not None else "missing", error))
                settle.append((reserved, 0.0))  # a request the batch did not answer is not billed
                unanswered.append((key, body, error, fixable))
                self.stats["errors" if item is not None else "unanswered"] += 1
        await self.cache.store_many(answers)  # on disk first
        self.cache.ledger_close(row["id"], outcomes)
        gate.fresh.update(a[0] for a in answers)
        for reserved, cost in settle:
            self.budget.settle(reserved or 0.0, cost)
        self.stats["results"] += len(answers)
        self.stats["batches_collected"] += 1
        await self.again(unanswered, gate)

    def read_line(self, item: dict, sent: dict) -> tuple:
        """(answer, error, fixable) of one line of an output or error file; answer = (content, usage, extra)."""
        response, error = item.get("response") or {}, item.get("error")
        status = response.get("status_code") if isinstance(response, dict) else None
        if status == 200 and not error:
            try:
                return read_completion(ChatCompletion.construct(**response["body"]), sent), None, True
            except (ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
                return None, f"bad response: {self.client.scrub(str(e))[:200]}", True
        body = response.get("body") if isinstance(response, dict) else None
        message = _message(error) or _message(body.get("error") if isinstance(body, dict) else body) or "no detail"
        message = self.client.scrub(message)[:300]
        if status:
            return None, f"HTTP {status}: {message}", status not in FATAL_STATUS
        code = error.get("code") if isinstance(error, dict) else None
        return None, f"{code or 'error'}: {message}", True

    async def again(self, unanswered: list[tuple], gate: Gate) -> None:
        """The requests a batch did not answer: into the next batch (up to --max-retries times), live
        (--batch-fallback live), or failed for good when retrying cannot help."""
        live = []
        for key, body, error, fixable in unanswered:
            if not fixable:
                gate.failed[key] = f"{error} (in a batch; sending it again cannot change that)"
                self.stats["failed"] += 1
                continue
            self.attempts[key] += 1
            if self.o.fallback == "live":
                live.append((key, body, error))
            elif self.attempts[key] > self.o.max_retries:
                gate.failed[key] = (
                    f"{error} (in {self.attempts[key]} batches, --max-retries {self.o.max_retries}; re-run the same "
                    "command to try again, or give --batch-fallback live)"
                )
                self.stats["failed"] += 1
            else:
                self.stats["retried"] += 1  # the next pass notes it again: a new batch
        if live:
            self.echo(
                f"note: sending {len(live)} request(s) the batches did not answer live, at the list price "
                "(--batch-fallback live)"
            )
            sem = asyncio.Semaphore(self.o.concurrency)
            await asyncio.gather(*(self._live(sem, gate, *item) for item in live))

    async def _live(self, sem, gate: Gate, key: str, body: dict, error: str) -> None:
        messages = body["messages"]
        params = {k: v for k, v in body.items() if k not in ("model", "messages")}
        if self.client.key_for(messages, params) != key:  # another model's or server's batch: not this run's to send
            gate.failed[key] = f"{error} (a batch of another model or server: not sent live)"
            self.stats["failed"] += 1
            return
        async with sem:
            try:
                held = self.budget.reserve(messages, params.get("max_tokens"))
            except BudgetExceeded as e:
                gate.refused[key] = e
                return
            done = None
            try:
                done = await self.client.complete(messages, params)
                self.stats["sent_live"] += 1
                self.stats["live_attempts"] += done.attempts
                gate.fresh.add(key)
            except TeacherError as e:
                self.stats["live_attempts"] += e.attempts
                self.stats["failed"] += 1
                gate.failed[key] = f"{e} (live, after its batch: {error})"
            finally:
                self.budget.settle(held, done.cost_usd if done else None)


# ---------------------------------------------------------------- --batch-status, --batch-cancel


def show_ledger(cache: Cache, echo) -> list[dict]:
    """Print the ledger as recorded: each batch, its state and the server's status at the last poll."""
    rows = cache.ledger()
    if not rows:
        echo(f"The ledger of {cache.path} holds no batch.")
        return []
    outcomes = cache.ledger_outcomes()
    echo(f"Batch ledger of {cache.path} (the server's status as of each batch's last poll):")
    echo(f"{'#':>4}  {'batch id':<32}{'state':<11}{'status':<12}{'requests':>9}{'answered':>9}{'not':>6}  updated")
    for r in rows:
        got = outcomes.get(r["id"], {})
        answered = got.get("ok", r["completed"])
        missed = sum(n for o, n in got.items() if o != "ok") if got else r["failed"]
        when = datetime.fromtimestamp(r["updated_at"]).strftime("%Y-%m-%d %H:%M:%S")
        echo(
            f"{r['id']:>4}  {r['batch_id'] or '(not created)':<32}{r['state']:<11}{r['status'] or '–':<12}"
            f"{r['requests']:>9}{answered:>9}{missed:>6}  {when}"
        )
    still = [r for r in rows if r["state"] in OPEN]
    echo(
        f"{len(still)} open (a run of the same command collects them), {len(rows) - len(still)} collected or abandoned"
        + (f"; {cache.ledger_reserved():.4f} USD held against --max-cost" if still else "")
    )
    return rows


async def cancel_batches(client: TeacherClient, cache: Cache, echo) -> int:
    """Cancel every batch the ledger holds open; returns how many the server was asked to cancel. Their answers so
    far are collected by the next run, which sends the rest again."""
    asked = 0
    try:
        for r in cache.ledger(open_only=True):
            batch_id = r["batch_id"]
            if r["state"] == "uploaded":  # its batch may exist with its id unrecorded
                found = await find_batch(client.api, r["input_file_id"], r["updated_at"] - 600)
                batch_id = found.id if found else None
            if batch_id is None:  # never on the server: nothing to cancel, nothing billed
                keys = [(key, "abandoned", "--batch-cancel") for key, _, _ in cache.ledger_requests(r["id"])]
                cache.ledger_close(r["id"], keys, state="abandoned")
                continue
            if r["status"] in ENDED:
                continue
            try:
                b = await client.api.batches.cancel(batch_id)
            except openai.APIError as e:
                raise UserError(f"--batch-cancel: cancelling {batch_id} failed: {client.scrub(str(e))[:300]}") from None
            cache.ledger_set(r["id"], state="submitted", batch_id=batch_id, status=b.status)
            asked += 1
    finally:
        await client.close()
    echo(
        f"Asked the server to cancel {asked} batch(es); a run of the same command collects what they answered and "
        "sends the rest again"
    )
    return asked
