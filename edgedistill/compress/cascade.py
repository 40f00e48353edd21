"""The cascade candidate (`--into static` under `--latency-budget`): the static student in front of the full one, as
`edgedistill export --cascade` builds it (deploy/cascade.py, its auto rule for P), scored on the same rows as every
candidate and timed by its mean per input over the scored inputs, one per call: a cascade is fast on average, not on
its slowest input.

P is picked on a tenth of the annotated rows the static student would learn from, held out of its training and of
the scoring (`cascade_rows`); where there are too few to hold any out, on its training rows, and compress says so.
Shipped, the static student rides in OUT/cascade/ and compress.json records P; `edgedistill export OUT` builds the
cascade bundle from them (deploy/cascade.shipped_cascade).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..annotations import read_annotations
from ..atomic import write_jsonl
from ..deploy.cascade import export_cascade
from ..deploy.export import ExportConfig
from ..edge.runtime import CASCADE_DIR, EdgeModel
from .inputs import hold_out


def cascade_rows(fit, work: Path) -> tuple[Path, Path | None]:
    """(what the static student learns from, the annotated rows P is picked on, written into work): inputs.hold_out's
    tenth of `fit`; (fit, None) where fit has too few annotated rows to hold any out."""
    if sum(a.status == "ok" and a.label is not None for a in read_annotations(fit)) < 2:
        return Path(fit), None
    work.mkdir(parents=True, exist_ok=True)
    static_fit, held = hold_out(fit, work)
    rows = work / "threshold-rows.jsonl"
    write_jsonl(rows, [a.to_json() for a in held])
    return static_fit, rows


def measure_cascade(full: dict, static: dict, dirs: tuple[Path, Path], rows: Path | None, fit, scoring, cfg, work):
    """The cascade's row of compress.json: the full student's candidate bundle (full["bundle"]) with the static
    student (dirs: (full dir, static dir)) in front, P by export's auto rule on `rows` (None: on `fit`, the static
    student's training rows), scored as every candidate (candidates.Scoring); its latency is timed later
    (candidates.mean_ms)."""
    bundle = work / "bundle-cascade"
    evidence = rows or fit
    m = export_cascade(
        ExportConfig(
            model=str(dirs[0]),
            out=str(bundle),
            quantize=cfg.quantize,
            parity_data=str(evidence),
            parity_samples=max(1, len(read_annotations(evidence))),
            threads=cfg.threads,
            min_agreement=cfg.min_agreement,
            cascade=str(dirs[1]),
            cascade_agreement=cfg.cascade_agreement,
        ),
        _copy_of(full["bundle"]),
        echo=lambda *_: None,
    )["cascade"]
    return {
        "name": f"cascade (static, else {full['name']})",
        "layers": full["layers"],
        "base": None,
        "vocabulary": full["vocabulary"],
        **scoring.score(bundle),
        "bundle": bundle,
        "bundle_mb": full["bundle_mb"] + static["bundle_mb"],
        "of_checkpoint": full["of_checkpoint"] + static["of_checkpoint"],
        "cascade": {
            "threshold": m["threshold"],
            "target_agreement": m["target_agreement"],
            "threshold_rows": m["evidence"]["inputs"],
            "threshold_on": "annotated rows held out of the static student's training and of the scoring"
            if rows
            else "the static student's training rows (too few annotated rows to hold some out)",
            "agreement_on_threshold_rows": m["agreement_with_transformer"],
            "static_share": static_share(bundle, scoring.examples),
        },
    }


def _copy_of(bundle: Path):
    """export_cascade's transformer export: the full candidate's bundle, already exported, copied in."""

    def export_transformer(c) -> dict:
        shutil.copytree(bundle, c.out, dirs_exist_ok=True)
        return json.loads((Path(bundle) / "manifest.json").read_text())

    return export_transformer


def static_share(bundle: Path, examples) -> float:
    """The share of `examples` the cascade bundle's static tier answers."""
    with EdgeModel.load(bundle) as model:
        answers = model.predict([{"input": e.input} for e in examples])
    return sum(a["tier"] == "static" for a in answers) / max(1, len(answers))


def cascade_note(row: dict) -> str:
    """What compress says of a cascade candidate's P and its evidence."""
    c = row["cascade"]
    return (
        f"{row['name']}: P = {c['threshold']:.4g}, picked by export's auto rule (the smallest P keeping "
        f"{100 * c['target_agreement']:g} % of the full student's answers) on {c['threshold_rows']:,} "
        f"{c['threshold_on']}, where it kept {100 * c['agreement_on_threshold_rows']:.1f} %; the static tier answers "
        f"{100 * c['static_share']:.1f} % of the scored inputs; its latency is the mean per input over them, one per "
        "call."
    )


def ship_static(static_dir: Path, out: Path) -> None:
    """The static student into a shipped model dir, where export finds it (deploy/cascade.shipped_cascade)."""
    shutil.copytree(static_dir, out / CASCADE_DIR)
