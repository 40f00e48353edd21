"""The teacher cache: every response stored durably before its request counts as done, every call logged.

SQLite in WAL mode with synchronous=FULL (an fsync per commit). Responses are written by group
commit: one writer thread takes every response that arrived while its previous commit was running
and commits them in one transaction, and `store` returns only once that transaction is on disk.
So a request is either committed or still in flight (its coroutine waits for the commit and keeps
its concurrency slot and budget reservation); a crash, kill -9 or Ctrl-C loses at most the
requests in flight, never a response already counted as received, and a re-run re-sends only
those. One fsync then serves a whole batch instead of one response, and it runs off the event loop.
Several processes can share one cache safely (WAL allows one writer and many readers; busy_timeout
makes writers wait their turn instead of failing). Errors are logged but never cached, so a re-run
retries them. No API key is ever stored.

The schema carries a version (`PRAGMA user_version`) and rows are written by column name, so a
cache written by an older edgedistill is migrated in place when it is opened (like `llm`'s
migrations): version 1 had no `extra` column; version 2 stores the logprobs and extra choices;
version 3 adds the batch ledger (`annotate --batch`, teacher/batch.py): which requests each Batch API
job holds, its file and batch ids and its status, recorded before the run waits for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from ..errors import UserError

SCHEMA_VERSION = 3
SQLITE_HEADER = b"SQLite format 3\x00"

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,          -- sha256 of (server, model, messages, sampling params)
    model TEXT NOT NULL,
    request TEXT NOT NULL,         -- JSON: messages and params, as sent
    content TEXT NOT NULL,         -- the assistant's text (of the first choice)
    prompt_tokens INTEGER, completion_tokens INTEGER, cached_tokens INTEGER,
    cost_usd REAL,
    latency_s REAL,
    created_at REAL NOT NULL,
    extra TEXT                     -- JSON or NULL: {"choices": [...], "logprobs": [...]} when asked for
);
CREATE TABLE IF NOT EXISTS calls (  -- every HTTP attempt, successful or not (like `llm logs`)
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL, model TEXT NOT NULL,
    outcome TEXT NOT NULL,          -- ok | retry | error
    detail TEXT, latency_s REAL, created_at REAL NOT NULL
);
"""

# The batch ledger (teacher/batch.py). A batch row is written with its requests before anything is uploaded, and
# each id the server returns is written as soon as it returns it: a re-run finds every batch a killed run made.
LEDGER = [
    """CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- the ledger's number, also in the batch's metadata
    server TEXT, model TEXT NOT NULL,
    state TEXT NOT NULL,            -- prepared | uploaded | submitted | collected | abandoned
    status TEXT,                    -- the server's: validating, in_progress, ..., completed, expired, failed, cancelled
    input_file_id TEXT, batch_id TEXT, output_file_id TEXT, error_file_id TEXT,
    requests INTEGER NOT NULL, completed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    detail TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS batch_requests (
    batch INTEGER NOT NULL,         -- batches.id
    key TEXT NOT NULL,              -- the request's cache key: its custom_id in the batch file
    body TEXT NOT NULL,             -- JSON: the chat-completions body as sent; '' once collected (responses keeps it)
    reserved_usd REAL,              -- its worst case at the batch price, held against --max-cost until collected
    outcome TEXT,                   -- NULL until collected: ok | error | missing | abandoned
    detail TEXT,
    PRIMARY KEY (batch, key)
)""",
    "CREATE INDEX IF NOT EXISTS batch_requests_key ON batch_requests (key)",
]
OPEN = ("prepared", "uploaded", "submitted")  # ledger states of a batch not yet collected

# version reached -> what reaches it from the one before: (column, type) pairs added to `responses`, or statements
MIGRATIONS = {2: [("extra", "TEXT")], 3: LEDGER}


def request_key(model: str, messages: list[dict], params: dict, server: str | None = None) -> str:
    """Everything that determines a response: the server, the model, the messages, the sampling params.

    `server` is the base URL (None for OpenAI's default); the same model name served elsewhere is
    another model. Params are only those sent, so a plain request keys as it always has.
    """
    blob = {"model": model, "messages": messages, "params": params}
    if server:
        blob["server"] = server.rstrip("/")
    return hashlib.sha256(json.dumps(blob, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


PUT_SQL = (
    "INSERT OR REPLACE INTO responses (key, model, request, content, prompt_tokens, completion_tokens, cached_tokens,"
    " cost_usd, latency_s, created_at, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
LOG_SQL = "INSERT INTO calls (key, model, outcome, detail, latency_s, created_at) VALUES (?, ?, ?, ?, ?, ?)"
_STOP = object()


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    # autocommit mode: a statement outside BEGIN ... COMMIT is its own transaction, committed before execute() returns
    db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")  # FULL: durable on power loss too, not only on a crash
    db.execute("PRAGMA busy_timeout=60000")
    return db


class _GroupWriter:
    """One thread, one connection: each commit takes every write queued while the previous one ran.

    A write is a list of (sql, args) that must land together (a response and its "ok" log line); its
    Future is resolved once the transaction that holds it has committed, or fails with its error."""

    def __init__(self, path: Path, synchronous: str):
        self.path, self.synchronous = path, synchronous
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None  # a failed write whose waiter is gone (cancelled by Ctrl-C)
        self.thread = threading.Thread(target=self._run, name="edgedistill-cache-writer", daemon=True)
        self.thread.start()

    def submit(self, statements: list[tuple[str, tuple]]) -> Future:
        fut: Future = Future()
        self.queue.put((statements, fut))
        return fut

    def close(self) -> None:
        self.queue.put(_STOP)
        self.thread.join()

    def _run(self) -> None:
        db = None
        try:
            db = _connect(self.path, self.synchronous)
            while True:
                batch = [self.queue.get()]
                while True:  # everything that arrived during the last commit
                    try:
                        batch.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(item is _STOP for item in batch)
                batch = [item for item in batch if item is not _STOP]
                # A cancelled waiter (Ctrl-C) does not cancel the write: the response was paid for, keep it.
                for _, fut in batch:
                    fut.set_running_or_notify_cancel()
                if batch:
                    self._commit(db, batch)
                if stop:
                    return
        except BaseException as e:  # no connection (or a bug): every waiter hears why instead of waiting forever
            self.error = e
            while (item := self.queue.get()) is not _STOP:
                if item[1].set_running_or_notify_cancel():
                    item[1].set_exception(e)
        finally:
            if db is not None:
                db.close()

    def _commit(self, db: sqlite3.Connection, batch: list) -> None:
        try:
            self._transaction(db, [s for statements, _ in batch for s in statements])
        except Exception as e:
            if len(batch) == 1:
                self._fail(batch[0][1], e)
            else:  # find the write at fault; the others commit on their own
                for item in batch:
                    self._commit(db, [item])
            return
        for _, fut in batch:
            if not fut.cancelled():
                fut.set_result(None)

    def _fail(self, fut: Future, error: BaseException) -> None:
        if fut.cancelled():  # nobody is waiting: close() raises it
            self.error = self.error or error
        else:
            fut.set_exception(error)

    @staticmethod
    def _transaction(db: sqlite3.Connection, statements: list) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                db.execute(sql, args)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


def cache_file_problem(path: Path, must_hold_responses: bool = True) -> str | None:
    """Why `path` cannot be read as a teacher cache (not a file, not SQLite, no responses table), or None."""
    if not path.is_file():
        return "not a file"
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_HEADER))
    if not head and not must_hold_responses:
        return None  # an empty file is an empty SQLite database: the schema is created in it
    if head != SQLITE_HEADER:
        return "not a SQLite database (a teacher cache is the cache.sqlite that edgedistill annotate writes)"
    if not must_hold_responses:
        return None
    try:
        db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            found = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='responses'").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        return f"not a readable SQLite database ({e})"
    return None if found else "a SQLite database without a `responses` table, so no teacher cache"


class Cache:
    SYNCHRONOUS = "FULL"  # benchmarks/annotation_throughput.py compares NORMAL

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        why = cache_file_problem(self.path, must_hold_responses=False) if self.path.exists() else None
        if why:
            raise UserError(f"{self.path}: {why}; move it away (a new cache is made) or give another run directory")
        try:
            self.db = _connect(self.path, self.SYNCHRONOUS)  # reads, migrations, merges; writes go through the writer
        except sqlite3.DatabaseError as e:
            raise UserError(
                f"{self.path}: cannot open the teacher cache ({e}); move it away (a new cache is made)"
            ) from None
        try:
            self._migrate()
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise UserError(f"{self.path}: a damaged teacher cache ({e}); move it away (a new cache is made)") from None
        except BaseException:
            self.db.close()
            raise
        self._writer: _GroupWriter | None = None
        self._lock = threading.Lock()
        self._log_error: BaseException | None = None  # a queued log line that failed to commit

    @property
    def writer(self) -> _GroupWriter:
        with self._lock:
            if self._writer is None:
                self._writer = _GroupWriter(self.path, self.SYNCHRONOUS)
            return self._writer

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        exists = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='responses'").fetchone()
        if not exists:
            self.db.executescript(SCHEMA + ";\n".join(LEDGER) + ";")
        elif version < SCHEMA_VERSION:
            columns = {r[1] for r in self.db.execute("PRAGMA table_info(responses)")}
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for target in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                    for step in MIGRATIONS[target]:
                        if isinstance(step, str):  # CREATE ... IF NOT EXISTS: another process may have run it
                            self.db.execute(step)
                        elif step[0] not in columns:  # else another process got there first
                            self.db.execute(f"ALTER TABLE responses ADD COLUMN {step[0]} {step[1]}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        elif version > SCHEMA_VERSION:
            raise UserError(
                f"{self.path}: cache schema version {version} is newer than this edgedistill "
                f"understands ({SCHEMA_VERSION}); upgrade edgedistill"
            )
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def get(self, key: str) -> dict | None:
        row = self.db.execute(
            "SELECT content, prompt_tokens, completion_tokens, cached_tokens, cost_usd, extra, latency_s"
            " FROM responses WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        return {
            "content": row[0],
            "usage": {"prompt_tokens": row[1], "completion_tokens": row[2], "cached_tokens": row[3]},
            "cost_usd": row[4],
            "extra": json.loads(row[5]) if row[5] else {},
            "latency_s": row[6],
        }

    @staticmethod
    def _put_row(key, model, request, content, usage, cost_usd, latency_s, extra) -> tuple[str, tuple]:
        return (
            PUT_SQL,
            (
                key,
                model,
                json.dumps(request, ensure_ascii=False),
                content,
                usage.get("prompt_tokens"),
                usage.get("completion_tokens"),
                usage.get("cached_tokens"),
                cost_usd,
                latency_s,
                time.time(),
                json.dumps(extra, ensure_ascii=False) if extra else None,
            ),
        )

    def put(
        self,
        key: str,
        model: str,
        request: dict,
        content: str,
        usage: dict,
        cost_usd: float | None,
        latency_s: float,
        extra: dict | None = None,
    ) -> None:
        """Store one response; returns once it is committed (it may share the commit with others)."""
        self.writer.submit([self._put_row(key, model, request, content, usage, cost_usd, latency_s, extra)]).result()

    async def store(
        self,
        key: str,
        model: str,
        request: dict,
        content: str,
        usage: dict,
        cost_usd: float | None,
        latency_s: float,
        extra: dict | None = None,
    ) -> None:
        """Store a response and its "ok" call log in one group commit; returns once that commit is on disk.

        Until then the caller's request is still in flight: a kill before the commit loses only the
        response, and the re-run asks for it again."""
        await asyncio.wrap_future(
            self.writer.submit(
                [
                    self._put_row(key, model, request, content, usage, cost_usd, latency_s, extra),
                    (LOG_SQL, (key, model, "ok", None, latency_s, time.time())),
                ]
            )
        )

    def log(
        self, key: str, model: str, outcome: str, detail: str | None = None, latency_s: float | None = None
    ) -> None:
        """Log one HTTP attempt; queued for the next group commit, not waited for (a log line costs nothing to lose)."""
        self.writer.submit([(LOG_SQL, (key, model, outcome, detail, latency_s, time.time()))]).add_done_callback(
            self._logged
        )

    def _logged(self, fut: Future) -> None:
        if not fut.cancelled() and fut.exception() is not None and self._log_error is None:
            self._log_error = fut.exception()

    def total_cost(self, price: tuple[float, float] | None = None) -> float:
        """Everything this cache has paid for so far: the budget a --max-cost cap counts against. A response
        recorded without a cost (paid in a run that knew no price) is counted at `price` (USD per 1M tokens in,
        out) where one is given, so a cap set on a later run still holds."""
        pin, pout = price or (0.0, 0.0)
        return self.db.execute(
            "SELECT COALESCE(SUM(COALESCE(cost_usd,"
            " (COALESCE(prompt_tokens, 0) * ? + COALESCE(completion_tokens, 0) * ?) / 1e6)), 0) FROM responses",
            (pin, pout),
        ).fetchone()[0]

    def merge_from(self, path) -> int:
        """Add the responses of another cache (e.g. a recorded one shipped with an example) that this one
        lacks; the other file is only read, whatever its schema version. Returns how many were added."""
        why = cache_file_problem(Path(path))
        if why:
            raise UserError(f"{path}: {why}; give a cache.sqlite that edgedistill annotate wrote")
        src = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
        try:
            have = {r[1] for r in src.execute("PRAGMA table_info(responses)")}
            cols = [
                c
                for c in (
                    "key",
                    "model",
                    "request",
                    "content",
                    "prompt_tokens",
                    "completion_tokens",
                    "cached_tokens",
                    "cost_usd",
                    "latency_s",
                    "created_at",
                    "extra",
                )
                if c in have
            ]
            rows = src.execute(f"SELECT {', '.join(cols)} FROM responses").fetchall()
        finally:
            src.close()
        before = self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany(
            f"INSERT OR IGNORE INTO responses ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows
        )
        self.db.execute("COMMIT")
        return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] - before

    async def store_many(self, rows: list[tuple]) -> None:
        """Store many responses, each as `store` would (key, model, request, content, usage, cost_usd, latency_s,
        extra), in one group commit; returns once it is on disk."""
        statements = []
        for key, model, request, content, usage, cost, latency_s, extra in rows:
            statements.append(self._put_row(key, model, request, content, usage, cost, latency_s, extra))
            statements.append((LOG_SQL, (key, model, "ok", "batch", latency_s, time.time())))
        if statements:
            await asyncio.wrap_future(self.writer.submit(statements))

    # ---------------------------------------------------------------- the batch ledger (teacher/batch.py)

    LEDGER_FIELDS = (
        "state",
        "status",
        "input_file_id",
        "batch_id",
        "output_file_id",
        "error_file_id",
        "completed",
        "failed",
        "detail",
    )

    def _in_transaction(self, work) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            work()
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def ledger_add(self, server: str | None, model: str, requests: list[tuple[str, str, float]]) -> int:
        """Record a batch about to be uploaded and its requests, (key, body JSON, USD reserved) each, in one
        transaction that is on disk when this returns; returns the batch's ledger number."""
        now, number = time.time(), []

        def work():
            cur = self.db.execute(
                "INSERT INTO batches (server, model, state, requests, created_at, updated_at)"
                " VALUES (?, ?, 'prepared', ?, ?, ?)",
                (server, model, len(requests), now, now),
            )
            number.append(cur.lastrowid)
            self.db.executemany(
                "INSERT INTO batch_requests (batch, key, body, reserved_usd) VALUES (?, ?, ?, ?)",
                [(cur.lastrowid, key, body, reserved) for key, body, reserved in requests],
            )

        self._in_transaction(work)
        return number[0]

    def ledger_set(self, number: int, **fields) -> None:
        """Update a batch's row (LEDGER_FIELDS); on disk when this returns."""
        unknown = set(fields) - set(self.LEDGER_FIELDS)
        if unknown:
            raise ValueError(f"not ledger fields: {sorted(unknown)}")
        columns = "".join(f"{k} = ?, " for k in fields)
        self.db.execute(
            f"UPDATE batches SET {columns}updated_at = ? WHERE id = ?", (*fields.values(), time.time(), number)
        )

    def ledger(self, open_only: bool = False) -> list[dict]:
        """The ledger's batches, oldest first (only those not yet collected with `open_only`)."""
        where = f" WHERE state IN ({', '.join('?' * len(OPEN))})" if open_only else ""
        cur = self.db.execute(f"SELECT * FROM batches{where} ORDER BY id", OPEN if open_only else ())
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def ledger_requests(self, number: int) -> list[tuple[str, str, float | None]]:
        """A batch's requests not collected yet: (key, body JSON, USD reserved), in the order they were recorded."""
        return self.db.execute(
            "SELECT key, body, reserved_usd FROM batch_requests WHERE batch = ? AND outcome IS NULL ORDER BY rowid",
            (number,),
        ).fetchall()

    def open_requests(self) -> dict[str, int]:
        """Every request in a batch not collected yet, by key: its batch's ledger number."""
        return dict(
            self.db.execute(
                "SELECT r.key, r.batch FROM batch_requests r JOIN batches b ON b.id = r.batch"
                f" WHERE r.outcome IS NULL AND b.state IN ({', '.join('?' * len(OPEN))})",
                OPEN,
            ).fetchall()
        )

    def ledger_outcomes(self) -> dict[int, dict[str, int]]:
        """Per batch, how many of its requests had each outcome (ok, error, missing, abandoned) when collected."""
        out: dict[int, dict[str, int]] = {}
        for batch, outcome, n in self.db.execute(
            "SELECT batch, outcome, COUNT(*) FROM batch_requests WHERE outcome IS NOT NULL GROUP BY batch, outcome"
        ):
            out.setdefault(batch, {})[outcome] = n
        return out

    def ledger_reserved(self) -> float:
        """USD held against --max-cost by requests in batches not collected yet (their worst case)."""
        return self.db.execute(
            "SELECT COALESCE(SUM(r.reserved_usd), 0) FROM batch_requests r JOIN batches b ON b.id = r.batch"
            f" WHERE r.outcome IS NULL AND b.state IN ({', '.join('?' * len(OPEN))})",
            OPEN,
        ).fetchone()[0]

    def ledger_close(self, number: int, outcomes: list[tuple[str, str, str | None]], state: str = "collected") -> None:
        """Record what became of a batch's requests, (key, outcome, detail) each, and its final state, in one
        transaction (after the answers themselves are committed: a kill between the two collects it again)."""

        def work():
            self.db.executemany(
                "UPDATE batch_requests SET outcome = ?, detail = ?, body = '' WHERE batch = ? AND key = ?",
                [(outcome, detail, number, key) for key, outcome, detail in outcomes],
            )
            self.db.execute("UPDATE batches SET state = ?, updated_at = ? WHERE id = ?", (state, time.time(), number))

        self._in_transaction(work)

    def close(self) -> None:
        """Commit what is queued, stop the writer, close; raises a log write that failed unseen."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        self.db.close()
        error = self._log_error or (writer.error if writer is not None else None)
        if error is not None:
            raise error
