"""The Batch route (`annotate --batch`), Flex and the route planner, against the stub server's Batch API.

Each test runs annotate against tests/openai_stub.py, whose batches run their lines through the same replies as live
requests when polled, with the faults the route must survive: a failed upload, a batch that stays in progress,
error lines, an expired batch with part of its output, a failed batch, a server with no Batch API.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest
from click.testing import CliRunner
from openai_stub import StubServer

from edgedistill.cli import main
from edgedistill.errors import UserError
from edgedistill.teacher import cache as cache_module
from edgedistill.teacher.annotate import AnnotateConfig, annotate, client_config
from edgedistill.teacher.cache import Cache

TASK = (
    'name: nli\ntype: classification\ninput: "{text}"\nlabels: [entailment, neutral, contradiction]\n'
    "gold: label\nid: id\n"
)
KEY = "sk-test-DO-NOT-LEAK-77aa66bb55cc"


def quiet(*_):
    pass


def make(tmp_path, texts):
    (tmp_path / "task.yaml").write_text(TASK)
    rows = [{"id": f"e{i}", "text": t, "label": "neutral"} for i, t in enumerate(texts)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def config(tmp_path, server, out="run", **kw):
    kw = {
        "model": "stub",
        "timeout": 5.0,
        "max_retries": 2,
        "backoff_base": 0.01,
        "concurrency": 4,
        "batch_poll": 0.01,
        **kw,
    }
    return AnnotateConfig(
        task=str(tmp_path / "task.yaml"),
        data=str(tmp_path / "d.jsonl"),
        out=str(tmp_path / out),
        base_url=server.base_url,
        **kw,
    )


def rows_of(tmp_path, out="run"):
    return [json.loads(x) for x in (tmp_path / out / "annotations.jsonl").read_text().splitlines()]


def cache_keys(tmp_path, out="run") -> set:
    db = sqlite3.connect(tmp_path / out / "cache.sqlite")
    try:
        return {k for (k,) in db.execute("SELECT key FROM responses")}
    finally:
        db.close()


def ledger(tmp_path, out="run") -> list[dict]:
    c = Cache(tmp_path / out / "cache.sqlite")
    try:
        return c.ledger()
    finally:
        c.close()


def submitted(server) -> Counter:
    """How many of the server's batches each request (custom_id) was put in."""
    return Counter(key for b in server.batches.values() for key in b["requests"])


MIXED = [
    "plain ANSWER=entailment",
    "terse TERSE ANSWER=contradiction",  # no explanation: a rationalization, in a later batch
    "voted ANSWER=entailment VOTES=neutral,entailment",
    "scored ANSWER=neutral SCORE=b:0.7,a:0.2,c:0.1",
    "ignores n ANSWER=neutral VOTES=neutral,contradiction IGNOREN",  # one vote per request, in a later batch
]


@pytest.mark.parametrize("prompt", ["zero-shot", "zero-shot-cot"])
def test_a_batch_run_writes_what_a_live_run_writes_at_half_the_price(tmp_path, prompt):
    make(tmp_path, MIXED)
    kw = dict(prompt=prompt, votes=3, price_in=1.0, price_out=2.0)
    with StubServer() as server:  # one server: its URL is part of every cache key
        live = annotate(config(tmp_path, server, "live", **kw), echo=quiet)
        assert not server.batches
        batch = annotate(config(tmp_path, server, "batch", batch=True, **kw), echo=quiet)
    assert (tmp_path / "batch" / "annotations.jsonl").read_text() == (
        tmp_path / "live" / "annotations.jsonl"
    ).read_text()
    assert cache_keys(tmp_path, "batch") == cache_keys(tmp_path, "live")  # the same requests, under the same keys
    assert all(r["status"] == "ok" for r in rows_of(tmp_path, "batch"))
    # phase by phase: the first batch holds every request that waits on no reply; later ones what the replies asked
    assert len(server.batches) >= 2 and max(submitted(server).values()) == 1
    stats = batch["batch"]
    assert stats["batches_created"] == stats["batches_collected"] == len(server.batches)
    assert (
        stats["requests_submitted"] == stats["results"] == len(cache_keys(tmp_path, "batch")) == batch["requests_sent"]
    )
    assert batch["batch_results"] == live["requests_sent"] and batch["cache_hits"] == 0
    assert server.requests and all(e["outcome"] == "ok" for e in server.requests)
    assert batch["route"] == "batch" and live["route"] == "live"
    assert batch["cost_usd"] == pytest.approx(live["cost_usd"] / 2) and batch["cost_usd_list"] == live["cost_usd_list"]
    assert all(b["state"] == "collected" for b in ledger(tmp_path, "batch"))
    db = sqlite3.connect(tmp_path / "batch" / "cache.sqlite")  # a collected request's body lives in responses only
    assert db.execute("SELECT COUNT(*) FROM batch_requests WHERE body != ''").fetchone()[0] == 0
    db.close()


KILL_DRIVER = """
import sys
from edgedistill.cli import main
main(sys.argv[1:])
"""


def test_kill_9_after_the_batches_were_created_then_rerun_submits_nothing_twice(tmp_path):
    make(tmp_path, [f"row {i} ANSWER=entailment" + (" TERSE" if i % 3 == 0 else "") for i in range(9)])
    with StubServer() as server:
        server.batch_hold = True  # every batch stays in progress: the run is waiting when it is killed
        args = ["annotate", "--task", str(tmp_path / "task.yaml"), "--data", str(tmp_path / "d.jsonl"), "--out",
                str(tmp_path / "run"), "--base-url", server.base_url, "--model", "stub", "--batch", "--batch-poll",
                "0.05", "--batch-max-requests", "5"]  # fmt: skip
        proc = subprocess.Popen([sys.executable, "-c", KILL_DRIVER, *args], env={**os.environ, "OPENAI_API_KEY": ""},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.time() + 60
        while time.time() < deadline and not any(b["_polls"] >= 2 for b in server.batches.values()):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = dict(server.batches)
        recorded = ledger(tmp_path)
        assert len(first) == 4 and {b["batch_id"] for b in recorded} == set(first)  # 9 answers + 9 scores, 5 a file
        assert all(b["state"] == "submitted" for b in recorded)  # the ids were on disk before the run waited
        server.batch_hold = False
        with pytest.raises(UserError, match=r"--batch: 4 batch\(es\) .* not collected yet; re-run with --batch"):
            annotate(config(tmp_path, server), echo=quiet)  # live, it would pay for them again
        s = annotate(config(tmp_path, server, batch=True), echo=quiet)
    assert s["batch"]["batches_resumed"] == 4 and s["batch"]["batches_created"] == len(server.batches) - 4 == 1
    assert max(submitted(server).values()) == 1  # no request in two batches
    assert all(server.batches[b]["requests"] == first[b]["requests"] for b in first)  # the old ones polled, not remade
    rows = rows_of(tmp_path)
    assert [r["id"] for r in rows] == [f"e{i}" for i in range(9)] and all(r["status"] == "ok" for r in rows)
    assert sum(r.get("rationale_source") == "rationalized" for r in rows) == 3


def test_a_kill_between_a_batchs_creation_and_its_record_adopts_that_batch(tmp_path, monkeypatch):
    make(tmp_path, [f"row {i} ANSWER=neutral" for i in range(3)])
    original = Cache.ledger_set

    def killed(self, number, **fields):
        if "batch_id" in fields:
            raise KeyboardInterrupt  # the server made the batch; its id never reached the ledger
        original(self, number, **fields)

    with StubServer() as server:
        monkeypatch.setattr(Cache, "ledger_set", killed)
        with pytest.raises(UserError, match="batches submitted go on at the provider"):
            annotate(config(tmp_path, server, batch=True, scoring="none"), echo=quiet)
        monkeypatch.setattr(Cache, "ledger_set", original)
        assert len(server.batches) == 1 and ledger(tmp_path)[0]["state"] == "uploaded"
        s = annotate(config(tmp_path, server, batch=True, scoring="none"), echo=quiet)
    assert len(server.batches) == 1 and s["batch"]["batches_created"] == 0  # found by its file, not made again
    assert ledger(tmp_path)[0]["batch_id"] == "batch_0001" and all(r["status"] == "ok" for r in rows_of(tmp_path))


def test_an_expired_batch_resubmits_only_its_missing_requests(tmp_path):
    make(tmp_path, [f"item {i} ANSWER=contradiction" for i in range(8)])
    with StubServer() as server:
        server.expire_batches = 1  # half answered, then a batch_expired line for every other one of the rest
        s = annotate(config(tmp_path, server, batch=True, scoring="none"), echo=quiet)
    first, second = (server.batches[b]["requests"] for b in ("batch_0001", "batch_0002"))
    assert len(server.batches) == 2 and server.batches["batch_0001"]["status"] == "expired"
    assert second == first[4:]  # exactly the four it did not answer
    stats = s["batch"]
    assert (stats["results"], stats["errors"], stats["unanswered"], stats["retried"]) == (8, 2, 2, 4)
    assert all(r["status"] == "ok" and r["label"] == "contradiction" for r in rows_of(tmp_path))


def test_files_split_at_the_request_and_size_limits(tmp_path):
    make(tmp_path, [f"sentence number {i} ANSWER=entailment" for i in range(8)])
    with StubServer() as server:
        annotate(config(tmp_path, server, "by-count", batch=True, scoring="none", batch_max_requests=3), echo=quiet)
        assert [len(b["requests"]) for b in server.batches.values()] == [3, 3, 2]
    with StubServer() as server:
        limit_mb = 0.0012  # about two lines a file
        annotate(config(tmp_path, server, "by-size", batch=True, scoring="none", batch_max_mb=limit_mb), echo=quiet)
        sizes = [len(f["bytes"]) for f in server.files.values() if f["purpose"] == "batch"]
        assert (
            len(sizes) >= 3
            and max(sizes) <= limit_mb * 1e6
            and sum(len(b["requests"]) for b in server.batches.values()) == 8
        )
    assert rows_of(tmp_path, "by-count") == rows_of(tmp_path, "by-size")
    with StubServer() as server:
        with pytest.raises(UserError, match=r"--batch-max-mb: one answer request is .* raise --batch-max-mb"):
            annotate(config(tmp_path, server, "too-big", batch=True, scoring="none", batch_max_mb=0.0001), echo=quiet)
        assert not server.files and ledger(tmp_path, "too-big") == []


def test_error_lines_are_retried_and_counted(tmp_path):
    make(tmp_path, ["a FAULT500 ANSWER=entailment", "b FAULT500 ANSWER=neutral", "c FAULTDEAD", "d ECHOAUTH", "e fine"])
    with StubServer() as server:
        s = annotate(config(tmp_path, server, batch=True, scoring="none", max_retries=1, max_failed=1.0), echo=quiet)
    rows = {r["id"]: r for r in rows_of(tmp_path)}
    assert [rows[f"e{i}"]["status"] for i in range(5)] == ["ok", "ok", "failed", "failed", "ok"]
    assert "HTTP 503" in rows["e2"]["error"] and "in 2 batches, --max-retries 1" in rows["e2"]["error"]
    assert "HTTP 401" in rows["e3"]["error"] and "cannot change that" in rows["e3"]["error"]  # not sent again
    stats = s["batch"]
    # error lines: 2 x FAULT500 once, FAULTDEAD twice, ECHOAUTH once; retried: the FAULT500s and FAULTDEAD once
    assert (stats["errors"], stats["retried"], stats["failed"]) == (5, 3, 2)
    sent = submitted(server)
    assert sorted(sent.values()) == [1, 1, 2, 2, 2] and s["retries"] >= 3


def test_batch_fallback_live_sends_what_the_batch_could_not_answer_live(tmp_path):
    make(tmp_path, ["a BATCHERR ANSWER=entailment", "b ANSWER=neutral"])
    notes = []
    with StubServer() as server:
        s = annotate(config(tmp_path, server, batch=True, scoring="none", batch_fallback="live"), echo=notes.append)
        live = [e for e in server.requests if e["outcome"] == "ok"]
    assert [r["label"] for r in rows_of(tmp_path)] == ["entailment", "neutral"]
    assert s["batch"]["sent_live"] == 1 and s["batch"]["retried"] == 0 and len(server.batches) == 1
    assert len(live) == 2 and any("--batch-fallback live" in n for n in notes)  # said, not silent


def test_max_cost_holds_across_batches_and_runs(tmp_path):
    make(tmp_path, [f"item {i} ANSWER=entailment" for i in range(8)])
    # 100 USD per 1M tokens: the batch price is 50; a request's worst case (~40 prompt + 64 output tokens) ~0.005 USD
    kw = dict(price_in=100.0, price_out=100.0, max_tokens=64, scoring="none", batch=True, batch_max_requests=2)
    with StubServer() as server:
        s = annotate(config(tmp_path, server, max_cost=0.02, **kw), echo=quiet)
        assert 0 < s["ok"] < 8 and s["not_sent"] == s["not_sent_budget"] == 8 - s["ok"] and s["failed"] == 0
        assert s["cost_usd"] <= 0.02 and s["batch"]["requests_submitted"] == s["ok"] and len(server.batches) >= 2
        assert "re-run with a higher --max-cost" in s["message"]
        s2 = annotate(config(tmp_path, server, max_cost=1.0, **kw), echo=quiet)
    assert s2["ok"] == 8 and max(submitted(server).values()) == 1 and s2["cost_usd"] <= 1.0


def test_what_running_batches_hold_counts_against_the_cap_of_the_next_run(tmp_path):
    make(tmp_path, [f"item {i} ANSWER=entailment" for i in range(6)])
    kw = dict(price_in=100.0, price_out=100.0, max_tokens=64, scoring="none", batch=True, max_cost=0.02)
    with StubServer() as server:
        server.batch_hold = True
        first = annotate(config(tmp_path, server, batch_wait=0, **kw), echo=quiet)
        assert first["batch_pending"] and not (tmp_path / "run" / "annotations.jsonl").exists()
        c = Cache(tmp_path / "run" / "cache.sqlite")
        held = c.ledger_reserved()
        c.close()
        assert 0.01 < held <= 0.02  # the worst cases of the submitted requests, kept on disk
        again = annotate(config(tmp_path, server, batch_wait=0, **kw), echo=quiet)
        assert again["batch_pending"] and again["batch"]["requests_submitted"] == 0  # the cap is still held
        server.batch_hold = False
        s = annotate(config(tmp_path, server, **kw), echo=quiet)
    assert s["cost_usd"] <= 0.02 and max(submitted(server).values()) == 1 and s["ok"] == sum(submitted(server).values())


def test_a_server_without_the_batch_api_is_refused_naming_batch(tmp_path):
    make(tmp_path, ["x ANSWER=neutral"])
    with StubServer() as server:
        server.batch_api = False  # a local server: chat completions only
        with pytest.raises(
            UserError, match=r"^--batch: the server at http://127.0.0.1:\d+/v1 has no Batch API .*drop --batch"
        ):
            annotate(config(tmp_path, server, batch=True), echo=quiet)
        assert server.requests == [] and ledger(tmp_path) == []


def test_a_failed_upload_is_retried_and_one_that_keeps_failing_resumes_later(tmp_path):
    make(tmp_path, [f"u{i} ANSWER=neutral" for i in range(3)])
    with StubServer() as server:
        server.fail_uploads = 1
        annotate(config(tmp_path, server, "once", batch=True, scoring="none"), echo=quiet)
        assert len(server.batches) == 1 and server.fail_uploads == 0
    with StubServer() as server:
        server.fail_uploads = 10
        with pytest.raises(
            UserError, match=r"--batch: uploading a batch file .* failed 2 times .*re-run the same command"
        ):
            annotate(config(tmp_path, server, batch=True, scoring="none", max_retries=1), echo=quiet)
        assert [b["state"] for b in ledger(tmp_path)] == ["prepared"] and not server.batches
        server.fail_uploads = 0
        s = annotate(config(tmp_path, server, batch=True, scoring="none"), echo=quiet)
    assert len(server.batches) == 1 and s["batch"]["batches_resumed"] == 1 and s["batch"]["requests_submitted"] == 0
    assert rows_of(tmp_path) == rows_of(tmp_path, "once")


def test_a_failed_batch_is_sent_again_and_one_that_always_fails_says_why(tmp_path):
    make(tmp_path, [f"f{i} ANSWER=entailment" for i in range(3)])
    with StubServer() as server:
        server.fail_batches = 1
        s = annotate(config(tmp_path, server, batch=True, scoring="none"), echo=quiet)
        assert [b["status"] for b in server.batches.values()] == ["failed", "completed"]
        assert s["batch"]["unanswered"] == s["batch"]["retried"] == 3 and s["ok"] == 3
    with StubServer() as server:
        server.fail_batches = 10
        cfg = config(tmp_path, server, "never", batch=True, scoring="none", max_retries=1)
        with pytest.raises(
            UserError, match=r"no row is ok: 3 failed .*ended failed \(invalid_request: failed by the test"
        ):
            annotate(cfg, echo=quiet)
        assert len(server.batches) == 2


def test_batch_wait_0_submits_and_exits_and_a_later_run_collects(tmp_path):
    make(tmp_path, ["a ANSWER=entailment TERSE", "b ANSWER=neutral"])
    args = ["annotate", "--task", str(tmp_path / "task.yaml"), "--data", str(tmp_path / "d.jsonl"), "--out",
            str(tmp_path / "run"), "--model", "stub", "--batch", "--batch-wait", "0",
            "--batch-poll", "0.01"]  # fmt: skip
    with StubServer() as server:
        server.batch_polls = 3  # in progress for three polls
        runs = []
        for _ in range(10):
            runs.append(CliRunner().invoke(main, [*args, "--base-url", server.base_url]))
            if runs[-1].exit_code != 3:
                break
    assert runs[0].exit_code == 3 and "re-run the same command to collect them" in runs[0].output, runs[0].output
    assert "batch requests_submitted" in runs[0].output and "Wrote" not in runs[0].output
    assert runs[-1].exit_code == 0 and "Wrote" in runs[-1].output, runs[-1].output
    assert len(runs) >= 5 and max(submitted(server).values()) == 1  # two phases, each polled three times
    assert [r["status"] for r in rows_of(tmp_path)] == ["ok", "ok"] and rows_of(tmp_path)[0]["rationale"]


def test_batch_status_prints_the_ledger_and_batch_cancel_cancels(tmp_path):
    make(tmp_path, ["a ANSWER=neutral", "b ANSWER=entailment"])
    base = ["annotate", "--task", str(tmp_path / "task.yaml"), "--data", str(tmp_path / "d.jsonl"), "--out",
            str(tmp_path / "run"), "--model", "stub", "--batch-poll", "0.01"]  # fmt: skip
    with StubServer() as server:
        url = ["--base-url", server.base_url]
        status = CliRunner().invoke(main, [*base, *url, "--batch-status"])
        assert status.exit_code == 2 and "no batch was submitted" in status.output
        server.batch_hold = True
        assert CliRunner().invoke(main, [*base, *url, "--batch", "--batch-wait", "0"]).exit_code == 3
        status = CliRunner().invoke(main, [*base, *url, "--batch-status"])
        assert status.exit_code == 0 and "batch_0001" in status.output and "in_progress" in status.output, status.output
        assert "1 open" in status.output and not server.cancels
        cancel = CliRunner().invoke(main, [*base, *url, "--batch-cancel"])
        assert cancel.exit_code == 0 and server.cancels == ["batch_0001"], cancel.output
        server.batch_hold = False
        done = CliRunner().invoke(main, [*base, *url, "--batch"])
        assert done.exit_code == 0, done.output
    assert [b["status"] for b in server.batches.values()] == ["cancelled", "completed"]  # what it held, sent again
    assert max(submitted(server).values()) == 2 and all(r["status"] == "ok" for r in rows_of(tmp_path))


def test_the_api_key_never_reaches_the_ledger_the_files_or_the_output(tmp_path, monkeypatch):
    make(tmp_path, ["ECHOAUTH the batch worker echoes the header", "fine ANSWER=neutral"])
    monkeypatch.setenv("TEACHER_KEY", KEY)
    with StubServer() as server:
        result = CliRunner().invoke(main, ["annotate", "--task", str(tmp_path / "task.yaml"), "--data",
                                           str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "run"), "--base-url",
                                           server.base_url, "--model", "stub", "--api-key-env", "TEACHER_KEY",
                                           "--batch", "--batch-poll", "0.01", "--max-failed", "1"])  # fmt: skip
        assert any(KEY.encode() in f["bytes"] for f in server.files.values())  # the stub's error file holds it
    assert result.exit_code == 0 and KEY not in result.output, result.output
    assert "***" in rows_of(tmp_path)[0]["error"]
    for f in (tmp_path / "run").rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f"API key found in {f}"


def test_flex_is_sent_priced_as_batch_and_waits_longer(tmp_path):
    make(tmp_path, ["a ANSWER=entailment", "b FAULT429 ANSWER=neutral"])
    with StubServer() as server:
        s = annotate(config(tmp_path, server, service_tier="flex", price_in=1.0, price_out=2.0), echo=quiet)
        assert set(server.service_tiers) == {"flex"} and s["route"] == "flex" and s["retries"] == 2  # answer, score
    assert s["cost_usd"] == pytest.approx(s["cost_usd_list"] / 2) and s["ok"] == 2
    cfg = AnnotateConfig(task="t", data="d", out="o", service_tier="flex")
    assert client_config(cfg, None).timeout == 900 and client_config(cfg, None).backoff_max == 300
    assert client_config(AnnotateConfig(task="t", data="d", out="o"), None).timeout == 120
    with pytest.raises(UserError, match="--service-tier flex: a batch has no service tier"):
        annotate(config(tmp_path, server, service_tier="flex", batch=True), echo=quiet)


def test_cached_prompt_tokens_are_counted_and_priced_at_the_cached_rate(tmp_path):
    make(tmp_path, ["a ANSWER=entailment", "b ANSWER=neutral"])
    with StubServer() as server:
        server.cached_prefix = 10
        kw = dict(price_in=1.0, price_out=2.0, price_cached=0.1, scoring="none")
        live = annotate(config(tmp_path, server, "live", **kw), echo=quiet)
        batch = annotate(config(tmp_path, server, "batch", batch=True, **kw), echo=quiet)
    for s, f in ((live, 1.0), (batch, 0.5)):
        assert s["cached_tokens"] == 20
        expected = ((s["prompt_tokens"] - 20) * 1.0 + 20 * 0.1 + s["completion_tokens"] * 2.0) * f / 1e6
        assert s["cost_usd"] == pytest.approx(expected)


def test_dry_run_prices_each_route_and_names_the_cheapest_within_the_deadline(tmp_path):
    make(tmp_path, [f"premise {i} and its hypothesis" for i in range(20)])
    shots = [{"text": "a long exemplar premise " * 30, "answer": "neutral", "rationale": "because " * 30}] * 8
    (tmp_path / "shots.jsonl").write_text("".join(json.dumps(s) + "\n" for s in shots))
    with StubServer() as server:
        out = []
        shots_file = str(tmp_path / "shots.jsonl")
        cfg = config(tmp_path, server, dry_run=True, model="gpt-4o-mini", exemplars=shots_file, deadline=2.0)
        s = annotate(cfg, echo=out.append)
        assert server.requests == [] and not server.batches
    text = "\n".join(out)
    routes = {r["route"]: r for r in s["routes"]["routes"]}
    assert routes["batch"]["cost_usd"] == pytest.approx(routes["live"]["cost_usd"] / 2)
    assert routes["flex"]["cost_usd"] == routes["batch"]["cost_usd"] and routes["batch"]["hours"] == 24
    assert s["routes"]["best"] == "flex" and "Cheapest within --deadline 2 h: flex" in text  # batch may take 24 h
    modes = s["prompt_caching"]["modes"]
    assert modes["zero-shot"]["cached_per_request"] == 0 and "not cached (below 1,024)" in text
    assert modes["few-shot-cot"]["shared_prefix_tokens"] > 1024 and modes["few-shot-cot"]["cached_per_request"] > 1024
    assert modes["few-shot-cot"]["cost_usd_cached"] < modes["few-shot-cot"]["cost_usd"]
    assert "once its exemplars are cached" in text
    with StubServer() as server:
        s = annotate(config(tmp_path, server, dry_run=True, model="gpt-4o-mini", deadline=48.0), echo=quiet)
    assert s["routes"]["best"] in ("batch", "flex")


def test_a_cache_of_schema_2_gains_the_ledger(tmp_path):
    path = tmp_path / "cache.sqlite"
    db = sqlite3.connect(path)
    db.executescript(cache_module.SCHEMA)  # responses with `extra`, calls: what version 2 wrote
    db.execute("PRAGMA user_version = 2")
    db.execute("INSERT INTO responses (key, model, request, content, created_at) VALUES ('k', 'm', '{}', 'a', 0)")
    db.commit()
    db.close()
    c = Cache(path)
    try:
        assert c.get("k")["content"] == "a" and c.ledger() == [] and c.open_requests() == {}
        number = c.ledger_add(None, "m", [("k2", "{}", 0.5)])
        assert c.open_requests() == {"k2": number} and c.ledger_reserved() == 0.5
    finally:
        c.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 3


def test_pipeline_teacher_batch_reaches_annotate(tmp_path):
    from edgedistill.pipeline import load_pipeline, stage_configs

    make(tmp_path, ["x"])
    (tmp_path / "p.yaml").write_text(
        "task: task.yaml\ndata: d.jsonl\nteacher: {batch: true, batch_wait: 0, batch_fallback: live}\n"
    )
    cfg = stage_configs(load_pipeline(tmp_path / "p.yaml"))["annotate"][0]
    assert cfg.batch is True and cfg.batch_wait == 0 and cfg.batch_fallback == "live"
    (tmp_path / "p.yaml").write_text("task: task.yaml\ndata: d.jsonl\nteacher: {service_tier: slow}\n")
    with pytest.raises(UserError, match=r"teacher\.service_tier: 'slow' is not one of default, flex"):
        load_pipeline(tmp_path / "p.yaml")
