"""The teacher cache: every response stored durably the moment it arrives, every call logged.

SQLite in WAL mode, one short transaction per response, so a crash, kill -9 or Ctrl-C loses at
most the requests still in flight, and several processes can share one cache safely (WAL allows
one writer and many readers; busy_timeout makes writers wait their turn instead of failing).
Errors are logged but never cached, so a re-run retries them. No API key is ever stored.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,          -- sha256 of (model, messages, sampling params)
    model TEXT NOT NULL,
    request TEXT NOT NULL,         -- JSON: messages and params, as sent
    content TEXT NOT NULL,         -- the assistant's text
    prompt_tokens INTEGER, completion_tokens INTEGER, cached_tokens INTEGER,
    cost_usd REAL,
    latency_s REAL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (  -- every HTTP attempt, successful or not (like `llm logs`)
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL, model TEXT NOT NULL,
    outcome TEXT NOT NULL,          -- ok | retry | error
    detail TEXT, latency_s REAL, created_at REAL NOT NULL
);
"""


def request_key(model: str, messages: list[dict], params: dict) -> str:
    blob = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Cache:
    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: each statement is its own transaction, committed before execute() returns
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # durable on power loss too, not only on a crash
        self.db.execute("PRAGMA busy_timeout=60000")
        self.db.executescript(SCHEMA)

    def get(self, key: str) -> dict | None:
        row = self.db.execute(
            "SELECT content, prompt_tokens, completion_tokens, cached_tokens, cost_usd FROM responses WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return {"content": row[0], "usage": {"prompt_tokens": row[1], "completion_tokens": row[2], "cached_tokens": row[3]},
                "cost_usd": row[4]}

    def put(self, key: str, model: str, request: dict, content: str, usage: dict, cost_usd: float | None, latency_s: float) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, model, json.dumps(request, ensure_ascii=False), content, usage.get("prompt_tokens"),
             usage.get("completion_tokens"), usage.get("cached_tokens"), cost_usd, latency_s, time.time()),
        )

    def log(self, key: str, model: str, outcome: str, detail: str | None = None, latency_s: float | None = None) -> None:
        self.db.execute("INSERT INTO calls (key, model, outcome, detail, latency_s, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (key, model, outcome, detail, latency_s, time.time()))

    def total_cost(self) -> float:
        """Everything this cache has paid for so far: the budget a --max-cost cap counts against."""
        return self.db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM responses").fetchone()[0]

    def close(self) -> None:
        self.db.close()
