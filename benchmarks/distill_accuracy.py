"""Do the teacher's rationales make a better small student? Learning curves on real PaLM-540B annotations.

For e-SNLI (train on a subsample of `valid`, test on `test`), CQA and SVAMP (train / test), trains the
MiniLM-L6 student at several training-set sizes, three seeds each, in every mode `--mode auto`
chooses from (edgedistill.distill.select.candidate_modes; SVAMP's student ranks the one-operation
expressions over each problem's numbers, `train --numeric expressions`):
  label-only         PaLM labels
  multitask          + a decoder that writes PaLM's rationale (Distilling Step-by-Step)
  rationale-teacher  + soft labels and [CLS] states of an encoder that read input + rationale (KNIFE)
  rationale-dropout  the rationale appended to the input on half of the steps
and reports `auto` beside them: per size and seed, the candidate `--mode auto` ships (the best on
validation, label-only unless another beats it beyond noise: select.paired_win). Each mode here is trained with
the same seed, split and settings that auto gives its candidates, so auto's pick is read off these runs, not
retrained.
Every run tests on one fixed test sample; the teacher's own accuracy on that sample is the ceiling,
always answering the commonest label (chance for multiple choice) the floor.

    python benchmarks/distill_accuracy.py --datasets esnli --sizes 200,700,2000 [--seeds 0,1,2] [--quick]

Results are merged into benchmarks/results/distill_accuracy.json as each run finishes (keyed by
dataset, size, mode and seed), so an interrupted run resumes and a dataset or size run in another
session joins the same curves; the Markdown report and the plot are rebuilt at the end.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import DSS_DIR, RESULTS, invocation, load_dataset, offline, plan_for, read_json

from edgedistill.choices import MIN_STEPS

MODES = ("label-only", "multitask", "rationale-teacher", "rationale-dropout")
AUTO = "auto"
AUTO_MAX = "highest val"  # the rule auto had before its paired test: the highest validation accuracy
# The plans (common.PLAN): the lr is for students with a fresh head; one without (a two-tower multiple-choice
# student) trains at train's own rate (train.default_rates) unless --lr says otherwise (the plan then records lr None).
SEEDS = (0, 1, 2)
COLORS = {
    "label-only": "#6a9fd4",
    "multitask": "#2c7a3f",
    "rationale-teacher": "#d4862c",
    "rationale-dropout": "#b07cc6",
    AUTO: "#222",
    AUTO_MAX: "#888",
}


def run_one(
    dataset, size, mode, seed, work, plan, task, test, min_steps, pooling="auto", layer_decay=None, student=None
):
    from edgedistill.distill.train import TrainConfig, epochs_for, train
    from edgedistill.errors import UserError
    from edgedistill.evaluate import predict_labels, score

    out = work / f"{dataset}-{size}-{mode}-{seed}"
    start = time.time()
    cfg = TrainConfig(
        task=str(work / f"{dataset}.yaml"),
        annotations=str(work / f"{dataset}-{size}.jsonl"),
        out=str(out),
        mode=mode,
        epochs=plan.epochs,
        min_steps=min_steps,
        batch_size=plan.batch_size,
        max_length=plan.max_length,
        rationale_max_length=48,
        seed=seed,
        lr=plan.lr,
        layer_decay=layer_decay,
        pooling=pooling,
        student=student,
        progress=False,
    )
    # the epochs of the first attempt (raised for --min-steps on small sizes; its split leaves 90 % of the rows to
    # train); a run that succeeds records the epochs of the attempt it kept (a retry trains twice the steps)
    row = {
        "dataset": dataset,
        "size": size,
        "mode": mode,
        "seed": seed,
        "epochs": epochs_for(cfg, size - round(0.1 * size)),
        "min_steps": min_steps,
        "test_rows": len(test),
    }
    try:
        s = train(cfg, echo=lambda *_: None)
    except UserError as e:  # every attempt ended at the floor: recorded as a failed run, never scored
        return {
            **row,
            "accuracy": None,
            "val_accuracy": None,
            "failed": str(e),
            "seconds": round(time.time() - start, 1),
        }
    r = score(task, test, predict_labels(out, task, test))
    shutil.rmtree(out, ignore_errors=True)
    return {
        **row,
        "epochs": s["epochs"],
        "accuracy": r["accuracy"],
        "val_accuracy": s["val_accuracy"],
        "val_correct": s["val_correct"],
        "val_rows": s["val_examples"],
        "train_rows": s["train_examples"],
        "with_rationale": s["rows"]["with_rationale"],
        "attempts": s["attempts"],
        "pooling": s.get("pooling"),
        "val_by_epoch": val_by_epoch(s["history"]),
        "train_loss": s["train_loss"],
        "seconds": round(time.time() - start, 1),
    }


def val_by_epoch(history: list) -> list:
    """Validation accuracy after each epoch, from the Trainer's log (the last attempt's): a best epoch
    at the end says that more epochs may help; an early one, that the run overfits."""
    return [round(h["eval_accuracy"], 4) for h in history if "eval_accuracy" in h]


def main():
    from edgedistill.choices import Pooling, values

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dss-dir", default=str(DSS_DIR))
    ap.add_argument("--datasets", default="esnli")
    ap.add_argument(
        "--sizes", default="200,700,2000", help="training rows per run (10 %% of them validate), comma-separated"
    )
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument(
        "--epochs",
        type=int,
        help="train every run for this many epochs instead of the plan's (a recipe probe: "
        "give it its own --out, as one results file holds one plan)",
    )
    ap.add_argument(
        "--batch-size",
        type=int,
        help="train every run with this many rows a batch instead of the plan's (a two-tower "
        "multiple-choice student ranks each answer among every choice in the batch; a recipe probe: its own --out)",
    )
    ap.add_argument(
        "--pooling",
        default="auto",
        choices=values(Pooling),
        help="train --pooling for every run (auto: the base's, mean for all-MiniLM-L6-v2); "
        "another is a recipe probe: give it its own --out",
    )
    ap.add_argument(
        "--lr",
        type=float,
        help="the encoder's top-layer learning rate for every run instead of the plan's, or of "
        "train's own for a two-tower multiple-choice student (a recipe probe: give it its own --out)",
    )
    ap.add_argument(
        "--layer-decay",
        type=float,
        help="each encoder layer below the top learns at this times the one above "
        "(1.0: one flat rate; default train.LAYER_DECAY; a recipe probe: give it its own --out)",
    )
    ap.add_argument(
        "--sep-pairs",
        action="store_true",
        help="e-SNLI: write each input 'Premise: ... [SEP] Hypothesis: ...', "
        "the two texts a --pooling two-tower classifier reads apart (give its joint-head baseline the flag too; its "
        "own --out)",
    )
    ap.add_argument(
        "--student",
        help="train --student for every run: the base model dir (default all-MiniLM-L6-v2; "
        "benchmarks/fetch_mpnet.sh gets all-mpnet-base-v2; another base: its own --out)",
    )
    ap.add_argument(
        "--min-steps",
        type=int,
        default=MIN_STEPS,
        help="train --min-steps: small sizes train more epochs, up to this "
        "many optimizer steps (0: the plan's epochs at every size, the curves' recipe before this default)",
    )
    ap.add_argument("--quick", action="store_true", help="one seed, tiny sizes, 1 epoch, 40 test rows: a smoke test")
    ap.add_argument("--out", default=str(RESULTS / "distill_accuracy.json"))
    ap.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="train nothing: add the runs of these results files (another "
        "session's or machine's --out) to --out and rebuild the report",
    )
    args = ap.parse_args()
    offline()
    from edgedistill.atomic import write_json

    if args.merge:
        return merge_results(Path(args.out), [Path(p) for p in args.merge])

    sizes = [int(x) for x in args.sizes.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    modes = args.modes.split(",")
    plans = {d: plan_for(d, args.pooling, args.student) for d in args.datasets.split(",")}
    for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr)):
        if value:
            plans = {d: p._replace(**{key: value}) for d, p in plans.items()}
    if args.quick:
        sizes, seeds, args.min_steps = [60, 120], seeds[:1], 0
        plans = {d: p._replace(test_rows=40, epochs=1) for d, p in plans.items()}
    out = Path(args.out)
    state = read_json(out)
    for (
        d,
        p,
    ) in plans.items():  # one results file, one recipe (plans written before --pooling / --layer-decay: their defaults)
        kept = state.get("plan", {}).get(d)
        for key, mine in (
            ("epochs", p.epochs),
            ("batch_size", p.batch_size),
            ("lr", p.lr),
            ("pooling", args.pooling),
            ("layer_decay", args.layer_decay),
            ("sep_pairs", args.sep_pairs),
            ("student", args.student),
            ("min_steps", args.min_steps),
        ):
            theirs = kept and kept.get(key, {"pooling": "auto", "sep_pairs": False, "min_steps": 0}.get(key))
            if kept and theirs != mine:
                raise SystemExit(
                    f"{out} holds {d} runs with {key} {theirs}, and this run has {key} {mine}: one results file holds "
                    "one "
                    "recipe. Give this run its own --out."
                )
    runs = state.get("runs", [])
    done = {(r["dataset"], r["size"], r["mode"], r["seed"]) for r in runs}
    this_run = invocation(__file__)
    meta = {k: state.get(k, {}) for k in ("plan", "reference")}
    meta["invocations"] = state.get("invocations", []) + [this_run]
    work = Path(tempfile.mkdtemp(prefix="distill-acc-"))
    tasks, tests = {}, {}
    todo = [(d, n, m, s) for d in plans for n in sizes for s in seeds for m in modes if (d, n, m, s) not in done]
    began = time.time()
    for dataset, plan in plans.items():
        tasks[dataset], tests[dataset], meta["reference"][dataset] = load_dataset(
            dataset, plan, args.dss_dir, work, sizes, args.sep_pairs
        )
        meta["plan"][dataset] = dict(
            plan._asdict(),
            min_steps=args.min_steps,
            pooling=args.pooling,
            layer_decay=args.layer_decay,
            sep_pairs=args.sep_pairs,
            student=args.student,
        )
    for i, (dataset, size, mode, seed) in enumerate(todo, 1):
        r = run_one(
            dataset,
            size,
            mode,
            seed,
            work,
            plans[dataset],
            tasks[dataset],
            tests[dataset],
            args.min_steps,
            args.pooling,
            args.layer_decay,
            args.student,
        )
        runs.append(r)
        write_json(out, {**meta, "runs": runs})
        eta = (time.time() - began) / i * (len(todo) - i)
        result = (
            "FAILED (every attempt at the floor)"
            if r["accuracy"] is None
            else f"test {100 * r['accuracy']:.1f} %  val {100 * r['val_accuracy']:.1f} %"
        )
        print(
            f"[{i}/{len(todo)}] {dataset} {size:>5} rows  {mode:17} seed {seed}: {result}  "
            f"({r['seconds']:.0f} s; about {eta / 60:.0f} min left)",
            flush=True,
        )
    this_run["wall_s"] = round(time.time() - began)
    write_json(out, {**meta, "runs": runs})
    res = {**meta, "runs": runs, "summary": summarize(runs)}
    write_json(out, res)
    write_report(out, res)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.png')} ({this_run['wall_s'] / 60:.0f} min)")


def run_key(r: dict) -> tuple:
    return r["dataset"], r["size"], r["mode"], r["seed"]


def merge_results(out: Path, others: list[Path]) -> None:
    """Runs keyed by (dataset, size, mode, seed): a new one is added, and one that `out` already has
    is replaced (a re-run), saying so and whether its test accuracy changed."""
    from edgedistill.atomic import write_json

    res = read_json(out, {"plan": {}, "reference": {}, "invocations": [], "runs": []})
    for path in others:
        other = read_json(path)
        for key in ("plan", "reference"):
            for d, v in other.get(key, {}).items():
                res[key].setdefault(d, v)
        res["invocations"] += [i for i in other.get("invocations", []) if i not in res["invocations"]]
        for key in ("notes", "history"):  # hand-written lines, kept in the json
            res[key] = res.get(key, []) + [n for n in other.get(key, []) if n not in res.get(key, [])]
        old = {run_key(r): r for r in res["runs"]}
        incoming = {run_key(r): r for r in other["runs"]}
        changed = [k for k in incoming if k in old and old[k]["accuracy"] != incoming[k]["accuracy"]]
        res["runs"] = [r for r in res["runs"] if run_key(r) not in incoming] + list(incoming.values())
        print(
            f"{path}: {sum(k not in old for k in incoming)} new runs, {sum(k in old for k in incoming)} replaced"
            + (f"; test accuracy changed in {len(changed)}: " + ", ".join(map(str, changed)) if changed else "")
        )
    res["summary"] = summarize(res["runs"])
    write_json(out, res)
    write_report(out, res)
    print(f"wrote {out}, {out.with_suffix('.md')} and {out.with_suffix('.png')}")


# ---------------------------------------------------------------- summarising


def auto_runs(runs, significance=None, name=AUTO):
    """What `--mode auto` ships for each (dataset, size, seed) that has every candidate: select.py's rule,
    which compares candidates row by row on validation, so runs recorded without their per-row
    validation results (before they were kept) give no auto (`auto_missing`). significance=1 and
    name=AUTO_MAX: what the rule before it, the highest validation accuracy, would have shipped."""
    from edgedistill.distill.select import SIGNIFICANCE, best_candidate

    by = collections.defaultdict(dict)
    for r in runs:
        if r["mode"] in MODES:
            by[(r["dataset"], r["size"], r["seed"])][r["mode"]] = r
    out = []
    for (d, n, seed), cands in by.items():
        if len(cands) < len(MODES) or any(
            c.get("val_correct") is None and c["accuracy"] is not None for c in cands.values()
        ):
            continue
        best = best_candidate(
            [dict(cands[m]) for m in MODES], SIGNIFICANCE if significance is None else significance
        )  # label-only first, as auto trains them
        if best is None:
            continue
        out.append({**best, "mode": name, "picked": best["mode"], "seconds": sum(c["seconds"] for c in cands.values())})
    return out


def auto_missing(runs, dataset) -> list[int]:
    """Sizes of `dataset` with every candidate run for some seed but no auto: runs without per-row validation
    results."""
    have = {(r["size"], r["seed"]) for r in auto_runs(runs) if r["dataset"] == dataset}
    full = collections.Counter((r["size"], r["seed"]) for r in runs if r["dataset"] == dataset and r["mode"] in MODES)
    return sorted({n for (n, seed), c in full.items() if c == len(MODES) and (n, seed) not in have})


def summarize(runs):
    acc = collections.defaultdict(list)
    for r in runs + auto_runs(runs) + auto_runs(runs, 1.0, AUTO_MAX):
        if r["accuracy"] is not None:
            acc[(r["dataset"], r["size"], r["mode"])].append(r["accuracy"])
    out = {}
    for (d, n, m), v in acc.items():
        out.setdefault(d, {}).setdefault(str(n), {})[m] = {
            "mean": statistics.mean(v),
            "sd": statistics.stdev(v) if len(v) > 1 else 0.0,
            "n": len(v),
        }
    return out


def at_floor(r, res) -> bool:
    """A run no better on test than always giving the commonest answer (or chance, for multiple choice)."""
    return r["accuracy"] is not None and r["accuracy"] <= res["reference"][r["dataset"]]["floor"] + 0.01


def _rate(p: dict, runs: list) -> str:
    """The learning rates a plan's runs trained at, for the report (train's defaults where the plan gives none)."""
    from edgedistill.distill.student import TWO_TOWER
    from edgedistill.distill.train import HEAD_LR, LAYER_DECAY, TWO_TOWER_LAYER_DECAY, TWO_TOWER_LR

    two_tower = any(r.get("pooling") == TWO_TOWER for r in runs)
    lr = p["lr"] if p["lr"] is not None else TWO_TOWER_LR
    decay = p.get("layer_decay") or (TWO_TOWER_LAYER_DECAY if two_tower else LAYER_DECAY)
    return f"lr {lr:g} at the encoder's top layer ({decay:g} per layer below)" + (
        "" if two_tower else f", label head {HEAD_LR:g}"
    )


def _student_name(plan: dict) -> str:
    """The base every plan's runs train from (--student), for the report."""
    bases = {p.get("student") for p in plan.values()}
    return " / ".join(sorted(f"`{Path(b).name}`" if b else "all-MiniLM-L6-v2 (22M)" for b in bases))


def write_report(out: Path, res: dict):
    from edgedistill.atomic import write_text

    lines = [
        "# Distillation accuracy: do the teacher's rationales make a better student?",
        "",
        f"Learning curves of the {_student_name(res['plan'])} student distilled from PaLM-540B's few-shot "
        "chain-of-thought "
        "outputs (the Distilling Step-by-Step release), one curve per mode, three seeds per point. Produced by:",
        "",
    ]
    for inv in res["invocations"]:
        m = inv["machine"]
        lines.append(
            f"- `{inv['command']}` on {m['cpu_model']} ({m['usable_cpus']} CPUs), torch {m['versions'].get('torch')}, "
            f"transformers {m['versions'].get('transformers')}, {inv['started']}"
            + (f", wall time {inv['wall_s'] / 60:.0f} min" if inv.get("wall_s") is not None else ", interrupted")
        )
    lines += [
        "",
        "Settings: "
        + "; ".join(
            f"{d}: max_length {p['max_length']}, {p['epochs']} epochs"
            + (f" (more where needed for {p['min_steps']} optimizer steps)" if p.get("min_steps") else "")
            + ", "
            f"batch {p['batch_size']}, {_rate(p, [r for r in res['runs'] if r['dataset'] == d])}, {p['test_rows']} "
            "fixed test rows from `test`, training rows from "
            f"`{p['train_split']}` (nested subsets: each size holds the smaller ones)"
            for d, p in res["plan"].items()
        )
        + ". Label head: "
        + _poolings(res["runs"])
        + ". Checkpoints: best epoch on 10 % of the training rows (teacher labels, never test). `auto` is the "
        "candidate "
        "`--mode auto` ships for that seed: label-only unless another beats it on validation beyond noise (a one-sided "
        "paired sign test on the rows where exactly one of the two is right, p < 0.05). `highest val`: the candidate "
        "with the highest validation accuracy, "
        "auto's rule before that test (label-only on a tie), read off the same runs.",
        "",
    ]
    for d, by_size in res["summary"].items():
        ref = res["reference"][d]
        modes = [m for m in (*MODES, AUTO, AUTO_MAX) if any(m in v for v in by_size.values())]
        lines += [
            f"## {d}",
            "",
            f"Test accuracy (%), mean ± sd over seeds. Teacher (PaLM-540B) on the same {res['plan'][d]['test_rows']} "
            f"test rows: **{100 * ref['teacher']:.1f} %**; floor (commonest answer / chance): {100 * ref['floor']:.1f} "
            "%"
            + (
                "; answers that are one operation on two numbers of the problem, the most a ranking student can get "
                "right: "
                f"{100 * ref['one_operation']:.1f} %"
                if "one_operation" in ref
                else ""
            )
            + ".",
            "",
            "| training rows | " + " | ".join(modes) + " |",
            "|---:|" + "---|" * len(modes),
        ]
        for n in sorted(by_size, key=int):
            cells = [_cell(by_size[n][m]) if m in by_size[n] else "–" for m in modes]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines += ["", *verdicts(d, by_size, res), ""]
    if res.get("notes"):  # what changed between the invocations above (kept in the json, carried by --merge)
        lines += ["## Notes", "", *[f"- {n}" for n in res["notes"]], ""]
    lines += [f"![accuracy vs training rows]({out.with_suffix('.png').name})", ""]
    lines += [f"- {h}" for h in res.get("history", [])]
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    plot(res, out.with_suffix(".png"))


def _poolings(runs) -> str:
    """What the runs' label heads read (train --pooling; runs from before it was recorded read [CLS])."""
    seen = {r.get("pooling") or "cls" for r in runs if r.get("accuracy") is not None}
    names = {
        "mean": "the mean token state (`--pooling auto` for all-MiniLM-L6-v2)",
        "cls": "[CLS] through BERT's pooler",
        "two-tower": "20 x the cosine of the question's and each choice's mean states, encoded apart "
        "(`--pooling two-tower`)",
    }
    return " and ".join(names.get(p, f"`--pooling {p}`") for p in sorted(seen)) + (
        " (mixed: see the notes)" if len(seen) > 1 else ""
    )


def _cell(s: dict) -> str:
    """mean ± sd, with the number of seeds where a point has fewer than the plan's (an interrupted or partial run)."""
    return f"{100 * s['mean']:.1f} ± {100 * s['sd']:.1f}" + (f" (n={s['n']})" if s["n"] < len(SEEDS) else "")


def verdicts(d, by_size, res) -> list[str]:
    """Per size: the best rationale mode against label-only, in units of seed noise; auto against label-only;
    failures."""
    out = []
    for n in sorted(by_size, key=int):
        by = by_size[n]
        if "label-only" not in by:
            continue
        lo = by["label-only"]
        rat = [m for m in MODES[1:] if m in by]
        tried = collections.Counter(r["mode"] for r in res["runs"] if r["dataset"] == d and str(r["size"]) == n)
        if not rat:
            out.append(
                f"- {n} rows: label-only {_cell(lo)} %, {100 * (lo['mean'] - res['reference'][d]['floor']):+.1f} pt "
                "over the floor"
                "; the rationale modes are not run at this size."
            )
        elif min(tried[m] for m in ["label-only", *rat]) < len(SEEDS):
            out.append(
                f"- {n} rows: fewer than {len(SEEDS)} seeds run so far ("
                + ", ".join(f"{m} {tried[m]}" for m in ["label-only", *rat])
                + "): no verdict yet."
            )
        else:
            best = max(rat, key=lambda m: by[m]["mean"])
            diff, noise = 100 * (by[best]["mean"] - lo["mean"]), 100 * max(by[best]["sd"], lo["sd"])
            word = "beats" if diff > noise else "trails" if diff < -noise else "is within seed noise of"
            out.append(
                f"- {n} rows: the best rationale mode, {best}, {word} label-only ({diff:+.1f} pt; larger sd "
                f"{noise:.1f} pt)"
                + (f"; auto {100 * (by[AUTO]['mean'] - lo['mean']):+.1f} pt vs label-only" if AUTO in by else "")
                + (
                    f" (the highest-validation pick {100 * (by[AUTO_MAX]['mean'] - lo['mean']):+.1f})"
                    if AUTO_MAX in by
                    else ""
                )
                + "."
            )
    missing = auto_missing(res["runs"], d)
    if missing:
        out.append(
            f"- auto is not given at {', '.join(map(str, missing))} rows: those runs predate the per-row validation "
            "results "
            "that auto's paired rule compares (re-run them to add it)."
        )
    picks = collections.Counter((r["size"], r["picked"]) for r in auto_runs(res["runs"]) if r["dataset"] == d)
    if picks:
        out.append(
            "- auto picked: "
            + "; ".join(
                f"{n} rows: " + ", ".join(f"{m} ×{c}" for (s, m), c in sorted(picks.items()) if s == n)
                for n in sorted({s for s, _ in picks})
            )
            + "."
        )
    failed = [r for r in res["runs"] if r["dataset"] == d and at_floor(r, res)]
    retried = [r for r in res["runs"] if r["dataset"] == d and len(r.get("attempts", [])) > 1]
    refused = [r for r in res["runs"] if r["dataset"] == d and r.get("failed")]
    out.append(
        "- Runs at or below the floor: "
        + (
            ", ".join(f"{r['size']} {r['mode']} seed {r['seed']} ({100 * r['accuracy']:.1f} %)" for r in failed)
            or "none"
        )
        + ". Runs retrained after ending at the "
        "floor on validation: "
        + (", ".join(f"{r['size']} {r['mode']} seed {r['seed']}" for r in retried) or "none")
        + ". Runs refused (every attempt at the floor; no student written, left out of the means): "
        + (", ".join(f"{r['size']} {r['mode']} seed {r['seed']}" for r in refused) or "none")
        + "."
    )
    return out


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    datasets = list(res["summary"])
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.2), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        by_size = res["summary"][d]
        sizes = sorted(by_size, key=int)
        for m in (*MODES, AUTO, AUTO_MAX):
            pts = [(int(n), by_size[n][m]) for n in sizes if m in by_size[n]]
            if not pts:
                continue
            x = [p[0] for p in pts]
            ax.errorbar(
                x,
                [100 * p[1]["mean"] for p in pts],
                yerr=[100 * p[1]["sd"] for p in pts],
                marker="o",
                capsize=3,
                color=COLORS[m],
                label=m,
                linestyle={AUTO: "--", AUTO_MAX: ":"}.get(m, "-"),
                linewidth=2.2 if m == AUTO else 1.4,
            )
        ref = res["reference"][d]
        ax.axhline(100 * ref["teacher"], color="#c33", linewidth=1, label="teacher (PaLM-540B)")
        ax.axhline(100 * ref["floor"], color="#999", linewidth=1, linestyle=":", label="commonest answer / chance")
        if "one_operation" in ref:  # numeric: what a student that ranks one-operation expressions can reach
            ax.axhline(
                100 * ref["one_operation"],
                color="#c33",
                linewidth=1,
                linestyle="--",
                label="answers one operation away",
            )
        ax.set_xscale("log")
        ax.set_xticks([int(n) for n in sizes], [n for n in sizes])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("training rows (teacher-annotated)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{d}: student accuracy vs training rows")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
