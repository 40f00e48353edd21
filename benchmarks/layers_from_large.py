"""A larger base cut to fewer layers: does it keep its accuracy at a latency near the default student's?

    python benchmarks/layers_from_large.py --dataset cqa --large 'WORK-{seed}/assistant-{seed}-stripped' --rows 1000 \
        --layers 4,2 --seeds 0 --out OUT.json [--time]

Per seed, on the rows and the fixed test sample of benchmarks/distill_accuracy.py (common.load_dataset):
  1. the large student: a stripped label-only student of a larger base (all-mpnet-base-v2) on the teacher's labels of
     the first --rows rows, as benchmarks/distill_into.py --work trains and keeps it (its `assistant-SEED-stripped`);
  2. K-layer students cut from it and distilled on its probabilities over the inputs of the same rows
     (edgedistill.compress.smaller.distill_layers: what `edgedistill compress --layers K --no-trim-vocab` builds,
     its default epochs; --label-weight as there);
  3. the default student (all-MiniLM-L6-v2) label-only on the teacher's labels of the same rows, distill_accuracy.py's
     recipe (the baseline, trained here: it reproduces the curves' run of that size and seed);
all scored on the test sample against gold, beside the teacher's own accuracy there. With --time, the first seed's
models are exported as `edgedistill export` makes them (INT8) and timed side by side (compress.candidates.p50_ms:
one predict call on one real input, tokenizing included, every bundle taking turns). Results go to --out after each
seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import common


def run_seed(dataset, seed, args, work, plan, task, test) -> dict:
    from edgedistill.compress.smaller import distill_layers
    from edgedistill.evaluate import predict_labels, score

    def acc(model):
        return score(task, test, predict_labels(model, task, test))["accuracy"]

    large = Path(args.large.format(seed=seed))
    rows = work / f"{dataset}-{args.rows}.jsonl"
    row = {"seed": seed, "large": {"dir": str(large), "accuracy": acc(large)}, "layers": {}}
    print(f"seed {seed}: large student {100 * row['large']['accuracy']:.1f} %", flush=True)
    for k in args.layers:
        out, began = work / f"layers-{k}-{seed}", time.time()
        if not out.exists():
            r = distill_layers(
                large,
                rows,
                k,
                out,
                work / f"scratch-{seed}",
                seed=seed,
                echo=lambda *_: None,
                label_weight=args.label_weight,
            )
        else:
            r = {}
        row["layers"][str(k)] = {
            "accuracy": acc(out),
            "val_agreement": r.get("val_agreement"),
            "seconds": round(time.time() - began, 1),
        }
        print(f"seed {seed}: {k} layers {100 * row['layers'][str(k)]['accuracy']:.1f} %", flush=True)
    began = time.time()  # the default student on the curves' recipe, so it reproduces the curves' run
    small = common.train_stripped(work / f"{dataset}.yaml", rows, work / f"default-{seed}", plan, seed)
    row["default"] = {"accuracy": acc(small), "seconds": round(time.time() - began, 1)}
    print(f"seed {seed}: all-MiniLM-L6-v2 {100 * row['default']['accuracy']:.1f} %", flush=True)
    return row


def time_models(models: dict[str, Path], rows: Path, work: Path, threads: int) -> dict:
    """Each model exported as `edgedistill export` does (INT8); p50 ms and MB, timed side by side."""
    from edgedistill.compress.candidates import p50_ms
    from edgedistill.deploy.export import ExportConfig, export_bundle

    bundles, sizes, agree = {}, {}, {}
    for name, model in models.items():
        bundles[name] = work / "bundles" / name
        # timed whatever INT8 does to its answers (a cut student's flat probabilities flip more):
        # the agreement is recorded
        m = export_bundle(
            ExportConfig(
                model=str(model), out=str(bundles[name]), parity_data=str(rows), min_agreement=0.0, threads=threads
            ),
            echo=lambda *_: None,
        )
        sizes[name], agree[name] = m["size_bytes"], m["parity"]["int8_agreement"]
    ms = p50_ms(bundles, rows, threads, min_time=3.0)
    return {n: {"p50_ms": ms[n], "mb": sizes[n] / 1e6, "int8_agreement": agree[n]} for n in models}


def summary(state: dict) -> str:
    ms = common.pct_mean_sd
    runs, ref = state["runs"], state["reference"]
    t = state.get("timing") or {}
    lines = [
        f"{state['dataset']}, {state['rows']} teacher-labelled rows: "
        f"teacher {100 * ref['teacher']:.1f} % on the test sample",
        "| student | test % (seeds "
        + "/".join(str(r["seed"]) for r in runs)
        + ") | mean ± sd | of the teacher | p50 ms | vs default | MB |",
        "|---|---|---|---:|---:|---:|---:|",
    ]

    def line(name, accs, key):
        tm = t.get(key, {})
        base = t.get("default", {}).get("p50_ms")
        lines.append(
            f"| {name} | {' / '.join(f'{100 * a:.1f}' for a in accs)} | {ms(accs)} | "
            f"{statistics.mean(accs) / ref['teacher']:.2f} | "
            + (f"{tm['p50_ms']:.2f} | {tm['p50_ms'] / base:.2f}× | {tm['mb']:.1f} |" if tm and base else "– | – | – |")
        )

    line(f"{state['large']} ({state['large_layers']} layers)", [r["large"]["accuracy"] for r in runs], "large")
    for k in state["layers"]:
        accs = [r["layers"][str(k)]["accuracy"] for r in runs if str(k) in r["layers"]]
        line(f"{state['large']} cut to {k} layers, distilled", accs, f"layers-{k}")
    line("all-MiniLM-L6-v2 (the default), label-only", [r["default"]["accuracy"] for r in runs], "default")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dss-dir", default=str(common.DSS_DIR))
    ap.add_argument("--dataset", default="cqa", choices=["esnli", "cqa"])
    ap.add_argument(
        "--large",
        required=True,
        help="the large stripped student per seed, '{seed}' standing for the seed "
        "(distill_into.py --work DIR keeps DIR/assistant-SEED-stripped)",
    )
    ap.add_argument("--large-name", default="all-mpnet-base-v2", help="the large student's base, as the table names it")
    ap.add_argument("--rows", type=int, default=1000, help="the teacher-labelled rows the large student trained on")
    ap.add_argument("--layers", default="4,2")
    ap.add_argument("--label-weight", type=float, default=0.0, help="as `edgedistill compress --label-weight`")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--time", action="store_true", help="export and time the first seed's models side by side")
    ap.add_argument("--threads", type=int, default=2, help="threads per timed call")
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument(
        "--merge", nargs="+", metavar="JSON", help="train nothing: add these --out files' seeds and timing to --out"
    )
    args = ap.parse_args()
    args.layers = [int(k) for k in args.layers.split(",")]
    common.offline()
    from edgedistill.atomic import write_json

    out = Path(args.out)
    state = common.read_json(out, {"runs": [], "invocations": []})
    if args.merge:
        for o in map(Path, args.merge):
            theirs = common.read_json(o)
            state = {**common.merge_seeds(state, theirs), "timing": state.get("timing") or theirs.get("timing")}
        write_json(out, state)
        return print(summary(state))

    plan, work = common.plan_for(args.dataset), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    task, test, reference = common.load_dataset(args.dataset, plan, args.dss_dir, work, [args.rows])
    seeds = [int(s) for s in args.seeds.split(",")]
    large0 = Path(args.large.format(seed=seeds[0]))
    this_run = common.invocation(__file__)
    state.update(
        dataset=args.dataset,
        rows=args.rows,
        layers=args.layers,
        label_weight=args.label_weight,
        reference=reference,
        large=args.large_name,
        large_layers=json.loads((large0 / "config.json").read_text())["num_hidden_layers"],
    )
    state["invocations"].append(this_run)
    began = time.time()
    for seed in [s for s in seeds if s not in {r["seed"] for r in state["runs"]}]:
        state["runs"].append(run_seed(args.dataset, seed, args, work, plan, task, test))
        this_run["wall_s"] = round(time.time() - began)
        write_json(out, state)
    if args.time:
        models = {
            "large": large0,
            **{f"layers-{k}": work / f"layers-{k}-{seeds[0]}" for k in args.layers},
            "default": work / f"default-{seeds[0]}-stripped",
        }
        state["timing"] = {
            **time_models(models, work / f"{args.dataset}-{args.rows}.jsonl", work, args.threads),
            "threads": args.threads,
            "seed": seeds[0],
        }
        this_run["wall_s"] = round(time.time() - began)
        write_json(out, state)
    print(summary(state))


if __name__ == "__main__":
    main()
