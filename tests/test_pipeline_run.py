"""`edgedistill run` end to end on a tiny config-built student and the recorded quickstart teacher cache."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tiny
from openai_stub import StubServer

from edgedistill.errors import UserError
from edgedistill.pipeline import load_pipeline, run_pipeline

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
CLI = [sys.executable, "-m", "edgedistill.cli"]


@pytest.fixture
def pipeline(tmp_path):
    cache = QUICKSTART / "teacher_cache.sqlite"
    if not cache.exists():
        pytest.skip("the recorded quickstart teacher cache is missing")
    shutil.copyfile(QUICKSTART / "task.yaml", tmp_path / "task.yaml")
    shutil.copyfile(cache, tmp_path / "cache.sqlite")
    train = (QUICKSTART / "train.jsonl").read_text().splitlines()[:30]
    (tmp_path / "train.jsonl").write_text("\n".join(train) + "\n")
    (tmp_path / "test.jsonl").write_text("\n".join((QUICKSTART / "test.jsonl").read_text().splitlines()[:15]) + "\n")
    tiny.tiny_encoder_dir(tmp_path / "tiny-encoder")
    (tmp_path / "pipeline.yaml").write_text("""
task: task.yaml
data: train.jsonl
eval_data: test.jsonl
run_dir: run
teacher:
  model: qwen2.5-0.5b-instruct
  base_url: http://127.0.0.1:8765/v1  # the recording server (part of every cache key); requests_sent == 0 is asserted
  prompt: zero-shot
  score_orders: 5
  rationalize: false              # its follow-ups depend on the labels chosen over the whole batch of 240
  cache: cache.sqlite
student:
  base: ./tiny-encoder
  mode: auto
  compare: [standard]
  epochs: 60
  batch_size: 8
  max_length: 32
  lr: 0.002
compress:
  layers: [1]                     # one candidate, no budget: the 1-layer student, trimmed vocabulary
  epochs: 2
export:
  quantize: int8
bench:
  batch_sizes: [1]
  seq_lens: [16]
  threads: [1]
  min_time: 0.05
""")
    return tmp_path


def run(p, *extra, **kw):
    return subprocess.run(
        CLI + ["run", str(p / "pipeline.yaml"), *extra], capture_output=True, text=True, timeout=600, **kw
    )


def test_run_end_to_end_killed_in_training_then_resumed_then_all_skipped(pipeline):
    run_dir = pipeline / "run"
    # 1. start, and kill -9 while the student is training
    proc = subprocess.Popen(
        CLI + ["run", str(pipeline / "pipeline.yaml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (run_dir / ".student.checkpoints").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads((run_dir / "pipeline_state.json").read_text())
    assert "annotate" in state and "train" not in state
    assert not (run_dir / "student").exists()
    ann = json.loads((run_dir / "annotate.json").read_text())
    # per ticket: the answer and 5 scoring requests, all from the recording
    assert ann["requests_sent"] == 0 and ann["cache_hits"] == 30 * 6 and ann["ok"] + ann["parse_failed"] == 30

    # 2. re-run: annotation is skipped, training is redone, everything finishes
    r = run(pipeline)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "[annotate] up to date, skipped" in r.stdout and "[train] running" in r.stdout
    # what a person reads: the tool's own lines on stdout, its bars on stderr; what the libraries said is in
    # RUN/logs/STAGE.log (before console.quiet, stdout also held a Trainer dict per logging step; now about 75 lines)
    assert "{'loss'" not in r.stdout and "grad_norm" not in r.stdout
    for chatter in (
        "Some weights",
        "newly initialized",
        "Warning:",
        "pre-processing before quantization",
        "mtime may not be reliable",
        "[W:onnxruntime",
    ):
        assert chatter not in r.stdout + r.stderr, chatter
    assert len(r.stdout.splitlines()) <= 120, r.stdout
    assert "newly initialized" in (run_dir / "logs" / "train.log").read_text()
    for artifact in (
        "student",
        "stripped",
        "compressed/compress.json",
        "compressed/compress.png",
        "bundle/manifest.json",
        "bench/results.json",
        "report.md",
        "compare/standard",
    ):
        assert (run_dir / artifact).exists(), artifact
    report = (run_dir / "report.md").read_text()
    shipped = json.loads((run_dir / "student" / "train.json").read_text())["mode"]
    assert "qwen2.5-0.5b-instruct" in report and f"student (auto: {shipped})" in report and "bundle (INT8)" in report
    assert "student (standard)" in report and "speedup" in report
    # smoothing ships only where it lowered the INT8 drift (a tiny random model's is a coin toss): the report says which
    smooth = json.loads((run_dir / "bundle" / "manifest.json").read_text())["quantization"]["smooth"]
    assert (
        "Bundle: quantization `dynamic`" + (", activations smoothed before INT8 (alpha 0.8)." if smooth else ".")
    ) in report
    assert "](compressed/compress.png)" in report
    assert (
        "| candidate | validation accuracy | vs label-only: rows won / lost (p) | training time |" in report
        and f"| {shipped} (shipped) |" in report
    )
    assert "## Compression" in report and "| 1 layers, trimmed vocabulary |" in report
    assert (
        "held-out annotated inputs" in report and "Trimmed vocabulary: " in report
    )  # scored on rows it was not built from
    assert json.loads((run_dir / "bundle" / "manifest.json").read_text())["source"]["model"].endswith("compressed")

    # 3. nothing changed: every stage is skipped
    r = run(pipeline)
    assert r.returncode == 0 and r.stdout.count("up to date, skipped") == 7, r.stdout

    # 4. an edit redoes only what it touches
    text = (pipeline / "pipeline.yaml").read_text().replace("min_time: 0.05", "min_time: 0.06")
    (pipeline / "pipeline.yaml").write_text(text)
    r = run(pipeline, "--until", "bench")
    assert r.returncode == 0 and "[export] up to date, skipped" in r.stdout and "[bench] running" in r.stdout


def test_broken_pipeline_fails_before_any_work(pipeline):
    (pipeline / "pipeline.yaml").write_text(
        (pipeline / "pipeline.yaml").read_text().replace("epochs: 60", "epochs: many")
    )
    r = run(pipeline)
    assert r.returncode != 0 and "student.epochs: expected float" in r.stderr
    assert not (pipeline / "run").exists()


def test_stages_run_in_process_through_their_functions(pipeline, monkeypatch):
    """No stage goes through the CLI: with the click entry point broken, the annotate stage still runs
    and prints the same summary as `edgedistill annotate`."""
    import edgedistill.cli
    from edgedistill.pipeline import load_pipeline, run_pipeline

    def no_cli(*a, **k):
        raise AssertionError("a stage called the CLI")

    monkeypatch.setattr(edgedistill.cli.main, "main", no_cli)
    printed = []
    rows = run_pipeline(load_pipeline(pipeline / "pipeline.yaml"), until="annotate", echo=printed.append)
    assert [r["stage"] for r in rows] == ["annotate"] and rows[0]["status"] == "ran"
    assert any(line.strip().startswith("cache_hits") and line.split()[-1] == str(30 * 6) for line in printed)
    assert json.loads((pipeline / "run" / "annotate.json").read_text())["requests_sent"] == 0


def test_a_new_recording_reaches_a_run_that_already_has_a_cache(pipeline):
    """teacher.cache is merged into RUN/cache.sqlite on every annotate run, not only when the run has none:
    a run dir whose cache predates the recording still replays it (0 requests sent)."""
    from edgedistill.pipeline import load_pipeline, run_pipeline
    from edgedistill.teacher.cache import Cache

    (pipeline / "run").mkdir()
    Cache(pipeline / "run" / "cache.sqlite").close()  # an earlier run's cache, without these responses
    run_pipeline(load_pipeline(pipeline / "pipeline.yaml"), until="annotate", echo=lambda *_: None)
    ann = json.loads((pipeline / "run" / "annotate.json").read_text())
    assert ann["requests_sent"] == 0 and ann["cache_hits"] == 30 * 6


# ---------------------------------------------------------------- a failed stage is never done; one run per run dir

TASK = 'name: nli\ntype: classification\ninput: "{text}"\nlabels: [entailment, neutral, contradiction]\ngold: label\n'


@pytest.fixture
def live(tmp_path):
    """A pipeline whose teacher is a live stub server (no recording): annotate sends real requests."""
    (tmp_path / "task.yaml").write_text(TASK)
    rows = [{"text": f"item {i} ANSWER=entailment", "label": "entailment"} for i in range(3)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with StubServer() as server:
        (tmp_path / "pipeline.yaml").write_text(
            f"task: task.yaml\ndata: d.jsonl\nrun_dir: run\nteacher:\n  model: stub\n"
            f"  base_url: {server.base_url}\n  scoring: none\n  prompt: zero-shot\n"
        )
        yield tmp_path, server


def _state(folder: Path) -> dict:
    path = folder / "run" / "pipeline_state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_an_annotate_stage_that_failed_is_redone_by_the_next_run(live, monkeypatch):
    folder, server = live
    monkeypatch.setenv("OPENAI_API_KEY", "")
    quiet = {"echo": lambda *_: None}
    server.refuse_with = 401  # every request fails: the stage fails and is not recorded as done
    with pytest.raises(UserError, match=r"no row is ok: 3 failed of 3.*HTTP 401"):
        run_pipeline(load_pipeline(folder / "pipeline.yaml"), until="annotate", **quiet)
    assert "annotate" not in _state(folder) and (folder / "run" / "annotations.jsonl").exists()
    server.refuse_with = None
    notes = []
    rows = run_pipeline(load_pipeline(folder / "pipeline.yaml"), until="annotate", note=notes.append, **quiet)
    assert (
        rows[0]["status"] == "ran" and "[annotate] up to date, skipped" not in notes and len(server.requests) == 3 + 3
    )
    assert "annotate" in _state(folder)
    # done once, then failed under other settings: going back to the first settings must not skip the stage, since
    # annotations.jsonl is now the failed run's
    text = (folder / "pipeline.yaml").read_text()
    (folder / "pipeline.yaml").write_text(text.replace("zero-shot", "label-only"))  # other requests: not cached
    server.refuse_with = 401
    with pytest.raises(UserError, match="no row is ok"):
        run_pipeline(load_pipeline(folder / "pipeline.yaml"), until="annotate", **quiet)
    (folder / "pipeline.yaml").write_text(text)
    server.refuse_with = None
    rows = run_pipeline(load_pipeline(folder / "pipeline.yaml"), until="annotate", **quiet)
    assert rows[0]["status"] == "ran"
    assert [r["status"] for r in map(json.loads, (folder / "run" / "annotations.jsonl").read_text().splitlines())] == [
        "ok"
    ] * 3
    assert run_pipeline(load_pipeline(folder / "pipeline.yaml"), until="annotate", **quiet)[0]["status"] == "skipped"


HOLD = (
    "import sys, time\nfrom edgedistill.rundir import run_dir_lock\nwith run_dir_lock(sys.argv[1], 'test holder'):\n"
    "    print('held', flush=True)\n    time.sleep(600)\n"
)


def test_a_run_dir_held_by_another_process_is_refused_until_that_process_is_killed(live, monkeypatch):
    folder, server = live
    monkeypatch.setenv("OPENAI_API_KEY", "")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.perf_counter()
        with pytest.raises(UserError, match=rf"run: in use by pid {holder.pid} \(test holder, since "):
            run_pipeline(load_pipeline(folder / "pipeline.yaml"), until="annotate", echo=lambda *_: None)
        assert time.perf_counter() - start < 5 and server.requests == []
        holder.send_signal(signal.SIGKILL)  # the OS releases the lock of a killed process
        holder.wait()
    finally:
        holder.kill()
    rows = run_pipeline(load_pipeline(folder / "pipeline.yaml"), until="annotate", echo=lambda *_: None)
    assert rows[0]["status"] == "ran" and len(server.requests) == 3
