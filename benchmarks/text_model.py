"""The text-in model (`export --text-model`) against its own bundle, under Python onnxruntime on this CPU.

    python benchmarks/text_model.py --bundle BUNDLE [--threads 1] [--cold-runs 3] [--n 200]
                                    [--out benchmarks/results/text_model]

BUNDLE is one exported with --text-model (e.g. `edgedistill export runs/quickstart/stripped --out
/tmp/qs --text-model`).
- parity: text_model.onnx and ort/text/text_model.ort against EdgeModel.predict (batch 1) on the
  quickstart's test + ticket texts and on variants of the test texts (upper case, accents, repeated
  until truncated, punctuation): labels equal out of N, max |Δprob|.
- cold start: a fresh process, from before the imports to the first prediction returned; the bundle:
  import edgedistill.runtime + EdgeModel.load (sha256, session, tokenizer) + predict one item; the
  text model: import onnxruntime + session with the extensions' custom-op library + run one text (the
  library is found on disk: `import onnxruntime_extensions` itself imports transformers, seconds an app
  never pays; measured apart as python_package_import_ms).
  Median of --cold-runs, the two alternating.
- input ids: the BertTokenizer op (as --text-model builds it, and with gen_processing_models' own
  defaults) against tokenizers on the bundle's tokenizer, per text set: identical out of N.
- per prediction (batch 1): EdgeModel.predict([item]) vs session.run(["probs"], {"text": [text]}) over
  --n items after 10 warm-up calls, in each cold run's process; p50 / p90 of the runs pooled.
Writes OUT.md and OUT.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
from common import QUICKSTART, RESULTS, ROOT, percentile

TIMER = r"""
import json, sys, time
t0 = time.perf_counter()
kind, bundle, threads, n, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if kind == "bundle":
    from edgedistill.runtime import EdgeModel
else:  # the custom-op library only, as an app loads it: `import onnxruntime_extensions` imports transformers
    import importlib.util, pathlib, numpy as np, onnxruntime as ort
    pkg = pathlib.Path(importlib.util.find_spec("onnxruntime_extensions").submodule_search_locations[0])
    library = str(next(pkg.glob("_extensions_pydll*.so")))
t_import = time.perf_counter()
texts = [json.loads(l)["text"] for l in sys.stdin if l.strip()]
t_read = time.perf_counter()  # reading stdin is not part of the cold start
if kind == "bundle":
    m = EdgeModel.load(bundle, threads=threads)
    call = lambda t: m.predict([t])
else:
    o = ort.SessionOptions(); o.register_custom_ops_library(library)
    o.intra_op_num_threads, o.inter_op_num_threads = threads, 1
    s = ort.InferenceSession(bundle + "/text_model.onnx", o, providers=["CPUExecutionProvider"])
    call = lambda t: s.run(["probs"], {"text": np.array([t], dtype=object)})
call(texts[0])
t_first = time.perf_counter()
for i in range(warmup):
    call(texts[i % len(texts)])
times = []
for i in range(n):
    a = time.perf_counter(); call(texts[i % len(texts)]); times.append((time.perf_counter() - a) * 1e3)
print(json.dumps({"cold_ms": ((t_import - t0) + (t_first - t_read)) * 1e3, "times_ms": times}))
"""


def texts() -> list[str]:
    """Real quickstart texts, then variants of the test texts that stress the tokenizer."""

    def read(path):
        return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]

    test, tickets = read(QUICKSTART / "test.jsonl"), read(QUICKSTART / "tickets.jsonl")
    accents = str.maketrans("aeiouc", "àéîõüç")
    variants = (
        [t.upper() for t in test]
        + [t.translate(accents) for t in test]
        + [(t + " ") * 8 for t in test]
        + [f"!!! {t} ??? (#{i}) $1,234.56 — “ok”…" for i, t in enumerate(test)]
        + ["", " ", "Café", "ÀÉÎÕÜ ß"]
    )
    return test + tickets + variants


def generated(n: int = 1000, seed: int = 0) -> list[str]:
    """Texts mixing accents, punctuation, CJK, ligatures, full-width letters and long runs (many truncate)."""
    import random

    pieces = [
        "Café",
        "déjà vu",
        "naïve",
        "résumé",
        "Ångström",
        "São Paulo",
        "Zürich",
        "ß",
        "ø",
        "ﬁ ligature",
        "x\u0301",
        "\u00ad",
        "—",
        "…",
        "“quoted”",
        "don't",
        "$5.99",
        "100%",
        "#tag",
        "@user",
        "e-mail",
        "U.S.A.",
        "3.14159",
        "日本語",
        "中文字符",
        "العربية",
        "Привет",
        "👍🏽",
        "\t",
        "\n",
        "  ",
        "<b>html</b>",
        "http://x.y/z?a=1",
        "C++",
        "ＦＵＬＬ",
        "Ⅻ",
        "①",
        "x" * 120,
        "supercalifragilisticexpialidocious",
        "refund!!!",
        "the",
        "order",
        "app",
    ]
    rng = random.Random(seed)
    return [" ".join(rng.choice(pieces) for _ in range(rng.randint(1, 60))) for _ in range(n)]


KNOWN = ["Œuvre", "İstanbul", "한국어", "emoji😀", "dog😀 app"]


def ids_check(bundle: Path, m: dict, items: list[str]) -> dict:
    """Texts whose op ids equal tokenizers' ids, per text set, for the export's attributes and the defaults."""
    from tokenizers import Tokenizer

    from edgedistill.deploy import text_model

    tok_dir, n = Path(m["source"]["model"]), m["max_length"]
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tok.enable_truncation(n)
    tok.no_padding()
    sets = {
        "quickstart texts and variants": items,
        "generated": generated(),
        "empty, blank": ["", " ", "\n"],
        "known differences": KNOWN,
    }
    out = {}
    for name, attrs in [
        ("tokenizer.json attributes (--text-model)", m["text_model"]["tokenizer"]),
        ("gen_processing_models defaults", {"max_length": n}),
    ]:
        s = text_model.session_of(text_model.tokenizer_graph(tok_dir, attrs))

        def same(t):
            return list(s.run(["input_ids"], {"text": np.array([t], dtype=object)})[0]) == tok.encode(t).ids

        out[name] = {
            k: {"identical": sum(map(same, v)), "n": len(v), "truncated": sum(len(tok.encode(t).ids) == n for t in v)}
            for k, v in sets.items()
        }
    return out


def parity(bundle: Path, items: list[str]) -> dict:
    from edgedistill.deploy import text_model
    from edgedistill.runtime import EdgeModel

    edge = EdgeModel.load(bundle)
    out = {}
    for name in ("text_model.onnx", "ort/text/text_model.ort"):
        if (bundle / name).exists():
            p = text_model.parity(bundle / name, edge, items)
            out[name] = {k: p[k] for k in ("examples", "labels_equal", "max_abs_prob_diff")}
    return out


def timed(kind: str, bundle: Path, items: list[str], threads: int, n: int) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", TIMER, kind, str(bundle), str(threads), str(n), "10"],
        cwd=ROOT,
        input="".join(json.dumps({"text": t}) + "\n" for t in items),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def package_import_ms() -> float:
    code = "import time; t = time.perf_counter(); import onnxruntime_extensions; print((time.perf_counter() - t) * 1e3)"
    return float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[-1]
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--out", type=Path, default=RESULTS / "text_model")
    args = ap.parse_args(argv)
    from edgedistill.edge.machine import describe, machine_record

    m = json.loads((args.bundle / "manifest.json").read_text())
    if "text_model" not in m:
        raise SystemExit(f"{args.bundle}: no text model; export with --text-model")
    items = texts()
    runs = {"bundle": [], "text": []}
    for _ in range(args.cold_runs):  # alternate, so a noisy neighbour hits both alike
        for kind in runs:
            runs[kind].append(timed(kind, args.bundle, items[:60], args.threads, args.n))
    pooled = {k: [t for r in rs for t in r["times_ms"]] for k, rs in runs.items()}
    timing = {
        k: {
            "cold_ms": statistics.median(r["cold_ms"] for r in rs),
            "p50_ms": percentile(pooled[k], 0.5),
            "p90_ms": percentile(pooled[k], 0.9),
        }
        for k, rs in runs.items()
    }
    result = {
        "machine": machine_record(threads=[args.threads]),
        "bundle": str(args.bundle),
        "sizes_bytes": {
            n: m["files"][n]["bytes"]
            for n in ("model.onnx", "text_model.onnx", "ort/model.ort", "ort/text/text_model.ort")
            if n in m["files"]
        },
        "parity": parity(args.bundle, items),
        "input_ids": ids_check(args.bundle, m, items),
        "timing_batch1": timing,
        "threads": args.threads,
        "n": args.n,
        "cold_runs": args.cold_runs,
        "max_length": m["max_length"],
        "task": m["task"]["name"],
        "quantization": m["quantization"].get("mode"),
        "source": m["source"]["model"],
        "python_package_import_ms": package_import_ms(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(report(result, describe(result["machine"])))
    print(args.out.with_suffix(".md").read_text())


def report(r: dict, cpu: str) -> str:
    sizes = ", ".join(f"`{k}` {v / 1e6:.1f} MB" for k, v in r["sizes_bytes"].items())
    par = "\n".join(
        f"| `{k}` | {v['labels_equal']}/{v['examples']} | {v['max_abs_prob_diff']:.1e} |"
        for k, v in r["parity"].items()
    )
    t = r["timing_batch1"]
    ids = "\n".join(
        f"| {a} | "
        + " | ".join(
            f"{c['identical']}/{c['n']}" + (f" ({c['truncated']} truncated)" if c["truncated"] else "")
            for c in sets.values()
        )
        + " |"
        for a, sets in r["input_ids"].items()
    )
    return f"""# Text-in model vs its bundle (Python onnxruntime, batch 1, {r["threads"]} thread)

CPU: {cpu}. Bundle: `{r["bundle"]}` (task `{r["task"]}`, quantization
`{r["quantization"]}`, max_length {r["max_length"]}; made by
`edgedistill export {r["source"]} --out BUNDLE --text-model`). Sizes: {sizes}.
Command: `{r["machine"]["command"]}`.

## Parity against the bundle's EdgeModel.predict (batch 1)

| model | labels equal | max abs Δprob |
|---|---|---|
{par}

## Input ids: the BertTokenizer op vs tokenizers (max_length {r["max_length"]})

| attributes | {" | ".join(next(iter(r["input_ids"].values())))} |
|---|{"---|" * len(next(iter(r["input_ids"].values())))}
{ids}

Known differences (see export/ANDROID.md): {", ".join(f"`{k}`" for k in KNOWN)}.

## Cold start and per prediction

| runtime | cold start (ms) | p50 (ms) | p90 (ms) |
|---|---|---|---|
| bundle: EdgeModel (tokenizers in Python + model.onnx) | {t["bundle"]["cold_ms"]:.0f}
| {t["bundle"]["p50_ms"]:.2f} | {t["bundle"]["p90_ms"]:.2f} |
| text_model.onnx (BertTokenizer op + model + Softmax) | {t["text"]["cold_ms"]:.0f}
| {t["text"]["p50_ms"]:.2f} | {t["text"]["p90_ms"]:.2f} |

Cold start: median of {r["cold_runs"]} fresh processes, imports to first prediction (EdgeModel.load also
hashes its files; the text model's does not include `import
onnxruntime_extensions`, {r["python_package_import_ms"]:.0f} ms
here because that Python package imports transformers). Per prediction:
{r["n"]} calls after 10 warm-up ones in each process, pooled.
Load average at the start: {r["machine"]["loadavg_1_5_15"]}.
"""


if __name__ == "__main__":
    main()
