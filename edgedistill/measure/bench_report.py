"""results.json -> report.md, latency.png and tradeoff.png; and one report across machines (--merge).

A results document is either one run (`kind: run`, written by `edgedistill bench` or
export/run_bundle.py) or several (`kind: merged`, `runs: [...]`). Everything here reads rows through
`flat_rows`, so both kinds render the same way, with a "run" column when there is more than one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path

from ..atomic import write_json, write_text
from ..edge.machine import describe
from ..errors import UserError
from .bench import SCHEMA_VERSION

SCHEMA_PATH = Path(__file__).with_name("bench_schema.json")
ORDER = ("torch-fp32", "torch-int8", "ort-fp32", "optimum-int8", "bundle")
NAMES = {
    "torch-fp32": "torch FP32",
    "torch-int8": "torch INT8 (dynamic)",
    "ort-fp32": "ORT FP32",
    "optimum-int8": "optimum INT8 (default)",
    "bundle": "bundle (edgedistill)",
}
COLORS = {
    "torch-fp32": "#7f7f7f",
    "torch-int8": "#bcbd22",
    "ort-fp32": "#1f77b4",
    "optimum-int8": "#ff7f0e",
    "bundle": "#d62728",
}
HEADLINE = {"batch_size": 1, "seq_len": 128}
# Where each variant's label would like to sit in tradeoff.png (offset points of its near edge);
# place_labels moves a label that would overlap another or a point.
LABEL_OFFSETS = {
    "torch-fp32": (10, 14),
    "torch-int8": (10, -22),
    "ort-fp32": (-14, 18),
    "optimum-int8": (14, -30),
    "bundle": (16, 22),
}


# ---------------------------------------------------------------------------------------------
# Reading and validating


def validate(doc: dict, where="results.json") -> None:
    """Check a results document against bench_schema.json; UserError naming the first bad field."""
    try:
        # deferred: optional (dev extra)
        import jsonschema
    except ImportError:  # the device runner may lack it; the structure is still checked by use
        return
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    if isinstance(doc, dict):  # check against the kind it claims to be: errors then name the field, not "oneOf"
        schema = {"$ref": "#/$defs/merged" if doc.get("kind") == "merged" else "#/$defs/run", "$defs": schema["$defs"]}
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    if err is not None:
        path = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise UserError(
            f"{where}: {path}: {err.message}; this is not a results.json of edgedistill bench (schema "
            f"{SCHEMA_PATH.name})"
        )


def load_results(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: results file not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    validate(doc, path)
    return doc


def merge(docs: list[dict], command: str | None = None) -> dict:
    """One document holding every run of `docs` (merged documents are flattened)."""
    runs = []
    for d in docs:
        runs += d["runs"] if d.get("kind") == "merged" else [d]

    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "merged",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "runs": runs,
    }


# ---------------------------------------------------------------------------------------------
# Flattening


def run_label(run: dict, i: int | None = None) -> str:
    m = run.get("machine", {})
    isa = next((k for k in ("avx512_vnni", "avx_vnni", "avx2", "dotprod", "neon") if m.get("isa", {}).get(k)), None)
    label = f"{m.get('cpu_model', '?')} ({m.get('arch', '?')}{', ' + isa if isa else ''})"
    if run.get("tool") == "export/run_bundle.py":
        label += ", run_bundle.py"
    return label if i is None else f"#{i + 1} {label}"


def runs_of(doc: dict) -> list[dict]:
    return doc["runs"] if doc.get("kind") == "merged" else [doc]


def flat_rows(doc: dict) -> list[dict]:
    """Every ok row of every run, with `run` (label) and `run_index` added."""
    runs = runs_of(doc)
    out = []
    for i, run in enumerate(runs):
        label = run_label(run, i) if len(runs) > 1 else ""
        for r in run.get("results", []):
            if r.get("status") == "ok":
                out.append({**r, "run": label, "run_index": i})
    return out


def headline_shape(rows: list[dict]) -> dict | None:
    """batch 1 / seq 128 / most threads when measured, else the nearest shape measured in the most runs."""
    if not rows:
        return None
    cover: dict[tuple, set] = {}
    for r in rows:
        cover.setdefault((r["batch_size"], r["seq_len"]), set()).add(r.get("run_index", 0))
    best = max(len(v) for v in cover.values())
    shapes = [k for k, v in cover.items() if len(v) == best]
    b = min({k[0] for k in shapes}, key=lambda x: abs(x - HEADLINE["batch_size"]))
    q = min((k[1] for k in shapes if k[0] == b), key=lambda x: (abs(x - HEADLINE["seq_len"]), -x))
    t = max(r["threads"] for r in rows if r["batch_size"] == b and r["seq_len"] == q)
    return {"batch_size": b, "seq_len": q, "threads": t}


def _at(rows, shape):
    return [r for r in rows if all(r[k] == v for k, v in shape.items())]


def _sort(rows):
    return sorted(
        rows,
        key=lambda r: (
            r["run_index"],
            r["threads"],
            r["batch_size"],
            r["seq_len"],
            ORDER.index(r["variant"]) if r["variant"] in ORDER else 99,
        ),
    )


# ---------------------------------------------------------------------------------------------
# report.md


def _f(v, fmt=".2f", suffix=""):
    return "–" if v is None else f"{v:{fmt}}{suffix}"


def _mb(b):
    return None if b is None else b / 1e6


def targets(run: dict) -> list[dict]:
    """The bundle's promises (issue #7), checked on one run at its headline shape; [] when not measurable.

    A peer that failed (its build, its predictions, or its timing at the headline shape) makes "fastest
    variant measured" and "not slower than" it unmet, reported as not measured: a claim of being fastest
    needs every peer measured. Peers skipped by design (no --torch; ORT peers of seq2seq) are left out."""
    rows = [r for r in run.get("results", []) if r.get("status") == "ok"]
    shape = headline_shape([{**r, "run_index": 0} for r in rows])
    if shape is None:
        return []
    at = {r["variant"]: r for r in _at(rows, shape)}
    bundle = at.get("bundle")
    failed = failed_peers(run, shape)
    if bundle is None or (len(at) < 2 and not failed):  # nothing to compare with
        return []
    out = []
    vnni = any(run.get("machine", {}).get("isa", {}).get(k) for k in ("avx512_vnni", "avx_vnni", "amx_int8", "dotprod"))
    base = at.get("torch-fp32")
    if base:
        sp = base["p50_ms"] / bundle["p50_ms"]
        no_dot = "" if vnni else " (no int8 dot-product on this CPU: 'fastest measured' applies)"
        out.append(_claim(f"≥ 3× faster than torch FP32{no_dot}", f"{sp:.2f}× ({_vs(bundle, base)} ms)", sp >= 3.0))
    for peer in ("optimum-int8", "torch-int8", "ort-fp32"):
        if peer in at:
            ratio = at[peer]["p50_ms"] / bundle["p50_ms"]
            out.append(
                _claim(f"not slower than {NAMES[peer]}", f"{ratio:.2f}× ({_vs(bundle, at[peer])} ms)", ratio >= 1)
            )
        elif peer in failed:
            out.append(_claim(f"not slower than {NAMES[peer]}", f"not measured: {failed[peer]}", False))
    if failed:
        why = "; ".join(f"{NAMES.get(n, n)} {why}" for n, why in failed.items())
        out.append(_claim("fastest variant measured", f"not measured: {why}", False))
    else:
        fastest = min(at.values(), key=lambda r: r["p50_ms"])["variant"]
        out.append(_claim("fastest variant measured", NAMES.get(fastest, fastest), fastest == "bundle"))
    if base and bundle.get("accuracy") is not None and base.get("accuracy") is not None:
        d = 100 * (bundle["accuracy"] - base["accuracy"])
        value = f"{d:+.2f} pt ({100 * bundle['accuracy']:.2f} vs {100 * base['accuracy']:.2f} %)"
        out.append(_claim("INT8 accuracy within 0.5 pt of FP32", value, d >= -0.5))
    if base and bundle.get("size_bytes") and base.get("size_bytes"):
        r = bundle["size_bytes"] / base["size_bytes"]
        value = f"{100 * r:.1f} % ({_mb(bundle['size_bytes']):.1f} vs {_mb(base['size_bytes']):.1f} MB)"
        out.append(_claim("bundle ≤ 25 % of FP32 size", value, r <= 0.25))
    for t in out:
        t["shape"] = shape
    return out


def _claim(target: str, value: str, met: bool) -> dict:
    return {"target": target, "value": value, "met": met}


def _vs(bundle: dict, peer: dict) -> str:
    """The bundle's p50 against a peer's, as the speed claims show them."""
    return f"{bundle['p50_ms']:.2f} vs {peer['p50_ms']:.2f}"


def failed_peers(run: dict, shape: dict) -> dict[str, str]:
    """{peer: "failed (why)"} for each peer variant that failed to build or predict, or whose timing
    failed at `shape` (status failed in results.json)."""
    out = {}
    for v in run.get("variants", []):
        if v.get("name") != "bundle" and v.get("status") == "failed":
            out[v["name"]] = f"failed ({_short(v.get('reason'))})"
    for r in _at([r for r in run.get("results", []) if r.get("status") == "failed"], shape):
        if r["variant"] != "bundle" and r["variant"] not in out:
            out[r["variant"]] = f"failed at this shape ({_short(r.get('error'))})"
    return out


def _short(text, n: int = 120) -> str:
    text = " ".join(str(text or "no reason recorded").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _table(rows, run: bool, threads: bool, shape: bool, costs: bool) -> list[str]:
    """A markdown table of rows; `costs` adds size, accuracy, memory and cold start (the headline view)."""
    cols = (
        (["run"] if run else [])
        + (["threads"] if threads else [])
        + (["batch", "seq"] if shape else [])
        + ["variant", "p50 ms", "p90 ms", "p99 ms", "speedup vs torch FP32", "items/s"]
    )
    if costs:
        cols += ["size MB", "size vs FP32", "accuracy", "Δ acc (pt)", "peak RSS MB", "cold start s"]
    out = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---" if c in ("run", "variant") else "---:" for c in cols) + "|",
    ]
    for r in rows:
        name = NAMES.get(r["variant"], r["variant"])
        cells = (
            ([r["run"]] if run else [])
            + ([str(r["threads"])] if threads else [])
            + ([str(r["batch_size"]), str(r["seq_len"])] if shape else [])
        )
        cells += [
            f"**{name}**" if r["variant"] == "bundle" else name,
            _f(r["p50_ms"]),
            _f(r["p90_ms"]),
            _f(r["p99_ms"]),
            _f(r.get("speedup_vs_torch_fp32"), ".2f", "×"),
            _f(r["throughput_items_s"], ".1f"),
        ]
        if costs:
            cells += [
                _f(_mb(r.get("size_bytes")), ".1f"),
                _f(_pct(r.get("size_ratio_vs_torch_fp32")), ".0f", " %"),
                _f(_pct(r.get("accuracy")), ".2f", " %"),
                _f(r.get("accuracy_delta_pt_vs_torch_fp32"), "+.2f"),
                _f(r.get("peak_rss_mb"), ".0f"),
                _f(r.get("cold_start_s"), ".2f"),
            ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _pct(x):
    return None if x is None else 100 * x


def render_markdown(doc: dict, title: str | None = None) -> str:
    """report.md: the runs (machine, load, data, what failed), the targets, the headline shape, every shape."""
    runs = runs_of(doc)
    rows = flat_rows(doc)
    multi = len(runs) > 1
    lines = [f"# {title or _title(runs)}", ""] + ([doc["note"], ""] if doc.get("note") else [])
    for i, run in enumerate(runs):
        lines += _run_lines(run, f"**Run #{i + 1}** " if multi else "")
    shape = headline_shape(rows)
    if shape is None:
        return "\n".join(lines + ["No variant was measured."]) + "\n"
    for i, run in enumerate(runs):
        lines += _target_lines(targets(run), f" (run #{i + 1})" if multi else "")
    head = _sort(_at_headline(rows, shape, multi))
    lines += [
        f"## Headline: batch {shape['batch_size']}, seq {shape['seq_len']}"
        + ("" if multi else f", {shape['threads']} threads"),
        "",
    ]
    lines += _table(head, multi, multi, False, True)
    lines += [
        "",
        "Latency is per call (one batch); speedup is torch FP32's p50 over the variant's p50 at the same shape "
        "and threads; size is the model file(s) the variant loads; peak RSS and cold start (new process → first "
        "prediction) come from a fresh process per variant.",
        "",
        "![latency vs sequence length](latency.png)",
        "",
        "![size, accuracy and latency](tradeoff.png)",
        "",
        "## All shapes",
        "",
    ]
    lines += _table(_sort(rows), multi, True, True, False)
    first = runs[0]
    st = first.get("settings", {})
    lines += [
        "",
        f"Timed call: {first.get('timed_call', 'model forward on pre-tokenized inputs')}. Variants interleaved in time "
        f"slices per shape; ≥ {st.get('min_time', '?')} s and ≥ {st.get('min_iters', '?')} timed calls each after "
        f"{st.get('warmup', '?')} s of warm-up; p99 over few calls is close to the maximum (see `iterations` in "
        "results.json).",
    ]
    return "\n".join(lines) + "\n"


def _at_headline(rows: list[dict], shape: dict, multi: bool) -> list[dict]:
    """The rows at the headline shape (its thread count too, unless several runs are compared)."""
    return [
        r
        for r in rows
        if r["batch_size"] == shape["batch_size"]
        and r["seq_len"] == shape["seq_len"]
        and (multi or r["threads"] == shape["threads"])
    ]


def _run_lines(run: dict, prefix: str) -> list[str]:
    """One run's header (machine, threads, load, data, subject, command) and what did not run or failed."""
    m = run.get("machine", {})
    v = m.get("versions", {})
    data = run.get("data", {})
    lines = [
        f"{prefix}Machine: {describe(m)}; {m.get('os', '?')}; Python {m.get('python', '?')}; "
        + ", ".join(f"{k} {v[k]}" for k in ("torch", "onnxruntime", "transformers", "optimum") if v.get(k))
        + ".  ",
        f"Threads: {', '.join(str(t) for t in run.get('settings', {}).get('threads', []))}. " + _load_text(run) + " "
        f"Data: {data.get('path') or 'synthetic text'}"
        + (f" ({data.get('with_gold')} gold-labelled examples)" if data.get("with_gold") else "")
        + ".  ",
        _subject_text(run) + "  ",
        f"Command: `{m.get('command', '?')}`",
        "",
    ]
    for var in run.get("variants", []):
        if var.get("status") != "ok":
            lines.append(f"- {NAMES.get(var['name'], var['name'])} {var.get('status')}: {var.get('reason')}")
    failed = [r for r in run.get("results", []) if r.get("status") == "failed"]
    for r in failed[:10]:
        lines.append(
            f"- {NAMES.get(r['variant'], r['variant'])} failed at batch {r['batch_size']}, seq {r['seq_len']}, "
            f"{r['threads']} threads: {r.get('error')}"
        )
    if len(failed) > 10:
        lines.append(f"- ... and {len(failed) - 10} more failed shapes (see results.json)")
    if failed or any(var.get("status") != "ok" for var in run.get("variants", [])):
        lines.append("")
    return lines


def _target_lines(met: list[dict], which: str) -> list[str]:
    """The targets table of one run (`targets`), or nothing where none was measurable."""
    if not met:
        return []
    shape = met[0]["shape"]
    return [
        f"## Targets{which}: batch {shape['batch_size']}, seq {shape['seq_len']}, {shape['threads']} threads",
        "",
        "| target | measured | met |",
        "|---|---|:-:|",
        *[f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |" for t in met],
        "",
    ]


def _subject_text(run: dict) -> str:
    """What was measured: the bundle (and how it was quantized) and the torch student behind the peers."""
    sub = run.get("subject", {})
    b = next((v for v in run.get("variants", []) if v.get("name") == "bundle"), {})
    q = b.get("quantization") or {}
    how = ", ".join(f"{k} {q[k]}" for k in ("mode", "preset", "per_channel", "reduce_range") if k in q)
    if q.get("smooth"):
        how += f", smoothed (alpha {q['smooth']['alpha']:g})"
    return (
        f"Bundle: `{sub.get('bundle', '?')}`"
        + (f" ({how})" if how else "")
        + (f"; torch student: `{sub['torch']}`" if sub.get("torch") else "")
        + "."
    )


def _load_text(run: dict) -> str:
    """The load conditions in words: numbers taken beside other work are slower and noisier."""
    m, load = run.get("machine", {}), run.get("load") or {}
    avg = "/".join(str(x) for x in (load.get("loadavg_start") or m.get("loadavg_1_5_15") or [])) or "?"
    text = f"Load: 1/5/15-min load average {avg} at start on {m.get('usable_cpus', '?')} CPUs"
    share = load.get("other_processes_cpu_share")
    if share is not None:
        text += (
            f"; other processes used {100 * share:.0f} % of the CPUs during the {load.get('seconds', 0) / 60:.0f}-min "
            "run" + (" (a busy machine: absolute times are inflated, ratios less so)" if share > 0.1 else " (quiet)")
        )
    return text + "."


def _title(runs) -> str:
    task = next((r.get("subject", {}).get("task") for r in runs if r.get("subject", {}).get("task")), None)
    return f"Benchmark{': ' + task if task else ''}, bundle vs PyTorch and ONNX Runtime" + (
        f" ({len(runs)} runs)" if len(runs) > 1 else ""
    )


# ---------------------------------------------------------------------------------------------
# Plots


def _series_key(r, multi):
    return (r["run_index"] if multi else 0, r["variant"], r["threads"])


def plot_latency(doc: dict, path) -> None:
    """p50 latency vs sequence length, one panel per batch size, one line per variant (and thread count, run)."""
    # deferred: matplotlib loads only to plot
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = flat_rows(doc)
    multi = len(runs_of(doc)) > 1
    batches = sorted({r["batch_size"] for r in rows})
    threads = sorted({r["threads"] for r in rows})
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v"]
    fig, axes = plt.subplots(1, max(1, len(batches)), figsize=(4.2 * max(1, len(batches)), 3.8), squeeze=False)
    for ax, b in zip(axes[0], batches):
        series = {}
        for r in rows:
            if r["batch_size"] == b:
                series.setdefault(_series_key(r, multi), []).append(r)
        for (ri, v, t), rs in sorted(
            series.items(), key=lambda kv: (kv[0][0], ORDER.index(kv[0][1]) if kv[0][1] in ORDER else 99, kv[0][2])
        ):
            rs = sorted(rs, key=lambda r: r["seq_len"])
            label = NAMES.get(v, v) + (f", {t} thr" if len(threads) > 1 else "") + (f", run #{ri + 1}" if multi else "")
            ax.plot(
                [r["seq_len"] for r in rs],
                [r["p50_ms"] for r in rs],
                styles[threads.index(t) % len(styles)],
                marker=markers[ri % len(markers)],
                color=COLORS.get(v),
                label=label,
                linewidth=2.2 if v == "bundle" else 1.4,
            )
        ax.set_title(f"batch {b}")
        ax.set_xlabel("sequence length (tokens)")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("p50 latency per call (ms, log)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(5, max(1, len(labels))), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(labels) - 1) // 5), 1, 1))
    _save(fig, path)
    plt.close(fig)


def plot_tradeoff(doc: dict, path) -> None:
    """At the headline shape: p50 latency (x) against accuracy (y; size when there is no accuracy), bubble area =
    size."""
    # deferred: matplotlib loads only to plot
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = flat_rows(doc)
    multi = len(runs_of(doc)) > 1
    shape = headline_shape(rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    pts = _at_headline(rows, shape, multi) if shape else []
    use_acc = any(r.get("accuracy") is not None for r in pts)
    sizes = [r.get("size_bytes") or 0 for r in pts]
    smax = max(sizes) if sizes and max(sizes) else 1
    labels = []  # (annotation, row) to place once the axes are laid out
    for r in pts:
        y = 100 * r["accuracy"] if use_acc and r.get("accuracy") is not None else _mb(r.get("size_bytes"))
        if y is None:
            continue
        area = 60 + 900 * (r.get("size_bytes") or 0) / smax
        ax.scatter(
            r["p50_ms"], y, s=area, color=COLORS.get(r["variant"]), alpha=0.55, edgecolors="black", linewidths=0.6
        )
        tag = f"{NAMES.get(r['variant'], r['variant'])}\n{_f(_mb(r.get('size_bytes')), '.1f')} MB"
        if multi or len({p["threads"] for p in pts}) > 1:
            tag += f", {r['threads']} thr" + (f", #{r['run_index'] + 1}" if multi else "")
        arrow = {"arrowstyle": "-", "color": "0.6", "lw": 0.6}
        where = {"textcoords": "offset points", "xytext": (0, 0), "ha": "center", "va": "center"}
        note = ax.annotate(tag, (r["p50_ms"], y), fontsize=7.5, arrowprops=arrow, **where)
        labels.append((note, r, area**0.5 / 2))  # the bubble's radius in points
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}" if f"{x:g}"[0] in "25" else ""))
    ax.set_xlabel(
        f"p50 latency (ms, log), batch {shape['batch_size'] if shape else '?'}, seq "
        f"{shape['seq_len'] if shape else '?'}" + ("" if multi or not shape else f", {shape['threads']} threads")
    )
    ax.set_ylabel("accuracy (%)" if use_acc else "model size (MB)")
    ax.set_title("Speed, size (bubble area) and accuracy" if use_acc else "Speed and size (no --data, so no accuracy)")
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.35, y=0.25)
    fig.tight_layout()
    _place_annotations(fig, ax, labels)
    _save(fig, path)
    plt.close(fig)


def _place_annotations(fig, ax, labels) -> None:
    """Move each label to a spot where it overlaps no other label and no point (see place_labels)."""
    if not labels:
        return
    # deferred: matplotlib loads only to plot
    from matplotlib.text import Text

    fig.canvas.draw()  # final limits and text extents
    renderer = fig.canvas.get_renderer()
    k = 72.0 / fig.dpi  # pixels -> points, the unit of "offset points"
    points = [tuple(float(v) * k for v in ax.transData.transform(a.xy)) for a, _, _ in labels]
    sizes = []
    for a, _, _ in labels:
        bb = Text.get_window_extent(a, renderer)  # the text alone, not its arrow
        sizes.append((bb.width * k + 3, bb.height * k + 3))
    box = ax.get_window_extent(renderer)
    bounds = (box.x0 * k, box.y0 * k, box.x1 * k, box.y1 * k)
    preferred = [LABEL_OFFSETS.get(r["variant"]) for _, r, _ in labels]
    radii = [radius for _, _, radius in labels]
    for (a, _, _), offset in zip(labels, place_labels(points, sizes, preferred=preferred, marker=radii, bounds=bounds)):
        a.xyann = offset


def place_labels(
    points, sizes, preferred=None, marker=8.0, step: float = 10.0, rings: int = 10, bounds=None
) -> list[tuple[float, float]]:
    """Offsets (dx, dy) from each point to the centre of its label so no two labels overlap and no label
    covers a point (a square of half-side `marker` around it: one number, or one per point); all in one
    unit (points), y up.

    Labels are placed in order: each takes the first free spot among its preferred offset (an edge
    offset as in LABEL_OFFSETS: the label's near side sits there) and rings of 16 directions at growing
    distances; inside `bounds` (x0, y0, x1, y1) when given. Where no spot is free, the least-overlapping."""

    def overlap(a, b):
        return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))

    def outside(bx):
        if bounds is None:
            return 0.0
        w, h = bx[2] - bx[0], bx[3] - bx[1]
        inner = (max(bx[0], bounds[0]), max(bx[1], bounds[1]), min(bx[2], bounds[2]), min(bx[3], bounds[3]))
        inside = max(0.0, inner[2] - inner[0]) * max(0.0, inner[3] - inner[1])
        return w * h - inside

    radii = list(marker) if isinstance(marker, (list, tuple)) else [marker] * len(points)
    markers = [(x - m, y - m, x + m, y + m) for (x, y), m in zip(points, radii)]
    placed, out = [], []
    for i, ((x, y), (w, h)) in enumerate(zip(points, sizes)):
        own = radii[i]
        cands = []
        if preferred and preferred[i]:
            dx, dy = preferred[i]
            cands.append((dx + math.copysign(w / 2, dx), dy + h / 2))
        for ring in range(rings):
            for j in range(16):
                ang = 2 * math.pi * j / 16 + math.pi / 4  # upper right first
                rx, ry = own + w / 2 + ring * step, own + h / 2 + ring * step
                cands.append((rx * math.cos(ang), ry * math.sin(ang)))
        best, best_cost = cands[0], math.inf
        for dx, dy in cands:
            bx = (x + dx - w / 2, y + dy - h / 2, x + dx + w / 2, y + dy + h / 2)
            cost = sum(overlap(bx, o) for o in placed) + sum(overlap(bx, m) for m in markers) + outside(bx)
            if cost < best_cost:
                best, best_cost = (dx, dy), cost
                if cost == 0:
                    break
        dx, dy = best
        placed.append((x + dx - w / 2, y + dy - h / 2, x + dx + w / 2, y + dy + h / 2))
        out.append((round(dx, 2), round(dy, 2)))
    return out


def _save(fig, path) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(doc: dict, out, title: str | None = None) -> dict:
    """results.json, report.md, latency.png, tradeoff.png into `out`; returns {name: path}."""
    validate(doc, Path(out) / "results.json")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "results": out / "results.json",
        "report": out / "report.md",
        "latency": out / "latency.png",
        "tradeoff": out / "tradeoff.png",
    }
    write_json(paths["results"], doc)
    plot_latency(doc, paths["latency"])
    plot_tradeoff(doc, paths["tradeoff"])
    write_text(paths["report"], render_markdown(doc, title))
    return paths


def summary_lines(doc: dict) -> list[str]:
    """The headline rows as plain text for the terminal."""
    rows = flat_rows(doc)
    shape = headline_shape(rows)
    if shape is None:
        return ["no variant was measured"]
    multi = len(runs_of(doc)) > 1
    head = _sort(_at_headline(rows, shape, multi))
    out = [
        f"batch {shape['batch_size']}, seq {shape['seq_len']}" + ("" if multi else f", {shape['threads']} threads"),
        f" {'run':<4}{'thr':>4}  {'variant':<24}{'p50 ms':>9}{'speedup':>9}{'size MB':>9}{'accuracy':>10}",
    ]
    for r in head:
        out.append(
            f" {('#' + str(r['run_index'] + 1)) if multi else '':<4}{r['threads']:>4}  "
            f"{NAMES.get(r['variant'], r['variant']):<24}"
            f"{_f(r['p50_ms']):>9}{_f(r.get('speedup_vs_torch_fp32'), '.2f', '×'):>9}"
            f"{_f(_mb(r.get('size_bytes')), '.1f'):>9}{_f(_pct(r.get('accuracy')), '.2f', ' %'):>10}"
        )
    return out
