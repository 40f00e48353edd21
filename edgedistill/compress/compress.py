"""The compress stage: `CompressConfig` and `compress`, which builds the candidates (the student with a trimmed
vocabulary, fewer layers, another base distilled), scores and times each, and ships one into the output dir
(compress.json, compress.md, compress.png beside it). The package's __init__ says which module does what."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..atomic import build_dir, write_json, write_text
from ..deploy.export import ExportConfig
from ..deploy.static_bundle import is_static
from ..errors import UserError
from ..model_dir import base_name, read_meta, task_type, weights_bytes, write_meta
from .candidates import Scoring, choose, mean_ms, measure_candidate, p50_ms, pareto_lines, pareto_plot
from .cascade import cascade_note, cascade_rows, measure_cascade, ship_static
from .evidence import choice_line, evidence_lines, evidence_record, keep_evidence, no_choice_message
from .inputs import HOLD_OUT_MAX, held_out_description, hold_out, hold_out_inputs, needs_choices, task_texts
from .smaller import check_ensemble, distill_into, distill_layers, ensemble_note, into_base, layer_count
from .static import STATIC, check_static, distill_static
from .vocabulary import COMMON_WORDS, trim_vocabulary, trim_warning, vocabulary_line


@dataclass
class CompressConfig:
    model: str  # a stripped model dir (edgedistill strip)
    annotations: str  # the inputs it was trained on: the kept vocabulary, the distillation inputs, the timed inputs
    out: str  # the compressed model, in the stripped format
    layers: list[int] | None = None  # layer counts to build; several need a latency budget to choose among them
    # ms per prediction (batch 1, p50, this CPU; a cascade: its mean per input): ship the most accurate within it
    latency_budget: float | None = None
    trim_vocab: bool = True
    common_words: int = COMMON_WORDS  # the commonest words kept beside the task's own tokens when trimming
    eval_data: str | None = None  # gold-labelled data: each candidate's bundle accuracy (else: agreement with MODEL)
    quantize: str = "int8"  # how each candidate is exported to be timed (as `edgedistill export` will)
    min_agreement: float = ExportConfig.min_agreement  # each candidate's INT8 parity gate, as `export --min-agreement`
    cascade_agreement: float = ExportConfig.cascade_agreement  # the cascade candidate's P keeps this share of answers
    threads: int = 2
    epochs: float = 4.0  # distillation of a smaller student
    batch_size: int = 16
    lr: float | None = None
    seed: int = 0
    # More inputs of the task, unlabelled (JSON Lines with `input`): smaller students also learn the trained student's
    # probabilities on them (no teacher needed), and their tokens join the kept vocabulary
    inputs: str | None = None
    # Other, smaller bases to distill the trained student into (model dirs; "default": the packaged all-MiniLM-L6-v2;
    # "static": a model2vec static student, compress/static.py), each a candidate beside the layer counts
    into: list[str] | None = None
    # Smaller students' hard targets: the annotations' own labels at this weight beside MODEL's probabilities (0: its
    # probabilities alone; a two-tower multiple-choice student ranks against the batch's choices only in that term)
    label_weight: float = 0.0
    # More trained students of the task (other seeds or bases): smaller students learn the average of their
    # probabilities and MODEL's, a less noisy target than one model's
    ensemble: list[str] | None = None


def compress(cfg: CompressConfig, echo=print) -> dict:
    """Build the candidates, export and time each, ship one into cfg.out; returns the summary (compress.json)."""
    layers, bases, ensemble = _checked(cfg)
    src, out = Path(cfg.model), Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".work", dir=out.parent))
    try:
        split = _split(cfg, src, work, echo)
        full, vocabulary, texts = _trimmed(cfg, src, split, work, echo)
        total = layer_count(full)
        # the student itself: one candidate among others under a budget, or when asked for (--layers TOTAL) or alone
        dirs = [full] if (cfg.latency_budget is not None or total in layers or not (layers or bases)) else []
        dirs += _smaller(cfg, src, full, split, [k for k in layers if k != total], bases, ensemble, texts, work, echo)
        rows = _measured(cfg, src, full, dirs, split, work)
        chosen = choose(rows, cfg.latency_budget)
        summary = {
            "source": str(src),
            "budget_ms": cfg.latency_budget,
            "threads": cfg.threads,
            "quantize": cfg.quantize,
            "accuracy_on": "eval_data (gold)"
            if cfg.eval_data
            else held_out_description(split.held_annotated, split.held_inputs),
            "ensemble": [str(d) for d in ensemble],
            "vocabulary": vocabulary,
            "eval_seen": split.seen,
            "candidates": rows,
            "chosen": chosen and chosen["name"],
        }
        summary["evidence"] = evidence_record(summary, len(split.scoring.examples), split.held_annotated)
        summary["choice"] = choice_line(summary)
        for line in pareto_lines(summary) + [cascade_note(r) for r in rows if "cascade" in r]:
            echo(line)
        if summary["evidence"]["warning"]:
            echo(f"warning: {summary['evidence']['warning']}")
        if chosen is None:
            raise UserError(no_choice_message(summary))
        if summary["choice"]:
            echo(summary["choice"])
        _ship(out, src, *_shipped(full, dirs, rows, chosen), summary)
        return summary
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _checked(cfg: CompressConfig) -> tuple[list[int], list[Path], list[Path]]:
    """(layer counts, largest first; --into bases; --ensemble dirs), or the UserError of a config that cannot run."""
    layers = sorted(set(cfg.layers or []), reverse=True)
    bases = [STATIC if b == STATIC else into_base(b) for b in cfg.into or []]
    if len(layers) + len(bases) > 1 and cfg.latency_budget is None:
        asked = " ".join(
            ([f"--layers {','.join(map(str, layers))}"] if layers else []) + [f"--into {b}" for b in cfg.into or []]
        )
        raise UserError(
            f"{asked}: several candidates need --latency-budget MS to choose among them; or give one layer count "
            "or one base"
        )
    src = Path(cfg.model)
    if read_meta(src).get("kind") not in ("stripped", "student"):
        raise UserError(f"{src}: not a stripped model dir (edgedistill strip writes one)")
    ensemble = check_ensemble(src, cfg.ensemble)
    if STATIC in bases:
        check_static(src)
    if ensemble and not (layers or bases):
        raise UserError("--ensemble: its answers are what smaller students learn; give --layers K or --into BASE too")
    return layers, bases, ensemble


@dataclass
class _Split:
    """What the candidates are built from (fit, fit_inputs) and what they are scored on (scoring)."""

    fit: str | Path  # the annotations smaller students and the kept vocabulary learn from
    fit_inputs: str | Path | None  # the --inputs they learn from
    scoring: Scoring
    held_annotated: int | None  # annotated rows held out to score on (None: --eval-data); what the fixes count on
    held_inputs: int  # --inputs rows held out to score on
    seen: str | None  # the warning of --eval-data rows the candidates were built from
    static_fit: str | Path  # what the static student learns from: `fit`, less the rows a cascade's P is picked on
    threshold_rows: Path | None  # those rows (with --into static under a budget, where fit has enough), else None


def _split(cfg: CompressConfig, src: Path, work: Path, echo) -> _Split:
    """Without --eval-data, hold rows of the annotations (and --inputs) out of everything the candidates learn."""
    fit, fit_inputs, held_out, held_inputs = cfg.annotations, cfg.inputs, None, []
    if not cfg.eval_data:
        fit, held_out = hold_out(cfg.annotations, work)
        fit_inputs, held_inputs = hold_out_inputs(cfg.inputs, work, HOLD_OUT_MAX - len(held_out), needs_choices(src))
        echo(
            f"scoring: {held_out_description(len(held_out), len(held_inputs), short=True)} held out of the "
            "vocabulary and the distillation; each candidate is scored by its agreement with MODEL on them "
            "(--eval-data: on gold instead)"
        )
    held_annotated = None if held_out is None else len(held_out)
    if held_inputs:
        held_out = [*held_out, *held_inputs]
    scoring = Scoring(src, cfg.eval_data, held_out)
    if seen := scoring.seen(cfg.annotations, cfg.inputs):
        echo(f"warning: {seen}")
    static_fit, threshold_rows = fit, None
    if cfg.latency_budget is not None and STATIC in (cfg.into or []):  # the cascade is a candidate too
        static_fit, threshold_rows = cascade_rows(fit, work / "cascade-rows")
    return _Split(fit, fit_inputs, scoring, held_annotated, len(held_inputs), seen, static_fit, threshold_rows)


def _trimmed(cfg: CompressConfig, src: Path, split: _Split, work: Path, echo) -> tuple[Path, dict | None, list | None]:
    """(the model every candidate starts from: MODEL with a trimmed vocabulary, or MODEL; compress.json's
    `vocabulary`; the texts the vocabulary was kept for)."""
    if not cfg.trim_vocab:
        return src, None, None
    texts = task_texts(split.fit, split.fit_inputs, task_type(src))
    r = trim_vocabulary(src, texts, work / "trimmed", cfg.common_words)
    full, scoring = work / "trimmed", split.scoring
    vocabulary = {
        "kept": r.kept,
        "original": r.original,
        "agreement_unseen": scoring.agreement(full),
        "unseen_rows": len(scoring.examples),
    }
    echo(
        f"vocabulary: kept {r.kept:,} of {r.original:,} tokens ({r.from_inputs:,} the inputs use, "
        f"{r.safety:,} special and single-character, {r.common:,} common words); MODEL with it keeps its "
        f"answer on {100 * vocabulary['agreement_unseen']:.1f} % of {len(scoring.examples):,} inputs "
        f"{scoring.unseen}"
    )
    if warning := trim_warning(vocabulary):
        echo(f"warning: {warning}")
    return full, vocabulary, texts


def _smaller(cfg, src: Path, full: Path, split: _Split, layers, bases, ensemble, texts, work: Path, echo) -> list[Path]:
    """The smaller candidates, distilled from `full`: one per layer count, one per --into base (its vocabulary trimmed
    to the same texts)."""
    total, dirs = layer_count(full), []
    # what every smaller student learns from, quietly
    each = {"echo": lambda *_: None, "inputs": split.fit_inputs, "label_weight": cfg.label_weight, "ensemble": ensemble}
    for k in layers:
        echo(f"{k} layers: distilling from the {total}-layer student{ensemble_note(ensemble)} ...")
        distill_layers(
            full, split.fit, k, work / f"{k}-layers", work, cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed, **each
        )
        dirs.append(work / f"{k}-layers")
    for i, base in enumerate(bases):
        if base == STATIC:
            echo(f"static: a model2vec student learning the {total}-layer student{ensemble_note(ensemble)} ...")
            d = work / "static"
            distill_static(src, split.static_fit, d, work, cfg.seed, **each)
            dirs.append(d)
            continue
        echo(
            f"{base_name(base)}: distilling the {total}-layer student{ensemble_note(ensemble)} into a fresh "
            f"{base_name(base)} ..."
        )
        d = work / f"into-{i}"
        distill_into(full, split.fit, base, d, work, cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed, **each)
        write_meta(d, {**read_meta(d), "distilled_from": str(src.resolve())})  # not the trimmed copy in the work dir
        if cfg.trim_vocab:
            trim_vocabulary(d, texts, work / f"into-{i}-trimmed", cfg.common_words)
            d = work / f"into-{i}-trimmed"
        dirs.append(d)
    return dirs


def _measured(cfg: CompressConfig, src: Path, full: Path, dirs: list[Path], split: _Split, work: Path) -> list:
    """compress.json's candidates: each exported, scored, weighed by keep_evidence and timed beside the others; with
    a static student under a budget, the cascade of it and the full student too (compress/cascade.py)."""
    scoring = split.scoring
    rows = [measure_candidate(d, scoring.score, weights_bytes(src), cfg, work) for d in dirs]
    static = next((i for i, d in enumerate(dirs) if is_static(d)), None)
    if static is not None and full in dirs and cfg.latency_budget is not None:
        i = dirs.index(full)
        rows.append(
            measure_cascade(
                rows[i], rows[static], (full, dirs[static]), split.threshold_rows, split.static_fit, scoring, cfg, work
            )
        )
    smaller = len(rows) - (full in dirs)
    for i, r in enumerate(rows):  # MODEL itself is what the others are measured against: it needs no evidence
        agree = r.pop("agree")
        model = i < len(dirs) and dirs[i] == full
        r["evidence"] = None if model else keep_evidence(agree, len(scoring.examples), smaller)
    bundles = {r["name"]: r.pop("bundle") for r in rows}
    single = [r for r in rows if "cascade" not in r]
    for r, ms in zip(
        single, p50_ms({r["name"]: bundles[r["name"]] for r in single}, cfg.annotations, cfg.threads).values()
    ):
        r["p50_ms"] = ms
    for r in rows:
        if "cascade" in r:  # fast on average, not on its slowest input: the mean over the scored inputs
            r["p50_ms"] = mean_ms(bundles[r["name"]], scoring.examples, cfg.threads)
    return rows


def _shipped(full: Path, dirs: list[Path], rows: list[dict], chosen: dict) -> tuple[Path, Path | None]:
    """(the model dir to ship, the static student to ship inside it, where the cascade was chosen; else None)."""
    if "cascade" in chosen:
        return full, next(d for d in dirs if is_static(d))
    return dirs[rows.index(chosen)], None


def _ship(out: Path, src: Path, chosen: Path, static: Path | None, summary: dict) -> None:
    """The chosen candidate into `out` (a cascade: the full student, its static student in out/cascade/), with
    compress.json, compress.png and compress.md."""
    vocabulary, seen = summary["vocabulary"], summary["eval_seen"]
    warning = trim_warning(vocabulary)
    with build_dir(out) as tmp:
        shutil.copytree(chosen, tmp, dirs_exist_ok=True)
        if static is not None:
            ship_static(static, tmp)
        # the trained student stays the source (export finds its annotations for parity through it)
        write_meta(
            tmp, {**read_meta(tmp), "source": read_meta(src).get("source"), "compressed_from": str(src.resolve())}
        )
        write_json(tmp / "compress.json", summary)
        pareto_plot(summary, tmp / "compress.png")
        notes = [
            n
            for n in (vocabulary_line(vocabulary), warning and f"Warning: {warning}", seen and f"Warning: {seen}")
            if n
        ] + [cascade_note(r) for r in summary["candidates"] if "cascade" in r]
        write_text(
            tmp / "compress.md",
            "\n".join(pareto_lines(summary) + ["", *notes, *evidence_lines(summary)])
            + "\n\n![accuracy vs latency](compress.png)\n",
        )
