"""One bundle in three runtimes on this CPU: Node (onnxruntime-node), the browser (headless Chromium,
onnxruntime-web WASM) and Python (edgedistill.runtime.EdgeModel).

    python benchmarks/js_runtime.py [--bundle DIR] [--threads 1 2] [--cold-runs 3] [--n 200]
                                    [--out benchmarks/results/js_runtime]

- bundle: runs/quickstart/bundle (the quickstart's MiniLM INT8) when it exists, else a tiny
  config-built classifier (tests/tiny.py) exported here.
- cold start: a fresh process (Node, Python) or a fresh page (Chromium), from before importing the
  runtime to the first prediction returned: import + load (read files, sha256, onnxruntime session,
  tokenizer) + predict one item. Median of --cold-runs; Chromium's own launch is not in it.
- per prediction: predict([item]) (batch 1) over --n items after 10 warm-up calls, in the last cold run's
  process; p50 and p90 of the --cold-runs runs pooled.
- agreement: each JS runtime's predictions on the items against Python's, both in the bundle's answering
  batches (one item per call for dynamic INT8, else 32).

Needs export/js/node_modules (cd export/js && ONNXRUNTIME_NODE_INSTALL=skip npm ci) and /usr/bin/chromium.
Writes OUT.md and OUT.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from common import QUICKSTART, RESULTS, ROOT, command, percentile, tests_module

JS = ROOT / "export" / "js"
QUICKSTART_BUNDLE = ROOT / "runs" / "quickstart" / "bundle"
ITEMS = QUICKSTART / "test.jsonl"

PY_TIMER = r"""
import json, sys, time
t0 = time.perf_counter()
from edgedistill.runtime import EdgeModel
t_import = time.perf_counter()
bundle, threads, n, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
items = [json.loads(l) for l in sys.stdin if l.strip()]
t_read = time.perf_counter()  # reading stdin is not part of the cold start
m = EdgeModel.load(bundle, threads=threads)
t_load = time.perf_counter()
m.predict([items[0]])
t_first = time.perf_counter()
for i in range(warmup):
    m.predict([items[i % len(items)]])
times = []
for i in range(n):
    s = time.perf_counter(); m.predict([items[i % len(items)]]); times.append((time.perf_counter() - s) * 1e3)
import onnxruntime
print(json.dumps({"runtime": f"python {sys.version.split()[0]}, onnxruntime {onnxruntime.__version__}",
                  "cold_ms": ((t_import - t0) + (t_first - t_read)) * 1e3, "import_ms": (t_import - t0) * 1e3,
                  "load_ms": (t_load - t_read) * 1e3, "first_predict_ms": (t_first - t_load) * 1e3, "times_ms": times}))
"""


def cpu() -> dict:
    """The CPU as js_runtime.json records it (edge.machine reads /proc/cpuinfo), and its load now."""
    from edgedistill.edge.machine import isa_features

    f = isa_features()
    return {
        "model": f["cpu_model"],
        "cores": os.cpu_count(),
        **{k: f["isa"][k] for k in ("avx2", "avx512f", "avx512_vnni")},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def tiny_bundle(work: Path) -> Path:
    """A config-built classifier (tests/tiny.py) exported INT8: what is timed where no quickstart bundle exists."""
    from edgedistill.deploy.export import ExportConfig, export_bundle

    tiny = tests_module("tiny")

    model = tiny.tiny_classifier_dir(work / "cls")
    (model / "task.yaml").write_text(
        'name: tickets\ntype: classification\ninput: "{text}"\nlabels: [entailment, neutral, contradiction]\n'
    )
    data = work / "items.jsonl"
    data.write_text(
        "".join(json.dumps({"text": json.loads(line)["text"]}) + "\n" for line in ITEMS.read_text().splitlines()[:40])
    )
    export_bundle(
        ExportConfig(model=str(model), out=str(work / "bundle"), parity_data=str(data), parity_samples=40),
        echo=lambda *_: None,
    )
    return work / "bundle"


def run(cmd, stdin: str, timeout=300) -> str:
    r = subprocess.run(
        cmd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"),
    )
    if r.returncode != 0:
        raise SystemExit(f"{shlex.join(map(str, cmd))} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r.stdout


def time_runtime(kind: str, bundle: Path, items: list[dict], threads: int, n: int, warmup: int) -> dict:
    stdin = "".join(json.dumps(i) + "\n" for i in items)
    if kind == "python":
        out = json.loads(
            run([sys.executable, "-c", PY_TIMER, str(bundle), str(threads), str(n), str(warmup)], stdin)
            .strip()
            .splitlines()[-1]
        )
    else:
        script = "bench.mjs" if kind == "node" else "browser.mjs"
        extra = [] if kind == "node" else ["--bench"]
        out = json.loads(
            run(
                [
                    "node",
                    str(JS / script),
                    str(bundle),
                    *extra,
                    "--n",
                    str(n),
                    "--warmup",
                    str(warmup),
                    "--threads",
                    str(threads),
                    "--times",
                ],
                stdin,
            )
            .strip()
            .splitlines()[-1]
        )
    return out


def agreement(kind: str, bundle: Path, items: list[dict], py: list[dict]) -> dict:
    script = "predict.mjs" if kind == "node" else "browser.mjs"
    out = run(["node", str(JS / script), str(bundle)], "".join(json.dumps(i) + "\n" for i in items))
    js = [json.loads(line) for line in out.splitlines() if line.strip()]
    diff = max(abs(a["probs"][k] - b["probs"][k]) for a, b in zip(py, js) for k in a["probs"])
    return {
        "items": len(py),
        "labels_equal": sum(a["label"] == b["label"] for a, b in zip(py, js)),
        "max_abs_prob_diff": diff,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--out", type=Path, default=RESULTS / "js_runtime")
    args = ap.parse_args(argv)
    started = time.time()
    load_before = [round(x, 2) for x in os.getloadavg()]
    if not (JS / "node_modules" / "onnxruntime-node").is_dir():
        raise SystemExit("export/js/node_modules missing: cd export/js && ONNXRUNTIME_NODE_INSTALL=skip npm ci")
    with tempfile.TemporaryDirectory(prefix="js-runtime-bench-") as work:
        quickstart = (QUICKSTART_BUNDLE / "manifest.json").exists()
        bundle = args.bundle or (QUICKSTART_BUNDLE if quickstart else tiny_bundle(Path(work)))
        manifest = json.loads((bundle / "manifest.json").read_text())
        rows = [json.loads(line) for line in ITEMS.read_text().splitlines() if line.strip()]
        fields = [f for f in manifest["task"]["input"].replace("}", "{").split("{")[1::2] if f]
        items = [{f: r[f] for f in fields} for r in rows]
        from edgedistill.runtime import EdgeModel

        py_preds = EdgeModel.load(bundle).predict(items)
        agree = {kind: agreement(kind, bundle, items, py_preds) for kind in ("node", "browser")}
        results = []
        for threads in args.threads:
            for kind in ("node", "browser", "python"):
                runs = [time_runtime(kind, bundle, items, threads, args.n, args.warmup) for _ in range(args.cold_runs)]
                times = [t for r in runs for t in r.pop("times_ms")]
                last = runs[-1]
                results.append(
                    {
                        "runtime": kind,
                        "engine": last["runtime"],
                        "threads": threads,
                        "cold_runs": [round(r["cold_ms"], 1) for r in runs],
                        "cold_ms": statistics.median(r["cold_ms"] for r in runs),
                        "import_ms": statistics.median(r["import_ms"] for r in runs),
                        "load_ms": statistics.median(r["load_ms"] for r in runs),
                        "first_predict_ms": statistics.median(r["first_predict_ms"] for r in runs),
                        "p50_ms": percentile(times, 0.5),
                        "p90_ms": percentile(times, 0.9),
                        "predictions": len(times),
                        **({"cross_origin_isolated": last.get("crossOriginIsolated")} if kind == "browser" else {}),
                    }
                )
                print(
                    f"{kind:8s} threads={threads}: cold {results[-1]['cold_ms']:.0f} "
                    f"ms, p50 {results[-1]['p50_ms']:.2f} ms",
                    flush=True,
                )
    wall = time.time() - started
    versions = json.loads((JS / "package-lock.json").read_text())["packages"]
    report = {
        "command": command(__file__),
        "wall_s": round(wall, 1),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": {**cpu(), "load_average_before": load_before},
        "bundle": {
            "path": str(bundle.relative_to(ROOT)) if bundle.is_relative_to(ROOT) else "tiny (tests/tiny.py, INT8)",
            "family": manifest["family"],
            "quantization": manifest.get("quantization", {}).get("mode"),
            "max_length": manifest["max_length"],
            "model_bytes": (bundle / manifest["models"]["model"]).stat().st_size,
        },
        "items": {"source": str(ITEMS.relative_to(ROOT)), "count": len(items)},
        "versions": {
            "node": run(["node", "--version"], "").strip(),
            "chromium": run(["/usr/bin/chromium", "--version"], "").strip(),
            **{
                p: versions[f"node_modules/{p}"]["version"]
                for p in ("onnxruntime-node", "onnxruntime-web", "@huggingface/tokenizers", "playwright-core")
            },
        },
        "agreement_with_python": agree,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {args.out.with_suffix('.md')} ({wall:.0f} s)")


def markdown(r: dict) -> str:
    c, b, v = r["cpu"], r["bundle"], r["versions"]
    lines = [
        "# The bundle in JavaScript: Node, the browser (WASM) and Python, same bundle, same CPU",
        "",
        f"Command: `{r['command']}` (wall time {r['wall_s']:.0f} s)  ",
        f"Machine: {c['model']}, {c['cores']} cores, avx2 "
        f"{'yes' if c['avx2'] else 'no'}, avx512_vnni {'yes' if c['avx512_vnni'] else 'no'}, "
        f"load average {c['load_average_before']} before, {c['load_average']} "
        f"after (shared with other work); {r['date']}  ",
        f"Bundle: `{b['path']}` ({b['family']}, {b['quantization'] or 'FP32'}, max_length "
        f"{b['max_length']}, model {b['model_bytes'] / 1e6:.1f} MB); "
        f"items: {r['items']['count']} from `{r['items']['source']}`  ",
        f"Runtimes: {v['node']} + onnxruntime-node {v['onnxruntime-node']}; "
        f"{v['chromium']} + onnxruntime-web {v['onnxruntime-web']} (WASM SIMD, "
        "cross-origin isolated so threads work); Python: "
        f"{next(x['engine'] for x in r['results'] if x['runtime'] == 'python')}. "
        f"Tokenizer in JS: @huggingface/tokenizers {v['@huggingface/tokenizers']}.",
        "",
        "| runtime | threads | cold start ms (median) | of which import / load / first predict ms "
        "| p50 ms per prediction (batch 1) | p90 ms | predictions timed |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    names = {
        "node": "Node (onnxruntime-node)",
        "browser": "Chromium (onnxruntime-web, WASM)",
        "python": "Python (EdgeModel)",
    }
    for x in r["results"]:
        lines.append(
            f"| {names[x['runtime']]} | {x['threads']} | {x['cold_ms']:.0f} | "
            f"{x['import_ms']:.0f} / {x['load_ms']:.0f} / {x['first_predict_ms']:.0f} "
            f"| {x['p50_ms']:.2f} | {x['p90_ms']:.2f} | {x['predictions']} |"
        )
    lines += [
        "",
        "Agreement with Python's `EdgeModel.predict` on the same items (each runtime's default "
        "batching: one item per call for a dynamic INT8 bundle, else 32):",
        "",
        "| runtime | labels equal | max \\|Δprob\\| |",
        "|---|---:|---:|",
    ]
    for kind, a in r["agreement_with_python"].items():
        lines.append(f"| {names[kind]} | {a['labels_equal']} / {a['items']} | {a['max_abs_prob_diff']:.2g} |")
    lines += [
        "",
        *(
            [
                f"The machine's {c['cores']} cores were shared with other jobs (load "
                f"average above {c['cores']}), so rows with "
                "more threads wait for cores and are slower, not faster; compare runtimes within one thread count."
            ]
            if max(c["load_average"][0], c["load_average_before"][0]) > c["cores"]
            else []
        ),
        "",
        "Cold start: a fresh process (Node, Python) or a fresh page (Chromium; "
        "the browser's own launch not counted), from "
        "before importing the runtime to the first prediction: import (Python: "
        "onnxruntime, tokenizers, numpy; JS: the module and "
        "the tokenizer; onnxruntime itself loads inside `load`) + load (read the "
        "files, sha256 of model and tokenizer, session, "
        "tokenizer) + one prediction. p50/p90: `predict([item])` on single items "
        "after 10 warm-up calls, pooled over the cold runs.",
        "",
        "onnxruntime-node runs the same x86 kernels as Python's onnxruntime, so "
        "its INT8 predictions are identical to Python's."
        " On WASM an FP32 bundle agrees to ~1e-7 (the float kernels differ in "
        "the last bit), an INT8 one cannot agree to 1e-4, "
        "and no quantization preset or session option makes it (measured on the quickstart bundle and its 300 tickets, "
        "2026-12-01; tests/test_js_runtime.py prints it for its real-size "
        "MiniLM bundles on every run). The integer kernels "
        "agree exactly: MatMulInteger on WASM equals numpy's int64 product, "
        "patterns that saturate AVX2's vpmaddubsw included, "
        "and a reduce_range (7-bit weight) bundle is no closer (max |Δprob| "
        "0.044 vs 0.028). What differs is the floats between"
        " them: WASM's float kernels round differently in the last bit (the "
        "first to differ is LayerNormalization, by up to "
        "1e-6 on identical inputs), and native onnxruntime fuses Add "
        "+ LayerNormalization into SkipLayerNormalization, which the WASM build "
        "does not (its results are the same at every "
        "graphOptimizationLevel). Dynamic INT8 re-quantizes each activation, so "
        "a value within ~1e-7 of a rounding boundary "
        "lands on the other int8 step (the first: 1 of 270,336 activations of "
        "layer 1's FFN on 8 tickets; every int8 tensor "
        "before it is identical), the next MatMulInteger's row moves by up to "
        "115, and more activations round the other way "
        "after it. Native onnxruntime differs from itself as much: with the "
        "SkipLayerNormalization fusion disabled, max |Δprob|"
        " 0.018 from its default (WASM: 0.028, mean 0.0056, 1 label of 300 "
        "flipped at a top-2 margin of 0.002). WASM's INT8 is "
        "as close to FP32 as Python's (mean |Δprob| from FP32 0.0104 and "
        "0.0109, labels differing on 2 and 3 tickets): a "
        "different, equally valid INT8 result. Native onnxruntime uses this "
        "CPU's AVX-512 (VNNI where listed above) kernels; "
        "WASM SIMD is 128-bit with no int8 dot-product instruction, and the page's threads are Web Workers.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
