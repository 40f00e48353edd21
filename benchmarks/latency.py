"""Headline benchmark: a MiniLM student for e-SNLI, bundle vs torch and ONNX Runtime peers.

    python benchmarks/latency.py [--student STRIPPED_DIR] [--work DIR] [--out benchmarks/results/latency]

Each step runs the project's own command and is skipped when its output exists in --work (delete
the folder, or the step's subfolder, to redo it):
  1. student (skipped with --student STRIPPED_DIR):
       edgedistill import-dss --dataset esnli --split valid --out W/ann --limit N
       edgedistill train --task W/ann/task.yaml --annotations W/ann/annotations.jsonl --out W/student
                         --mode multitask --max-length 128 --epochs E --lr LR --max-train M
       edgedistill strip W/student --out W/stripped
     i.e. MiniLM-L6 (the default student) distilled from PaLM-540B's e-SNLI labels and rationales.
  2. bundle: edgedistill export W/stripped --out W/bundle --parity-data <300 e-SNLI valid inputs>
  3. bench:  edgedistill bench W/bundle --torch W/stripped --data <e-SNLI test sample> ... --out OUT,
     which writes results.json, report.md, latency.png and tradeoff.png with the machine and command.

Training runs with OMP_NUM_THREADS=1 by default (--train-threads): on a CPU shared with other jobs
one thread trains faster than two fighting for cores. The benchmark itself runs at normal priority;
stop other work on the machine for numbers worth publishing (report.md states how busy it was).
Reads ../shared/datasets/dss (override with EDGEDISTILL_SHARED). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
from pathlib import Path

from common import DSS_DIR, RESULTS, command

ESNLI = DSS_DIR / "esnli"
TITLE = "Headline: MiniLM-L6 e-SNLI student, bundle vs PyTorch and ONNX Runtime"


def sample_rows(path: Path, n: int, seed: int) -> list[dict]:
    """A seeded sample of e-SNLI rows with the fields the task reads (premise, hypothesis, gold label)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = random.Random(seed).sample(rows, min(n, len(rows)))
    return [{"premise": r["premise"], "hypothesis": r["hypothesis"], "label": int(r["label"])} for r in rows]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def edgedistill(*args, threads: int | None = None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    print("$ edgedistill " + shlex.join(str(a) for a in args), flush=True)
    subprocess.run([sys.executable, "-m", "edgedistill.cli", *[str(a) for a in args]], check=True, env=env)


def build_student(
    work: Path, import_limit: int, max_train: int, epochs: float, lr: float, mode: str, threads: int | None
) -> Path:
    ann, student, stripped = work / "ann", work / "student", work / "stripped"
    if not (ann / "annotations.jsonl").exists():
        edgedistill("import-dss", "--dataset", "esnli", "--split", "valid", "--out", ann, "--limit", import_limit)
    if not (student / "train.json").exists():
        edgedistill(
            "train",
            "--task",
            ann / "task.yaml",
            "--annotations",
            ann / "annotations.jsonl",
            "--out",
            student,
            "--mode",
            mode,
            "--max-length",
            128,
            "--epochs",
            epochs,
            "--lr",
            lr,
            "--max-train",
            max_train,
            threads=threads,
        )
    if not (stripped / "config.json").exists():
        edgedistill("strip", student, "--out", stripped)
    return stripped


def describe_student(stripped: Path) -> str:
    """One sentence on where the measured student came from, from the train stage's own record."""
    meta = json.loads((stripped / "edgedistill.json").read_text()) if (stripped / "edgedistill.json").exists() else {}
    train = Path(meta.get("source") or "") / "train.json"
    if not train.is_file():
        return f"Student: `{stripped}`."
    t = json.loads(train.read_text())
    acc = t.get("val_accuracy")
    return (
        "Student: MiniLM-L6 trained by `edgedistill train` (mode "
        f"{t.get('mode')}, {t.get('train_examples')} e-SNLI valid rows "
        f"with PaLM-540B labels and rationales, {t.get('epochs')} epoch(s)"
        + (f", {100 * acc:.1f} % validation accuracy" if acc is not None else "")
        + "), stripped by `edgedistill strip`."
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", type=Path, help="An existing stripped student dir to measure (skips step 1).")
    ap.add_argument(
        "--work",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgedistill-latency",
        help="Where annotations, student, bundle and data samples are kept between runs.",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "latency")
    ap.add_argument("--import-limit", type=int, default=2200, help="e-SNLI valid rows to import (PaLM annotations).")
    ap.add_argument("--max-train", type=int, default=2000)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument(
        "--lr", type=float, default=1e-4, help="Training learning rate (the label head starts from scratch)."
    )
    ap.add_argument(
        "--mode",
        default="label-only",
        choices=["multitask", "label-only", "standard"],
        help="Training mode. The stripped model (what is measured) has the same architecture in every mode; "
        "label-only learns the labels fastest in a short CPU run.",
    )
    ap.add_argument("--train-threads", type=int, default=1, help="OMP_NUM_THREADS for training (0: torch's default).")
    ap.add_argument("--test-examples", type=int, default=500, help="e-SNLI test rows (seeded sample) for accuracy.")
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--seq-lens", default="32,128,256")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--min-time", default="2")
    ap.add_argument(
        "--export-args", default="", help="Extra arguments for `edgedistill export`, e.g. '--min-agreement 0.98'."
    )
    ap.add_argument("--bench-args", default="", help="Extra arguments for `edgedistill bench`.")
    ap.add_argument("--until", choices=["student", "bundle", "bench"], default="bench")
    a = ap.parse_args(argv)
    if not (ESNLI / "esnli_test.json").exists():
        sys.exit(f"e-SNLI not found under {ESNLI}; set EDGEDISTILL_SHARED to the folder holding datasets/dss")
    a.work.mkdir(parents=True, exist_ok=True)

    stripped = a.student or build_student(
        a.work, a.import_limit, a.max_train, a.epochs, a.lr, a.mode, a.train_threads or None
    )
    if a.until == "student":
        return
    parity = a.work / "esnli_valid_parity_300.jsonl"
    if not parity.exists():
        write_rows(parity, sample_rows(ESNLI / "esnli_valid.json", 300, seed=2))
    bundle = a.work / "bundle"
    if not (bundle / "manifest.json").exists():
        edgedistill("export", stripped, "--out", bundle, "--parity-data", parity, *shlex.split(a.export_args))
    if a.until == "bundle":
        return
    data = a.work / f"esnli_test_{a.test_examples}.jsonl"
    if not data.exists():
        write_rows(data, sample_rows(ESNLI / "esnli_test.json", a.test_examples, seed=1))
    note = (
        f"Produced by `{command(__file__)}`. "
        + describe_student(stripped)
        + f" Accuracy on {a.test_examples} e-SNLI test examples (seeded sample, gold labels)."
    )
    edgedistill(
        "bench",
        bundle,
        "--torch",
        stripped,
        "--data",
        data,
        "--batch-sizes",
        a.batch_sizes,
        "--seq-lens",
        a.seq_lens,
        "--threads",
        a.threads,
        "--min-time",
        a.min_time,
        "--title",
        TITLE,
        "--note",
        note,
        *shlex.split(a.bench_args),
        "--out",
        a.out,
    )


if __name__ == "__main__":
    main()
