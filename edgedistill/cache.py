"""The teacher cache: every response stored durably the moment it arrives, every call logged.

SQLite in WAL mode, one short transaction per response, so a crash, kill -9 or Ctrl-C loses at
most the requests still in flight, and several processes can share one cache safely (WAL allows
one writer and many readers; busy_timeout makes writers wait their turn instead of failing).
Errors are logged but never cached, so a re-run retries them. No API key is ever stored.

The schema carries a version (`PRAGMA user_version`) and rows are written by column name, so a
cache written by an older edgedistill is migrated in place when it is opened (like `llm`'s
migrations): version 1 had no `extra` column; version 2 stores the logprobs and extra choices.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

SCHEMA_VERSION = 2

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

# version reached -> the (column, type) pairs added to `responses` to reach it from the one before
MIGRATIONS = {2: [("extra", "TEXT")]}


def request_key(model: str, messages: list[dict], params: dict, server: str | None = None) -> str:
    """Everything that determines a response: the server, the model, the messages, the sampling params.

    `server` is the base URL (None for OpenAI's default); the same model name served elsewhere is
    another model. Params are only those sent, so a plain request keys as it always has.
    """
    blob = {"model": model, "messages": messages, "params": params}
    if server:
        blob["server"] = server.rstrip("/")
    return hashlib.sha256(json.dumps(blob, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class Cache:
    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: each statement is its own transaction, committed before execute() returns
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # durable on power loss too, not only on a crash
        self.db.execute("PRAGMA busy_timeout=60000")
        self._migrate()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        exists = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='responses'").fetchone()
        if not exists:
            self.db.executescript(SCHEMA)
        elif version < SCHEMA_VERSION:
            columns = {r[1] for r in self.db.execute("PRAGMA table_info(responses)")}
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for target in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                    for column, kind in MIGRATIONS[target]:
                        if column not in columns:  # else another process got there first
                            self.db.execute(f"ALTER TABLE responses ADD COLUMN {column} {kind}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        elif version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: cache schema version {version} is newer than this edgedistill "
                               f"understands ({SCHEMA_VERSION}); upgrade edgedistill")
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def get(self, key: str) -> dict | None:
        row = self.db.execute(
            "SELECT content, prompt_tokens, completion_tokens, cached_tokens, cost_usd, extra, latency_s FROM responses WHERE key = ?",
            (key,)).fetchone()
        if row is None:
            return None
        return {"content": row[0], "usage": {"prompt_tokens": row[1], "completion_tokens": row[2], "cached_tokens": row[3]},
                "cost_usd": row[4], "extra": json.loads(row[5]) if row[5] else {}, "latency_s": row[6]}

    def put(self, key: str, model: str, request: dict, content: str, usage: dict, cost_usd: float | None, latency_s: float,
            extra: dict | None = None) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO responses (key, model, request, content, prompt_tokens, completion_tokens, cached_tokens,"
            " cost_usd, latency_s, created_at, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, model, json.dumps(request, ensure_ascii=False), content, usage.get("prompt_tokens"),
             usage.get("completion_tokens"), usage.get("cached_tokens"), cost_usd, latency_s, time.time(),
             json.dumps(extra, ensure_ascii=False) if extra else None),
        )

    def log(self, key: str, model: str, outcome: str, detail: str | None = None, latency_s: float | None = None) -> None:
        self.db.execute("INSERT INTO calls (key, model, outcome, detail, latency_s, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (key, model, outcome, detail, latency_s, time.time()))

    def total_cost(self) -> float:
        """Everything this cache has paid for so far: the budget a --max-cost cap counts against."""
        return self.db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM responses").fetchone()[0]

    def merge_from(self, path) -> int:
        """Add the responses of another cache (e.g. a recorded one shipped with an example) that this one
        lacks; the other file is only read, whatever its schema version. Returns how many were added."""
        src = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
        try:
            have = {r[1] for r in src.execute("PRAGMA table_info(responses)")}
            cols = [c for c in ("key", "model", "request", "content", "prompt_tokens", "completion_tokens", "cached_tokens",
                                "cost_usd", "latency_s", "created_at", "extra") if c in have]
            rows = src.execute(f"SELECT {', '.join(cols)} FROM responses").fetchall()
        finally:
            src.close()
        before = self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany(f"INSERT OR IGNORE INTO responses ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
        self.db.execute("COMMIT")
        return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] - before

    def close(self) -> None:
        self.db.close()
