#!/usr/bin/env python3
"""Run and time an edgedistill bundle on a device: needs only onnxruntime, numpy and tokenizers.

Copy this file next to a bundle onto the device (an ARM board, a Graviton server, a phone with a
Python such as Termux), then:

    pip install onnxruntime numpy tokenizers
    python run_bundle.py BUNDLE --text "Premise: A man sleeps. Hypothesis: A man is awake."
    python run_bundle.py BUNDLE --data test.jsonl --threads 1,2 --out results.json

This is a thin command line over the torch-free core that every bundle carries (BUNDLE/edge/, a copy
of edgedistill/edge/): the runtime, the timed inputs, the timing, the fresh-process measurement, the
machine record and the answer comparison are that core's, the same code `edgedistill bench` runs. Where
edgedistill is installed the core is imported from it, else from the bundle. It predicts, and times
the model as `edgedistill bench` times its "bundle" variant: inputs of exactly batch x seq tokens of
real text, warm-up excluded, p50/p90/p99 over at least --min-time seconds and --min-iters calls, peak
RSS and cold start from a fresh process. It writes the same results.json schema
(edgedistill/measure/bench_schema.json), so on the development machine

    edgedistill bench --merge x86/results.json device/results.json --out compare/

puts both machines in one report.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

SCHEMA_VERSION = 1


def core(bundle: Path, name: str):
    """A module of the torch-free core: edgedistill.edge.NAME where edgedistill is installed, else the
    bundle's own edge/NAME.py."""
    try:
        return importlib.import_module(f"edgedistill.edge.{name}")
    except ImportError as e:
        if e.name not in ("edgedistill", "edgedistill.edge", f"edgedistill.edge.{name}"):
            raise  # edgedistill is there but something it needs is not: say so, do not mix two cores
    if str(bundle) not in sys.path:
        sys.path.insert(0, str(bundle))
    try:
        return importlib.import_module(f"edge.{name}")
    except ImportError as e:
        if e.name not in ("edge", f"edge.{name}"):
            raise
        sys.exit(
            f"{bundle}: no edgedistill installed and no edge/{name}.py in the bundle; pass the directory "
            "`edgedistill export` wrote (a bundle without an edge/ folder predates the shipped core: re-export it)"
        )


def ints(s):
    out = [int(x) for x in s.split(",") if x.strip()]
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"{s!r}: give positive integers separated by commas")
    return out


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Predict with and time an edgedistill bundle (onnxruntime, numpy, tokenizers only)."
    )
    ap.add_argument("bundle", type=Path)
    ap.add_argument(
        "--text",
        action="append",
        default=[],
        help="Predict this (already rendered) input and print the result; repeatable.",
    )
    ap.add_argument(
        "--data",
        type=Path,
        help="JSON lines of the task's fields (and gold field, for accuracy); real text for timing.",
    )
    ap.add_argument("--limit", type=int, default=500, help="Examples of --data to use (default 500).")
    ap.add_argument("--batch-sizes", type=ints, default=[1, 8])
    ap.add_argument("--seq-lens", type=ints, default=[32, 128])
    ap.add_argument("--threads", type=ints, default=[min(2, os.cpu_count() or 1)])
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--min-iters", type=int, default=10)
    ap.add_argument("--warmup", type=float, default=0.3)
    ap.add_argument(
        "--no-fresh-process", action="store_true", help="Skip peak RSS / cold start (a new process per thread count)."
    )
    ap.add_argument(
        "--out", type=Path, help="results.json to write (a directory: DIR/results.json). Without it, only --text runs."
    )
    return ap.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--child":
        return child(argv)
    a = parse_args(argv)
    try:
        return run(a, argv)
    except core(a.bundle, "runtime").BundleError as e:  # what is wrong with the bundle, said without a traceback
        sys.exit(f"error: {e}")


def run(a, argv) -> int:
    meter = core(a.bundle, "machine").LoadMeter()
    EdgeModel = core(a.bundle, "runtime").EdgeModel
    model = EdgeModel.load(a.bundle, threads=max(a.threads))
    for text in a.text:
        print(json.dumps({"input": text, **model.predict([text])[0]}, ensure_ascii=False))
    if a.out is None:
        return 0
    inputs = read_inputs(a, model)
    info = variant_info(a.bundle, model)
    info.update(accuracy_of(a.bundle, model, inputs["gold"]))
    rows = latency_rows(a, inputs)
    if not a.no_fresh_process:
        shape = (max(a.batch_sizes), max(a.seq_lens))
        info["fresh_process"] = [fresh_process(a.bundle, t, inputs, shape) for t in a.threads]
    join(rows, info, core(a.bundle, "process").measured_fields)
    doc = document(a, argv, model, inputs, info, rows, meter)
    write(doc, a.out)
    return 0


# ---------------------------------------------------------------------------------------------
# Inputs and accuracy


def read_inputs(a, model) -> dict:
    """The data's rows with their gold answers, the texts and options packed into the timed inputs, the
    tokenizer that packs them, and the item a fresh process predicts first."""
    answers, feeds = core(a.bundle, "answers"), core(a.bundle, "feeds")
    task = model.manifest.get("task") or {}
    examples = []
    if a.data:
        try:
            examples = [
                (r, answers.gold_of(task, r, f"{a.data}:{n}")) for n, r in answers.read_records(a.data, a.limit)
            ]
        except ValueError as e:
            sys.exit(str(e))
    tok = feeds.load_tokenizer(model.path / model.manifest["tokenizer"]["file"])
    texts = [model.render(r) for r, _ in examples] or feeds.synthetic_texts(tok)
    field = task.get("choices")
    choices = [answers.parse_choices(r[field]) for r, _ in examples if field and r.get(field)] or None
    return {
        "examples": examples,
        "gold": [(r, g) for r, g in examples if g is not None],
        "tok": tok,
        "texts": texts,
        "choices": choices,
        "item": examples[0][0] if examples else texts[0],
    }


def accuracy_of(bundle: Path, model, gold) -> dict:
    if not gold:
        return {}
    answers = core(bundle, "answers")
    preds = model.predict([r for r, _ in gold])  # in the bundle's answering batches (edge.runtime.answer_batch_size)
    acc = answers.accuracy((model.manifest.get("task") or {}).get("type"), preds, [g for _, g in gold])
    print(f"accuracy on {len(gold)} examples: {100 * acc:.2f} %", file=sys.stderr)
    return {"accuracy": acc, "accuracy_n": len(gold)}


def _runtime_models(bundle: Path, manifest: dict) -> dict:
    """The models the runtime runs (not the app-only text model); a bundle's core from before
    runtime_models existed has no text model either, so its manifest's models are those."""
    rt = core(bundle, "runtime")
    return rt.runtime_models(manifest) if hasattr(rt, "runtime_models") else (manifest.get("models") or {})


def variant_info(bundle: Path, model) -> dict:
    manifest = model.manifest
    info = {
        "name": "bundle",
        "description": "edgedistill bundle via " + type(model).__module__,
        "status": "ok",
        "reason": None,
        "files": sorted(_runtime_models(bundle, manifest).values()) or sorted(p.name for p in bundle.glob("*.onnx")),
        "quantization": manifest.get("quantization"),
        "target": manifest.get("target"),
    }
    info["size_bytes"] = sum((bundle / f).stat().st_size for f in info["files"]) or None
    info["package_bytes"] = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    return info


# ---------------------------------------------------------------------------------------------
# Timing, memory, cold start


def latency_rows(a, inputs) -> list[dict]:
    feeds, timing = core(a.bundle, "feeds"), core(a.bundle, "timing")
    EdgeModel = core(a.bundle, "runtime").EdgeModel
    rows = []
    for t in a.threads:
        m = EdgeModel.load(a.bundle, threads=t)
        for i, (b, q) in enumerate((b, q) for b in a.batch_sizes for q in a.seq_lens):
            x = feeds.fit(
                feeds.shape_feeds(inputs["tok"], m.family, inputs["texts"], inputs["choices"], b, q, offset=i),
                m.input_names,
            )
            res = timing.time_interleaved({"bundle": timing.Calls(m.run)}, {"bundle": x}, a)["bundle"]
            row = {"variant": "bundle", "batch_size": b, "seq_len": q, "threads": t}
            if "error" in res:  # e.g. seq longer than the model's positions
                rows.append({**row, "status": "failed", "error": res["error"]})
                continue
            s = timing.summarize(res["times_ns"], b)
            rows.append({**row, "status": "ok", **s})
            print(
                f"threads {t} batch {b:>3} seq {q:>4}: p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  "
                f"{s['throughput_items_s']:.1f} items/s",
                file=sys.stderr,
            )
        del m
    return rows


def fresh_process(bundle: Path, threads: int, inputs: dict, shape) -> dict:
    spec = {
        "bundle": str(bundle),
        "threads": threads,
        "item": inputs["item"],
        "texts": inputs["texts"][:64],
        "choices": inputs["choices"][:8] if inputs["choices"] else None,
        "shape": list(shape),
    }
    return core(bundle, "process").fresh_process([sys.executable, os.path.abspath(__file__)], spec, threads, shape)


def child(argv) -> int:
    """The fresh process: load the bundle, predict once, run the largest shape (edge/process.py's protocol)."""
    spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    bundle = Path(spec["bundle"])
    process = core(bundle, "process")

    def largest(model):
        feeds = core(bundle, "feeds")
        tok = feeds.load_tokenizer(model.path / model.manifest["tokenizer"]["file"])
        x = feeds.fit(
            feeds.shape_feeds(tok, model.family, spec["texts"], spec["choices"], *spec["shape"]), model.input_names
        )
        for _ in range(2):
            model.run(x)

    return process.child_entry(
        argv,
        lambda s: process.child_measure(
            lambda: core(bundle, "runtime").EdgeModel.load(bundle, threads=s["threads"]),
            lambda model: model.predict([s["item"]]),
            largest,
        ),
    )


# ---------------------------------------------------------------------------------------------
# The results document


def join(rows: list[dict], info: dict, measured_fields) -> None:
    """Each row gets the bundle's size, accuracy, memory and cold start; no torch baseline on a device."""
    for r in rows:
        r.update(
            measured_fields(info, r["threads"]),
            speedup_vs_torch_fp32=None,
            size_ratio_vs_torch_fp32=None,
            accuracy_delta_pt_vs_torch_fp32=None,
            rss_ratio_vs_torch_fp32=None,
        )


def document(a, argv, model, inputs, info, rows, meter) -> dict:
    manifest, family = model.manifest, model.family
    task = manifest.get("task") or {}
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "run",
        "tool": "export/run_bundle.py",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": core(a.bundle, "machine").machine_record(
            threads=a.threads, command=["python", "run_bundle.py"] + argv
        ),
        "load": meter.result(),
        "subject": {
            "bundle": str(a.bundle),
            "torch": None,
            "family": family,
            "task": task.get("name"),
            "labels": task.get("labels"),
            "max_length": manifest.get("max_length"),
        },
        "data": {
            "path": str(a.data) if a.data else None,
            "examples": len(inputs["examples"]),
            "with_gold": len(inputs["gold"]),
            "inputs": "real" if inputs["examples"] else "synthetic",
        },
        "settings": {
            "batch_sizes": a.batch_sizes,
            "seq_lens": a.seq_lens,
            "threads": a.threads,
            "min_time": a.min_time,
            "min_iters": a.min_iters,
            "warmup": a.warmup,
            "limit": a.limit,
            "fresh_process": not a.no_fresh_process,
            "variants": ["bundle"],
            "seed": 0,
        },
        "baseline": "torch-fp32",
        "timed_call": ("encoder forward + first decoder step" if family == "seq2seq" else "model forward")
        + " on pre-tokenized inputs of exactly batch x seq real tokens (tokenization excluded)",
        "variants": [info],
        "results": rows,
    }


def write(doc: dict, out: Path) -> None:
    out = out / "results.json" if out.suffix != ".json" else out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
