"""RUN/report.md: one page that answers what the pipeline cost, what it learned and what it gained."""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import write_text
from .compress.candidates import pareto_lines
from .compress.vocabulary import trim_warning, vocabulary_line
from .distill.model_card import candidate_table, floor_warning, skipped_note
from .task import load_task


def _load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(x, spec=".1f", suffix=""):
    return "–" if x is None else f"{x:{spec}}{suffix}"


def _size_mb(path: Path) -> float | None:
    if not path.exists():
        return None
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def write_report(pipe, evaluations: dict[str, dict]) -> Path:
    """RUN/report.md: one section per stage, in the order the page shows them."""
    run = pipe.run
    ann = _load(run / "annotate.json") or {}
    train = _load(run / "student" / "train.json") or {}
    task = load_task(pipe.path(pipe.task))
    lines = [
        f"# edgedistill run: {task.name} ({task.type}, {len(task.labels or [])} labels)"
        if task.labels
        else f"# edgedistill run: {task.name} ({task.type})",
        "",
    ]
    lines += _teacher_lines(ann, pipe)
    lines += _accuracy_lines(evaluations, ann, pipe)
    lines += _student_lines(train)
    lines += _compression_lines(run, pipe)
    lines += _speed_lines(run)
    lines += _artifact_lines(run, pipe, train)
    path = run / "report.md"
    write_text(path, "\n".join(lines) + "\n")
    return path


def _teacher_lines(ann: dict, pipe) -> list[str]:
    return [
        "## Teacher",
        "",
        "| model | prompt | examples | ok | parse failed | failed | requests sent | cache hits | prompt tokens "
        "| completion tokens | cost (USD) | agreement with gold |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {ann.get('model', pipe.teacher.model)} | {ann.get('mode', pipe.teacher.prompt)} "
        f"| {ann.get('examples', '–')} | {ann.get('ok', '–')} "
        f"| {ann.get('parse_failed', '–')} | {ann.get('failed', '–')} | {ann.get('requests_sent', '–')} "
        f"| {ann.get('cache_hits', '–')} "
        f"| {ann.get('prompt_tokens', '–')} | {ann.get('completion_tokens', '–')} | {_fmt(ann.get('cost_usd'), '.4f')} "
        f"| {_fmt(None if ann.get('gold_agreement') is None else 100 * ann['gold_agreement'], '.1f', ' %')} |",
        "",
        *_signal_lines(ann),
    ]


def _accuracy_lines(evaluations: dict[str, dict], ann: dict, pipe) -> list[str]:
    if not evaluations:
        return []
    lines = [
        f"## Accuracy on {Path(pipe.eval_data).name} (held out, gold labels)",
        "",
        "| model | accuracy | examples |",
        "|---|---|---|",
    ]
    for name, ev in evaluations.items():
        lines.append(f"| {name} | {_fmt(100 * ev['accuracy'], '.1f', ' %')} | {ev.get('examples', ev.get('n', '–'))} |")
    lines.append("")
    if ann.get("gold_agreement") is not None:
        lines += [
            f"A student learns what its teacher says: this teacher agreed with the gold labels on "
            f"{100 * ann['gold_agreement']:.1f} % of the training inputs"
            + (
                ", and `student (standard)` shows what the same student reaches on gold labels."
                if "standard" in pipe.student.compare + [pipe.student.mode]
                else "."
            ),
            "",
        ]
    return lines


def _student_lines(train: dict) -> list[str]:
    lines = []
    if warning := floor_warning(train.get("val_vs_floor"), train.get("family")):
        lines += [f"**Warning: the student.** {warning}", ""]
    if train.get("candidates"):
        lines += [
            "## Student",
            "",
            f"`--mode auto` trained {len(train['candidates'])} candidates on one split and shipped "
            f"`{train['mode']}`, chosen on {train['val_examples']} validation rows (label-only unless another "
            "beat it beyond noise, row by row):",
            "",
            *candidate_table(train["candidates"]),
            "",
        ]
        if train.get("auto_skipped"):
            lines += [skipped_note(train["auto_skipped"]), ""]
    return lines


def _compression_lines(run: Path, pipe) -> list[str]:
    compressed = _load(run / "compressed" / "compress.json") if pipe.compress is not None else None
    if not compressed:
        return []
    lines = []
    for warning in (trim_warning(compressed.get("vocabulary")), (compressed.get("evidence") or {}).get("warning")):
        if warning:
            lines += [f"**Warning: compression.** {warning[0].upper()}{warning[1:]}", ""]
    lines += [
        "## Compression",
        "",
        f"`edgedistill compress` built {len(compressed['candidates'])} candidate(s) and "
        f"shipped `{compressed['chosen']}`"
        + (
            f", the most accurate within {compressed['budget_ms']:g} ms per prediction"
            if compressed.get("budget_ms")
            else ""
        )
        + " (accuracy: "
        + compressed["accuracy_on"]
        + "):",
        "",
        *pareto_lines(compressed),
        "",
    ]
    for line in (vocabulary_line(compressed.get("vocabulary")), compressed.get("choice")):
        if line:
            lines += [line, ""]
    if (run / "compressed" / "compress.png").exists():
        lines += ["![accuracy vs latency](compressed/compress.png)", ""]
    return lines


def _speed_lines(run: Path) -> list[str]:
    bench = _load(run / "bench" / "results.json")
    if not bench:
        return []
    lines = ["## Speed and size (batch 1)", "", *_bench_rows(bench), ""]
    for plot in ("latency.png", "tradeoff.png"):
        if (run / "bench" / plot).exists():
            lines.append(f"![{plot}](bench/{plot})")
    return lines + [""]


def _artifact_lines(run: Path, pipe, train: dict) -> list[str]:
    lines = ["## Artifacts", "", "| stage | path | size |", "|---|---|---|"]
    for stage, rel in (
        ("annotations", "annotations.jsonl"),
        ("teacher cache", "cache.sqlite"),
        ("student", "student"),
        ("stripped model", "stripped"),
        *([("compressed model", "compressed")] if pipe.compress else []),
        ("bundle", "bundle"),
        ("benchmark", "bench/report.md"),
    ):
        p = run / rel
        lines.append(f"| {stage} | `{p}` | {_fmt(_size_mb(p), '.1f', ' MB')} |")
    if train:
        manifest = _load(run / "bundle" / "manifest.json") or {}
        lines += [
            "",
            f"Student: mode `{train.get('mode', pipe.student.mode)}`, α = {train.get('alpha', pipe.student.alpha)}, "
            f"seed {train.get('seed', pipe.student.seed)}. Bundle: {_quantization_text(manifest, pipe)}.",
        ]
    return lines


def _quantization_text(manifest: dict, pipe) -> str:
    """How the bundle was quantized, in words: its mode, and the activation smoothing when it had one."""
    q = manifest.get("quantization")
    if not isinstance(q, dict):
        return f"quantization `{q or pipe.export.quantize}`"
    smooth = f", activations smoothed before INT8 (alpha {q['smooth']['alpha']:g})" if q.get("smooth") else ""
    return f"quantization `{q.get('mode', pipe.export.quantize)}`{smooth}"


def _bench_rows(bench: dict) -> list[str]:
    """Rows of the bench results at batch 1 and the longest measured sequence length, one per variant."""
    rows = [
        r
        for r in bench.get("results", [])
        if r.get("batch_size") == 1 and not r.get("error") and r.get("p50_ms") is not None
    ]
    if not rows:
        return ["(no batch-1 results)"]
    seq = max(r.get("seq_len", 0) for r in rows)
    threads = max(r.get("threads", 0) for r in rows)
    out = [
        f"Sequence length {seq}, {threads} threads.",
        "",
        "| variant | p50 latency (ms) | speedup vs torch FP32 | size (MB) | accuracy |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("seq_len", 0) != seq or r.get("threads", 0) != threads:
            continue
        acc = r.get("accuracy")
        out.append(
            f"| {r.get('variant')} | {_fmt(r.get('p50_ms'), '.2f')} | "
            f"{_fmt(r.get('speedup_vs_torch_fp32'), '.2f', '×')} "
            f"| {_fmt(None if r.get('size_bytes') is None else r['size_bytes'] / 1e6, '.1f')} | "
            f"{_fmt(None if acc is None else 100 * acc, '.1f', ' %')} |"
        )
    return out


def _signal_lines(ann: dict) -> list[str]:
    """How the labels were read (text, logprob scores, votes) and how many rows got an explanation."""
    if "requests_by_kind" not in ann:
        return []
    pct = lambda x: _fmt(None if x is None else 100 * x, ".1f", " %")  # noqa: E731
    kinds = ", ".join(f"{k} {v['requests']}" for k, v in ann["requests_by_kind"].items())
    out = [
        f"Labels: scoring `{ann.get('scoring')}` over {ann.get('score_orders', 1)} option order(s), calibration "
        f"`{ann.get('calibration')}`, {ann.get('votes', 1)} vote(s) per input; {ann.get('with_label_probs', 0)} rows "
        "carry "
        f"label_probs. Agreement with gold: {pct(ann.get('gold_agreement_text'))} from the text answers alone, "
        f"{pct(ann.get('gold_agreement'))} as labelled. Requests by kind: {kinds}.",
        "",
        f"Rationale yield: {pct(ann.get('rationale_yield_first'))} of the inputs asked for one got an explanation in "
        "the answer, "
        f"{pct(ann.get('rationale_yield'))} after {ann.get('rationalized', 0)} rationalization follow-ups.",
    ]
    for key, count in (ann.get("notes") or {}).items():
        out.append(f"- degraded: {key.replace('_', ' ')} ({count} rows)")
    return out + [""]
