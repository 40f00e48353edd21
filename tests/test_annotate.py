"""The teacher stage against a real HTTP server on 127.0.0.1 that injects every fault we know of."""

import json
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

from edgedistill.annotate import AnnotateConfig, annotate
from edgedistill.cache import Cache
from edgedistill.cli import main
from openai_stub import StubServer

TASK = ('name: nli\ntype: classification\ninput: "{text}"\nlabels: [entailment, neutral, contradiction]\n'
        'gold: label\nid: id\n')
KEY = "sk-test-DO-NOT-LEAK-4f9a8b7c6d5e"


def make(tmp_path, texts, golds=None):
    (tmp_path / "task.yaml").write_text(TASK)
    rows = [{"id": f"e{i}", "text": t, "label": (golds or ["neutral"] * len(texts))[i]} for i, t in enumerate(texts)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "task.yaml", tmp_path / "d.jsonl"


def config(tmp_path, server, **kw):
    task, data = tmp_path / "task.yaml", tmp_path / "d.jsonl"
    kw = {"timeout": 0.8, "max_retries": 2, "backoff_base": 0.01, "concurrency": 4, **kw}
    return AnnotateConfig(task=str(task), data=str(data), out=str(tmp_path / "run"), model="stub", base_url=server.base_url, **kw)


def rows_of(tmp_path):
    return [json.loads(line) for line in (tmp_path / "run" / "annotations.jsonl").read_text().splitlines()]


def test_every_fault_ends_ok_parse_failed_or_failed(tmp_path):
    texts = ["plain ANSWER=entailment", "FAULT429 ANSWER=contradiction", "FAULT500", "FAULTSLOW", "FAULTDROP",
             "FAULTJSON", "FAULTEMPTY", "FAULTDEAD", "GARBAGE", "ANSWER=maybe"]
    make(tmp_path, texts)
    with StubServer() as server:
        summary = annotate(config(tmp_path, server), echo=lambda *_: None)
        deadline = time.time() + 5  # the timed-out slow attempt is logged once the server wakes up
        while len(server.requests) < summary["requests_sent"] and time.time() < deadline:
            time.sleep(0.05)
    rows = {r["id"]: r for r in rows_of(tmp_path)}
    status = {texts[int(i[1:])].split()[0]: r["status"] for i, r in rows.items()}
    assert status == {"plain": "ok", "FAULT429": "ok", "FAULT500": "ok", "FAULTSLOW": "ok", "FAULTDROP": "ok",
                      "FAULTJSON": "ok", "FAULTEMPTY": "failed", "FAULTDEAD": "failed", "GARBAGE": "parse_failed",
                      "ANSWER=maybe": "ok"}
    assert rows["e0"]["label"] == "entailment" and rows["e1"]["label"] == "contradiction"
    assert rows["e9"]["label"] == "neutral"  # "maybe" is a synonym of neutral
    for r in rows.values():
        if r["status"] != "ok":
            assert r["error"], r
    assert "empty answer" in rows["e6"]["error"] and "503" in rows["e7"]["error"]
    assert rows["e8"]["raw"] == "I would rather not say."
    for k in ("ok", "parse_failed", "failed", "filtered"):
        assert summary[k] == sum(r["status"] == k for r in rows.values())
    assert json.loads((tmp_path / "run" / "annotate.json").read_text())["ok"] == 7
    assert summary["requests_sent"] == len(server.requests) and summary["retries"] >= 5


def test_rerun_is_free_and_identical(tmp_path):
    make(tmp_path, [f"example {i} ANSWER=entailment" for i in range(6)])
    with StubServer() as server:
        annotate(config(tmp_path, server), echo=lambda *_: None)
        first = rows_of(tmp_path)
        sent = len(server.requests)
        summary = annotate(config(tmp_path, server), echo=lambda *_: None)
        assert len(server.requests) == sent and summary["cache_hits"] == 6 and summary["requests_sent"] == 0
    assert rows_of(tmp_path) == first


def test_zero_shot_cot_two_stages_and_rationale_fraction(tmp_path):
    make(tmp_path, [f"case {i} ANSWER=contradiction" for i in range(10)])
    with StubServer() as server:
        s = annotate(config(tmp_path, server, prompt="zero-shot-cot", rationale_fraction=0.5, seed=3), echo=lambda *_: None)
    rows = rows_of(tmp_path)
    asked = {r["id"] for r in rows if r["rationale_requested"]}
    assert len(asked) == 5 and sorted(asked) == s["rationale_ids"]
    assert all(r["label"] == "contradiction" for r in rows)
    assert all((r["rationale"] is not None) == (r["id"] in asked) for r in rows)
    assert len(server.requests) == 5 * 2 + 5  # two stages with a rationale, one without
    with StubServer() as server:  # same seed, same subset
        s2 = annotate(config(tmp_path, server, prompt="zero-shot-cot", rationale_fraction=0.5, seed=3), echo=lambda *_: None)
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
    kw = dict(price_in=100.0, price_out=100.0, max_tokens=64, concurrency=1)
    with StubServer() as server:
        s = annotate(config(tmp_path, server, max_cost=0.03, **kw), echo=lambda *_: None)
        assert 0 < s["ok"] < 8 and s["not_sent_budget"] == 8 - s["ok"] and "re-run with a higher --max-cost" in s["message"]
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
    (tmp_path / "d.jsonl").write_text('{"id": "1", "text": "ok", "label": "neutral"}\n{"id": "2", "label": "neutral"}\n')
    with StubServer() as server:
        result = CliRunner().invoke(main, ["annotate", "--task", str(tmp_path / "task.yaml"), "--data", str(tmp_path / "d.jsonl"),
                                           "--out", str(tmp_path / "run"), "--base-url", server.base_url, "--model", "stub"])
        assert result.exit_code != 0 and "d.jsonl:2: text: missing field" in result.output
        assert server.requests == []


def test_api_key_never_reaches_disk_logs_or_errors(tmp_path, monkeypatch, caplog):
    make(tmp_path, ["ECHOAUTH leaks the header", "fine ANSWER=neutral"])
    monkeypatch.setenv("TEACHER_KEY", KEY)
    with StubServer() as server:
        result = CliRunner().invoke(main, ["annotate", "--task", str(tmp_path / "task.yaml"), "--data", str(tmp_path / "d.jsonl"),
                                           "--out", str(tmp_path / "run"), "--base-url", server.base_url, "--model", "stub",
                                           "--api-key-env", "TEACHER_KEY", "--max-retries", "1"])
    assert result.exit_code == 0, result.output
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
    """Kill -9 the annotate process mid-run; the re-run re-sends only what was in flight."""
    make(tmp_path, [f"sentence {i} ANSWER=entailment" for i in range(24)])
    log = tmp_path / "server.log"
    server = subprocess.Popen([sys.executable, str(Path(__file__).parent / "openai_stub.py"), "--log", str(log), "--latency", "0.15"],
                              stdout=subprocess.PIPE, text=True)
    try:
        base_url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
        cmd = [sys.executable, "-m", "edgedistill.cli", "annotate", "--task", str(tmp_path / "task.yaml"), "--data",
               str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "run"), "--base-url", base_url, "--model", "stub",
               "--concurrency", "3"]
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
        assert 0 < cached < 24
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
        after = [json.loads(x) for x in log.read_text().splitlines()][len(before):]
    finally:
        server.kill()
    answered_before = {e["key"] for e in before if e["outcome"] == "ok"}
    resent = [e for e in after if e["key"] in answered_before]
    # Only requests answered by the server but not yet committed when the kill hit may repeat:
    # at most one per concurrent slot.
    assert len(resent) <= 3, resent
    assert len(answered_before) + len(after) - len(resent) == 24
    rows = rows_of(tmp_path)
    assert sorted(r["id"] for r in rows) == sorted(f"e{i}" for i in range(24)) and all(r["status"] == "ok" for r in rows)
