"""Each candidate exported as `edgedistill export` would, scored and timed; the latency budget's choice among them;
compress.md's table and compress.png.

Scoring. With gold data (`--eval-data`) each candidate's bundle is scored on it. Without, a tenth of the annotated
rows (inputs.HOLD_OUT, at most HOLD_OUT_MAX, picked by a hash of their ids) is kept out of the kept vocabulary and
out of every smaller student's training, and each candidate is scored by how often it gives MODEL's answer on them:
inputs none of the candidates was built from, as an app's will be. Scored on the rows they were built from instead,
a trimmed vocabulary keeps every answer by construction and a distilled student shows its training fit.
"""

from __future__ import annotations

import functools
import statistics
import time
from pathlib import Path

from ..annotations import read_annotations
from ..data import Example, load_examples
from ..deploy.export import ExportConfig, export_bundle
from ..deploy.static_bundle import is_static
from ..evaluate import predict_labels, score
from ..model_dir import base_name, read_meta
from ..runtime import EdgeModel
from ..task import load_task
from .evidence import EVIDENCE_CONFIDENCE, pct, shown
from .inputs import unlabelled
from .smaller import layer_count


class Scoring:
    """Answers on inputs the candidates were not built from: --eval-data's (with gold), else the held-out annotated
    rows'. `accuracy(model)` is a candidate's score: gold accuracy on --eval-data, else `agreement(model)` with
    MODEL's own answers, which are computed once, when first needed."""

    def __init__(self, source: Path, eval_data: str | None, held_out: list | None):
        self.task = load_task(source / "task.yaml")
        if eval_data:
            self.examples = load_examples(self.task, eval_data, require_gold=True)
            self.unseen = f"of {Path(eval_data).name}"
        else:
            self.examples = [Example(id=a.id, input=a.input, choices=a.choices, gold=None) for a in held_out]
            self.unseen = "held out of it"
        self.source, self.gold = source, bool(eval_data)

    def seen(self, annotations, inputs=None) -> str | None:
        """With --eval-data, the warning its rows earn by being inputs the candidates were built from (the annotations'
        or --inputs'): scores there overstate those on an app's inputs. None when none is, or without --eval-data."""
        if not self.gold:
            return None
        built = {a.input for a in read_annotations(annotations)} | {r["input"] for r in unlabelled(inputs)}
        n = sum(e.input in built for e in self.examples)
        if not n:
            return None
        return (
            f"{n:,} of the {len(self.examples):,} --eval-data rows are inputs of the annotations or --inputs, which "
            "the kept vocabulary and smaller students were built from, so the scores there overstate those on an "
            "app's inputs. Give --eval-data rows the annotations do not hold."
        )

    @functools.cached_property
    def reference(self) -> list[str]:
        return predict_labels(self.source, self.task, self.examples)

    def agreement(self, model) -> float:
        return self.score(model)["agree"] / len(self.reference)

    def score(self, model) -> dict:
        """{"accuracy": gold accuracy with --eval-data, else the agreement rate with MODEL; "agree": on how many rows
        the model gives MODEL's answer (what keep_evidence weighs)}."""
        answers = predict_labels(model, self.task, self.examples)
        agree = sum(a == b for a, b in zip(answers, self.reference))
        accuracy = score(self.task, self.examples, answers)["accuracy"] if self.gold else agree / len(self.reference)
        return {"accuracy": accuracy, "agree": agree}


def measure_candidate(model_dir: Path, score, checkpoint_bytes: int, cfg, work: Path) -> dict:
    """Export the candidate as `edgedistill export` would (cfg: the CompressConfig's quantize, threads and
    annotations); its accuracy, its agreement with MODEL (`score`: Scoring.score) and its size (timed later, beside
    the others)."""
    bundle = work / f"bundle-{Path(model_dir).name}"
    m = export_bundle(
        ExportConfig(
            model=str(model_dir),
            out=str(bundle),
            quantize=cfg.quantize,
            parity_data=cfg.annotations,
            threads=cfg.threads,
            min_agreement=cfg.min_agreement,
        ),
        echo=lambda *_: None,
    )
    meta = read_meta(model_dir)
    static = is_static(model_dir)
    layers = 0 if static else layer_count(model_dir)  # a static student: token embeddings, no layer
    base = base_name(meta["base"]) if "distilled_from" in meta else None
    if static:
        name = f"static ({meta['static']['engine']} from {base})"
    else:
        name = (
            (f"{base} distilled, " if base else "")
            + f"{layers} layers"
            + (", trimmed vocabulary" if "vocabulary" in meta else "")
        )
    return {
        "name": name,
        "layers": layers,
        "base": base,
        "vocabulary": meta.get("vocabulary", {}).get("kept"),
        **score(bundle),
        "bundle": bundle,
        "bundle_mb": m["size_bytes"] / 1e6,
        "of_checkpoint": m["size_bytes"] / checkpoint_bytes,
    }


def p50_ms(bundles: dict[str, Path], annotations, threads: int, min_time: float = 2.0) -> dict[str, float]:
    """Median wall time of one `EdgeModel.predict` call on one real input (tokenizing included), what an app pays,
    per bundle; the bundles take turns call by call, so noise on a shared machine hits them alike."""
    models = {name: EdgeModel.load(path, threads=threads) for name, path in bundles.items()}
    field = next(iter(models.values())).manifest["task"].get("choices") or "choices"
    items = [
        {"input": a.input, **({field: a.choices} if a.choices else {})} for a in read_annotations(annotations)[:64]
    ]
    times = {name: [] for name in models}
    for model in models.values():  # warm-up
        for it in items[:5]:
            model.predict([it])
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < min_time * len(models) or n < 20:
        it = items[n % len(items)]
        for name, model in models.items():
            t0 = time.perf_counter()
            model.predict([it])
            times[name].append(time.perf_counter() - t0)
        n += 1
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def mean_ms(bundle: Path, examples, threads: int, min_time: float = 2.0) -> float:
    """Mean wall time of one `EdgeModel.predict` call per input over `examples` (each once a pass, passes until
    min_time): a cascade's latency, which is fast on average, not on every input."""
    items = [{"input": e.input} for e in examples]
    with EdgeModel.load(bundle, threads=threads) as model:
        for it in items[:5]:  # warm-up
            model.predict([it])
        total, calls, start = 0.0, 0, time.perf_counter()
        while True:
            for it in items:
                t0 = time.perf_counter()
                model.predict([it])
                total += time.perf_counter() - t0
            calls += len(items)
            if not items or time.perf_counter() - start >= min_time:
                break
    return 1000 * total / max(1, calls)


def choose(rows: list[dict], budget: float | None) -> dict | None:
    """Without a budget the only candidate (asked for by name). Within a budget the most accurate (ties: the faster) of
    MODEL itself and the smaller candidates its scored rows show keep its answers (`shown`); None when none is."""
    fits = [r for r in rows if budget is None or (r["p50_ms"] <= budget and shown(r))]
    return max(fits, key=lambda r: (r["accuracy"], -r["p50_ms"])) if fits else None


def pareto_lines(s: dict) -> list[str]:
    confidence = pct((s.get("evidence") or {}).get("confidence", EVIDENCE_CONFIDENCE), 0)
    header = (
        f"| candidate | accuracy ({s['accuracy_on']}) | p50 ms / prediction | bundle MB | of the FP32 checkpoint "
        f"| gave MODEL's answer (one-sided {confidence} lower bound): keeps its answers? | |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---|---|"]
    for r in s["candidates"]:
        mark = (
            "shipped"
            if r["name"] == s["chosen"]
            else ("over budget" if s["budget_ms"] and r["p50_ms"] > s["budget_ms"] else "")
        )
        lines.append(
            f"| {r['name']} | {100 * r['accuracy']:.1f} % | {r['p50_ms']:.2f}{_mean_mark(r)} | {r['bundle_mb']:.1f} | "
            f"{100 * r['of_checkpoint']:.1f} % | {_evidence_cell(r)} | {mark} |"
        )
    return lines


def _mean_mark(r: dict) -> str:
    """A cascade's latency is its mean per input over the scored inputs, not a p50: the table says so."""
    return f" (mean; P = {r['cascade']['threshold']:.3g})" if "cascade" in r else ""


def _evidence_cell(r: dict) -> str:
    if "evidence" not in r:  # a compress.json written before the evidence was recorded
        return "–"
    e = r["evidence"]
    if e is None:
        return "MODEL itself"
    return f"{e['agree']:,} of {e['rows']:,} (≥ {pct(e['lower_bound'])}): {e['verdict']}"


def pareto_plot(s: dict, path: Path, chosen_label: str = "shipped") -> None:
    """Accuracy against p50 latency, one point per candidate, its area the bundle's size; s["chosen"] starred."""
    # deferred: matplotlib loads only when a plot is drawn
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in s["candidates"]:
        shipped = r["name"] == s["chosen"]
        ax.scatter(
            r["p50_ms"],
            100 * r["accuracy"],
            s=30 * r["bundle_mb"],
            alpha=0.6,
            color="#d4862c" if shipped else "#6a9fd4",
            marker="*" if shipped else "o",
            edgecolors="#222",
        )
        ax.annotate(
            f"{r['name']}\n{r['bundle_mb']:.1f} MB" + (f" ({chosen_label})" if shipped else ""),
            (r["p50_ms"], 100 * r["accuracy"]),
            textcoords="offset points",
            xytext=(8, -4),
            fontsize=7,
        )
    if s.get("budget_ms"):
        ax.axvline(s["budget_ms"], color="#c33", linewidth=1, linestyle="--", label=f"budget {s['budget_ms']:g} ms")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel(f"p50 ms per prediction (batch 1, {s['threads']} threads, this CPU)")
    ax.set_ylabel(f"accuracy (%; {s['accuracy_on']})")
    ax.set_title("compress candidates: accuracy vs latency (area: bundle size)", fontsize=9)
    ax.margins(x=0.3, y=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
