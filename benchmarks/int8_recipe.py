"""INT8 within 0.5 pt of FP32? Activation smoothing (--smooth) and the k most INT8-sensitive MatMuls kept FP32
(--int8-fp32), measured on held-out gold.

    python benchmarks/int8_recipe.py [--datasets esnli,quickstart] [--ladder 0,1,2,3,6,12] [--alphas 0.5,0.7,0.8,0.9]
                                     [--no-timing] [--results DIR]

Per student (the e-SNLI MiniLM student of benchmarks/compress.py and the quickstart's):
  - `edgedistill export --int8-fp32 auto` writes the shipped bundle (smoothed by default; its wall time is the
    cost of smoothing and ranking);
  - one `edgedistill export --smooth ALPHA` bundle per alpha (all other MatMuls INT8), as the export chose its graph:
    folded (1/s in the ops making the inputs, nothing at run time), with explicit Muls, or unsmoothed;
  - at the default alpha, both smoothed graphs whatever the export chose ("folded only", "with explicit Muls": the
    export with its choice forced), so their drift and latency sit side by side;
  - from the ranking in the shipped manifest, one unsmoothed bundle per k in the ladder: the plan with the top k
    MatMuls FP32 (quantize.fp32 nodes_to_exclude), and the ONNX FP32 model they are all compared with;
  - on the gold test rows, answered one item per call as an app asks (EdgeModel.predict): accuracy vs
    FP32 (pt), label agreement with FP32, flips toward / away from gold with an exact sign test
    (is the accuracy difference beyond the noise of a few flips?), mean KL(FP32 || INT8) and max / mean |Δprob|;
  - model size, and p50 at batch 1, 128 tokens, 2 threads, all variants interleaved in one run
    (edge.timing.time_interleaved), as a ratio to all-INT8 (k = 0); --no-timing leaves it out (a busy machine).
Writes benchmarks/results/int8_recipe.{md,json} (--results: another folder).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
from common import RESULTS, ROOT, command, quickstart_student, side_by_side_timing


def subject(name: str, esnli: Path, quickstart_run: Path) -> tuple:
    """(stripped, annotations, task.yaml, gold test, --min-agreement of its export) of a student: the e-SNLI one
    benchmarks/compress.py trains, or the quickstart's (its run made here where it is missing)."""
    if name == "esnli":
        # the e-SNLI student's INT8 labels agree with torch on ~97 % (thin margins): 0.96, as in the README
        return (
            esnli / "stripped",
            esnli / "annotations.jsonl",
            esnli / "stripped" / "task.yaml",
            esnli / "test.jsonl",
            0.96,
        )
    if name == "quickstart":
        return (*quickstart_student(quickstart_run), 0.99)
    raise SystemExit(f"--datasets: {name} is not esnli or quickstart")


def sign_test_p(a: int, b: int) -> float:
    """Two-sided exact binomial p of a vs b flips under 'either direction equally likely' (train's binomial tail)."""
    from edgedistill.distill.train import binomial_tail

    return min(1.0, 2 * binomial_tail(max(a, b), a + b, 0.5))


def variant_dir(bundle: Path, model_file: Path, quant: dict, dest: Path) -> Path:
    """The shipped bundle with another model.onnx and quantization block (loaded with verify=False)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(bundle, dest, ignore=shutil.ignore_patterns("ort", "*.zip"))
    m = json.loads((bundle / "manifest.json").read_text())
    shutil.copyfile(model_file, dest / m["models"]["model"])
    (dest / "manifest.json").write_text(json.dumps({**m, "quantization": quant}))
    return dest


# variant -> (the smoothed graph it ships, export --smooth-layernorm: Muls on LayerNorm outputs too)
FORCED = {
    "folded only": ("folded", False),
    "with explicit Muls": ("with_muls", False),
    "with LayerNorm Muls too": ("with_muls", True),
}


@contextlib.contextmanager
def forced_smoothing(graph: str):
    """The export, shipping the smoothed `graph` ("folded" or "with_muls") instead of the one its drift rule picks."""
    import edgedistill.deploy.export as export_mod

    real = export_mod.pick_smoothing
    export_mod.pick_smoothing = lambda kl: graph if graph in kl else real(kl)
    try:
        yield
    finally:
        export_mod.pick_smoothing = real


def run_subject(name: str, subject: tuple, ladder: list[int], alphas: list[float], work: Path, timing: bool) -> dict:
    from edgedistill.choices import SMOOTH_ALPHA
    from edgedistill.data import load_examples
    from edgedistill.deploy.export import ExportConfig, export_bundle
    from edgedistill.deploy.onnx_export import export_onnx
    from edgedistill.deploy.quantize import QuantPlan, mean_kl, quantize
    from edgedistill.edge.timing import summarize, time_interleaved
    from edgedistill.runtime import EdgeModel
    from edgedistill.task import load_task

    stripped, annotations, task_path, test, min_agreement = subject
    work = work / name
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    log = []
    m = export_bundle(
        ExportConfig(
            model=str(stripped),
            out=str(work / "bundle-auto"),
            parity_data=str(annotations),
            min_agreement=min_agreement,
            int8_fp32="auto",
        ),
        echo=lambda s: (log.append(f"{time.time() - t0:6.1f}s {s}"), print(f"  {s}", flush=True)),
    )
    export_s = time.time() - t0
    q = m["quantization"]
    ranking = [r["node"] for r in q["fp32_matmuls"]["ranking"]]
    raw = export_onnx(stripped, work / "onnx", m["family"])["model"]

    plan_fields = set(QuantPlan.__dataclass_fields__)
    base = {k: v for k, v in q.items() if k in plan_fields and k not in ("nodes_to_exclude", "notes", "fp32_matmuls")}
    dirs = {"FP32": variant_dir(work / "bundle-auto", raw, {"mode": "none"}, work / "v-fp32")}
    base.pop("smooth", None)
    for k in ladder:
        plan = QuantPlan(**base, nodes_to_exclude=ranking[:k])
        quantize(raw, work / f"top{k}.onnx", plan)
        dirs[k] = variant_dir(work / "bundle-auto", work / f"top{k}.onnx", plan.to_dict(), work / f"v-top{k}")
    smoothed = {f"smoothed, alpha {a:g}": a for a in alphas}  # variant -> its --smooth
    graphs = {}  # variant -> the graph its export shipped: folded, with_muls or unsmoothed (the export's drift rule)
    for n, a in smoothed.items():
        ma = export_bundle(
            ExportConfig(
                model=str(stripped),
                out=str(work / f"smooth{a:g}"),
                parity_data=str(annotations),
                min_agreement=0.0,
                smooth=a,
            ),
            echo=lambda s: None,
        )
        graphs[n] = (ma["quantization"]["smooth"] or {}).get("graph", "unsmoothed")
        dirs[n] = work / f"smooth{a:g}"
    sites = {}  # forced variant -> where its MatMul inputs' 1/s went
    for n, (graph, layernorm_muls) in FORCED.items():
        out = work / n.replace(" ", "-")
        with forced_smoothing(graph):
            mf = export_bundle(
                ExportConfig(
                    model=str(stripped),
                    out=str(out),
                    parity_data=str(annotations),
                    min_agreement=0.0,
                    smooth_layernorm=layernorm_muls,
                ),
                echo=lambda s: None,
            )
        sm = mf["quantization"]["smooth"]
        graphs[n], sites[n], dirs[n] = (sm or {}).get("graph", "unsmoothed"), sm and sm["sites"], out
    models = {n: EdgeModel.load(d, threads=2, verify=False) for n, d in dirs.items()}
    models["shipped"] = EdgeModel.load(work / "bundle-auto", threads=2)  # verified: the real bundle

    task = load_task(task_path)
    exs = load_examples(task, test, require_gold=True)
    items = [{"input": e.input} for e in exs]
    gold = [e.gold for e in exs]
    labels = m["labels"]
    probs, preds = {}, {}
    for n, model in models.items():
        out = model.predict(items)  # one item per call for dynamic INT8 (answer_batch_size)
        preds[n] = [p["label"] for p in out]
        probs[n] = np.array([[p["probs"][lab] for lab in labels] for p in out])
    f_ok = np.array([p == g for p, g in zip(preds["FP32"], gold)])

    p50 = {}
    if timing:
        feed = models["FP32"].encode(items[:1], pad_to=128)
        feed["attention_mask"] = np.ones_like(feed["attention_mask"])
        runners = {n: _Runner(mod) for n, mod in models.items() if n != "shipped"}
        timed = time_interleaved(runners, {n: feed for n in runners}, side_by_side_timing())
        p50 = {n: summarize(t["times_ns"], 1)["p50_ms"] for n, t in timed.items()}

    rows = []
    for n in ["FP32", *ladder, *smoothed, *FORCED, "shipped"]:
        ok = np.array([p == g for p, g in zip(preds[n], gold)])
        d = np.abs(probs[n] - probs["FP32"])
        toward, away = int((ok & ~f_ok).sum()), int((~ok & f_ok).sum())
        size = (dirs[n] / m["models"]["model"]).stat().st_size if n in dirs else m["size_bytes"]
        rows.append(
            {
                "variant": n if isinstance(n, str) else f"top {n} FP32",
                "k": n if isinstance(n, int) else None,
                "alpha": smoothed.get(n, SMOOTH_ALPHA if n in FORCED else None),
                "graph": graphs.get(n),
                "sites": sites.get(n),
                "kl": mean_kl(probs["FP32"], probs[n]),
                "accuracy": float(ok.mean()),
                "delta_pt": 100 * float(ok.mean() - f_ok.mean()),
                "agreement": float(np.mean([a == b for a, b in zip(preds[n], preds["FP32"])])),
                "flips_toward_gold": toward,
                "flips_away": away,
                "sign_test_p": sign_test_p(toward, away),
                "max_dprob": float(d.max()),
                "mean_dprob": float(d.mean()),
                "size_mb": size / 1e6,
                "p50_ms": p50.get(n),
                "p50_ratio": p50[n] / p50[ladder[0]] if n in p50 else None,
                "forced": n in FORCED,
            }
        )
    shipped_k = q["fp32_matmuls"]["k"]
    same = preds["shipped"] == preds[shipped_k] if shipped_k in preds else None
    return {
        "name": name,
        "rows": rows,
        "n_test": len(exs),
        "export_s": round(export_s, 1),
        "export_log": log,
        "shipped": {
            "k": shipped_k,
            "nodes": q["fp32_matmuls"]["nodes"],
            "notes": q["notes"],
            "smooth": q.get("smooth"),
            "ladder": q["fp32_matmuls"]["ladder"],
            "labels_equal_staged": same,
            "min_agreement": min_agreement,
        },
        "ranking_top": q["fp32_matmuls"]["ranking"][:12],
    }


class _Runner:
    def __init__(self, model):
        self.model = model

    def call(self, feeds):
        return self.model.run(feeds)


GRAPH_WORDS = {
    "folded": "folded: nothing at run time",
    "with_muls": "with explicit Muls",
    "unsmoothed": "unsmoothed: smoothing did not pay on the parity inputs",
}


def _variant_label(r: dict) -> str:
    """The row's name, with the graph its export shipped (alpha rows) or where its scales went (forced rows)."""
    if r.get("forced") and r.get("sites"):
        s = r["sites"]
        return (
            f"{r['variant']} (alpha {r['alpha']:g}: {s['layernorm']} inputs "
            f"folded into a LayerNorm, {s['linear']} into "
            f"a linear op, {s['mul']} by a Mul, {s['unsmoothed']} unsmoothed)"
        )
    if r.get("graph") and not r.get("forced"):
        return f"{r['variant']} (export shipped it {GRAPH_WORDS[r['graph']]})"
    return r["variant"]


def _p50(r: dict) -> str:
    return "–" if r.get("p50_ratio") is None else f"{r['p50_ratio']:.3f}×"


def render(res: dict) -> str:
    timed = res.get("timing", True)
    timing = (
        "p50: batch 1, 128 tokens, 2 threads, every variant interleaved in one run, as a ratio to all-INT8 "
        "unsmoothed (k = 0). "
        if timed
        else "Not timed (`--no-timing`: a busy machine); p50 left out. "
    )
    out = [
        "# INT8 recipe: activation smoothing and the most INT8-sensitive MatMuls kept FP32",
        "",
        f"Written by `{res['command']}` on {res['machine']} ({res['wall_s'] / 60:.0f} min, {res['date']}); "
        f"load average {res['load']}. Gold test rows answered one item per call (as an app asks). "
        + timing
        + "KL: mean KL(FP32 || INT8) of the output probabilities on the test rows. "
        "Flips: test rows whose INT8 label differs from FP32, toward gold (INT8 right, FP32 wrong) / away; "
        "p: exact two-sided sign test of those (p > 0.05: the accuracy difference is within the noise of a few flips). "
        "`top k FP32`: not smoothed (`--smooth 0 --int8-fp32 k`); `smoothed, "
        "alpha a`: the bundle `--smooth a` exports, every "
        "MatMul INT8: its scales fold into the ops making the MatMul inputs "
        "where the path is linear (no run-time cost), "
        "explicit Muls divide the other inputs (never a LayerNorm's output) only if they cut the INT8 drift on the "
        "parity inputs enough, and the export ships the graph unsmoothed if neither lowers it; `folded only` / "
        "`with explicit Muls`: both smoothed graphs at the default alpha, whatever the export picked; `with LayerNorm "
        "Muls too`: `--smooth-layernorm`, Muls on the LayerNorm outputs as well (the default before 2026-12-08).",
        "",
    ]
    for s in res["subjects"]:
        out += [
            f"## {s['name']} ({s['n_test']} gold test rows; one row = {100 / s['n_test']:.1f} pt)",
            "",
            "| variant | accuracy | Δ vs FP32 (pt) | labels = FP32 | flips to / away from gold "
            "(p) | KL | max / mean \\|Δprob\\| | size (MB) | p50 vs k=0 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in s["rows"]:
            out.append(
                f"| {_variant_label(r)} | {100 * r['accuracy']:.1f} % | "
                f"{r['delta_pt']:+.1f} | {100 * r['agreement']:.1f} % | "
                f"{r['flips_toward_gold']} / {r['flips_away']} "
                f"({r['sign_test_p']:.2f}) | {r['kl']:.1e} | {r['max_dprob']:.3f} / "
                f"{r['mean_dprob']:.4f} | {r['size_mb']:.1f} | {_p50(r)} |"
            )
        sh = s["shipped"]
        graph = (sh.get("smooth") or {}).get("graph")
        smooth = (
            f"smoothed (alpha {sh['smooth']['alpha']:g}, {GRAPH_WORDS[graph or 'with_muls']}), "
            if sh.get("smooth")
            else ""
        )
        ladder_p50 = (lambda r: f", p50 ×{r['p50_ratio']:.3f}") if timed else (lambda r: "")
        out += [
            "",
            f"`--int8-fp32 auto` (min agreement {sh['min_agreement']}, export {s['export_s']:.0f} s including "
            f"smoothing and the ranking) shipped {smooth}k = {sh['k']}"
            + (f": {', '.join(sh['nodes'])}" if sh["nodes"] else "")
            + (
                f"; its labels equal the staged top-{sh['k']} row: {sh['labels_equal_staged']}."
                if sh["labels_equal_staged"] is not None and not smooth
                else "."
            ),
            "",
            "Export ladder (on the parity inputs, vs ONNX FP32"
            + (", smoothed" if smooth else "")
            + "): "
            + "; ".join(
                f"k={r['k']}: agree {100 * r['agreement']:.1f} %, KL {r['kl']:.1e}{ladder_p50(r)}" for r in sh["ladder"]
            ),
            "",
        ]
        out += [
            "Most sensitive MatMuls (KL vs FP32 when only that one is INT8, 64 parity inputs"
            + (", smoothed" if smooth else "")
            + "): "
            + ", ".join(f"`{r['node'].replace('/bert/encoder/', '')}` {r['kl']:.1e}" for r in s["ranking_top"][:6]),
            "",
        ]
    out += ["## Verdict", "", *res["verdict"], ""]
    return "\n".join(out)


def verdict(res: dict) -> list[str]:
    """Per student: what each smoothed graph did to the INT8 error (and its speed, when timed), and which recipes are
    within 0.5 pt of FP32."""
    lines = []
    for s in res["subjects"]:
        rows = s["rows"]
        k0 = next(r for r in rows if r["k"] == 0)
        forced = [r for r in rows if r.get("forced")]
        within = [r for r in rows if r["variant"] != "FP32" and abs(r["delta_pt"]) <= 0.5]
        line = (
            f"- **{s['name']}**: all-INT8 unsmoothed is {k0['delta_pt']:+.1f} pt vs "
            f"FP32 ({k0['flips_toward_gold']} flips toward "
            f"gold, {k0['flips_away']} away, p = {k0['sign_test_p']:.2f}; KL {k0['kl']:.1e})."
        )
        for r in forced:
            line += (
                f" {r['variant'][0].upper() + r['variant'][1:]} (alpha {r['alpha']:g}): "
                f"{r['delta_pt']:+.1f} pt ({r['flips_toward_gold']} / "
                f"{r['flips_away']}, p = {r['sign_test_p']:.2f}), KL {r['kl']:.1e} "
                f"({k0['kl'] / max(r['kl'], 1e-12):.1f}× "
                f"smaller), labels = FP32 on {100 * r['agreement']:.1f} %"
                + ("" if r.get("p50_ratio") is None else f", p50 ×{r['p50_ratio']:.3f}")
                + "."
            )
        graph = (s["shipped"].get("smooth") or {}).get("graph", "unsmoothed")
        line += f" The export shipped {GRAPH_WORDS[graph]}."
        line += (
            " Within 0.5 pt: "
            + (
                ", ".join(
                    f"{r['variant']} ({r['delta_pt']:+.1f} pt"
                    + ("" if r.get("p50_ratio") is None else f", p50 ×{r['p50_ratio']:.3f}")
                    + ")"
                    for r in within
                )
                or "none"
            )
            + "."
        )
        lines.append(line)
    return lines


def rerender(results: Path) -> None:
    """Rewrite the .md from the saved .json (after changing the report's wording, without re-measuring)."""
    res = json.loads((results / "int8_recipe.json").read_text())
    res["verdict"] = verdict(res)
    (results / "int8_recipe.json").write_text(json.dumps(res, indent=1))
    (results / "int8_recipe.md").write_text(render(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="esnli,quickstart")
    ap.add_argument("--ladder", default="0,1,2,3,6,12", help="k MatMuls kept FP32 (unsmoothed), one bundle each")
    ap.add_argument("--alphas", default="0.5,0.7,0.8,0.9", help="--smooth alphas, one bundle each")
    ap.add_argument("--work", default="/tmp/edgedistill-int8-recipe")
    ap.add_argument(
        "--esnli",
        default="/tmp/edgedistill-compress/esnli/student",
        help="dir with the e-SNLI student (stripped/, annotations.jsonl, test.jsonl) of benchmarks/compress.py",
    )
    ap.add_argument(
        "--quickstart-run",
        default=str(ROOT / "runs/quickstart"),
        help="run dir of examples/quickstart/pipeline.yaml (stripped/, annotations.jsonl)",
    )
    ap.add_argument("--no-timing", action="store_true", help="leave p50 out (a machine busy with other work)")
    ap.add_argument("--results", default=str(RESULTS), help="folder for int8_recipe.{md,json}")
    ap.add_argument("--rerender", action="store_true", help="only rewrite int8_recipe.md from int8_recipe.json")
    args = ap.parse_args()
    results = Path(args.results)
    if args.rerender:
        return rerender(results)
    from edgedistill.edge.machine import describe, machine_record

    start = time.time()
    ladder = [int(x) for x in args.ladder.split(",")]
    alphas = [float(x) for x in args.alphas.split(",") if x]
    done = []
    for n in args.datasets.split(","):
        known = subject(n, Path(args.esnli), Path(args.quickstart_run))
        done.append(run_subject(n, known, ladder, alphas, Path(args.work), not args.no_timing))
    mr = machine_record(threads=2)
    res = {
        "subjects": done,
        "command": command(__file__),
        "machine": describe(mr),
        "machine_record": mr,
        "load": mr["loadavg_1_5_15"],
        "wall_s": round(time.time() - start),
        "date": time.strftime("%Y-%m-%d"),
        "timing": not args.no_timing,
    }
    res["verdict"] = verdict(res)
    results.mkdir(parents=True, exist_ok=True)
    (results / "int8_recipe.json").write_text(json.dumps(res, indent=1))
    (results / "int8_recipe.md").write_text(render(res))
    print(render(res))


if __name__ == "__main__":
    main()
