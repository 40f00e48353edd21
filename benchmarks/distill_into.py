"""A large student as the teacher's assistant: does the small default student learn more from it than from the teacher?

    python benchmarks/distill_into.py --dataset esnli --assistant DIR --assistant-rows 700 --rows 9842 --seeds 0

Per seed, on the rows, splits and test sample of benchmarks/distill_accuracy.py (common.load_dataset):
  1. the assistant: a label-only student of --assistant (all-mpnet-base-v2 from benchmarks/fetch_mpnet.sh) on the
     teacher's labels of the first --assistant-rows rows, the plan's recipe, stripped (`edgedistill train`, `strip`);
  2. the small student: a fresh all-MiniLM-L6-v2 on the assistant's probabilities over the inputs of the first --rows
     rows (`edgedistill compress --into default`: edgedistill.compress.smaller.distill_into), the plan's epochs; with
     --label-weight W, the teacher's own labels as hard targets beside them at weight W; with --ensemble-seeds, the
     average of those seeds' assistants' probabilities (`compress --ensemble`);
  3. both scored on the fixed test sample against gold, beside the teacher's own accuracy there (the ceiling) and the
     label-only all-MiniLM-L6-v2 of distill_accuracy.json at --rows rows, same seeds (the baseline: the same rows with
     the teacher's labels; --baseline-from names the results file).
No label beyond the first --rows rows' teacher labels is used: the assistant reads a subset of them, the small student
the inputs of all of them. Results are written to --out after each seed (a re-run skips the seeds it holds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from common import (
    DSS_DIR,
    RESULTS,
    invocation,
    load_dataset,
    mean_sd,
    merge_seeds,
    offline,
    pct_mean_sd,
    plan_for,
    read_json,
    train_stripped,
)


def run_seed(dataset: str, seed: int, args, work: Path, plan, task, test) -> dict:
    from edgedistill.compress.smaller import distill_into
    from edgedistill.distill.train import default_student
    from edgedistill.evaluate import predict_labels, score

    row, began = {"seed": seed}, time.time()
    members = [int(x) for x in args.ensemble_seeds.split(",")] if args.ensemble_seeds else [seed]
    dirs = [assistant(dataset, s, args, work, plan) for s in members]
    accuracy = ensemble_accuracy(dirs, task, test, work / f"assistant-test-{seed}.jsonl")
    row["assistant"] = {"accuracy": accuracy, "seconds": round(time.time() - began, 1)}
    if args.ensemble_seeds:  # the average of several assistants' answers is what the small student is taught
        row["assistant"]["seeds"] = members
    else:
        s = json.loads((work / f"assistant-{seed}" / "train.json").read_text())
        row["assistant"].update(val_accuracy=s["val_accuracy"], attempts=len(s["attempts"]))
    print(
        f"seed {seed}: assistant ({Path(args.assistant).name}, {args.assistant_rows} rows"
        + (f", seeds {args.ensemble_seeds} averaged" if args.ensemble_seeds else "")
        + f") test {100 * row['assistant']['accuracy']:.1f} %",
        flush=True,
    )
    began = time.time()
    small, into = (work / f"{name}-{seed}-{args.rows}-{args.label_weight:g}" for name in ("small", "into"))
    r = distill_into(
        dirs[0],
        work / f"{dataset}-{args.rows}.jsonl",
        default_student(),
        small,
        into,
        epochs=plan.epochs,
        batch_size=plan.batch_size,
        seed=seed,
        echo=lambda *_: None,
        label_weight=args.label_weight,
        ensemble=dirs[1:],
    )
    row["small"] = {
        "accuracy": score(task, test, predict_labels(small, task, test))["accuracy"],
        "val_agreement": r["val_agreement"],
        "seconds": round(time.time() - began, 1),
    }
    shutil.rmtree(small, ignore_errors=True)
    shutil.rmtree(into, ignore_errors=True)
    print(
        f"seed {seed}: all-MiniLM-L6-v2 on the assistant's probabilities over {args.rows} inputs: test "
        f"{100 * row['small']['accuracy']:.1f} %",
        flush=True,
    )
    return row


def assistant(dataset: str, seed: int, args, work: Path, plan) -> Path:
    """The seed's assistant, stripped: a label-only student of --assistant on the first --assistant-rows rows, trained
    unless --work holds it already (kept for runs with other --rows or seeds)."""
    rows = work / f"{dataset}-{args.assistant_rows}.jsonl"
    return train_stripped(work / f"{dataset}.yaml", rows, work / f"assistant-{seed}", plan, seed, args.assistant)


def ensemble_accuracy(dirs: list[Path], task, test, scratch: Path) -> float:
    """Gold accuracy on the test rows of the label compress --ensemble teaches (compress.smaller.teacher_annotations:
    the argmax of the models' averaged probabilities), scored by the task family's own answer comparison."""
    from edgedistill.compress.smaller import teacher_annotations
    from edgedistill.evaluate import score

    rows = [{"id": e.id, "input": e.input, **({"choices": e.choices} if e.choices else {})} for e in test]
    teacher_annotations(dirs[0], rows, scratch, ensemble=dirs[1:])
    preds = [json.loads(line)["label"] for line in scratch.read_text(encoding="utf-8").splitlines()]
    return score(task, test, preds)["accuracy"]


def baseline(path: Path, dataset: str, rows: int, seeds: list[int]) -> dict:
    """label-only all-MiniLM-L6-v2 at `rows` rows, per seed, from a distill_accuracy.py results file."""
    if not path.exists():
        return {}
    runs = json.loads(path.read_text())["runs"]
    return {
        str(r["seed"]): r["accuracy"]
        for r in runs
        if (r["dataset"], r["size"], r["mode"]) == (dataset, rows, "label-only")
        and r["seed"] in seeds
        and r.get("accuracy") is not None
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dss-dir", default=str(DSS_DIR))
    ap.add_argument("--dataset", default="esnli", choices=["esnli", "cqa"])
    ap.add_argument("--assistant", required=True, help="the large student's base model dir (benchmarks/fetch_mpnet.sh)")
    ap.add_argument("--assistant-rows", type=int, default=700, help="teacher-labelled rows the assistant trains on")
    ap.add_argument(
        "--rows", type=int, default=9842, help="rows whose inputs the small student learns the assistant's answers on"
    )
    ap.add_argument(
        "--label-weight",
        type=float,
        default=0.0,
        help="the teacher's own labels as hard targets beside the "
        "assistant's probabilities, at this weight (distill_into's label_weight; 0: its probabilities alone)",
    )
    ap.add_argument(
        "--ensemble-seeds",
        metavar="S,S,...",
        help="every small student learns the average of the probabilities of "
        "these seeds' assistants (each trained in --work if missing; compress --ensemble) instead of its own "
        "seed's assistant's",
    )
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--baseline-from", default=str(RESULTS / "distill_accuracy.json"))
    ap.add_argument("--out", required=True)
    ap.add_argument(
        "--work",
        help="keep the assistants in this dir (default: a temporary one, removed at the end): a later run "
        "with another --rows and the same seeds reuses them instead of training them again",
    )
    ap.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="train nothing: add these results files' seeds (other processes' --out) to --out",
    )
    ap.add_argument(
        "--plot",
        metavar="JSON",
        help="train nothing: plot --out beside the base curves, read from --baseline-from "
        "and this distill_accuracy.py results file of the assistant's base (label-only), into --out's .png",
    )
    ap.add_argument(
        "--also",
        nargs="+",
        metavar="JSON",
        default=[],
        help="with --plot: more --out files of this script (another --rows) to plot beside --out",
    )
    args = ap.parse_args()
    offline()
    if args.merge or args.plot:
        return merge(
            Path(args.out),
            [Path(p) for p in args.merge or []],
            args.plot and Path(args.plot),
            Path(args.baseline_from),
            [json.loads(Path(p).read_text()) for p in args.also],
        )
    from edgedistill.atomic import write_json

    plan = plan_for(args.dataset, "auto", args.assistant)
    out = Path(args.out)
    state = read_json(out, {"runs": [], "invocations": []})
    seeds = [int(x) for x in args.seeds.split(",") if int(x) not in {r["seed"] for r in state["runs"]}]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="distill-into-"))
    work.mkdir(parents=True, exist_ok=True)
    task, test, reference = load_dataset(
        args.dataset, plan, args.dss_dir, work, sorted({args.assistant_rows, args.rows})
    )
    began = time.time()
    this_run = invocation(__file__)
    state.update(
        dataset=args.dataset,
        assistant=Path(args.assistant).name,
        assistant_rows=args.assistant_rows,
        rows=args.rows,
        label_weight=args.label_weight,
        ensemble_seeds=args.ensemble_seeds,
        plan=plan._asdict(),
        reference=reference,
    )
    state["invocations"].append(this_run)
    for seed in seeds:
        state["runs"].append(run_seed(args.dataset, seed, args, work, plan, task, test))
        this_run["wall_s"] = round(time.time() - began)
        write_json(out, state)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    all_seeds = [r["seed"] for r in state["runs"]]
    state["baseline"] = baseline(Path(args.baseline_from), args.dataset, args.rows, all_seeds)
    write_json(out, state)
    print(summary(state))


def merge(out: Path, others: list[Path], curve: Path | None, baseline_from: Path, also: list[dict]) -> None:
    """Seeds of other --out files joined into `out` (their invocations too); the summary printed, the plot drawn."""
    from edgedistill.atomic import write_json

    state = read_json(out, {"runs": [], "invocations": []})
    for o in others:
        state = merge_seeds(state, read_json(o))
    state["baseline"] = baseline(baseline_from, state["dataset"], state["rows"], [r["seed"] for r in state["runs"]])
    write_json(out, state)
    if curve:
        plot(
            [state, *also],
            json.loads(baseline_from.read_text()),
            json.loads(curve.read_text()),
            out.with_suffix(".png"),
        )
    print(summary(state))


def plot(states: list[dict], small_curve: dict, large_curve: dict, path: Path) -> None:
    """Test accuracy against teacher-labelled rows: both bases' label-only curves (the assistants among the larger
    base's), the small base on the assistants' probabilities (one point per --rows), the teacher's line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    state = states[0]

    def curve(res, extra=()):
        by = {}
        runs = [r for r in res["runs"] if r["dataset"] == state["dataset"] and r["mode"] == "label-only"]
        for size, acc in [(r["size"], r.get("accuracy")) for r in runs] + list(extra):
            if acc is not None:
                by.setdefault(size, []).append(100 * acc)
        return sorted((n, *mean_sd(v)) for n, v in by.items())

    assistants = {(st["assistant_rows"], r["seed"]): r["assistant"]["accuracy"] for st in states for r in st["runs"]}

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for pts, name, color in (
        (curve(small_curve), "all-MiniLM-L6-v2 (22M), teacher's labels", "#6a9fd4"),
        (
            curve(large_curve, [(n, a) for (n, _), a in assistants.items()]),
            f"{state['assistant']} (110M), teacher's labels",
            "#d4862c",
        ),
    ):
        ax.errorbar(
            [p[0] for p in pts],
            [p[1] for p in pts],
            yerr=[p[2] for p in pts],
            marker="o",
            capsize=3,
            label=name,
            color=color,
        )
    pts = sorted((st["rows"], [100 * r["small"]["accuracy"] for r in st["runs"]]) for st in states)
    ax.errorbar(
        [n for n, _ in pts],
        [mean_sd(a)[0] for _, a in pts],
        yerr=[mean_sd(a)[1] for _, a in pts],
        marker="*",
        markersize=12,
        capsize=3,
        color="#2c7a3f",
        linestyle=":",
        label="all-MiniLM-L6-v2 on the assistant's probabilities over\n"
        f"that many inputs (assistant: {state['assistant_rows']} rows)",
    )
    ax.axhline(
        100 * state["reference"]["teacher"], color="#222", linestyle="--", linewidth=1, label="teacher (PaLM-540B)"
    )
    ax.axhline(
        100 * state["reference"]["floor"], color="#999", linestyle=":", linewidth=1, label="floor (commonest label)"
    )
    ax.set_xscale("log")
    ax.set_xlabel("teacher-labelled training rows")
    ax.set_ylabel("test accuracy (%), mean ± sd over seeds")
    ax.set_title(f"{state['dataset']}: a large student as the teacher's assistant", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary(state: dict) -> str:
    ms = pct_mean_sd
    runs = state["runs"]
    lines = [
        f"{state['dataset']}: teacher {100 * state['reference']['teacher']:.1f} % on the test sample, floor "
        f"{100 * state['reference']['floor']:.1f} %",
        f"assistant ({state['assistant']}, {state['assistant_rows']} rows"
        + (f", seeds {state['ensemble_seeds']} averaged" if state.get("ensemble_seeds") else "")
        + f"): {ms([r['assistant']['accuracy'] for r in runs])}",
        f"all-MiniLM-L6-v2 on its probabilities over {state['rows']} inputs"
        + (
            f" (the teacher's labels at weight {state['label_weight']:g} beside them)"
            if state.get("label_weight")
            else ""
        )
        + f": {ms([r['small']['accuracy'] for r in runs])}",
    ]
    base = state.get("baseline") or {}
    paired = [r["small"]["accuracy"] - base[str(r["seed"])] for r in runs if str(r["seed"]) in base]
    if paired:
        lines.append(
            f"all-MiniLM-L6-v2 label-only on the teacher's labels of the {state['rows']} rows: "
            f"{ms(list(base.values()))}; "
            f"paired Δ {ms(paired)} pt"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
