"""Benchmark suite: runs end to end on a tiny exported bundle, writes schema-valid results, merges.

No timing is asserted: only that every figure is there, well-formed and consistent.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

import tiny
from edgedistill.bench import BenchSettings, Runner, shape_feeds, summarize, time_interleaved
from edgedistill.bench_report import SCHEMA_PATH, flat_rows, headline_shape, merge, validate
from edgedistill.cli import main
from edgedistill.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["entailment", "neutral", "contradiction"]
SCHEMA = json.loads(SCHEMA_PATH.read_text())
TINY = ["--batch-sizes", "1,2", "--seq-lens", "8,16", "--threads", "1", "--min-time", "0.01", "--min-iters", "2", "--warmup", "0"]


def _rows(n, seed=0):
    rng = random.Random(seed)
    words = [w for w in tiny.WORDS if w.isalpha()]
    return [{"premise": " ".join(rng.choice(words) for _ in range(rng.randint(4, 12))),
             "hypothesis": " ".join(rng.choice(words) for _ in range(rng.randint(3, 8))),
             "label": rng.randrange(3)} for _ in range(n)]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny stripped classifier, its bundle (via `edgedistill export`) and a gold-labelled data file."""
    from edgedistill.task import task_from_dict

    d = tmp_path_factory.mktemp("bench")
    stripped = tiny.tiny_classifier_dir(d / "stripped", labels=LABELS)
    task = task_from_dict({"name": "nli", "type": "classification", "input": "premise: {premise} hypothesis: {hypothesis}",
                           "labels": LABELS, "gold": "label"})
    task.save(stripped / "task.yaml")
    (stripped / "edgedistill.json").write_text(json.dumps({"kind": "stripped", "family": "sequence-classification",
                                                           "max_length": 32, "labels": LABELS, "source": None}))
    data = _jsonl(d / "test.jsonl", _rows(24, seed=1))
    parity = _jsonl(d / "parity.jsonl", _rows(200, seed=2))
    res = CliRunner().invoke(main, ["export", str(stripped), "--out", str(d / "bundle"), "--parity-data", str(parity)])
    assert res.exit_code == 0, res.output
    return {"dir": d, "stripped": stripped, "bundle": d / "bundle", "data": data}


def _bench(args):
    res = CliRunner().invoke(main, ["bench", *map(str, args)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def test_bench_all_variants_writes_valid_results(tiny_run, tmp_path):
    out = tmp_path / "b"
    res = _bench([tiny_run["bundle"], "--torch", tiny_run["stripped"], "--data", tiny_run["data"], *TINY, "--out", out])
    doc = json.loads((out / "results.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    status = {v["name"]: v["status"] for v in doc["variants"]}
    assert status == dict.fromkeys(["torch-fp32", "torch-int8", "ort-fp32", "optimum-int8", "bundle"], "ok"), doc["variants"]
    rows = doc["results"]
    assert len(rows) == 5 * 2 * 2 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["iterations"] >= 2 and 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["size_bytes"] > 0 and 0 <= r["accuracy"] <= 1
        assert r["peak_rss_mb"] > 0 and r["cold_start_s"] > 0
    base = [r for r in rows if r["variant"] == "torch-fp32"]
    assert all(r["speedup_vs_torch_fp32"] == 1.0 and r["accuracy_delta_pt_vs_torch_fp32"] == 0 for r in base)
    bundle_row = next(r for r in rows if r["variant"] == "bundle")
    fp32 = next(v for v in doc["variants"] if v["name"] == "torch-fp32")
    assert bundle_row["size_ratio_vs_torch_fp32"] == pytest.approx(bundle_row["size_bytes"] / fp32["size_bytes"], rel=1e-3)
    # Every variant predicts the same tiny model, so accuracies agree (INT8 may flip a near-tie).
    accs = {v["name"]: v["accuracy"] for v in doc["variants"]}
    assert max(accs.values()) - min(accs.values()) <= 2 / 24
    m = doc["machine"]
    assert m["command"].startswith(f"edgedistill bench {tiny_run['bundle']} --torch ") and m["command"].endswith(f"--out {out}")
    assert m["cpu_model"] and isinstance(m["isa"]["avx2"], bool) and m["versions"]["onnxruntime"]
    assert len(m["loadavg_1_5_15"]) == 3 and doc["load"]["other_processes_cpu_share"] >= 0 and doc["load"]["seconds"] > 0
    report = (out / "report.md").read_text()
    assert "## Headline: batch 1, seq 16, 1 threads" in report and "**bundle (edgedistill)**" in report
    assert "## All shapes" in report and m["command"] in report and "other processes used" in report
    for png in ("latency.png", "tradeoff.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "bundle (edgedistill)" in res.output  # the summary table at the end


def test_bench_without_torch_reports_skipped_variants(tiny_run, tmp_path):
    out = tmp_path / "b"
    _bench([tiny_run["bundle"], *TINY, "--no-fresh-process", "--out", out])
    doc = json.loads((out / "results.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    skipped = {v["name"]: v["reason"] for v in doc["variants"] if v["status"] == "skipped"}
    assert set(skipped) == {"torch-fp32", "torch-int8", "ort-fp32", "optimum-int8"}
    assert all("--torch" in reason for reason in skipped.values())
    assert {r["variant"] for r in doc["results"]} == {"bundle"}
    assert all(r["speedup_vs_torch_fp32"] is None and r["accuracy"] is None for r in doc["results"])
    assert doc["data"]["inputs"] == "synthetic"
    assert "skipped: needs --torch" in (out / "report.md").read_text()


def test_run_bundle_writes_the_same_schema_and_merges(tiny_run, tmp_path):
    dev = tmp_path / "device.json"
    proc = subprocess.run([sys.executable, str(ROOT / "export" / "run_bundle.py"), str(tiny_run["bundle"]), "--text", "a dog is big",
                           "--data", str(tiny_run["data"]), "--batch-sizes", "1", "--seq-lens", "8,16", "--threads", "1",
                           "--min-time", "0.01", "--min-iters", "2", "--warmup", "0", "--out", str(dev)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    pred = json.loads(proc.stdout.splitlines()[0])
    assert pred["label"] in LABELS and set(pred["probs"]) == set(LABELS)
    doc = json.loads(dev.read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["tool"] == "export/run_bundle.py" and doc["variants"][0]["accuracy_n"] == 24
    assert doc["variants"][0]["fresh_process"][0]["peak_rss_mb"] > 0

    other = tmp_path / "other"
    _bench([tiny_run["bundle"], "--data", tiny_run["data"], *TINY, "--threads", "2", "--no-fresh-process", "--out", other])
    out = tmp_path / "merged"
    _bench(["--merge", other / "results.json", dev, "--out", out])
    merged = json.loads((out / "results.json").read_text())
    jsonschema.validate(merged, SCHEMA)
    assert merged["kind"] == "merged" and len(merged["runs"]) == 2
    rows = flat_rows(merged)
    assert {r["run_index"] for r in rows} == {0, 1} and {r["threads"] for r in rows} == {1, 2}
    assert headline_shape(rows) == {"batch_size": 1, "seq_len": 16, "threads": 2}
    report = (out / "report.md").read_text()
    assert "| run | threads | variant |" in report and "#1 " in report and "#2 " in report and "run_bundle.py" in report
    # Merging a merged document flattens it.
    assert len(merge([merged, doc])["runs"]) == 3


def test_shape_feeds_are_exactly_batch_by_seq_real_tokens():
    tok = tiny.tiny_tokenizer("bert").backend_tokenizer
    texts = ["the dog is happy", "a cat sat on the mat", "people eating food"]
    f = shape_feeds(tok, "sequence-classification", texts, None, batch=3, seq=20)
    assert f["input_ids"].shape == (3, 20) and f["input_ids"].dtype == np.int64
    assert f["attention_mask"].all()  # packed text: no padding anywhere
    assert (f["input_ids"][:, 0] == tok.token_to_id("[CLS]")).all() and (f["input_ids"][:, -1] == tok.token_to_id("[SEP]")).all()
    mc = shape_feeds(tok, "multiple-choice", texts, [["yes", "no", "maybe"]], batch=2, seq=16)
    assert mc["input_ids"].shape == (2, 3, 16) and mc["token_type_ids"][0, 0].max() == 1


class _Fake(Runner):
    def __init__(self, name, log):
        self.name, self.log = name, log

    def call(self, x):
        self.log.append(self.name)
        time.sleep(0.002)


def test_time_interleaved_round_robins_and_meets_minimums():
    log = []
    runners = {n: _Fake(n, log) for n in ("a", "b", "c")}
    out = time_interleaved(runners, dict.fromkeys(runners), BenchSettings(min_time=0.2, min_iters=5, warmup=0.0))
    assert all(len(out[n]["times_ns"]) >= 5 and sum(out[n]["times_ns"]) >= 0.2e9 for n in runners)
    timed = log[6:]  # after two warm-up calls each
    switches = sum(1 for x, y in zip(timed, timed[1:]) if x != y)
    assert switches >= 3 * 3 - 1  # several rounds: each variant gets several slices, interleaved
    assert set(timed[:len(timed) // 3]) == {"a", "b", "c"}  # all of them run early, not one after another


def test_summarize_percentiles():
    s = summarize([i * 1_000_000 for i in range(1, 101)], batch=4)  # 1..100 ms
    assert s["iterations"] == 100 and s["p50_ms"] == pytest.approx(50.5) and s["p99_ms"] == pytest.approx(99.01)
    assert s["throughput_items_s"] == pytest.approx(4 * 1000 / 50.5, rel=1e-3)


def test_bad_inputs_give_clear_errors(tiny_run, tmp_path):
    res = CliRunner().invoke(main, ["bench", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "no manifest.json" in res.output
    res = CliRunner().invoke(main, ["bench", str(tiny_run["bundle"]), "--torch", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "no config.json" in res.output
    res = CliRunner().invoke(main, ["bench", str(tiny_run["bundle"]), "--batch-sizes", "1,x", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "integers" in res.output
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"schema_version": 1, "kind": "run"}))
    res = CliRunner().invoke(main, ["bench", "--merge", str(broken), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "broken.json" in res.output and "required property" in res.output
    with pytest.raises(UserError, match="p50_ms"):
        validate({"schema_version": 1, "kind": "merged", "runs": [{
            "schema_version": 1, "kind": "run", "tool": "edgedistill bench", "created": "x",
            "machine": {"cpu_model": "c", "arch": "x86_64", "isa": {}, "os": "l", "python": "3", "versions": {}, "command": "c"},
            "subject": {"bundle": "b", "family": "sequence-classification"},
            "settings": {"batch_sizes": [1], "seq_lens": [8], "threads": [1], "min_time": 0, "min_iters": 1},
            "variants": [], "results": [{"variant": "bundle", "batch_size": 1, "seq_len": 8, "threads": 1, "status": "ok",
                                         "iterations": 3, "p90_ms": 1, "p99_ms": 1, "throughput_items_s": 1}]}]})


def test_bench_multiple_choice_bundle(tmp_path):
    """(batch, choices, seq) inputs and choice-text accuracy, for the torch baseline and the bundle."""
    from edgedistill.task import task_from_dict

    stripped = tiny.tiny_multiple_choice_dir(tmp_path / "stripped")
    task_from_dict({"name": "cqa", "type": "multiple-choice", "input": "question: {question}", "choices": "choices",
                    "gold": "answer"}).save(stripped / "task.yaml")
    (stripped / "edgedistill.json").write_text(json.dumps({"kind": "stripped", "family": "multiple-choice", "max_length": 32}))
    rng = random.Random(0)
    words = [w for w in tiny.WORDS if w.isalpha()]
    rows = [{"question": " ".join(rng.choice(words) for _ in range(8)), "choices": rng.sample(words, 4), "answer": rng.choice("abcd")}
            for _ in range(200)]
    data = _jsonl(tmp_path / "cqa.jsonl", rows)
    res = CliRunner().invoke(main, ["export", str(stripped), "--out", str(tmp_path / "bundle"), "--parity-data", str(data),
                                    "--min-agreement", "0"])  # random weights: INT8 may flip near-ties
    assert res.exit_code == 0, res.output
    out = tmp_path / "b"
    _bench([tmp_path / "bundle", "--torch", stripped, "--data", data, "--variants", "torch-fp32,bundle", "--no-fresh-process",
            "--batch-sizes", "2", "--seq-lens", "16", "--threads", "1", "--min-time", "0.01", "--min-iters", "2", "--warmup", "0", "--out", out])
    doc = json.loads((out / "results.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["subject"]["family"] == "multiple-choice" and [v["name"] for v in doc["variants"]] == ["torch-fp32", "bundle"]
    assert all(v["accuracy_n"] == 200 and 0 <= v["accuracy"] <= 1 for v in doc["variants"])
    assert {r["variant"] for r in doc["results"]} == {"torch-fp32", "bundle"}


def test_bench_seq2seq_bundle(tmp_path):
    """Numeric answers from greedy generation; the ORT peers are skipped with the reason."""
    from edgedistill.task import task_from_dict

    stripped = tiny.tiny_t5_dir(tmp_path / "stripped")
    task_from_dict({"name": "math", "type": "numeric", "input": "question: {question}", "gold": "label"}).save(stripped / "task.yaml")
    (stripped / "edgedistill.json").write_text(json.dumps({"kind": "stripped", "family": "seq2seq", "max_length": 32}))
    rng = random.Random(0)
    words = [w for w in tiny.WORDS if w.isalpha()]
    data = _jsonl(tmp_path / "math.jsonl", [{"question": " ".join(rng.choice(words) for _ in range(8)), "label": str(rng.randint(0, 9))}
                                            for _ in range(12)])
    res = CliRunner().invoke(main, ["export", str(stripped), "--out", str(tmp_path / "bundle"), "--parity-data", str(data)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "b"
    _bench([tmp_path / "bundle", "--torch", stripped, "--data", data, "--variants", "torch-fp32,ort-fp32,bundle", "--no-fresh-process",
            "--batch-sizes", "2", "--seq-lens", "16", "--threads", "1", "--min-time", "0.01", "--min-iters", "2", "--warmup", "0", "--out", out])
    doc = json.loads((out / "results.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    status = {v["name"]: v["status"] for v in doc["variants"]}
    assert status == {"torch-fp32": "ok", "ort-fp32": "skipped", "bundle": "ok"}
    assert "first decoder step" in doc["timed_call"]
    assert all(v["accuracy_n"] == 12 for v in doc["variants"] if v["status"] == "ok")
