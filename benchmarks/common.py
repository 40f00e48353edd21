"""What the benchmark scripts share, so that none imports another: where things are, the DSS rows and recipe the
learning-curve benchmarks train and test on, the quickstart's student, the record a run keeps of itself, and the
few statistics their reports print.

The scripts run as `python benchmarks/NAME.py`, so `import common` finds this file beside them. Training,
export, evaluation and timing are the package's (edgedistill.distill.train.train, deploy.export.export_bundle,
edgedistill.evaluate, edge.timing): nothing here re-implements them.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import random
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
QUICKSTART = ROOT / "examples" / "quickstart"
SHARED = Path(os.environ.get("EDGEDISTILL_SHARED", ROOT.parent / "shared"))
DSS_DIR = SHARED / "datasets" / "dss"  # the Distilling Step-by-Step release: PaLM-540B's annotations


# ---------------------------------------------------------------- a run and its record


def offline() -> None:
    """No download: the base models are the installed ones."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def command(script: str) -> str:
    """The command line that ran `script` (its __file__), as a results file records it."""
    return "python " + shlex.join([f"benchmarks/{Path(script).name}", *sys.argv[1:]])


def invocation(script: str) -> dict:
    """A run's record: its command line, the machine (with torch's threads) and when it started."""
    import torch

    from edgedistill.edge.machine import machine_record

    return {
        "command": command(script),
        "machine": machine_record(threads=[torch.get_num_threads()]),
        "started": time.strftime("%Y-%m-%d %H:%M"),
    }


def read_json(path: Path, default: dict | None = None) -> dict:
    """A results file, or `default` (an empty dict) where there is none yet: runs resume from it."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else ({} if default is None else default)


def merge_seeds(state: dict, theirs: dict) -> dict:
    """Another process's results file of the same per-seed script joined into `state`: the seeds `state` lacks and
    their invocations; `state`'s own settings win."""
    seen = {r["seed"] for r in state["runs"]}
    runs = sorted(state["runs"] + [r for r in theirs["runs"] if r["seed"] not in seen], key=lambda r: r["seed"])
    return {**theirs, **state, "runs": runs, "invocations": state["invocations"] + theirs["invocations"]}


def tests_module(name: str):
    """A helper of the test suite (tests/tiny.py's config-built models, tests/openai_stub.py's server), loaded by
    its path."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- statistics the reports print


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def pct_mean_sd(xs: list[float]) -> str:
    """Shares as percent, "mean ± sd" over seeds (one seed: its value)."""
    m, sd = mean_sd([100 * x for x in xs])
    return f"{m:.1f} ± {sd:.1f}" if len(xs) > 1 else f"{m:.1f}"


def percentile(xs: list[float], q: float) -> float:
    """The nearest-rank percentile that js_runtime.md and text_model.md report, so both tables read alike."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def side_by_side_timing():
    """edge.timing.time_interleaved's settings for the p50s compress.py and int8_recipe.py time side by side: at least
    3 s and 30 calls per variant, after 0.5 s of warm-up (the package's bench settings, these fields set)."""
    from edgedistill.measure.bench import BenchConfig

    return BenchConfig(min_time=3.0, min_iters=30, warmup=0.5)


# ---------------------------------------------------------------- the learning curves' data and recipe


class Plan(NamedTuple):
    """A dataset's recipe in the learning curves (distill_accuracy.py) and the benchmarks that reuse its runs. The
    label head learns at train.HEAD_LR and the encoder's lower layers at lr * train.LAYER_DECAY^depth; lr None:
    train's own rates (a student without a fresh head: `plan_for`)."""

    train_split: str
    test_rows: int
    max_length: int
    epochs: float
    batch_size: int
    lr: float | None


PLAN = {
    "esnli": Plan("valid", 500, 64, 3, 16, 2e-4),
    "cqa": Plan("train", 300, 48, 3, 8, 1e-4),
    "svamp": Plan("train", 200, 64, 3, 8, 1e-4),
}
# --sep-pairs: where a dataset's input parts its two texts, rewritten as " [SEP] " (what a two-tower classifier reads)
PAIR_SPLITS = {"esnli": "\nHypothesis: "}


def takes_plan_rate(dataset: str, pooling: str = "auto", student: str | None = None) -> bool:
    """Whether this dataset's student under --pooling trains at the plan's rate: one with a fresh head does
    (train.fresh_head decides; a two-tower multiple-choice student has none and takes train's own)."""
    from edgedistill.distill import train
    from edgedistill.teacher.dss import task_for

    base = student or train.default_student()
    return train.fresh_head(*train.student_head(task_for(dataset).type, base, pooling=pooling))


def plan_for(dataset: str, pooling: str = "auto", student: str | None = None) -> Plan:
    """PLAN[dataset], with train's own rates (lr None) for a student that has no fresh head."""
    plan = PLAN[dataset]
    return plan if takes_plan_rate(dataset, pooling, student) else plan._replace(lr=None)


def samples(dataset: str, plan: Plan, dss_dir, seed: int = 0):
    """(task, the training annotations in run order, the fixed test annotations): the training split shuffled with
    `seed` (0: the curves' rows, so a size's rows are the first that many and each size holds the smaller ones), the
    test split with seed 1, its first plan.test_rows."""
    from edgedistill.teacher.dss import load_dss

    task, anns = load_dss(dataset, plan.train_split, dss_dir)
    random.Random(seed).shuffle(anns)
    _, test_anns = load_dss(dataset, "test", dss_dir)
    random.Random(1).shuffle(test_anns)
    return task, anns, test_anns[: plan.test_rows]


def load_dataset(dataset: str, plan: Plan, dss_dir, work: Path, sizes: list[int], sep_pairs: bool = False, seed=0):
    """Write the task (WORK/DATASET.yaml) and the training subsets (WORK/DATASET-SIZE.jsonl) to `work`; return the
    task, the test sample and its references. sep_pairs: every input's two texts parted by [SEP] (`PAIR_SPLITS`),
    training and test rows alike."""
    from edgedistill.atomic import write_jsonl
    from edgedistill.data import Example
    from edgedistill.teacher.dss import agreement

    task, anns, test_anns = samples(dataset, plan, dss_dir, seed)
    if sep_pairs:
        if dataset not in PAIR_SPLITS:
            raise SystemExit(f"--sep-pairs: {dataset}'s inputs are not text pairs; it is for {', '.join(PAIR_SPLITS)}")
        for a in anns + test_anns:
            first, second = a.input.split(PAIR_SPLITS[dataset], 1)
            a.input = f"{first} [SEP] {PAIR_SPLITS[dataset].strip()} {second}"
    task.save(work / f"{dataset}.yaml")
    if max(sizes) > len(anns):
        raise SystemExit(f"--sizes: {dataset} {plan.train_split} has {len(anns)} rows, fewer than {max(sizes)}")
    for size in sizes:
        write_jsonl(work / f"{dataset}-{size}.jsonl", [a.to_json() for a in anns[:size]])
    test = [Example(id=a.id, input=a.input, choices=a.choices, gold=a.gold) for a in test_anns]
    return task, test, {**references(test_anns, task.type), "teacher_parsed": agreement(task, test_anns)}


def references(test_anns, task_type: str = "classification") -> dict:
    """The floor (always the commonest gold answer; chance for multiple choice) and the ceiling (the teacher's own
    answer, a parse failure counted wrong) on the test sample. Numeric answers compare by value; their
    `one_operation` share is what a student that ranks one-operation expressions can reach."""
    from edgedistill.edge.arith import to_number
    from edgedistill.edge.families import answers_match

    def value(a):
        return to_number(a.gold) if task_type == "numeric" else a.gold

    n = len(test_anns)
    commonest = collections.Counter(map(value, test_anns)).most_common(1)[0][1] / n
    floor = 1 / len(test_anns[0].choices) if test_anns[0].choices else commonest
    teacher = sum(a.status == "ok" and answers_match(task_type, a.label, a.gold) for a in test_anns) / n
    out = {"floor": floor, "teacher": teacher}
    if task_type == "numeric":
        out["one_operation"] = sum(one_operation(a.input, a.gold) for a in test_anns) / n
    return out


def one_operation(text: str, answer) -> bool:
    """Whether one of the expressions a numeric student ranks for `text` has the value `answer`."""
    from edgedistill.edge.arith import to_number
    from edgedistill.edge.expressions import candidates, target

    number = to_number(answer)
    return number is not None and target(candidates(text), number) is not None


def train_stripped(task: Path, annotations: Path, out: Path, plan: Plan, seed: int, student: str | None = None) -> Path:
    """A label-only student (of `student`, default all-MiniLM-L6-v2) on the plan's recipe, as the curves train it,
    stripped into OUT-stripped; one already there is kept (reused by runs with other rows or seeds)."""
    from edgedistill.distill.strip import strip_student
    from edgedistill.distill.train import TrainConfig, train

    stripped = out.with_name(f"{out.name}-stripped")
    if not stripped.exists():
        cfg = TrainConfig(
            task=str(task),
            annotations=str(annotations),
            out=str(out),
            mode="label-only",
            epochs=plan.epochs,
            batch_size=plan.batch_size,
            max_length=plan.max_length,
            seed=seed,
            lr=plan.lr,
            student=student,
            progress=False,
        )
        train(cfg, echo=lambda *_: None)
        strip_student(out, stripped)
    return stripped


def quickstart_student(run: Path) -> tuple[Path, Path, Path, Path]:
    """(stripped dir, annotations, task.yaml, gold test file) of the quickstart's run in `run`, which
    `edgedistill run examples/quickstart/pipeline.yaml` makes (run here until strip where it is missing; the
    recorded teacher is replayed, no server)."""
    if not (run / "stripped").exists():
        from edgedistill.pipeline import load_pipeline, run_pipeline

        pipe = load_pipeline(QUICKSTART / "pipeline.yaml")
        pipe.run_dir = str(run)
        run_pipeline(pipe, until="strip")
    return run / "stripped", run / "annotations.jsonl", QUICKSTART / "task.yaml", QUICKSTART / "test.jsonl"
