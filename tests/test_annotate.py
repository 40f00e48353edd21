"""The teacher stage against a real HTTP server on 127.0.0.1 that injects every fault we know of."""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from multiprocessing import Process
from pathlib import Path

import pytest
from click.testing import CliRunner
from openai_stub import StubServer

from edgedistill.cli import main
from edgedistill.errors import UserError
from edgedistill.teacher.annotate import AnnotateConfig, AnnotateFailed, annotate
from edgedistill.teacher.cache import SCHEMA_VERSION, Cache

TASK = (
    'name: nli\ntype: classification\ninput: "{text}"\nlabels: [entailment, neutral, contradiction]\n'
    "gold: label\nid: id\n"
)
KEY = "sk-test-DO-NOT-LEAK-4f9a8b7c6d5e"


def make(tmp_path, texts, golds=None):
    (tmp_path / "task.yaml").write_text(TASK)
    rows = [{"id": f"e{i}", "text": t, "label": (golds or ["neutral"] * len(texts))[i]} for i, t in enumerate(texts)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "task.yaml", tmp_path / "d.jsonl"


def config(tmp_path, server, **kw):
    task, data = tmp_path / "task.yaml", tmp_path / "d.jsonl"
    kw = {"timeout": 0.8, "max_retries": 2, "backoff_base": 0.01, "concurrency": 4, **kw}
    return AnnotateConfig(
        task=str(task), data=str(data), out=str(tmp_path / "run"), model="stub", base_url=server.base_url, **kw
    )


def _requests(tmp_path):
    db = sqlite3.connect(tmp_path / "run" / "cache.sqlite")
    try:
        return [{"request": r[0]} for r in db.execute("SELECT request FROM responses")]
    finally:
        db.close()


def rows_of(tmp_path):
    return [json.loads(line) for line in (tmp_path / "run" / "annotations.jsonl").read_text().splitlines()]


def test_every_fault_ends_ok_parse_failed_or_failed(tmp_path):
    texts = [
        "plain ANSWER=entailment",
        "FAULT429 ANSWER=contradiction",
        "FAULT500",
        "FAULTSLOW",
        "FAULTDROP",
        "FAULTJSON",
        "FAULTEMPTY",
        "FAULTDEAD",
        "GARBAGE",
        "ANSWER=maybe",
    ]
    make(tmp_path, texts)
    with StubServer() as server:  # the text path alone: scoring has its own tests below
        with pytest.raises(AnnotateFailed, match=r"2 of 10 rows failed \(20 %, above --max-failed 0.1") as failed:
            annotate(config(tmp_path, server, scoring="none"), echo=lambda *_: None)
        summary = failed.value.summary  # the rows are written all the same
        deadline = time.time() + 5  # the timed-out slow attempt is logged once the server wakes up
        while len(server.requests) < summary["requests_sent"] and time.time() < deadline:
            time.sleep(0.05)
    rows = {r["id"]: r for r in rows_of(tmp_path)}
    status = {texts[int(i[1:])].split()[0]: r["status"] for i, r in rows.items()}
    assert status == {
        "plain": "ok",
        "FAULT429": "ok",
        "FAULT500": "ok",
        "FAULTSLOW": "ok",
        "FAULTDROP": "ok",
        "FAULTJSON": "ok",
        "FAULTEMPTY": "failed",
        "FAULTDEAD": "failed",
        "GARBAGE": "parse_failed",
        "ANSWER=maybe": "ok",
    }
    assert rows["e0"]["label"] == "entailment" and rows["e1"]["label"] == "contradiction"
    assert rows["e9"]["label"] == "neutral"  # "maybe" is a synonym of neutral
    for r in rows.values():
        if r["status"] != "ok":
            assert r["error"], r
    assert "empty answer" in rows["e6"]["error"] and "503" in rows["e7"]["error"]
    assert rows["e8"]["raw"] == "I would rather not say."
    for k in ("ok", "parse_failed", "failed", "filtered"):
        assert summary[k] == sum(r["status"] == k for r in rows.values())
    saved = json.loads((tmp_path / "run" / "annotate.json").read_text())
    assert saved["ok"] == 7 and saved["failure"] == str(failed.value)
    assert summary["requests_sent"] == len(server.requests) and summary["retries"] >= 5


def test_rerun_is_free_and_identical(tmp_path):
    make(tmp_path, [f"example {i} ANSWER=entailment" for i in range(6)])
    with StubServer() as server:
        annotate(config(tmp_path, server), echo=lambda *_: None)
        first = rows_of(tmp_path)
        sent = len(server.requests)
        assert sent == 6 * 2  # the answer and the scoring request
        summary = annotate(config(tmp_path, server), echo=lambda *_: None)
        assert len(server.requests) == sent and summary["cache_hits"] == 6 * 2 and summary["requests_sent"] == 0
    assert rows_of(tmp_path) == first


def test_zero_shot_cot_two_stages_and_rationale_fraction(tmp_path):
    make(tmp_path, [f"case {i} ANSWER=contradiction" for i in range(10)])
    with StubServer() as server:
        s = annotate(
            config(tmp_path, server, prompt="zero-shot-cot", rationale_fraction=0.5, seed=3, scoring="none"),
            echo=lambda *_: None,
        )
    rows = rows_of(tmp_path)
    asked = {r["id"] for r in rows if r["rationale_requested"]}
    assert len(asked) == 5 and sorted(asked) == s["rationale_ids"]
    assert all(r["label"] == "contradiction" for r in rows)
    assert all((r["rationale"] is not None) == (r["id"] in asked) for r in rows)
    assert len(server.requests) == 5 * 2 + 5  # two stages with a rationale, one without
    with StubServer() as server:  # same seed, same subset
        s2 = annotate(
            config(tmp_path, server, prompt="zero-shot-cot", rationale_fraction=0.5, seed=3, scoring="none"),
            echo=lambda *_: None,
        )
    assert s2["rationale_ids"] == s["rationale_ids"]


def test_keep_if_agrees_marks_filtered(tmp_path):
    make(tmp_path, ["a ANSWER=entailment", "b ANSWER=neutral"], golds=["entailment", "contradiction"])
    with StubServer() as server:
        s = annotate(config(tmp_path, server, keep_if_agrees=True), echo=lambda *_: None)
    assert [r["status"] for r in rows_of(tmp_path)] == ["ok", "filtered"] and s["gold_agreement"] == 0.5


def test_dry_run_sends_nothing(tmp_path):
    make(tmp_path, ["x"] * 3)
    with StubServer() as server:
        out = []
        s = annotate(config(tmp_path, server, dry_run=True), echo=out.append)
        assert server.requests == [] and s["dry_run"]
    assert not (tmp_path / "run" / "annotations.jsonl").exists()
    text = "\n".join(out)
    assert "zero-shot" in text and "label-only" in text and "zero-shot-cot" in text


def test_max_cost_stops_then_resumes(tmp_path):
    make(tmp_path, [f"item {i} ANSWER=entailment" for i in range(8)])
    # 100 USD per 1M tokens both ways: each request's worst case (~30 prompt + 64 output tokens) is ~0.01 USD
    kw = dict(price_in=100.0, price_out=100.0, max_tokens=64, concurrency=1, scoring="none")
    with StubServer() as server:
        s = annotate(config(tmp_path, server, max_cost=0.03, **kw), echo=lambda *_: None)
        assert (
            0 < s["ok"] < 8
            and s["not_sent_budget"] == 8 - s["ok"]
            and "re-run with a higher --max-cost" in s["message"]
        )
        assert s["not_sent"] == 8 - s["ok"] and s["failed"] == 0 and "worst case" in s["message"]  # nothing failed
        assert s["cost_usd"] <= 0.03
        answered = len(server.requests)
        s2 = annotate(config(tmp_path, server, max_cost=1.0, **kw), echo=lambda *_: None)
        assert s2["ok"] == 8 and len(server.requests) == 8 and s2["cache_hits"] == answered


def test_unknown_price_with_cap_is_refused_before_sending(tmp_path):
    make(tmp_path, ["x"])
    with StubServer() as server:
        with pytest.raises(Exception, match="--price-in"):
            annotate(config(tmp_path, server, max_cost=1.0), echo=lambda *_: None)
        assert server.requests == []


def test_bad_data_stops_before_any_request(tmp_path):
    make(tmp_path, ["x"])
    (tmp_path / "d.jsonl").write_text(
        '{"id": "1", "text": "ok", "label": "neutral"}\n{"id": "2", "label": "neutral"}\n'
    )
    with StubServer() as server:
        result = CliRunner().invoke(
            main,
            annotate_args(tmp_path, server.base_url),
        )
        assert result.exit_code == 2 and "d.jsonl:2: text: missing field" in result.output  # a UserError exits 2
        assert server.requests == []


def test_api_key_never_reaches_disk_logs_or_errors(tmp_path, monkeypatch, caplog):
    make(tmp_path, ["ECHOAUTH leaks the header", "fine ANSWER=neutral"])
    monkeypatch.setenv("TEACHER_KEY", KEY)
    with StubServer() as server:
        result = CliRunner().invoke(
            main,
            annotate_args(tmp_path, server.base_url, "--api-key-env", "TEACHER_KEY", "--max-retries", "1"),
        )
    # half the rows failed: the run fails, its message names the error (the echoed header scrubbed)
    assert result.exit_code == 2 and "1 of 2 rows failed" in result.output and "Bearer ***" in result.output, (
        result.output
    )
    rows = rows_of(tmp_path)
    assert rows[0]["status"] == "failed" and "401" in rows[0]["error"] and "***" in rows[0]["error"]
    assert KEY not in result.output and KEY not in caplog.text
    for f in (tmp_path / "run").rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f"API key found in {f}"


def _hammer(path, start, n):
    c = Cache(path)
    for i in range(start, start + n):
        c.put(f"k{i}", "m", {"messages": []}, f"answer {i}", {"prompt_tokens": 1, "completion_tokens": 1}, 0.001, 0.0)
    c.close()


def test_two_processes_share_one_cache(tmp_path):
    path = tmp_path / "cache.sqlite"
    Cache(path).close()
    procs = [Process(target=_hammer, args=(path, i * 1000, 200)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 400


def test_sigkill_mid_run_then_resume_pays_nothing_twice(tmp_path):
    """Kill -9 the annotate process mid-run, with votes and scoring on; the re-run re-sends only what was in flight."""
    # per example: the answer, the scoring request, and the votes: one request with n=2, or (IGNOREN) two
    make(
        tmp_path,
        [f"sentence {i} ANSWER=entailment VOTES=neutral,entailment" + (" IGNOREN" if i % 2 else "") for i in range(24)],
    )
    expected = 12 * 3 + 12 * 4
    log = tmp_path / "server.log"
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "openai_stub.py"), "--log", str(log), "--latency", "0.15"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
        cmd = [
            sys.executable,
            "-m",
            "edgedistill.cli",
            *annotate_args(tmp_path, base_url, "--concurrency", "3", "--votes", "3"),
        ]
        env = {**os.environ, "OPENAI_API_KEY": ""}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 8):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (tmp_path / "run" / "annotations.jsonl").exists(), "no half-written output after a kill"
        before = [json.loads(x) for x in log.read_text().splitlines()]
        db = sqlite3.connect(tmp_path / "run" / "cache.sqlite")
        cached = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        db.close()
        assert 0 < cached < expected
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
        after = [json.loads(x) for x in log.read_text().splitlines()][len(before) :]
    finally:
        server.kill()
    answered_before = {e["key"] for e in before if e["outcome"] == "ok"}
    resent = [e for e in after if e["key"] in answered_before]
    # Only requests answered by the server but not yet committed when the kill hit may repeat:
    # at most one per concurrent slot.
    assert len(resent) <= 3, resent
    assert len(answered_before) + len(after) - len(resent) == expected
    rows = rows_of(tmp_path)
    assert sorted(r["id"] for r in rows) == sorted(f"e{i}" for i in range(24)) and all(
        r["status"] == "ok" for r in rows
    )
    assert all(r["votes"] == ["entailment", "neutral", "entailment"] and r["vote_share"] == 0.6667 for r in rows)


def test_store_returns_only_once_its_group_commit_is_on_disk(tmp_path, monkeypatch):
    """Responses that arrive while a commit runs share the next one; none counts as stored before it commits."""
    import asyncio
    import threading

    from edgedistill.teacher.cache import PUT_SQL, _GroupWriter

    gate, sizes, original = threading.Event(), [], _GroupWriter._transaction

    def gated(db, statements):
        sizes.append(sum(sql == PUT_SQL for sql, _ in statements))
        assert gate.wait(10)
        original(db, statements)

    monkeypatch.setattr(_GroupWriter, "_transaction", staticmethod(gated))
    c = Cache(tmp_path / "cache.sqlite")

    def store(i):
        return asyncio.ensure_future(
            c.store(f"k{i}", "m", {"messages": []}, f"answer {i}", {"prompt_tokens": 1}, 0.001, 0.1)
        )

    async def main():
        first = store(0)
        while not sizes:  # k0's commit has begun, and is held at the gate
            await asyncio.sleep(0.01)
        rest = [store(i) for i in range(1, 6)]
        await asyncio.sleep(0.2)
        assert not first.done() and not any(t.done() for t in rest)  # still in flight: nothing is committed
        assert c.get("k0") is None
        gate.set()
        await first
        assert c.get("k0")["content"] == "answer 0"
        await asyncio.gather(*rest)

    asyncio.run(main())
    assert sizes == [1, 5]  # the five that arrived during the first commit went in one transaction
    assert all(c.get(f"k{i}") for i in range(6))
    c.close()
    db = sqlite3.connect(tmp_path / "cache.sqlite")
    assert db.execute("SELECT COUNT(*) FROM calls WHERE outcome = 'ok'").fetchone()[0] == 6  # each with its log line


# Runs `edgedistill annotate` with a cache whose commits are slow (so responses pile up behind each one), and
# stops forever inside the first transaction that holds two or more responses once some are committed, after
# writing their keys to $MARK: the place where a kill hurts most.
MID_BATCH_DRIVER = """
import json, os, sys, time
from edgedistill.teacher import cache
MARK, committed = os.environ["MARK"], []

def transaction(db, statements):
    db.execute("BEGIN IMMEDIATE")
    for sql, args in statements:
        db.execute(sql, args)
    keys = [args[0] for sql, args in statements if sql == cache.PUT_SQL]
    if len(keys) >= 2 and committed and not os.path.exists(MARK):
        with open(MARK + ".tmp", "w") as f:
            json.dump(keys, f)
        os.replace(MARK + ".tmp", MARK)
        time.sleep(120)  # SIGKILL lands here: the batch is written but not committed
    time.sleep(0.15)
    db.execute("COMMIT")
    committed.extend(keys)

cache._GroupWriter._transaction = staticmethod(transaction)
from edgedistill.cli import main
main(sys.argv[1:])
"""


def _stub_key(request: dict) -> str:
    """The stub server's log key (tests/openai_stub.py) of a request stored in the cache."""
    import hashlib

    sampling = {k: request.get(k) for k in ("temperature", "seed", "n", "logprobs", "max_tokens")}
    return hashlib.sha256(json.dumps([request["messages"], sampling], sort_keys=True).encode()).hexdigest()[:16]


def test_sigkill_mid_batch_repeats_no_committed_request(tmp_path):
    """Kill -9 while a group commit of several responses is half done: the batch is lost as a whole (and asked
    for again), every response committed before it is never requested again."""
    n = 16
    make(tmp_path, [f"row {i} ANSWER=entailment" for i in range(n)])
    log, mark = tmp_path / "server.log", tmp_path / "mid-batch.json"
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "openai_stub.py"), "--log", str(log), "--latency", "0.05"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
        args = annotate_args(tmp_path, base_url, "--concurrency", "4", "--scoring", "none")
        env = {**os.environ, "OPENAI_API_KEY": "", "MARK": str(mark)}
        proc = subprocess.Popen(
            [sys.executable, "-c", MID_BATCH_DRIVER, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.time() + 60
        while time.time() < deadline and not mark.exists() and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert mark.exists(), proc.stderr.read()
        in_batch = json.loads(mark.read_text())
        before = [json.loads(x) for x in log.read_text().splitlines()]
        db = sqlite3.connect(tmp_path / "run" / "cache.sqlite")
        committed = {k: _stub_key(json.loads(r)) for k, r in db.execute("SELECT key, request FROM responses")}
        db.close()
        assert len(in_batch) >= 2 and committed and not set(in_batch) & set(committed)  # the batch is all or nothing
        assert len(before) >= len(committed) + len(in_batch)  # the server answered the batch before the kill
        subprocess.run(
            [sys.executable, "-m", "edgedistill.cli", *args], env=env, check=True, capture_output=True, timeout=120
        )
        after = [json.loads(x) for x in log.read_text().splitlines()][len(before) :]
    finally:
        server.kill()
    assert not {e["key"] for e in after} & set(committed.values())  # no committed response is paid for twice
    assert len(after) == n - len(committed) and all(
        e["outcome"] == "ok" for e in after
    )  # the lost batch is asked again
    assert sorted(r["id"] for r in rows_of(tmp_path) if r["status"] == "ok") == sorted(f"e{i}" for i in range(n))


# --- the teacher's signal: scoring from logprobs, calibration, votes, rationalization -------------------


def test_logprob_scoring_gives_label_probs_and_argmax_label(tmp_path):
    make(
        tmp_path,
        [
            "a ANSWER=entailment SCORE=(b:0.6,a:0.3,c:0.1",
            "b ANSWER=neutral",
            "c ANSWER=contradiction SCORE=a:0.7,c:0.3",
        ],
    )
    with StubServer() as server:
        s = annotate(config(tmp_path, server, calibration="none"), echo=lambda *_: None)
    rows = rows_of(tmp_path)
    assert all(abs(sum(r["label_probs"].values()) - 1) < 1e-4 for r in rows)
    # "(b" names option (b) = neutral: the distribution overrules the text answer, which is kept beside it
    assert rows[0]["label"] == "neutral" and rows[0]["text_label"] == "entailment"
    assert rows[0]["label_probs"]["neutral"] == pytest.approx(0.6, abs=1e-4)
    assert rows[1]["label"] == "neutral" and rows[1]["label_probs"]["neutral"] == pytest.approx(
        1.0, abs=1e-4
    )  # "(" and "Answer" name no option
    assert rows[2]["label"] == "entailment" and rows[2]["label_probs"]["contradiction"] == pytest.approx(0.3, abs=1e-4)
    assert rows[2]["label_probs"]["neutral"] < 1e-4  # unlisted, and the list holds all the mass
    assert (
        s["with_label_probs"] == 3
        and s["requests_by_kind"]["score"]["requests"] == 3
        and s["gold_agreement_text"] != s["gold_agreement"]
    )


def test_batch_calibration_divides_out_a_favourite_position(tmp_path):
    # the teacher puts most mass on (c) whatever the input; calibration over the batch lets the runner-up speak
    texts = [
        "x1 ANSWER=contradiction SCORE=c:0.6,a:0.3,b:0.1",
        "x2 ANSWER=contradiction SCORE=c:0.6,b:0.3,a:0.1",
        "x3 ANSWER=contradiction SCORE=c:0.7,a:0.2,b:0.1",
    ]
    make(tmp_path, texts)
    with StubServer() as server:
        annotate(config(tmp_path, server, calibration="none"), echo=lambda *_: None)
        raw = [r["label"] for r in rows_of(tmp_path)]
        annotate(config(tmp_path, server, calibration="batch"), echo=lambda *_: None)
    assert raw == ["contradiction"] * 3
    assert [r["label"] for r in rows_of(tmp_path)] == ["entailment", "neutral", "contradiction"]


def test_content_free_calibration_sends_three_blank_inputs(tmp_path):
    make(tmp_path, ["x1 ANSWER=neutral SCORE=c:0.5,a:0.4,b:0.1"])
    with StubServer() as server:
        s = annotate(config(tmp_path, server, calibration="content-free"), echo=lambda *_: None)
    assert s["requests_by_kind"]["score"]["requests"] == 1 + 3 and s["requests_sent"] == len(server.requests)
    assert rows_of(tmp_path)[0]["label_probs"]


def test_word_scoring_with_labels_whose_first_tokens_coincide(tmp_path):
    task = (
        'name: spam\ntype: classification\ninput: "{text}"\nlabels: [not_spam, not_sure, spam]\ngold: label\nid: id\n'
    )
    (tmp_path / "task.yaml").write_text(task)
    rows = [{"id": "e0", "text": "win a prize ANSWER=spam SCORE=not:0.5,spam:0.5", "label": "spam"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    notes = []
    with StubServer() as server:
        annotate(config(tmp_path, server, scoring="word", calibration="none"), echo=notes.append)
    probs = rows_of(tmp_path)[0]["label_probs"]
    assert probs == pytest.approx({"not_spam": 0.25, "not_sure": 0.25, "spam": 0.5}, abs=1e-4)
    assert any("begin with the same token" in n for n in notes)


def test_server_without_logprobs_falls_back_to_text_and_says_so_once(tmp_path):
    make(tmp_path, [f"n{i} ANSWER=contradiction NOLOGPROBS" for i in range(3)] + ["bad ANSWER=entailment BADLOGPROBS"])
    notes = []
    with StubServer() as server:
        s = annotate(config(tmp_path, server), echo=notes.append)
    rows = rows_of(tmp_path)
    assert [r["label"] for r in rows] == ["contradiction"] * 3 + ["entailment"] and all(
        r["status"] == "ok" for r in rows
    )
    assert not any("label_probs" in r for r in rows) and s["with_label_probs"] == 0
    assert sum("returns no logprobs" in n for n in notes) == 1 and sum("malformed" in n for n in notes) == 1
    assert s["notes"] == {"no_logprobs": 3, "logprobs_malformed": 1}


def test_votes_majority_share_and_the_n_fallback(tmp_path):
    make(
        tmp_path,
        [
            "v0 ANSWER=entailment VOTES=neutral,neutral",
            "v1 ANSWER=entailment VOTES=neutral,neutral IGNOREN",
            "v2 ANSWER=entailment VOTES=entailment,contradiction,neutral,neutral",
        ],
    )
    notes = []
    with StubServer() as server:
        s = annotate(config(tmp_path, server, votes=3, scoring="none", calibration="none"), echo=notes.append)
        sent = len(server.requests)
        annotate(config(tmp_path, server, votes=3, scoring="none", calibration="none"), echo=lambda *_: None)
        assert len(server.requests) == sent  # votes are cached like everything else
    rows = rows_of(tmp_path)
    assert [r["votes"] for r in rows] == [["entailment", "neutral", "neutral"]] * 2 + [
        ["entailment", "entailment", "contradiction"]
    ]
    assert [r["label"] for r in rows] == ["neutral", "neutral", "entailment"] and [r["vote_share"] for r in rows] == [
        0.6667,
        0.6667,
        0.6667,
    ]
    # shares with one pseudo-vote per option: (1 + 1) / 6, (2 + 1) / 6, 1 / 6
    assert rows[0]["label_probs"] == pytest.approx(
        {"entailment": 1 / 3, "neutral": 1 / 2, "contradiction": 1 / 6}, abs=1e-4
    )
    # the greedy answer's explanation argued for entailment: the row gets an explanation of the majority's label
    assert rows[0]["rationale_source"] == "rationalized" and "neutral" in rows[0]["rationale"]
    assert rows[2]["rationale_source"] == "answer" and "text_label" not in rows[2]  # the majority is the greedy answer
    # zero-shot puts the answer first: a vote asks the same prompt and stops after the answer line
    votes = [json.loads(r["request"]) for r in _requests(tmp_path) if '"seed"' in r["request"]]
    assert len(votes) == 4 and all(
        v["stop"] == ["Explanation:"] and "Explanation" in v["messages"][-1]["content"] for v in votes
    )
    assert sent == 3 * 2 + 1 + 2 and s["requests_by_kind"]["vote"]["requests"] == 4 and s["rationalized"] == 2
    assert sum("one request per vote" in n for n in notes) == 1


def test_terse_answers_are_rationalized_and_the_yield_reported(tmp_path):
    make(tmp_path, [f"t{i} ANSWER=neutral TERSE" for i in range(3)] + ["full ANSWER=neutral"])
    with StubServer() as server:
        s = annotate(config(tmp_path, server, scoring="none"), echo=lambda *_: None)
        sent = len(server.requests)
        s2 = annotate(config(tmp_path, server, scoring="none", rationalize=False), echo=lambda *_: None)
    rows = rows_of(tmp_path)
    assert (
        s["rationale_yield_first"] == 0.25 and s["rationale_yield"] == 1.0 and s["rationalized"] == 3 and sent == 4 + 3
    )
    assert s2["rationale_yield"] == 0.25 and all(r["rationale"] is None for r in rows[:3])


def test_dry_run_prices_votes_scoring_and_rationalization(tmp_path):
    make(tmp_path, ["a ticket"] * 4)
    out = []
    with StubServer() as server:
        s = annotate(config(tmp_path, server, dry_run=True, votes=3, price_in=1.0, price_out=2.0), echo=out.append)
        assert server.requests == []
    names = {r["name"]: r for r in s["extras"]}
    assert names["+ 2 sampled votes (--votes 3)"]["requests"] == 8 and names["+ 2 sampled votes (--votes 3)"]["chosen"]
    assert names["+ scoring, 1 more request (letter)"]["completion_tokens"] == 4
    assert s["total"]["requests"] == 4 + 8 + 4 + 4
    assert "total as configured" in "\n".join(out)


def test_key_distribution_reads_the_first_naming_position():
    from edgedistill.teacher.teacher_signal import calibrate, key_distribution, prior, vote_shares

    lp = [
        {"token": " ", "logprob": -0.1, "top": {" ": -0.1}},
        {"token": "(B", "logprob": -0.5, "top": {"(B": math.log(0.5), "b": math.log(0.2), "A": math.log(0.3)}},
    ]
    dist, shared = key_distribution(lp, ["a", "b", "c"])
    assert dist["b"] == pytest.approx(0.7, abs=1e-4) and dist["c"] < 1e-4 and not shared  # the list holds all the mass
    assert (
        key_distribution([], ["a"]) == (None, set())
        and key_distribution([{"token": "zz", "logprob": 0, "top": {}}], ["a"])[0] is None
    )
    bias = prior([{"a": 0.8, "b": 0.2}, {"a": 0.6, "b": 0.4}])
    assert calibrate({"a": 0.6, "b": 0.4}, bias) == pytest.approx(
        {"a": 0.6 / 0.7 / (0.6 / 0.7 + 0.4 / 0.3), "b": 0.4 / 0.3 / (0.6 / 0.7 + 0.4 / 0.3)}
    )
    assert vote_shares(["12", "12.0", None, "7"], same=lambda a, b: float(a) == float(b)) == {"12": 2 / 3, "7": 1 / 3}


def test_score_orders_cancel_a_favourite_position(tmp_path):
    make(tmp_path, ["p ANSWER=entailment BIASLAST", "q ANSWER=neutral BIASLAST"])
    with StubServer() as server:
        annotate(config(tmp_path, server, calibration="none"), echo=lambda *_: None)
        one = [r["label"] for r in rows_of(tmp_path)]
        s = annotate(config(tmp_path, server, calibration="none", score_orders=3), echo=lambda *_: None)
    assert one == ["contradiction", "contradiction"]  # the last option listed
    rows = rows_of(tmp_path)
    assert [r["label"] for r in rows] == ["entailment", "neutral"] and s["requests_by_kind"]["score"][
        "requests"
    ] == 2 * 3
    assert rows[0]["label_probs"]["entailment"] == pytest.approx((0.3 + 0.3 + 1.0) / 3, abs=1e-3)


LEGACY_SCHEMA = """CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, request TEXT NOT NULL,
    content TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER, cached_tokens INTEGER, cost_usd REAL,
    latency_s REAL, created_at REAL NOT NULL);
CREATE TABLE calls (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, model TEXT NOT NULL, outcome TEXT NOT NULL,
    detail TEXT, latency_s REAL, created_at REAL NOT NULL);"""


def test_a_cache_from_before_versioning_is_migrated_and_merged(tmp_path):
    old = tmp_path / "old.sqlite"
    db = sqlite3.connect(old)
    db.executescript(LEGACY_SCHEMA)
    db.execute("INSERT INTO responses VALUES ('k1', 'm', '{}', 'Answer: neutral', 10, 2, 0, 0.0, 1.5, 0)")
    db.commit()
    db.close()
    c = Cache(old)  # migrated in place: the old row reads back, new rows carry extra
    assert c.get("k1")["content"] == "Answer: neutral" and c.get("k1")["extra"] == {}
    c.put(
        "k2",
        "m",
        {},
        "b",
        {"prompt_tokens": 1},
        0.0,
        0.1,
        extra={"logprobs": [{"token": "b", "logprob": 0.0, "top": {}}]},
    )
    assert c.get("k2")["extra"]["logprobs"][0]["token"] == "b"
    c.close()
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    legacy = tmp_path / "legacy.sqlite"  # a recorded cache merged without being written to
    db = sqlite3.connect(legacy)
    db.executescript(LEGACY_SCHEMA)
    db.execute("INSERT INTO responses VALUES ('k3', 'm', '{}', 'c', 1, 1, 0, 0.0, 0.2, 0)")
    db.commit()
    db.close()
    before = legacy.read_bytes()
    c = Cache(old)
    assert c.merge_from(legacy) == 1 and c.merge_from(legacy) == 0 and c.get("k3")["content"] == "c"
    c.close()
    assert legacy.read_bytes() == before


def test_the_same_model_name_on_another_server_is_not_replayed(tmp_path):
    make(tmp_path, ["x ANSWER=entailment"])
    with StubServer() as a, StubServer() as b:
        annotate(config(tmp_path, a, scoring="none"), echo=lambda *_: None)
        s = annotate(config(tmp_path, b, scoring="none"), echo=lambda *_: None)
        assert s["requests_sent"] == 1 and len(b.requests) == 1


def test_votes_are_calibrated_for_a_teacher_that_always_says_one_thing(tmp_path):
    make(
        tmp_path,
        [f"u{i} ANSWER=entailment VOTES=entailment,entailment" for i in range(3)]
        + ["w ANSWER=entailment VOTES=neutral,neutral"],
    )
    with StubServer() as server:
        annotate(config(tmp_path, server, votes=3, scoring="none"), echo=lambda *_: None)
    rows = rows_of(tmp_path)
    assert [r["label"] for r in rows] == ["entailment"] * 3 + ["neutral"]
    assert max(rows[0]["label_probs"].values()) < 0.5  # unanimous like the whole batch: weak evidence


def test_a_scoring_request_that_fails_for_good_costs_the_row_its_scores_not_its_label(tmp_path):
    make(tmp_path, ["s ANSWER=contradiction SCOREDEAD", "t ANSWER=neutral"])
    notes = []
    with StubServer() as server:
        s = annotate(config(tmp_path, server, calibration="none"), echo=notes.append)
    rows = rows_of(tmp_path)
    assert (
        [r["status"] for r in rows] == ["ok", "ok"]
        and rows[0]["label"] == "contradiction"
        and "label_probs" not in rows[0]
    )
    assert (
        "label_probs" in rows[1]
        and s["notes"] == {"scoring_failed": 1}
        and sum("scoring request failed" in n for n in notes) == 1
    )


def test_truncated_inputs_are_sent_truncated_and_counted_in_annotate_json(tmp_path):
    from edgedistill.data import MAX_FIELD_CHARS

    make(tmp_path, ["word " * 220_000 + "ANSWER=entailment", "short ANSWER=neutral"])
    notes = []
    with StubServer() as server:
        s = annotate(config(tmp_path, server, scoring="none"), echo=notes.append)
    saved = json.loads((tmp_path / "run" / "annotate.json").read_text())
    assert saved["truncated_inputs"] == s["truncated_inputs"] == 1 and saved["truncated_ids"] == ["e0"]
    assert saved["truncated_to_chars"] == MAX_FIELD_CHARS and s["ok"] == 2
    assert any(n.startswith("note: 1 input had a field longer than") for n in notes)
    sent = [json.loads(r["request"])["messages"][-1]["content"] for r in _requests(tmp_path)]
    assert max(len(c) for c in sent) < MAX_FIELD_CHARS + 1000  # the prompt around the truncated text
    assert rows_of(tmp_path)[0]["input"] == "word " * (MAX_FIELD_CHARS // 5)


# ---------------------------------------------------------------- a failed run is never done; one writer per run dir


def annotate_args(tmp_path, base_url, *extra, out="run") -> list[str]:
    """`edgedistill annotate` on tmp_path's task.yaml and d.jsonl against a server, writing tmp_path/out."""
    return [
        "annotate",
        "--task",
        str(tmp_path / "task.yaml"),
        "--data",
        str(tmp_path / "d.jsonl"),
        "--out",
        str(tmp_path / out),
        "--base-url",
        base_url,
        "--model",
        "stub",
        *extra,
    ]


def cli(tmp_path, server, *extra, out="run"):
    return CliRunner().invoke(
        main,
        annotate_args(tmp_path, server.base_url, "--scoring", "none", "--max-retries", "0", *extra, out=out),
        env={"OPENAI_API_KEY": ""},
    )


def test_a_run_with_no_row_ok_exits_non_zero_and_the_rerun_sends_what_failed(tmp_path):
    make(tmp_path, [f"item {i} ANSWER=entailment" for i in range(3)])
    with StubServer() as server:
        server.refuse_with = 401  # a bad key: every request fails at once
        r = cli(tmp_path, server)
        assert r.exit_code == 2, r.output
        assert "no row is ok: 3 failed of 3" in r.output and "Commonest error (3 rows): HTTP 401" in r.output
        assert "check the API key" in r.output and "re-running the same command sends only" in r.output
        saved = json.loads((tmp_path / "run" / "annotate.json").read_text())
        assert saved["ok"] == 0 and "no row is ok" in saved["failure"]
        server.refuse_with = None
        sent = len(server.requests)
        r = cli(tmp_path, server)
        assert r.exit_code == 0, r.output
        assert len(server.requests) - sent == 3 and [x["status"] for x in rows_of(tmp_path)] == ["ok"] * 3


def test_a_server_that_is_down_names_the_base_url(tmp_path):
    make(tmp_path, ["x ANSWER=entailment"])
    with StubServer() as server:
        url = server.base_url
    r = CliRunner().invoke(
        main,
        annotate_args(tmp_path, url, "--max-retries", "0"),
        env={"OPENAI_API_KEY": ""},
    )
    assert r.exit_code == 2 and "APIConnectionError" in r.output and f"Is the server at --base-url {url}" in r.output


def test_more_failed_rows_than_max_failed_fail_the_run_and_answered_rows_stay_paid(tmp_path):
    make(tmp_path, ["dead FAULTDEAD"] + [f"item {i} ANSWER=entailment" for i in range(9)])  # 1 row of 10 fails for good
    with StubServer() as server:
        r = cli(tmp_path, server)  # 10 % is not above the default --max-failed 0.1
        assert r.exit_code == 0 and json.loads((tmp_path / "run" / "annotate.json").read_text())["failed"] == 1, (
            r.output
        )
        sent = len(server.requests)
        r = cli(tmp_path, server, "--max-failed", "0.05")
        assert r.exit_code == 2 and "1 of 10 rows failed (10 %, above --max-failed 0.05" in r.output, r.output
        assert "HTTP 503" in r.output and "or raise --max-failed" in r.output
        assert (
            len(server.requests) - sent == 1
        )  # only the failed row was asked again: the 9 answers came from the cache
    assert len(rows_of(tmp_path)) == 10


def test_max_failed_is_range_checked_in_python_too(tmp_path):
    make(tmp_path, ["x"])
    with StubServer() as server:
        with pytest.raises(UserError, match=r"^--max-failed: 1.5 is out of range; give a value in \[0, 1\]"):
            annotate(config(tmp_path, server, max_failed=1.5), echo=lambda *_: None)
        with pytest.raises(UserError, match=r"^--concurrency: 0 is out of range"):
            annotate(config(tmp_path, server, concurrency=0), echo=lambda *_: None)
        assert server.requests == []


def _annotate_process(tmp_path, server, out="run"):
    args = annotate_args(tmp_path, server.base_url, "--scoring", "none", "--concurrency", "2", out=out)
    cmd = [sys.executable, "-m", "edgedistill.cli", *args]
    return subprocess.Popen(
        cmd, env={**os.environ, "OPENAI_API_KEY": ""}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _wait_for_requests(server, n, proc, timeout=60):
    deadline = time.time() + timeout
    while len(server.requests) < n and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert len(server.requests) >= n and proc.poll() is None, "the first process never got going"


def test_a_second_process_on_one_run_dir_is_refused_at_once_and_nothing_is_paid_twice(tmp_path):
    make(tmp_path, [f"item {i} ANSWER=entailment" for i in range(12)])
    with StubServer(latency=0.25) as server:
        first = _annotate_process(tmp_path, server)
        try:
            _wait_for_requests(server, 2, first)
            start = time.perf_counter()
            second = cli(tmp_path, server)
            assert time.perf_counter() - start < 10
            assert second.exit_code == 2 and f"in use by pid {first.pid} (edgedistill annotate" in second.output, (
                second.output
            )
            assert first.wait(120) == 0, first.stdout.read().decode()
        finally:
            first.kill()
        assert len(server.requests) == 12 and len({r["key"] for r in server.requests}) == 12  # each prompt paid once
    assert [r["status"] for r in rows_of(tmp_path)] == ["ok"] * 12


def test_kill_9_of_the_lock_holder_lets_the_next_run_start(tmp_path):
    make(tmp_path, [f"item {i} ANSWER=entailment" for i in range(12)])
    with StubServer(latency=0.25) as server:
        first = _annotate_process(tmp_path, server)
        try:
            _wait_for_requests(server, 2, first)
            first.send_signal(signal.SIGKILL)
            first.wait()
        finally:
            first.kill()
        answered = {r["key"] for r in server.requests}
        r = cli(tmp_path, server)
        assert r.exit_code == 0, r.output
        again = [x for x in server.requests[len(answered) :] if x["key"] in answered]
        assert len(again) <= 2  # at most the requests in flight (--concurrency 2) when the kill hit
    assert [x["status"] for x in rows_of(tmp_path)] == ["ok"] * 12


def test_the_cap_counts_what_earlier_runs_paid_even_without_a_price(tmp_path):
    """A first run with no price records no cost; a later run with a cap counts those responses at its price."""
    make(tmp_path, [f"item {i} ANSWER=entailment" for i in range(8)])
    with StubServer() as server:
        annotate(config(tmp_path, server, scoring="none", max_tokens=64), echo=lambda *_: None)  # "stub": no list price
        make(tmp_path, [f"item {i} ANSWER=entailment" for i in range(9)])
        # 100 USD per 1M tokens: the 8 answers cost ~0.05 USD, one more request's worst case ~0.015
        kw = {"price_in": 100.0, "price_out": 100.0, "max_tokens": 64, "concurrency": 1, "scoring": "none"}
        s = annotate(config(tmp_path, server, max_cost=0.04, **kw), echo=lambda *_: None)
        assert s["ok"] == 8 and s["not_sent_budget"] == 1 and len(server.requests) == 8, s  # the cap was spent already


def test_a_run_dir_cache_that_is_not_sqlite_is_refused_by_name(tmp_path):
    make(tmp_path, ["x ANSWER=entailment"])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "cache.sqlite").write_text("not a database")
    with StubServer() as server:
        r = cli(tmp_path, server)
        assert r.exit_code == 2 and "cache.sqlite: not a SQLite database" in r.output and "Traceback" not in r.output
        assert server.requests == []


def test_credentials_in_the_base_url_are_never_written_or_printed(tmp_path):
    make(tmp_path, ["x ANSWER=entailment", "y FAULTDEAD"])
    with StubServer() as server:
        url = server.base_url.replace("http://", "http://alice:hunter2pw@")
        r = CliRunner().invoke(
            main,
            annotate_args(tmp_path, url, "--max-retries", "0", "--scoring", "none", "--max-failed", "1"),
            env={"OPENAI_API_KEY": ""},
        )
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "run" / "annotate.json").read_text())
    assert saved["base_url"] == saved["config"]["base_url"] == server.base_url.replace("http://", "http://***@")
    assert "hunter2pw" not in r.output
    for f in (tmp_path / "run").rglob("*"):
        if f.is_file():
            assert b"hunter2pw" not in f.read_bytes(), f"a base URL's password found in {f}"


@pytest.mark.parametrize("key", ["k", "k9", "k9z", "k9z-longer-key"])
def test_the_key_is_scrubbed_however_short(tmp_path, monkeypatch, key):
    from edgedistill.teacher.client import ClientConfig, TeacherClient

    monkeypatch.setenv("SHORT_KEY", key)
    client = TeacherClient(
        ClientConfig(model="m", api_key_env="SHORT_KEY", base_url="http://u:pw9@h/v1"), Cache(tmp_path / "c")
    )
    text = client.scrub(f"echo [{key}] authorization: Bearer {key}x, url secret [pw9] [u:pw9]")
    assert key not in text and "pw9" not in text and "Bearer ***" in text
