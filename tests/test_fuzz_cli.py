"""Fuzz: every out-of-range CLI flag and malformed pipeline.yaml ends in one clear error.

Each case asserts a non-zero exit, the flag (or `file:line`) named in the message, no traceback, and an end
within a timeout. Cases that could hang where a range check is missing run in a subprocess with a timeout; the
rest run in-process (click.testing.CliRunner), which shows the same exit code and message.

`python tests/test_fuzz_cli.py` prints every case's outcome and the counts: clear / vague / traceback / silent / hang
(vague: a non-zero exit whose message names neither the flag nor the line; silent: exit 0, the value taken).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from openai_stub import StubServer

from edgedistill.cli import main

TIMEOUT = 30  # seconds a subprocess case may run (a CLI start that imports torch takes ~5 s on a busy machine)
TASK = (
    'name: nli\ntype: classification\ninput: "{text}"\nlabels: [entailment, neutral, contradiction]\n'
    "gold: label\nid: id\n"
)
PIPELINE_HEAD = "task: task.yaml\ndata: d.jsonl\nrun_dir: run\n"  # three lines: a case's own text starts on line 4


@dataclass
class Case:
    id: str
    argv: list[str]  # {task} {data} {ann} {out} {url} {pipe} {missing} are filled in per case
    named: str  # a regex the message must match: the flag, or the file and line
    may_hang: bool = False  # run in a subprocess under TIMEOUT
    yaml: str | bytes | None = None  # the pipeline file's text after PIPELINE_HEAD (for `run` cases)
    files: dict = field(default_factory=dict)  # more files to write in the case's folder: name -> text or bytes


ANNOTATE = [
    "annotate",
    "--task",
    "{task}",
    "--data",
    "{data}",
    "--out",
    "{out}",
    "--base-url",
    "{url}",
    "--model",
    "stub",
    "--max-retries",
    "0",
    "--timeout",
    "5",
    "--scoring",
    "none",
]
TRAIN = ["train", "--task", "{task}", "--annotations", "{ann}", "--out", "{out}", "--student", "{missing}"]
EXPORT = ["export", "{missing}", "--out", "{out}"]
BENCH = ["bench", "{missing}", "--out", "{out}"]
COMPRESS = ["compress", "{missing}", "--annotations", "{ann}", "--out", "{out}"]


def flag(base: list[str], name: str, value: str, may_hang: bool = False) -> Case:
    return Case(f"{base[0]} {name} {value}", [*base, name, value], re.escape(name), may_hang)


FLAG_CASES = [
    flag(ANNOTATE, "--concurrency", "0", may_hang=True),
    flag(ANNOTATE, "--concurrency", "-1"),
    flag(ANNOTATE, "--limit", "0"),
    flag(ANNOTATE, "--limit", "-1"),
    flag(ANNOTATE, "--max-retries", "-1"),
    flag(ANNOTATE, "--max-cost", "-1"),
    flag(ANNOTATE, "--max-cost", "nan"),
    flag(ANNOTATE, "--price-in", "-5"),
    flag(ANNOTATE, "--price-out", "-0.5"),
    flag(ANNOTATE, "--max-tokens", "0"),
    flag(ANNOTATE, "--temperature", "-1"),
    flag(ANNOTATE, "--temperature", "9"),
    flag(ANNOTATE, "--timeout", "0", may_hang=True),
    flag(ANNOTATE, "--timeout", "-3", may_hang=True),
    flag(ANNOTATE, "--timeout", "inf", may_hang=True),
    flag(ANNOTATE, "--rationale-fraction", "1.5"),
    flag(ANNOTATE, "--score-orders", "0"),
    flag(ANNOTATE, "--votes", "0"),
    flag(ANNOTATE, "--vote-temperature", "-1"),
    flag(TRAIN, "--epochs", "-1"),
    flag(TRAIN, "--epochs", "0"),
    flag(TRAIN, "--epochs", "nan"),
    flag(TRAIN, "--lr", "-1"),
    flag(TRAIN, "--lr", "0"),
    flag(TRAIN, "--head-lr", "-1"),
    flag(TRAIN, "--layer-decay", "0"),
    flag(TRAIN, "--max-length", "0"),
    flag(TRAIN, "--rationale-max-length", "0"),
    flag(TRAIN, "--batch-size", "0"),
    flag(TRAIN, "--batch-size", "-4"),
    flag(TRAIN, "--alpha", "1.5"),
    flag(TRAIN, "--retries", "-1"),
    flag(TRAIN, "--val-fraction", "1"),
    flag(TRAIN, "--val-fraction", "-0.1"),
    flag(TRAIN, "--max-train", "0"),
    flag(TRAIN, "--decoder-layers", "0"),
    flag(TRAIN, "--soft-weight", "2"),
    flag(TRAIN, "--soft-temperature", "0"),
    flag(TRAIN, "--rationale-fraction", "1.5"),
    flag(EXPORT, "--min-agreement", "-0.1"),
    flag(EXPORT, "--min-agreement", "1.5"),
    flag(EXPORT, "--parity-samples", "0"),
    flag(EXPORT, "--threads", "0"),
    flag(EXPORT, "--max-length", "0"),
    flag(EXPORT, "--smooth", "-0.5"),
    flag(EXPORT, "--smooth", "1.5"),
    flag(EXPORT, "--int8-fp32", "banana"),
    flag(EXPORT, "--int8-fp32", "-2"),
    flag(BENCH, "--min-time", "-5"),
    flag(BENCH, "--min-iters", "0"),
    flag(BENCH, "--warmup", "-1"),
    flag(BENCH, "--limit", "0"),
    flag(BENCH, "--limit", "-1"),
    flag(BENCH, "--threads", "0"),
    flag(COMPRESS, "--layers", "0,-2"),
    flag(COMPRESS, "--threads", "0"),
    flag(COMPRESS, "--epochs", "-1"),
    flag(COMPRESS, "--latency-budget", "0"),
    flag(COMPRESS, "--latency-budget", "-1"),
    flag(["import-dss", "--dataset", "esnli", "--split", "test", "--out", "{out}"], "--limit", "0"),
    Case("annotate --out is a file", ANNOTATE, "--out", files={"out": "a file\n"}),
    Case("train --out is a file", TRAIN, "--out", files={"out": "a file\n"}),
    Case("export --out is a file", EXPORT, "--out", files={"out": "a file\n"}),
]


def pipe(id_: str, text: str | bytes, named: str, dry_run: bool = True, may_hang: bool = False, files=None) -> Case:
    argv = ["run", "{pipe}"] + (["--dry-run"] if dry_run else ["--until", "annotate"])
    return Case(f"pipeline.yaml {id_}", argv, named, may_hang, text, files or {})


def key(section: str, body: str, name: str, line: int = 5) -> Case:
    """One section with one bad key on line `line` (the section header is line 4)."""
    return pipe(f"{section}.{body}", f"{section}:\n  {body}\n", rf"p\.yaml:{line}: {section}\.{name}")


PIPELINE_CASES = [
    key("teacher", "concurrency: 0", "concurrency"),
    key("teacher", "concurrency: -1", "concurrency"),
    key("teacher", "max_cost: -1", "max_cost"),
    key("teacher", "price_in: -5", "price_in"),
    key("teacher", "price_out: -1", "price_out"),
    key("teacher", "rationale_fraction: 0", "rationale_fraction"),
    key("teacher", "votes: 0", "votes"),
    key("teacher", "score_orders: 0", "score_orders"),
    key("teacher", "vote_temperature: -1", "vote_temperature"),
    key("teacher", "max_failed: 1.5", "max_failed"),
    key("student", "epochs: -1", "epochs"),
    key("student", "epochs: .nan", "epochs"),
    key("student", "lr: -1", "lr"),
    key("student", "max_length: 0", "max_length"),
    key("student", "batch_size: 0", "batch_size"),
    key("student", "alpha: 2", "alpha"),
    key("student", "min_steps: -1", "min_steps"),
    key("export", "int8_fp32: banana", "int8_fp32"),
    key("export", "int8_fp32: -1", "int8_fp32"),
    key("export", "min_agreement: -0.1", "min_agreement"),
    key("export", "smooth: 2", "smooth"),
    key("bench", "batch_sizes: [1, 0]", r"batch_sizes\[1\]"),
    key("bench", "threads: [0]", r"threads\[0\]"),
    key("bench", "seq_lens: [-1]", r"seq_lens\[0\]"),
    key("bench", "min_time: -5", "min_time"),
    key("compress", "layers: [0, -2]", r"layers\[0\]"),
    key("compress", "epochs: 0", "epochs"),
    key("compress", "threads: 0", "threads"),
    key("compress", "latency_budget: -1", "latency_budget"),
    key("compress", "common_words: -1", "common_words"),
    pipe(
        "teacher.max_cost without a price",
        "teacher:\n  model: stub\n  max_cost: 1.0\n",
        r"p\.yaml:6: teacher\.max_cost",
    ),
    pipe(
        "votes without sampling",
        "teacher:\n  votes: 3\n  vote_temperature: 0\n",
        r"p\.yaml:6: teacher\.vote_temperature",
    ),
    pipe(
        "teacher.concurrency on line 6",
        "teacher:\n  model: stub\n  concurrency: 0\n",
        r"p\.yaml:6: teacher\.concurrency",
    ),
    pipe("duplicated section", "teacher:\n  concurrency: 2\nteacher:\n  votes: 2\n", r"p\.yaml:6: teacher: .*line 4"),
    pipe("duplicated key", "student:\n  epochs: 2\n  epochs: 3\n", r"p\.yaml:6: student\.epochs: .*line 5"),
    pipe("duplicated top-level key", "data: other.jsonl\n", r"p\.yaml:4: data: .*line 2"),
    pipe("non-UTF-8", b"teacher:\n  model: caf\xe9\n", r"p\.yaml:5"),
    pipe("run_dir is a file", "", r"p\.yaml:3: run_dir", files={"run": "not a folder\n"}),
    pipe(
        "teacher.cache is not SQLite",
        "teacher:\n  cache: recorded.sqlite\n",
        r"p\.yaml:5: teacher\.cache",
        files={"recorded.sqlite": "this is not a database\n"},
    ),
    pipe(
        "run: teacher.concurrency 0",
        "teacher:\n  base_url: {url}\n  model: stub\n  concurrency: 0\n",
        r"p\.yaml:7: teacher\.concurrency",
        dry_run=False,
        may_hang=True,
    ),
    pipe(
        "run: student.epochs -1",
        "teacher:\n  base_url: {url}\n  model: stub\nstudent:\n  epochs: -1\n",
        r"p\.yaml:8: student\.epochs",
        dry_run=False,
        may_hang=True,
    ),
]

CASES = FLAG_CASES + PIPELINE_CASES


def make_world(root: Path) -> Path:
    """A valid task, data file and annotations file that every case shares."""
    (root / "task.yaml").write_text(TASK)
    rows = [{"id": f"e{i}", "text": f"sentence {i} ANSWER=entailment", "label": "entailment"} for i in range(3)]
    (root / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ann = [
        {"id": r["id"], "input": r["text"], "label": "entailment", "gold": "entailment", "status": "ok"} for r in rows
    ]
    (root / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ann))
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with StubServer() as server:
        yield make_world(tmp_path_factory.mktemp("fuzz")), server


def outcome(case: Case, root: Path, url: str, n: int) -> tuple[str, int | None, str]:
    """Run one case in its own folder; returns (category, exit code, output)."""
    folder = root / f"case{n}"
    folder.mkdir()
    for name, content in case.files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    fill = {
        "task": root / "task.yaml",
        "data": root / "d.jsonl",
        "ann": root / "annotations.jsonl",
        "out": folder / "out",
        "url": url,
        "pipe": folder / "p.yaml",
        "missing": folder / "missing",
    }
    if case.yaml is not None:
        for name in ("task.yaml", "d.jsonl"):
            (folder / name).write_bytes((root / name).read_bytes())
        text = case.yaml if isinstance(case.yaml, bytes) else case.yaml.replace("{url}", url).encode()
        (folder / "p.yaml").write_bytes(PIPELINE_HEAD.encode() + text)
    argv = [a.format(**{k: str(v) for k, v in fill.items()}) for a in case.argv]
    if case.may_hang or os.environ.get("EDGEDISTILL_FUZZ_SUBPROCESS"):
        env = {**os.environ, "OPENAI_API_KEY": "", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        try:
            p = subprocess.run(
                [sys.executable, "-m", "edgedistill.cli", *argv],
                capture_output=True,
                text=True,
                check=False,
                timeout=TIMEOUT,
                env=env,
                cwd=folder,
            )
        except subprocess.TimeoutExpired:
            return "hang", None, ""
        code, output, crashed = p.returncode, p.stdout + p.stderr, False
    else:
        result = CliRunner().invoke(main, argv, env={"OPENAI_API_KEY": ""})
        code, output = result.exit_code, result.output
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    if crashed or "Traceback" in output:
        return "traceback", code, output
    if code == 0:
        return "silent", code, output
    if not re.search(case.named, output):
        return "vague", code, output
    return "clear", code, output


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_with_a_clear_error(world, case):
    root, server = world
    sent = len(server.requests)
    n = CASES.index(case)
    category, code, output = outcome(case, root, server.base_url, n)
    assert category != "hang", f"no end within {TIMEOUT} s"
    assert "Traceback" not in output and category != "traceback", output
    assert code != 0, output
    assert re.search(case.named, output), f"{case.named!r} not named in:\n{output}"
    if case.argv[0] == "run":
        assert len(server.requests) == sent, "a request was sent before the pipeline file was checked"


def test_at_least_60_cases():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


if __name__ == "__main__":  # the counts of the closing note
    import tempfile

    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp, StubServer() as server:
        root = make_world(Path(tmp))
        for n, case in enumerate(CASES):
            category, code, output = outcome(case, root, server.base_url, n)
            counts[category] = counts.get(category, 0) + 1
            last = output.strip().splitlines()[-1][:150] if output.strip() else ""
            print(f"{category:<10} {code!s:>4}  {case.id:<45} {last}", flush=True)
    print(
        " / ".join(f"{k} {counts.get(k, 0)}" for k in ("clear", "vague", "traceback", "silent", "hang")),
        f"of {len(CASES)}",
    )
