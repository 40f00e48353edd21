#!/usr/bin/env python3
"""Run and time an edgedistill bundle on a device: needs only onnxruntime, numpy and tokenizers.

Copy this file next to a bundle onto the device (an ARM board, a Graviton server, a phone with a
Python such as Termux), then:

    pip install onnxruntime numpy tokenizers
    python run_bundle.py BUNDLE --text "Premise: A man sleeps. Hypothesis: A man is awake."
    python run_bundle.py BUNDLE --data test.jsonl --threads 1,2 --out results.json

It loads the bundle with `edgedistill.runtime` when that is installed, else with the bundle's own
copy of it (BUNDLE/edge_runtime.py), predicts, and times the model exactly as `edgedistill bench`
times its "bundle" variant: inputs of exactly batch x seq tokens of real text, warm-up excluded,
p50/p90/p99 over at least --min-time seconds and --min-iters calls, peak RSS and cold start from a
fresh process. It writes the same results.json schema (edgedistill/bench_schema.json), so on the
development machine

    edgedistill bench --merge x86/results.json device/results.json --out compare/

puts both machines in one report.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1


def load_runtime(bundle: Path):
    """EdgeModel from the installed edgedistill, else from the bundle's edge_runtime.py."""
    try:
        from edgedistill.runtime import EdgeModel

        return EdgeModel
    except ImportError:
        sys.path.insert(0, str(bundle))
        try:
            from edge_runtime import EdgeModel
        except ImportError:
            sys.exit(f"{bundle}: no edgedistill.runtime installed and no edge_runtime.py in the bundle; "
                     "pass the directory `edgedistill export` wrote")
        return EdgeModel


# ---------------------------------------------------------------------------------------------
# Machine record: a minimal standalone reader (edgedistill.machine is used instead when installed).


def machine_record(threads, command) -> dict:
    try:
        from edgedistill.machine import machine_record as full

        return full(threads=threads, command=command)
    except ImportError:
        pass
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware") and model in ("unknown", platform.processor()):
                model = value.strip() or model
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    arm = platform.machine().lower() in ("aarch64", "arm64")
    isa = {"avx2": "avx2" in flags, "avx512f": "avx512f" in flags, "avx512_vnni": "avx512_vnni" in flags,
           "avx_vnni": "avx_vnni" in flags or "avxvnni" in flags, "amx_int8": "amx_int8" in flags,
           "neon": arm and ("asimd" in flags or platform.machine() == "arm64"), "dotprod": "asimddp" in flags,
           "i8mm": "i8mm" in flags}

    def version(name):
        try:
            from importlib import metadata

            return metadata.version(name)
        except Exception:  # noqa: BLE001
            return None

    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        load = None
    return {"cpu_model": model, "arch": platform.machine(), "logical_cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "threads_used": threads, "isa": isa,
            "quantization_preset": "arm64" if arm else "avx512_vnni" if isa["avx512_vnni"] else "avx512" if isa["avx512f"] else "avx2",
            "memory_gb": None, "os": platform.platform(), "python": platform.python_version(),
            "versions": {p: version(p) for p in ("edgedistill", "onnxruntime", "numpy", "tokenizers")},
            "loadavg_1_5_15": load, "command": shlex.join(command)}


# ---------------------------------------------------------------------------------------------
# Inputs of exactly (batch, seq) real tokens: the same construction as edgedistill.bench.shape_feeds.


def _encode(tok, firsts, seconds, seq):
    pad_id, pad_token = (tok.padding["pad_id"], tok.padding["pad_token"]) if tok.padding else next(
        ((tok.token_to_id(t), t) for t in ("[PAD]", "<pad>", "<PAD>") if tok.token_to_id(t) is not None), (0, "[PAD]"))
    tok.enable_truncation(max_length=seq, strategy="longest_first")
    tok.enable_padding(pad_id=pad_id, pad_token=pad_token, length=seq)
    encs = tok.encode_batch(list(zip(firsts, seconds)) if seconds is not None else list(firsts))
    return {"input_ids": np.array([e.ids for e in encs], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64)}


def shape_feeds(tok, family, texts, choices, batch, seq, offset=0):
    firsts, i = [], offset
    for _ in range(batch):
        parts, ntok = [], 0
        while ntok < seq:  # pack texts end to end so every position is real text
            parts.append(texts[i % len(texts)])
            ntok += max(1, len(tok.encode(parts[-1], add_special_tokens=False).ids))
            i += 1
        firsts.append(" ".join(parts))
    if family == "multiple-choice":
        pool = choices or [["yes", "no", "maybe", "true"]]
        c = len(pool[0])
        opts = [pool[(offset + b) % len(pool)][:c] for b in range(batch)]
        feeds = _encode(tok, [f for f in firsts for _ in range(c)], [o for os_ in opts for o in os_], seq)
        return {k: v.reshape(batch, c, seq) for k, v in feeds.items()}
    return _encode(tok, firsts, None, seq)


def fit(feeds, names):
    return {n: feeds[n] if n in feeds else np.zeros_like(feeds["input_ids"]) for n in names}


# ---------------------------------------------------------------------------------------------
# Data: JSON lines / JSON list of the task's fields, gold read from the task's gold field.


def read_examples(path, task, limit):
    text = Path(path).read_text(encoding="utf-8-sig")
    rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = rows[:limit] if limit else rows
    gold_field = task.get("gold")
    out = []
    for n, r in enumerate(rows, 1):
        g = r.get(gold_field) if gold_field else None
        out.append((r, None if g in (None, "") else normalize_gold(task, g, r, f"{path}:{n}: {gold_field}")))
    return out


def normalize_gold(task, value, row, where):
    s = str(value).strip()
    if task.get("type") == "multiple-choice":
        choices = row.get(task.get("choices"))
        choices = json.loads(choices) if isinstance(choices, str) and choices.startswith("[") else choices
        for c in choices:
            if s.lower() == str(c).lower():
                return str(c)
        if len(s) == 1 and s.isalpha() and ord(s.lower()) - 97 < len(choices):
            return str(choices[ord(s.lower()) - 97])
        if s.isdigit() and int(s) < len(choices):
            return str(choices[int(s)])
        sys.exit(f"{where}: {value!r} is none of the choices {choices}")
    labels = task.get("labels") or []
    if s.isdigit() and int(s) < len(labels):
        return labels[int(s)]
    for label in labels:
        if s.lower() == label.lower():
            return label
    if labels:
        sys.exit(f"{where}: unknown label {value!r}; the bundle's labels are {labels}")
    return s


def same_number(a, b) -> bool:
    """Numeric answers compare as numbers: "42", "42.0" and "( 84.0 / 2.0 )" are equal."""
    import ast
    import math
    import operator

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.USub: operator.neg, ast.UAdd: operator.pos}

    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in ops:
            return ops[type(node.op)](value(node.operand))
        raise ValueError("not arithmetic")

    try:
        x, y = (value(ast.parse(str(v).strip(), mode="eval").body) for v in (a, b))
    except (ValueError, SyntaxError, ZeroDivisionError, OverflowError):
        return False
    return math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6)


def synthetic_texts(tok, n=64, words=24, seed=0):
    rng = random.Random(seed)
    vocab = sorted(w for w in tok.get_vocab() if w.isalpha() and w.islower() and len(w) > 1) or ["the", "a", "is"]
    return [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(n)]


# ---------------------------------------------------------------------------------------------
# Timing, memory, cold start


def peak_rss_mb():
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmHWM:"):  # ru_maxrss would include the parent's image from before exec
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10), 1)
    except ImportError:
        return None


def time_calls(model, x, min_time, min_iters, warmup):
    t_end, k = time.perf_counter() + warmup, 0
    while k < 2 or time.perf_counter() < t_end:
        model.run(x)
        k += 1
    gc.collect()
    gc.disable()
    try:
        times, spent = [], 0
        while spent < min_time * 1e9 or len(times) < min_iters:
            t0 = time.perf_counter_ns()
            model.run(x)
            dt = time.perf_counter_ns() - t0
            times.append(dt)
            spent += dt
    finally:
        gc.enable()
    return times


def summarize(times_ns, batch):
    ms = np.array(times_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"iterations": int(ms.size), "p50_ms": round(float(p50), 4), "p90_ms": round(float(p90), 4),
            "p99_ms": round(float(p99), 4), "mean_ms": round(float(ms.mean()), 4), "min_ms": round(float(ms.min()), 4),
            "throughput_items_s": round(batch * 1000.0 / float(ms.mean()), 3)}


def child(spec_path):
    spec = json.loads(Path(spec_path).read_text())
    t_started = time.time()
    bundle = Path(spec["bundle"])
    model = load_runtime(bundle).load(bundle, threads=spec["threads"])
    t_loaded = time.time()
    model.predict([spec["item"]])
    t_first = time.time()
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bundle / ((model.manifest.get("tokenizer") or {}).get("file") or "tokenizer.json")))
    x = fit(shape_feeds(tok, model.manifest["family"], spec["texts"], spec["choices"], *spec["shape"]), model.input_names)
    for _ in range(2):
        model.run(x)
    print(json.dumps({"t_started": t_started, "t_loaded": t_loaded, "t_first": t_first, "peak_rss_mb": peak_rss_mb()}), flush=True)


def fresh_process(bundle, threads, item, texts, choices, shape):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"bundle": str(bundle), "threads": threads, "item": item, "texts": texts[:64],
                   "choices": choices[:8] if choices else None, "shape": list(shape)}, f)
    try:
        t_spawn = time.time()
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", f.name], capture_output=True, text=True)
        t_exit = time.time()
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        return {"threads": threads, "error": f"child exited {proc.returncode}: " + " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"threads": threads, "shape": list(shape), "cold_start_s": round(r["t_first"] - t_spawn, 3),
            "startup_s": round(r["t_started"] - t_spawn, 3), "load_s": round(r["t_loaded"] - r["t_started"], 3),
            "first_predict_s": round(r["t_first"] - r["t_loaded"], 3), "peak_rss_mb": r["peak_rss_mb"],
            "process_s": round(t_exit - t_spawn, 3)}


# ---------------------------------------------------------------------------------------------


def ints(s):
    out = [int(x) for x in s.split(",") if x.strip()]
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"{s!r}: give positive integers separated by commas")
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--child":
        return child(argv[1])
    ap = argparse.ArgumentParser(description="Predict with and time an edgedistill bundle (onnxruntime, numpy, tokenizers only).")
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--text", action="append", default=[], help="Predict this (already rendered) input and print the result; repeatable.")
    ap.add_argument("--data", type=Path, help="JSON lines of the task's fields (and gold field, for accuracy); real text for timing.")
    ap.add_argument("--limit", type=int, default=500, help="Examples of --data to use (default 500).")
    ap.add_argument("--batch-sizes", type=ints, default=[1, 8])
    ap.add_argument("--seq-lens", type=ints, default=[32, 128])
    ap.add_argument("--threads", type=ints, default=[min(2, os.cpu_count() or 1)])
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--min-iters", type=int, default=10)
    ap.add_argument("--warmup", type=float, default=0.3)
    ap.add_argument("--no-fresh-process", action="store_true", help="Skip peak RSS / cold start (a new process per thread count).")
    ap.add_argument("--out", type=Path, help="results.json to write (a directory: DIR/results.json). Without it, only --text runs.")
    a = ap.parse_args(argv)

    try:  # how busy the machine is with other work (the full meter needs edgedistill; else load averages)
        from edgedistill.machine import LoadMeter

        meter = LoadMeter()
    except ImportError:
        meter = None
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    EdgeModel = load_runtime(a.bundle)
    model = EdgeModel.load(a.bundle, threads=max(a.threads))
    manifest, family = model.manifest, model.manifest["family"]
    task = manifest.get("task") or {}
    for text in a.text:
        print(json.dumps({"input": text, **model.predict([text])[0]}, ensure_ascii=False))
    if a.out is None:
        return 0

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(a.bundle / ((manifest.get("tokenizer") or {}).get("file") or "tokenizer.json")))
    examples = read_examples(a.data, task, a.limit) if a.data else []
    template = task.get("input")
    texts = [template.format(**r) if template else str(r) for r, _ in examples] or synthetic_texts(tok)
    choices = [r.get(task.get("choices")) for r, _ in examples if task.get("choices") and r.get(task.get("choices"))] or None
    item = examples[0][0] if examples else texts[0]

    info = {"name": "bundle", "description": "edgedistill bundle via " + EdgeModel.__module__, "status": "ok", "reason": None,
            "files": sorted((manifest.get("models") or {}).values()) or sorted(p.name for p in a.bundle.glob("*.onnx")),
            "quantization": manifest.get("quantization"), "target": manifest.get("target")}
    info["size_bytes"] = sum((a.bundle / f).stat().st_size for f in info["files"]) or None
    info["package_bytes"] = sum(p.stat().st_size for p in a.bundle.rglob("*") if p.is_file())
    gold = [(r, g) for r, g in examples if g is not None]
    if gold:
        preds = model.predict([r for r, _ in gold], batch_size=32)
        same = same_number if task.get("type") == "numeric" else (lambda x, y: x == y)
        info["accuracy"] = round(sum(same(p.get("label", p.get("answer")), g) for p, (_, g) in zip(preds, gold)) / len(gold), 5)
        info["accuracy_n"] = len(gold)
        print(f"accuracy on {len(gold)} examples: {100 * info['accuracy']:.2f} %", file=sys.stderr)

    rows = []
    for t in a.threads:
        m = EdgeModel.load(a.bundle, threads=t)
        names = m.input_names
        for i, (b, q) in enumerate((b, q) for b in a.batch_sizes for q in a.seq_lens):
            x = fit(shape_feeds(tok, family, texts, choices, b, q, offset=i), names)
            try:
                res = summarize(time_calls(m, x, a.min_time, a.min_iters, a.warmup), b)
                rows.append({"variant": "bundle", "batch_size": b, "seq_len": q, "threads": t, "status": "ok", **res})
                print(f"threads {t} batch {b:>3} seq {q:>4}: p50 {res['p50_ms']:.2f} ms  p99 {res['p99_ms']:.2f} ms  "
                      f"{res['throughput_items_s']:.1f} items/s", file=sys.stderr)
            except Exception as e:  # noqa: BLE001 - e.g. seq longer than the model's positions
                rows.append({"variant": "bundle", "batch_size": b, "seq_len": q, "threads": t, "status": "failed",
                             "error": f"{type(e).__name__}: {e}"})
        del m
    if not a.no_fresh_process:
        info["fresh_process"] = [fresh_process(a.bundle, t, item, texts, choices, (max(a.batch_sizes), max(a.seq_lens))) for t in a.threads]
    for r in rows:
        fp = next((f for f in info.get("fresh_process", []) if f.get("threads") == r["threads"] and "error" not in f), {})
        r.update(size_bytes=info.get("size_bytes"), accuracy=info.get("accuracy"), peak_rss_mb=fp.get("peak_rss_mb"),
                 cold_start_s=fp.get("cold_start_s"), speedup_vs_torch_fp32=None, size_ratio_vs_torch_fp32=None,
                 accuracy_delta_pt_vs_torch_fp32=None, rss_ratio_vs_torch_fp32=None)
    doc = {"schema_version": SCHEMA_VERSION, "kind": "run", "tool": "export/run_bundle.py",
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "machine": machine_record(a.threads, ["python", "run_bundle.py"] + argv),
           "load": meter.result() if meter else {"loadavg_start": [round(x, 2) for x in load0] if load0 else None},
           "subject": {"bundle": str(a.bundle), "torch": None, "family": family, "task": task.get("name"),
                       "labels": task.get("labels"), "max_length": manifest.get("max_length")},
           "data": {"path": str(a.data) if a.data else None, "examples": len(examples), "with_gold": len(gold),
                    "inputs": "real" if examples else "synthetic"},
           "settings": {"batch_sizes": a.batch_sizes, "seq_lens": a.seq_lens, "threads": a.threads, "min_time": a.min_time,
                        "min_iters": a.min_iters, "warmup": a.warmup, "limit": a.limit, "fresh_process": not a.no_fresh_process,
                        "variants": ["bundle"], "seed": 0},
           "baseline": "torch-fp32",
           "timed_call": ("encoder forward + first decoder step" if family == "seq2seq" else "model forward")
           + " on pre-tokenized inputs of exactly batch x seq real tokens (tokenization excluded)",
           "variants": [info], "results": rows}
    out = a.out / "results.json" if a.out.suffix != ".json" else a.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
