"""`edgedistill export STRIPPED --cascade STATIC_DIR`: a bundle that answers easy inputs with a static student.

The bundle is the transformer's bundle with the static student's bundle inside it (`cascade/`, a complete static
bundle with its own manifest and hashes). The runtime runs the static model on every input; where its top
probability is >= P it answers, else the transformer does. The top manifest records P, how it was chosen, and the
share of the evidence inputs each tier answered; its `format_version` is 3, so runtimes before cascades refuse
the bundle instead of silently running the transformer alone.

`--cascade-threshold auto` picks the smallest P (most inputs to the static tier) at which the cascade keeps the
transformer's answers on at least --cascade-agreement of the evidence inputs (--parity-data, else a sample of the
training annotations, which the static student has seen: the export says so).

A compress output that shipped a cascade (`compress --into static --latency-budget MS`: its compress.json's chosen
candidate has a `cascade` record, the static student in MODEL/cascade/) exports as one without --cascade
(`shipped_cascade`), at the P compress picked; an explicit --cascade, or a --cascade-threshold P, wins.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..atomic import build_dir
from ..bounds import CASCADE_AUTO, cascade_threshold_problem
from ..edge.runtime import CASCADE_DIR, EdgeModel
from ..errors import UserError
from ..model_dir import read_meta
from ..task import load_task
from . import bundle as bundle_mod
from .static_bundle import _parity_items, export_static, is_static


def check_cascade(cfg, labels: list | None = None) -> None:
    """Refuse a --cascade that is not a static student of MODEL's task (and, given, MODEL's labels) or a bad P;
    called before anything is exported, and with the transformer bundle's labels once it is."""
    src = Path(cfg.cascade)
    why = cascade_threshold_problem(cfg.cascade_threshold)
    if why:
        raise UserError(f"--cascade-threshold: {why}")
    if not 0 < cfg.cascade_agreement <= 1:
        raise UserError(f"--cascade-agreement: {cfg.cascade_agreement!r} is out of range; give a value in (0, 1]")
    if not src.is_dir() or not is_static(src):
        raise UserError(
            f"--cascade {src}: not a static student dir; make one with "
            f"`edgedistill compress {cfg.model} --annotations FILE --into static --out DIR`"
        )
    mine, theirs = _task_of(Path(cfg.model)), _task_of(src)
    theirs_labels = list(read_meta(src).get("labels") or [])
    if (mine.get("name"), mine.get("type")) != (theirs.get("name"), theirs.get("type")) or (
        labels is not None and list(labels) != theirs_labels
    ):
        raise UserError(
            f"--cascade {src}: a static student of task {theirs.get('name')!r} ({theirs.get('type')}) with labels "
            f"{theirs_labels}, but {cfg.model} is task {mine.get('name')!r} ({mine.get('type')})"
            + (f" with labels {list(labels)}" if labels is not None else "")
            + "; pass the static student compressed from this model (compress MODEL --into static)"
        )


def _task_of(d: Path) -> dict:
    spec = d / "task.yaml"
    return load_task(spec).to_dict() if spec.exists() else {}


def pick_threshold(conf, static_labels, transformer_labels, target: float) -> tuple[float, float]:
    """The smallest P among the static tier's top probabilities at which the cascade's answers equal the
    transformer's on >= target of the inputs; (P, that agreement). None of them reaching it: (1.0, its agreement)."""
    conf = np.asarray(conf, dtype=np.float64)
    same = np.asarray([a == b for a, b in zip(static_labels, transformer_labels)])
    for p in sorted(set(conf.tolist())):
        agreement = float(np.mean(np.where(conf >= p, same, True)))
        if agreement >= target:
            return float(p), agreement
    return 1.0, float(np.mean(np.where(conf >= 1.0, same, True)))


def measure(static: EdgeModel, transformer: EdgeModel, items: list[dict], p: float) -> dict:
    """On the evidence inputs: the share each tier answers at P and the cascade's agreement with the transformer."""
    s, t = static.predict(items), transformer.predict(items)
    conf = [max(a["probs"].values()) for a in s]
    easy = [c >= p for c in conf]
    kept = [t[i]["label"] if not e else s[i]["label"] for i, e in enumerate(easy)]
    return {
        "conf": conf,
        "static_labels": [a["label"] for a in s],
        "transformer_labels": [a["label"] for a in t],
        "static_share": float(np.mean(easy)) if items else 0.0,
        "agreement": float(np.mean([k == a["label"] for k, a in zip(kept, t)])) if items else 1.0,
    }


def export_cascade(cfg, export_transformer, echo=print) -> dict:
    """The transformer's bundle (export_transformer(cfg) writes it) with the static student's inside; P chosen or
    given; the manifest sealed again. Written beside cfg.out and moved in only when complete."""
    static_src = Path(cfg.cascade)
    with build_dir(Path(cfg.out)) as work:
        manifest = export_transformer(replace(cfg, out=str(work), zip=False, cascade=None))
        check_cascade(cfg, manifest.get("labels"))
        export_static(replace(cfg, model=str(static_src), out=str(work / CASCADE_DIR), text_model=False), echo)
        items, evidence = _evidence(cfg, static_src)
        with EdgeModel.load(work / CASCADE_DIR) as static, EdgeModel.load(work) as transformer:
            m = measure(static, transformer, items, 1.0)
            if cfg.cascade_threshold == CASCADE_AUTO:
                p, _ = pick_threshold(m["conf"], m["static_labels"], m["transformer_labels"], cfg.cascade_agreement)
            else:
                p = float(cfg.cascade_threshold)
            m = measure(static, transformer, items, p)
        inner = (work / CASCADE_DIR / "manifest.json").read_bytes()
        manifest["cascade"] = {
            "bundle": CASCADE_DIR,
            "manifest_sha256": hashlib.sha256(inner).hexdigest(),
            "threshold": p,
            "threshold_from": _threshold_from(cfg),
            "target_agreement": cfg.cascade_agreement,
            "source": str(static_src.resolve()),
            "evidence": {**evidence, "inputs": len(items)},
            "share": {"static": m["static_share"], "transformer": 1 - m["static_share"]},
            "agreement_with_transformer": m["agreement"],
        }
        echo(
            f"cascade: P = {p:.4g} ({manifest['cascade']['threshold_from']}); on {len(items)} {evidence['what']}, "
            f"the static tier answers {100 * m['static_share']:.1f} % and the cascade keeps "
            f"{100 * m['agreement']:.2f} % of the transformer's answers (target {100 * cfg.cascade_agreement:g} %)"
        )
        if not evidence["held_out"]:
            echo(
                "cascade: the evidence is the static student's training annotations, not held-out inputs; "
                "pass --parity-data FILE (held-out inputs) for a P the app's inputs will confirm"
            )
        bundle_mod.finish(work, manifest)
    return manifest


def shipped_cascade(cfg):
    """cfg for a compress output that shipped a cascade: --cascade its static student (MODEL/cascade/) at the P
    compress picked (a --cascade-threshold P given wins); cfg itself where --cascade is given or none was shipped."""
    p = shipped_threshold(cfg.model)
    if cfg.cascade or p is None:
        return cfg
    threshold = repr(p) if cfg.cascade_threshold == CASCADE_AUTO else cfg.cascade_threshold
    return replace(cfg, cascade=str(Path(cfg.model) / CASCADE_DIR), cascade_threshold=threshold)


def shipped_threshold(model) -> float | None:
    """The P of the cascade compress shipped in `model` (its compress.json's chosen candidate), or None."""
    record = Path(model) / "compress.json"
    if not (record.exists() and (Path(model) / CASCADE_DIR).is_dir()):
        return None
    s = json.loads(record.read_text())
    chosen = next((r for r in s.get("candidates", []) if r["name"] == s.get("chosen")), {})
    return chosen["cascade"]["threshold"] if "cascade" in chosen else None


def _threshold_from(cfg) -> str:
    """The manifest's account of P: auto, compress (the P it picked for the cascade it shipped), or the flag's."""
    if cfg.cascade_threshold == CASCADE_AUTO:
        return "auto"
    shipped = Path(cfg.cascade).resolve() == (Path(cfg.model) / CASCADE_DIR).resolve()
    return (
        "compress"
        if shipped and float(cfg.cascade_threshold) == shipped_threshold(cfg.model)
        else "--cascade-threshold"
    )


def _evidence(cfg, static_src: Path) -> tuple[list[dict], dict]:
    meta = read_meta(static_src)
    items = _parity_items(cfg, static_src, meta, _task_of(static_src))
    if not items:
        raise UserError("--cascade: no inputs to choose the threshold on; pass --parity-data FILE with held-out inputs")
    if cfg.parity_data:
        return items, {
            "what": f"inputs of --parity-data {cfg.parity_data}",
            "data": str(cfg.parity_data),
            "held_out": True,
        }  # as the user says
    return items, {"what": "training annotations (a sample)", "data": "annotations sample", "held_out": False}
