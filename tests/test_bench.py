"""Benchmark suite: runs end to end on a tiny exported bundle, writes schema-valid results, merges.

No timing is asserted: only that every figure is there, well-formed and consistent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import tiny
from click.testing import CliRunner

from edgedistill.cli import main
from edgedistill.errors import UserError
from edgedistill.measure.bench import OPTIMUM_RECIPE, BenchConfig, Runner, shape_feeds, summarize, time_interleaved
from edgedistill.measure.bench_report import SCHEMA_PATH, flat_rows, headline_shape, merge, validate

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["entailment", "neutral", "contradiction"]
SCHEMA = json.loads(SCHEMA_PATH.read_text())
TINY = [
    "--batch-sizes",
    "1,2",
    "--seq-lens",
    "8,16",
    "--threads",
    "1",
    "--min-time",
    "0.01",
    "--min-iters",
    "2",
    "--warmup",
    "0",
]
ONE_SHAPE = [
    "--batch-sizes",
    "2",
    "--seq-lens",
    "16",
    "--threads",
    "1",
    "--min-time",
    "0.01",
    "--min-iters",
    "2",
    "--warmup",
    "0",
]
RIGHT = 18  # of the 24 rows of tiny_run's data, the ones whose gold is what the torch model answers


def _rows(n, seed=0):
    rng = random.Random(seed)
    words = [
        w for w in tiny.WORDS if w.isalpha() and len(w) > 1
    ]  # a choice "a" would make the gold letter "a" ambiguous
    return [
        {
            "premise": " ".join(rng.choice(words) for _ in range(rng.randint(4, 12))),
            "hypothesis": " ".join(rng.choice(words) for _ in range(rng.randint(3, 8))),
            "label": rng.randrange(3),
        }
        for _ in range(n)
    ]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny stripped classifier, its bundle (via `edgedistill export`) and a gold-labelled data file whose
    gold is the torch model's own answer on the first RIGHT rows and a wrong one on the rest, so
    torch FP32's accuracy is exactly RIGHT / 24; the bundle's expected accuracy is read off its predictions."""
    from edgedistill.deploy.parity import torch_outputs
    from edgedistill.runtime import EdgeModel
    from edgedistill.task import task_from_dict

    d = tmp_path_factory.mktemp("bench")
    stripped = tiny.tiny_classifier_dir(d / "stripped", labels=LABELS)
    task = task_from_dict(
        {
            "name": "nli",
            "type": "classification",
            "input": "premise: {premise} hypothesis: {hypothesis}",
            "labels": LABELS,
            "gold": "label",
        }
    )
    task.save(stripped / "task.yaml")
    (stripped / "edgedistill.json").write_text(
        json.dumps(
            {
                "kind": "stripped",
                "family": "sequence-classification",
                "max_length": 32,
                "labels": LABELS,
                "source": None,
            }
        )
    )
    rows = _rows(24, seed=1)
    _, said = torch_outputs(stripped, "sequence-classification", [{"input": task.render(r)} for r in rows], None, 32)
    for i, (r, label) in enumerate(zip(rows, said)):
        r["label"] = LABELS.index(label) if i < RIGHT else (LABELS.index(label) + 1) % 3
    data = _jsonl(d / "test.jsonl", rows)
    parity = _jsonl(d / "parity.jsonl", _rows(200, seed=2))
    res = CliRunner().invoke(main, ["export", str(stripped), "--out", str(d / "bundle"), "--parity-data", str(parity)])
    assert res.exit_code == 0, res.output
    _check_bundle(d / "bundle", "sequence-classification")
    preds = EdgeModel.load(d / "bundle").predict(rows)
    bundle_acc = round(sum(p["label"] == LABELS[r["label"]] for p, r in zip(preds, rows)) / len(rows), 5)
    return {"dir": d, "stripped": stripped, "bundle": d / "bundle", "data": data, "bundle_accuracy": bundle_acc}


def _check_bundle(bundle: Path, family: str) -> dict:
    """What `edgedistill export` must have written: parity held, every file (the core included) listed."""
    m = json.loads((bundle / "manifest.json").read_text())
    assert (
        m["family"] == family and m["parity"]["fp32_max_abs_logit_diff"] < 1e-3 and m["parity"]["fp32_agreement"] == 1.0
    )
    assert set(m["models"].values()) | {
        "tokenizer.json",
        "edge_runtime.py",
        "edge/runtime.py",
        "edge/answers.py",
    } <= set(m["files"])
    assert all((bundle / name).stat().st_size == f["bytes"] for name, f in m["files"].items())
    return m


def _run_bundle(*args, out: Path) -> dict:
    """export/run_bundle.py in a subprocess; returns the results.json it wrote to `out`."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "export" / "run_bundle.py"), *map(str, args), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


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
    assert status == dict.fromkeys(["torch-fp32", "torch-int8", "ort-fp32", "optimum-int8", "bundle"], "ok"), doc[
        "variants"
    ]
    rows = doc["results"]
    assert len(rows) == 5 * 2 * 2 and all(r["status"] == "ok" for r in rows)
    accs = {v["name"]: v["accuracy"] for v in doc["variants"]}
    # FP32 variants answer as the torch model did when the gold was written; the bundle as its predictions say
    assert (
        accs["torch-fp32"] == accs["ort-fp32"] == round(RIGHT / 24, 5) and accs["bundle"] == tiny_run["bundle_accuracy"]
    )
    assert all(abs(accs[n] - RIGHT / 24) <= 2 / 24 for n in ("torch-int8", "optimum-int8"))  # INT8 may flip a near-tie
    for r in rows:
        assert r["iterations"] >= 2 and 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["size_bytes"] > 0 and r["accuracy"] == accs[r["variant"]]
        assert r["peak_rss_mb"] > 0 and r["cold_start_s"] > 0
    base = [r for r in rows if r["variant"] == "torch-fp32"]
    assert all(r["speedup_vs_torch_fp32"] == 1.0 and r["accuracy_delta_pt_vs_torch_fp32"] == 0 for r in base)
    bundle_row = next(r for r in rows if r["variant"] == "bundle")
    fp32 = next(v for v in doc["variants"] if v["name"] == "torch-fp32")
    assert bundle_row["size_ratio_vs_torch_fp32"] == pytest.approx(
        bundle_row["size_bytes"] / fp32["size_bytes"], rel=1e-3
    )
    m = doc["machine"]
    # one preset for the CPU: the bundle was quantized for it, the optimum peer used its recipe, the record says it
    info = {v["name"]: v for v in doc["variants"]}
    preset = info["optimum-int8"]["preset"]
    assert preset == m["quantization_preset"] == info["bundle"]["target"]["preset"]
    assert info["optimum-int8"]["recipe"] == f"AutoQuantizationConfig.{OPTIMUM_RECIPE[preset]}(is_static=False)"
    assert m["command"].startswith(f"edgedistill bench {tiny_run['bundle']} --torch ") and m["command"].endswith(
        f"--out {out}"
    )
    assert m["cpu_model"] and isinstance(m["isa"]["avx2"], bool) and m["versions"]["onnxruntime"]
    assert (
        len(m["loadavg_1_5_15"]) == 3 and doc["load"]["other_processes_cpu_share"] >= 0 and doc["load"]["seconds"] > 0
    )
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
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "export" / "run_bundle.py"),
            str(tiny_run["bundle"]),
            "--text",
            "a dog is big",
            "--data",
            str(tiny_run["data"]),
            "--batch-sizes",
            "1",
            "--seq-lens",
            "8,16",
            "--threads",
            "1",
            "--min-time",
            "0.01",
            "--min-iters",
            "2",
            "--warmup",
            "0",
            "--out",
            str(dev),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    pred = json.loads(proc.stdout.splitlines()[0])
    assert pred["label"] in LABELS and set(pred["probs"]) == set(LABELS)
    doc = json.loads(dev.read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["tool"] == "export/run_bundle.py" and doc["variants"][0]["accuracy_n"] == 24
    assert doc["variants"][0]["accuracy"] == tiny_run["bundle_accuracy"]
    assert doc["variants"][0]["fresh_process"][0]["peak_rss_mb"] > 0

    other = tmp_path / "other"
    _bench(
        [tiny_run["bundle"], "--data", tiny_run["data"], *TINY, "--threads", "2", "--no-fresh-process", "--out", other]
    )
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
    assert (f["input_ids"][:, 0] == tok.token_to_id("[CLS]")).all() and (
        f["input_ids"][:, -1] == tok.token_to_id("[SEP]")
    ).all()
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
    out = time_interleaved(runners, dict.fromkeys(runners), BenchConfig(min_time=0.2, min_iters=5, warmup=0.0))
    assert all(len(out[n]["times_ns"]) >= 5 and sum(out[n]["times_ns"]) >= 0.2e9 for n in runners)
    timed = log[6:]  # after two warm-up calls each
    switches = sum(1 for x, y in zip(timed, timed[1:]) if x != y)
    assert switches >= 3 * 3 - 1  # several rounds: each variant gets several slices, interleaved
    assert set(timed[: len(timed) // 3]) == {"a", "b", "c"}  # all of them run early, not one after another


def test_summarize_percentiles():
    s = summarize([i * 1_000_000 for i in range(1, 101)], batch=4)  # 1..100 ms
    assert s["iterations"] == 100 and s["p50_ms"] == pytest.approx(50.5) and s["p99_ms"] == pytest.approx(99.01)
    assert s["throughput_items_s"] == pytest.approx(4 * 1000 / 50.5, rel=1e-3)


def test_bad_inputs_give_clear_errors(tiny_run, tmp_path):
    res = CliRunner().invoke(main, ["bench", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "no manifest.json" in res.output
    res = CliRunner().invoke(
        main, ["bench", str(tiny_run["bundle"]), "--torch", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code != 0 and "no config.json" in res.output
    res = CliRunner().invoke(
        main, ["bench", str(tiny_run["bundle"]), "--batch-sizes", "1,x", "--out", str(tmp_path / "o")]
    )
    assert res.exit_code != 0 and "integers" in res.output
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"schema_version": 1, "kind": "run"}))
    res = CliRunner().invoke(main, ["bench", "--merge", str(broken), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "broken.json" in res.output and "required property" in res.output
    with pytest.raises(UserError, match="p50_ms"):
        validate(
            {
                "schema_version": 1,
                "kind": "merged",
                "runs": [
                    {
                        "schema_version": 1,
                        "kind": "run",
                        "tool": "edgedistill bench",
                        "created": "x",
                        "machine": {
                            "cpu_model": "c",
                            "arch": "x86_64",
                            "isa": {},
                            "os": "l",
                            "python": "3",
                            "versions": {},
                            "command": "c",
                        },
                        "subject": {"bundle": "b", "family": "sequence-classification"},
                        "settings": {
                            "batch_sizes": [1],
                            "seq_lens": [8],
                            "threads": [1],
                            "min_time": 0,
                            "min_iters": 1,
                        },
                        "variants": [],
                        "results": [
                            {
                                "variant": "bundle",
                                "batch_size": 1,
                                "seq_len": 8,
                                "threads": 1,
                                "status": "ok",
                                "iterations": 3,
                                "p90_ms": 1,
                                "p99_ms": 1,
                                "throughput_items_s": 1,
                            }
                        ],
                    }
                ],
            }
        )


@pytest.fixture(scope="module")
def mc_run(tmp_path_factory):
    """A tiny multiple-choice bundle and 200 questions with gold letters."""
    from edgedistill.task import task_from_dict

    d = tmp_path_factory.mktemp("mc")
    stripped = tiny.tiny_multiple_choice_dir(d / "stripped")
    task_from_dict(
        {
            "name": "cqa",
            "type": "multiple-choice",
            "input": "question: {question}",
            "choices": "choices",
            "gold": "answer",
        }
    ).save(stripped / "task.yaml")
    (stripped / "edgedistill.json").write_text(
        json.dumps({"kind": "stripped", "family": "multiple-choice", "max_length": 32})
    )
    rng = random.Random(0)
    words = [
        w for w in tiny.WORDS if w.isalpha() and len(w) > 1
    ]  # a choice "a" would make the gold letter "a" ambiguous
    rows = [
        {
            "question": " ".join(rng.choice(words) for _ in range(8)),
            "choices": rng.sample(words, 4),
            "answer": rng.choice("abcd"),
        }
        for _ in range(200)
    ]
    data = _jsonl(d / "cqa.jsonl", rows)
    res = CliRunner().invoke(
        main, ["export", str(stripped), "--out", str(d / "bundle"), "--parity-data", str(data), "--min-agreement", "0"]
    )  # random weights: INT8 may flip near-ties
    assert res.exit_code == 0, res.output
    _check_bundle(d / "bundle", "multiple-choice")
    return {"dir": d, "stripped": stripped, "bundle": d / "bundle", "data": data, "rows": rows}


def test_bench_multiple_choice_bundle(mc_run, tmp_path):
    """(batch, choices, seq) inputs and choice-text accuracy, for the torch baseline, the bundle and the device kit."""
    from edgedistill.deploy.parity import torch_outputs
    from edgedistill.runtime import EdgeModel

    rows = mc_run["rows"]
    gold = [r["choices"]["abcd".index(r["answer"])] for r in rows]
    _, torch_said = torch_outputs(
        mc_run["stripped"],
        "multiple-choice",
        [{"input": f"question: {r['question']}", "choices": r["choices"]} for r in rows],
        "choices",
        32,
    )
    bundle_said = [p["label"] for p in EdgeModel.load(mc_run["bundle"]).predict(rows)]
    expected = {
        "torch-fp32": round(sum(map(str.__eq__, torch_said, gold)) / 200, 5),
        "bundle": round(sum(map(str.__eq__, bundle_said, gold)) / 200, 5),
    }
    out = tmp_path / "b"
    _bench(
        [
            mc_run["bundle"],
            "--torch",
            mc_run["stripped"],
            "--data",
            mc_run["data"],
            "--variants",
            "torch-fp32,bundle",
            "--no-fresh-process",
            *ONE_SHAPE,
            "--out",
            out,
        ]
    )
    doc = json.loads((out / "results.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["subject"]["family"] == "multiple-choice" and [v["name"] for v in doc["variants"]] == [
        "torch-fp32",
        "bundle",
    ]
    assert {v["name"]: v["accuracy"] for v in doc["variants"]} == expected and all(
        v["accuracy_n"] == 200 for v in doc["variants"]
    )
    assert {r["variant"] for r in doc["results"]} == {"torch-fp32", "bundle"}
    # the device kit scores the same predictions against the same gold (letters -> choice texts)
    dev = _run_bundle(
        mc_run["bundle"], "--data", mc_run["data"], *ONE_SHAPE, "--no-fresh-process", out=tmp_path / "dev.json"
    )
    jsonschema.validate(dev, SCHEMA)
    assert (dev["variants"][0]["accuracy"], dev["variants"][0]["accuracy_n"]) == (expected["bundle"], 200)
    assert dev["results"][0]["status"] == "ok" and dev["data"]["inputs"] == "real"


@pytest.fixture(scope="module")
def s2s_run(tmp_path_factory):
    """A tiny T5 bundle for a numeric task and 12 questions with gold numbers."""
    from edgedistill.task import task_from_dict

    d = tmp_path_factory.mktemp("s2s")
    stripped = tiny.tiny_t5_dir(d / "stripped")
    task_from_dict({"name": "math", "type": "numeric", "input": "question: {question}", "gold": "label"}).save(
        stripped / "task.yaml"
    )
    (stripped / "edgedistill.json").write_text(json.dumps({"kind": "stripped", "family": "seq2seq", "max_length": 32}))
    rng = random.Random(0)
    words = [
        w for w in tiny.WORDS if w.isalpha() and len(w) > 1
    ]  # a choice "a" would make the gold letter "a" ambiguous
    data = _jsonl(
        d / "math.jsonl",
        [
            {"question": " ".join(rng.choice(words) for _ in range(8)), "label": str(rng.randint(0, 9))}
            for _ in range(12)
        ],
    )
    res = CliRunner().invoke(main, ["export", str(stripped), "--out", str(d / "bundle"), "--parity-data", str(data)])
    assert res.exit_code == 0, res.output
    _check_bundle(d / "bundle", "seq2seq")
    return {"dir": d, "stripped": stripped, "bundle": d / "bundle", "data": data}


def test_bench_seq2seq_bundle(s2s_run, tmp_path):
    """Numeric answers from greedy generation; the ORT peers are skipped with the reason; the device kit agrees."""
    from edgedistill.edge.answers import accuracy
    from edgedistill.runtime import EdgeModel

    rows = [json.loads(x) for x in s2s_run["data"].read_text().splitlines()]
    expected = accuracy("numeric", EdgeModel.load(s2s_run["bundle"]).predict(rows), [r["label"] for r in rows])
    out = tmp_path / "b"
    _bench(
        [
            s2s_run["bundle"],
            "--torch",
            s2s_run["stripped"],
            "--data",
            s2s_run["data"],
            "--variants",
            "torch-fp32,ort-fp32,bundle",
            "--no-fresh-process",
            *ONE_SHAPE,
            "--out",
            out,
        ]
    )
    doc = json.loads((out / "results.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    status = {v["name"]: v["status"] for v in doc["variants"]}
    assert status == {"torch-fp32": "ok", "ort-fp32": "skipped", "bundle": "ok"}
    assert "first decoder step" in doc["timed_call"]
    assert all(v["accuracy_n"] == 12 for v in doc["variants"] if v["status"] == "ok")
    bundle = next(v for v in doc["variants"] if v["name"] == "bundle")
    assert bundle["accuracy"] == expected
    dev = _run_bundle(
        s2s_run["bundle"], "--data", s2s_run["data"], *ONE_SHAPE, "--no-fresh-process", out=tmp_path / "dev.json"
    )
    assert (dev["variants"][0]["accuracy"], dev["variants"][0]["accuracy_n"]) == (expected, 12)
    assert "first decoder step" in dev["timed_call"] and dev["results"][0]["status"] == "ok"


def _load_run_bundle():
    spec = importlib.util.spec_from_file_location("run_bundle", ROOT / "export" / "run_bundle.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_run_bundle_and_bench_compare_numbers_alike(s2s_run, tmp_path, monkeypatch):
    """ "12,000" = "12000" and "( 84. 0 / 2. 0 )" = "42" on the device as in bench (edge.families.answers_match)."""
    from edgedistill.runtime import EdgeModel

    said = {"how many dogs": "( 84. 0 / 2. 0 )", "how many cats": "12000", "how many cars": "7"}
    gold = {"how many dogs": "42", "how many cats": "12,000", "how many cars": "8"}
    monkeypatch.setattr(
        EdgeModel,
        "generate",
        lambda self, items, max_new_tokens=None: [said[self.render(it).removeprefix("question: ")] for it in items],
    )
    data = _jsonl(tmp_path / "numbers.jsonl", [{"question": q, "label": g} for q, g in gold.items()])
    _bench(
        [
            s2s_run["bundle"],
            "--data",
            data,
            "--variants",
            "bundle",
            "--no-fresh-process",
            *ONE_SHAPE,
            "--out",
            tmp_path / "b",
        ]
    )
    bench_doc = json.loads((tmp_path / "b" / "results.json").read_text())
    assert (
        _load_run_bundle().main(
            [
                str(s2s_run["bundle"]),
                "--data",
                str(data),
                *ONE_SHAPE,
                "--no-fresh-process",
                "--out",
                str(tmp_path / "dev.json"),
            ]
        )
        == 0
    )
    dev = json.loads((tmp_path / "dev.json").read_text())
    assert bench_doc["variants"][0]["accuracy"] == dev["variants"][0]["accuracy"] == round(2 / 3, 5)


def test_a_peer_that_fails_to_build_fails_the_fastest_target(tiny_run, tmp_path, monkeypatch):
    import edgedistill.measure.bench as bench

    def no_quantizer(*args, **kw):
        raise RuntimeError("no quantizer here")

    monkeypatch.setattr(bench, "_optimum_int8", no_quantizer)
    out = tmp_path / "b"
    _bench(
        [
            tiny_run["bundle"],
            "--torch",
            tiny_run["stripped"],
            "--variants",
            "torch-fp32,optimum-int8,bundle",
            *TINY,
            "--no-fresh-process",
            "--out",
            out,
        ]
    )
    doc = json.loads((out / "results.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    peer = next(v for v in doc["variants"] if v["name"] == "optimum-int8")
    assert (
        peer["status"] == "failed" and peer["reason"] == "optimum quantization failed: RuntimeError: no quantizer here"
    )
    report = (out / "report.md").read_text()
    assert (
        "| fastest variant measured | not measured: optimum INT8 (default) failed (optimum quantization failed: "
        "RuntimeError: no quantizer here) | **no** |"
    ) in report
    assert "| not slower than optimum INT8 (default) | not measured:" in report


def test_run_bundle_on_a_device_uses_the_bundles_own_core(tiny_run, tmp_path):
    """A device with only the bundle, run_bundle.py and onnxruntime/numpy/tokenizers: no edgedistill, no torch."""
    kit = tmp_path / "device"
    shutil.copytree(tiny_run["bundle"], kit / "bundle")
    shutil.copy(ROOT / "export" / "run_bundle.py", kit)
    (kit / "site").mkdir()
    (kit / "site" / "sitecustomize.py").write_text(  # imports of these fail, in the fresh process too
        "import sys\nfor name in ('edgedistill', 'torch', 'transformers', 'optimum'):\n    sys.modules[name] = None\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(kit / "site"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "run_bundle.py", "bundle", "--data", str(tiny_run["data"]), *ONE_SHAPE, "--out", "dev.json"],
        cwd=kit,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((kit / "dev.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    v = doc["variants"][0]
    assert v["description"] == "edgedistill bundle via edge.runtime" and v["accuracy"] == tiny_run["bundle_accuracy"]
    assert v["fresh_process"][0]["peak_rss_mb"] > 0 and v["fresh_process"][0]["cold_start_s"] > 0
    assert doc["machine"]["quantization_preset"] and doc["machine"]["versions"]["onnxruntime"]
